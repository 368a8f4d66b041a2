"""A simulated broker: the venue, made of a ledger, a matching book and a fault model.

It stands in for a remote broker, so it owns its accounts' money, positions
and orders, and talks in its own symbol naming. Events are reported to
listeners synchronously; a listener must not call back into the broker while
being told (the engine queues them), which keeps matching loops simple.

Three parts do the work, each testable alone (STYLE.md, "Matching apart from
the venue"): `ledger.Ledger` keeps the money (balances, positions, margin,
liquidation and risk rules), `matching.OrderBook` the orders (the registry of
working and past orders, and the matching rules), `faults.FaultModel` the
seeded faults. `SimBroker` is what a client talks to: the Broker API, the
events (held while disconnected), submit and its answers, change tracking for
a store, and the orchestration that needs more than one part: a fill moves
money and orders and is reported, brackets and OCO pairs, a price update
(match, then liquidate, then risk), closing and flattening.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from synctui.brokers.base import AccountView, Listener, OrderRequest, PositionView
from synctui.brokers.events import (
    AccountBreached,
    BrokerEvent,
    Fill,
    LeverageChanged,
    MarginAdjusted,
    OrderAcknowledged,
    OrderCancelled,
    OrderFailed,
    OrderInfo,
    OrderModified,
    OrderPlaced,
    OrderRefused,
)
from synctui.brokers.faults import BrokerTimeout, FaultModel, FaultSettings
from synctui.brokers.ledger import DEFAULT_LEVERAGE, Ledger, SimAccount, SimPosition
from synctui.brokers.matching import OrderBook, SimOrder
from synctui.brokers.naming import NamingScheme, SymbolMap
from synctui.domain.clock import Clock, SystemClock
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.instruments import ALL_MARKETS, Catalog, Instrument, Market
from synctui.domain.orders import CancelReason, FillCause, MarginMode, OrderStatus, OrderType, Side
from synctui.domain.position import FillOutcome, unrealized_pnl
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits

__all__ = [
    "DEFAULT_LEVERAGE", "BrokerChanges", "BrokerSettings", "SimAccount", "SimBroker",
    "SimOrder", "SimPosition",
]

ZERO = Decimal(0)
NO_FAULTS = FaultSettings()


@dataclass(slots=True)
class BrokerChanges:
    """What changed since a store last took changes: ids to write, fills to append."""

    accounts: set[str] = field(default_factory=set)
    positions: set[tuple[str, str]] = field(default_factory=set)
    settings: set[tuple[str, str]] = field(default_factory=set)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.accounts or self.positions or self.settings or self.orders
                    or self.fills)


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    fee_per_contract: Decimal = ZERO
    slippage_ticks: Decimal = ZERO
    naming: NamingScheme = NamingScheme.PLAIN
    markets: frozenset[Market] = ALL_MARKETS  # what it trades (SPEC 9)
    faults: FaultSettings = NO_FAULTS  # seeded faults (SPEC 9)
    ack_delay: Decimal = ZERO  # seconds before a submitted order is answered (the demo's)



class SimBroker:
    """One simulated broker. Prices come from a shared `PriceBook`."""

    def __init__(self, name: str, catalog: Catalog, prices: PriceBook,
                 settings: BrokerSettings | None = None, clock: Clock | None = None) -> None:
        self.name = name
        self.catalog = catalog
        self.prices = prices
        self.settings = settings or BrokerSettings()
        self.symbols = SymbolMap(self.settings.naming, catalog)
        self.clock: Clock = clock or SystemClock()
        self.ledger = Ledger(catalog, prices, self.settings.fee_per_contract)
        self.book = OrderBook(name, catalog, prices, self.symbols, self.settings.slippage_ticks)
        self.faults = FaultModel(self.settings.faults)
        self._next_fill = 1
        self._listeners: list[Listener] = []
        self.changes: BrokerChanges | None = None  # tracked while a store listens
        # client id -> the broker's decision on its first request (rejected or not), so
        # that a retry after a timeout draws no fault and meets the same decision
        self._decided: dict[str, bool] = {}
        # Disconnected, nothing passes between engine and broker; the market goes on and
        # what the broker reports meanwhile is held, and reported on reconnect (SPEC 9).
        self.connected = True
        self.held: list[BrokerEvent] = []
        self._late: list[tuple[datetime, str, OrderRequest]] = []  # submitted, not answered
        self._buffer: list[BrokerEvent] | None = None  # reports held behind an answer
        self._tradable: dict[str, Instrument] = {}  # native symbol -> instrument it trades

    # --- plumbing -----------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, event: BrokerEvent) -> None:
        if self._buffer is not None:
            self._buffer.append(event)
            return
        if not self.connected:
            self.held.append(event)
            return
        for listener in self._listeners:
            listener(event)

    def disconnect(self) -> None:
        self.connected = False

    def reconnect(self) -> None:
        """Back online: what happened meanwhile is reported now, in order."""
        self.connected = True
        held, self.held = self.held, []
        for event in held:
            self._emit(event)

    def _online(self) -> None:
        if not self.connected:
            raise Refused(f"broker {self.name!r} is disconnected: nothing reaches it until "
                          "it reconnects")

    def track_changes(self) -> None:
        self.changes = BrokerChanges()

    def mark_all(self) -> None:
        """Count everything as changed: the first save of a new world writes it all."""
        if self.changes is None:
            self.track_changes()
        assert self.changes is not None
        for acct in self.ledger.accounts.values():
            self.changes.accounts.add(acct.id)
            self.changes.positions.update((acct.id, s) for s in acct.positions)
            self.changes.settings.update((acct.id, s) for s in acct.settings)
            self.changes.orders.update(acct.orders)

    def take_changes(self) -> BrokerChanges:
        taken = self.changes or BrokerChanges()
        if self.changes is not None:
            self.changes = BrokerChanges()
        return taken

    def _touched(self, acct: SimAccount, symbol: str | None = None) -> None:
        if self.changes is not None:
            self.changes.accounts.add(acct.id)
            if symbol is not None:
                self.changes.positions.add((acct.id, symbol))

    def _setting_touched(self, acct: SimAccount, symbol: str) -> None:
        if self.changes is not None:
            self.changes.settings.add((acct.id, symbol))
            self.changes.positions.add((acct.id, symbol))

    def _order_touched(self, order: SimOrder) -> None:
        if self.changes is not None:
            self.changes.orders[order.id] = order

    def _account(self, account: str) -> SimAccount:
        try:
            return self.ledger.accounts[account]
        except KeyError:
            raise Refused(f"broker {self.name!r} has no account {account!r}") from None

    def _instrument(self, native: str) -> Instrument:
        return self.catalog.get(self.symbols.catalog(native))

    @property
    def markets(self) -> frozenset[Market]:
        return self.settings.markets

    def trades(self, symbol: str) -> bool:
        """Whether this broker trades the (native) symbol's market (SPEC 9)."""
        return self._instrument(symbol).market in self.settings.markets

    def _traded(self, native: str) -> Instrument:
        """The instrument, refused when this broker does not trade its market. What it
        trades is remembered (an instrument never changes market): every order asks."""
        inst = self._tradable.get(native)
        if inst is not None:
            return inst
        inst = self._instrument(native)
        if inst.market not in self.settings.markets:
            raise OrderRejected(
                RejectReason.UNSUPPORTED_INSTRUMENT,
                f"broker {self.name!r} does not trade {inst.symbol} ({inst.market}); "
                f"it trades {', '.join(sorted(self.settings.markets))}")
        self._tradable[native] = inst
        return inst

    def has_account(self, account: str) -> bool:
        return account in self.ledger.accounts

    def open_account(self, account: str, balance: Decimal, risk: RiskLimits) -> None:
        if account in self.ledger.accounts:
            raise Refused(f"account {account!r} already exists at broker {self.name!r}")
        acct = self.ledger.open(account, balance, risk)
        self.book.open(account, acct.orders)
        self._touched(acct)

    def fund(self, account: str, amount: Decimal) -> None:
        """Move funds in (+) or out (-) of the balance; not profit, so risk shifts too."""
        acct = self._account(account)
        self.ledger.fund(acct, amount)
        self._touched(acct)

    # --- money --------------------------------------------------------------

    def leverage_of(self, account: str, symbol: str) -> tuple[int, MarginMode]:
        return self.ledger.setting(self._account(account), self.symbols.catalog(symbol))

    # --- orders -------------------------------------------------------------

    def submit(self, account: str, request: OrderRequest) -> None:
        """Hand over a follower order: answered at once, or after `ack_delay` (when
        `poll` finds it due). The answer (acknowledgement or refusal) is reported before
        what the order did, as a real broker's order stream does."""
        assert request.client_id is not None, "a submitted order has a client id"
        self._online()
        if self.settings.ack_delay > 0:
            due = self.clock.now() + timedelta(
                microseconds=int(self.settings.ack_delay * 1_000_000))
            self._late.append((due, account, request))
            return
        if not self._market_copy(account, request):
            self._answer(account, request)

    def _market_copy(self, account: str, request: OrderRequest) -> bool:
        """The common copy, a plain market order (or its reduce-only close) that fills
        at once, placed without the general path's steps (`_answer`, `_place`,
        `_execute`): a fan-out makes a thousand. It does what they do for such an order,
        in the same order, and reports the same events. Anything else (a bracket,
        faults, a refusal of any kind) returns False before changing anything, and the
        general path takes it, so that every refusal has one source
        (tests/test_sim_fast_path.py holds the two paths equal)."""
        if (request.type is not OrderType.MARKET or request.stop_loss is not None
                or request.take_profit is not None or self.faults.active
                or self._buffer is not None):
            return False
        acct = self.ledger.accounts.get(account)
        inst = self._tradable.get(request.symbol)
        client_id = request.client_id
        assert client_id is not None, "a submitted order has a client id"
        book = self.book
        if acct is None or inst is None or acct.breached or client_id in book.client_ids:
            return False
        side, qty, reduce_only = request.side, request.qty, request.reduce_only
        try:
            inst.check_qty(qty)
            price = book.slipped(inst, side, self.prices.get(inst.symbol))
            if reduce_only:  # fills what there is to reduce, and needs no margin
                filled = min(qty, self.ledger.reducible(acct, inst.symbol, side))
                if not filled:
                    return False
            else:
                filled = qty
                self.ledger.check_affordable(acct, inst, side, qty, price)
        except Refused:  # OrderRejected too: the general path refuses it, and says why
            return False
        order = SimOrder(book.new_id(), account, inst.symbol, side, OrderType.MARKET, qty,
                         None, reduce_only, None, None, client_id)
        book.filled_at_once(order)
        if self.changes is not None:
            self.changes.orders[order.id] = order
        self._buffer = []
        try:
            self._fill(acct, inst, side, filled, price, FillCause.ORDER, order)
        finally:
            reports, self._buffer = self._buffer, None
            self._emit(OrderAcknowledged(self.name, account, client_id, order.id))
            for event in reports:
                self._emit(event)
        return True

    def settling(self, account: str) -> bool:
        """Orders answered late (`ack_delay`) are on their way until answered; a fill is
        reported with its answer, so nothing else is."""
        return any(item[1] == account for item in self._late)

    def poll(self) -> None:
        if not self._late or not self.connected:
            return
        now = self.clock.now()
        due = [item for item in self._late if item[0] <= now]
        self._late = [item for item in self._late if item[0] > now]
        for _at, account, request in due:
            with contextlib.suppress(BrokerTimeout):  # unanswered: the client asks again
                self._answer(account, request)

    def _answer(self, account: str, request: OrderRequest) -> None:
        """Place, then report the answer first and what the order did after it. A
        timeout reports no answer (the client asks again by client id), but what an
        order that reached the broker did is reported all the same."""
        self._buffer = []
        answer: BrokerEvent | None = None
        try:
            answer = self._outcome(account, request)
        finally:
            reports, self._buffer = self._buffer, None
            if answer is not None:
                self._emit(answer)
            for event in reports:
                self._emit(event)

    def _outcome(self, account: str, request: OrderRequest) -> BrokerEvent:
        assert request.client_id is not None
        try:
            order_id = self.place_order(account, request)
        except OrderRejected as rejected:
            return OrderRefused(self.name, account, request.client_id, rejected.reason,
                                rejected.message)
        except Refused as refused:
            return OrderRefused(self.name, account, request.client_id,
                                RejectReason.REJECTED, refused.message)
        return OrderAcknowledged(self.name, account, request.client_id, order_id)

    def place_order(self, account: str, request: OrderRequest) -> str:
        """Place an order. A follower's order (it has a client id) meets the fault model
        once: it may time out (having reached the broker or not; `BrokerTimeout`) and may
        be rejected; a retry with the same client id draws nothing more."""
        self._online()
        client_id = request.client_id
        if client_id is None or client_id in self._decided or not self.faults.active:
            return self._place(account, request, reject=self._decided.get(client_id or ""))
        timeout = self.faults.times_out()
        reject = self._decided[client_id] = self.faults.rejects()
        if timeout is None:
            return self._place(account, request, reject)
        if timeout.reached:
            with contextlib.suppress(Refused):
                self._place(account, request, reject)
        raise timeout

    def _place(self, account: str, request: OrderRequest, reject: bool | None) -> str:
        acct = self._account(account)
        inst = self._traded(request.symbol)
        if request.client_id is not None and request.client_id in self.book.client_ids:
            raise OrderRejected(RejectReason.REJECTED,
                                f"duplicate client order id {request.client_id!r}")
        inst.check_qty(request.qty)
        if request.type is not OrderType.MARKET:
            if request.price is None:
                raise Refused(f"a {request.type} order needs a price")
            inst.check_price(request.price)
        if request.stop_loss is not None:
            inst.check_price(request.stop_loss, "stop_loss")
        if request.take_profit is not None:
            inst.check_price(request.take_profit, "take_profit")
        current = self.prices.get(inst.symbol)
        if acct.breached:
            raise OrderRejected(RejectReason.ACCOUNT_BREACHED,
                                f"account {account!r} has breached its {acct.breached} "
                                "and takes no orders until the breach is reset")
        order = SimOrder(  # positional (id, account, symbol, side, type, qty, price,
            # reduce_only, stop_loss, take_profit, client_id): one per follower order
            self.book.new_id(), account, inst.symbol, request.side, request.type,
            request.qty, request.price, request.reduce_only, request.stop_loss,
            request.take_profit, request.client_id)
        if request.reduce_only and not self.ledger.reducible(acct, inst.symbol, order.side):
            raise OrderRejected(
                RejectReason.REJECTED,
                f"reduce-only {request.side} has no {inst.symbol} position to reduce")
        if reject:
            self._remember(order)
            message = f"broker {self.name!r} rejected the order"
            self.book.reject(order.id, RejectReason.REJECTED, message)
            self._order_touched(order)
            raise OrderRejected(RejectReason.REJECTED, message)
        if request.type is OrderType.MARKET or self.book.marketable(order, current):
            fill_price = self.book.fill_price(order, inst, current)
            self._remember(order)
            self._execute(acct, order, fill_price, FillCause.ORDER, refuse=True, inst=inst)
            return order.id
        self._remember(order)
        self._rest(order)
        return order.id

    def _remember(self, order: SimOrder) -> None:
        self.book.remember(order)
        self._order_touched(order)

    def _rest(self, order: SimOrder) -> None:
        self.book.rest(order)
        self._emit(OrderPlaced(self.book.info(order)))

    def modify_order(self, order_id: str, price: Decimal) -> None:
        order = self.book.working_order(order_id)
        inst = self.catalog.get(order.symbol)
        inst.check_price(price)
        acct = self._account(order.account)
        current = self.prices.get(order.symbol)
        moved = replace(order, price=price)
        if self.book.marketable(moved, current):
            fill_price = self.book.fill_price(order, inst, current)
            if not moved.reduce_only:  # a reduce-only order needs no margin
                self.ledger.check_affordable(acct, inst, moved.side, moved.qty, fill_price)
            order.price = price
            self._emit(OrderModified(self.book.info(order)))
            self.book.take_off(order)
            self._execute(acct, order, fill_price, FillCause.ORDER, refuse=True)
            return
        order.price = price
        self.book.modified(order)
        self._order_touched(order)
        self._emit(OrderModified(self.book.info(order)))

    def cancel_order(self, order_id: str) -> None:
        order = self.book.working_order(order_id)
        self._cancel(order, CancelReason.REQUESTED)

    def _cancel(self, order: SimOrder, reason: CancelReason) -> None:
        self.book.take_off(order)
        self.book.set_status(order.id, OrderStatus.CANCELLED)
        self._order_touched(order)
        self._emit(OrderCancelled(self.book.info(order), reason))

    def cancel_all(self, account: str, symbol: str | None = None) -> None:
        self._account(account)
        wanted = None if symbol is None else self.symbols.catalog(symbol)
        for order in list(self.book.of(account).values()):
            if wanted is None or order.symbol == wanted:
                self._cancel(order, CancelReason.REQUESTED)

    # --- fills --------------------------------------------------------------

    def _execute(self, acct: SimAccount, order: SimOrder, price: Decimal, cause: FillCause,
                 refuse: bool, inst: Instrument | None = None) -> None:
        """Fill `order` at `price`. `refuse` raises on a margin shortfall instead of
        reporting `OrderFailed` (a fresh order is refused; a working one fails)."""
        if inst is None:
            inst = self.catalog.get(order.symbol)
        qty = order.qty
        if order.reduce_only:
            reducible = self.ledger.reducible(acct, order.symbol, order.side)
            if not reducible:
                self._order_done(order)
                self.book.set_status(order.id, OrderStatus.CANCELLED)
                self._order_touched(order)
                self._emit(OrderCancelled(self.book.info(order), CancelReason.NOTHING_TO_REDUCE))
                return
            qty = min(qty, reducible)
        try:
            if not order.reduce_only:  # a reduce-only order needs no margin
                self.ledger.check_affordable(acct, inst, order.side, qty, price)
        except OrderRejected as rejected:
            self._order_done(order)
            self.book.reject(order.id, rejected.reason, rejected.message)
            self._order_touched(order)
            if refuse:
                raise
            self._emit(OrderFailed(self.book.info(order), rejected.reason, rejected.message))
            return
        self._order_done(order)
        self.book.set_status(order.id, OrderStatus.FILLED)
        self._order_touched(order)
        parts = 1
        # a follower's order may fill in pieces (SPEC 9); without faults it never does
        if order.client_id is not None and self.faults.active:
            parts = self.faults.parts(int(qty / inst.qty_step))
        self._fill(acct, inst, order.side, qty, price, cause, order, parts=parts)

    def _order_done(self, order: SimOrder) -> None:
        self.book.take_off(order)
        if order.oco_id is not None:
            sibling = self.book.get(order.oco_id)
            if sibling is not None:
                self._cancel(sibling, CancelReason.OCO)

    def _fill(self, acct: SimAccount, inst: Instrument, side: Side, qty: Decimal,
              price: Decimal, cause: FillCause, order: SimOrder | None,
              check_risk: bool = True, parts: int = 1) -> None:
        """Book one fill in the ledger and report it. Margin is already checked.

        `check_risk` is off while a liquidation closes several positions: the
        liquidation finishes at the update price before the risk rules look.
        `parts` > 1 reports the fill in that many pieces at the same price (SPEC 9's
        partial fills): the books take the whole at once, so the pieces change no
        average, margin or balance a single fill would not; their fees and realized
        PnL add up to the whole's exactly."""
        symbol = inst.symbol
        pos = acct.positions.get(symbol)
        held = pos.qty if pos else ZERO
        # A copy's fill (it has a client id) sizes nothing: only a leader's fill needs
        # the equity before it (Smart Sync's fund usage), so only it pays for it.
        copy = order is not None and order.client_id is not None
        equity_before = ZERO if copy else self.ledger.equity(acct)
        leverage, mode = self.ledger.setting(acct, symbol)
        fee = self.ledger.fee(qty)
        outcome = self.ledger.apply_fill(acct, inst, side, qty, price, fee, self._next_fill)
        self._touched(acct, symbol)
        at = self.clock.now()
        native = self.symbols.native(symbol)
        lev, margin_mode = (None, None) if inst.is_future else (leverage, mode)
        if order is None:
            order_id = client_id = parent_id = role = None
            stop_loss = take_profit = None
        else:
            order_id, client_id, parent_id = order.id, order.client_id, order.parent_id
            role, stop_loss, take_profit = order.role, order.stop_loss, order.take_profit
        changes = self.changes
        # (size, fee, realized, position after) of each piece: the whole, most often
        pieces = ((qty, fee, outcome.realized, outcome.qty),) if parts <= 1 else (
            self._pieces(inst, side, qty, parts, held, outcome))
        before = held
        for size, size_fee, realized, after in pieces:
            # positional: a fan-out builds a thousand of these
            fill = Fill(
                f"{self.name}-f{self._next_fill}", self.name, acct.id, native, side, size,
                price, size_fee, realized, cause, before, after, equity_before, lev,
                margin_mode, order_id, client_id, parent_id, role, stop_loss, take_profit, at)
            self._next_fill += 1
            before = after
            if changes is not None:
                changes.fills.append(fill)
            self._emit(fill)
        if outcome.qty == 0 or (outcome.closed and outcome.opened):
            self._cancel_reduce_only(acct, symbol)
        if order is not None and outcome.opened and (order.stop_loss or order.take_profit):
            self._place_brackets(acct, order, outcome.opened)
        if check_risk:
            self._check_risk(acct)

    def _pieces(self, inst: Instrument, side: Side, qty: Decimal, parts: int, held: Decimal,
                outcome: FillOutcome) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
        """A fill of `qty` in `parts` pieces of whole steps, the first ones a step larger
        when it does not divide: (size, fee, realized, position after) of each. The last
        piece takes what rounding left of the realized PnL, so that they add up."""
        step = inst.qty_step
        steps = int(qty / step)
        sizes = [(steps // parts + (1 if i < steps % parts else 0)) * step
                 for i in range(parts)]
        pieces = []
        before, realized_left = held, outcome.realized
        for size in sizes[:-1]:
            realized = outcome.realized * size / qty
            before += side.signed(size)
            realized_left -= realized
            pieces.append((size, self.ledger.fee(size), realized, before))
        pieces.append((sizes[-1], self.ledger.fee(sizes[-1]), realized_left, outcome.qty))
        return pieces

    def _cancel_reduce_only(self, acct: SimAccount, symbol: str) -> None:
        """A reduce-only order still working when its position goes flat is cancelled (SPEC 8)."""
        working = self.book.working
        for other in list(self.book.of(acct.id).values()):
            if other.symbol == symbol and other.reduce_only and other.id in working:
                self._cancel(other, CancelReason.POSITION_CLOSED)

    def _place_brackets(self, acct: SimAccount, parent: SimOrder, qty: Decimal) -> None:
        """Stop loss and take profit become reduce-only OCO exits for the opened qty."""
        exit_side = parent.side.opposite
        legs: list[SimOrder] = []
        if parent.take_profit is not None:
            legs.append(SimOrder(
                id=self.book.new_id(), account=acct.id, symbol=parent.symbol, side=exit_side,
                type=OrderType.LIMIT, qty=qty, price=parent.take_profit, reduce_only=True,
                parent_id=parent.id, role="take_profit"))
        if parent.stop_loss is not None:
            legs.append(SimOrder(
                id=self.book.new_id(), account=acct.id, symbol=parent.symbol, side=exit_side,
                type=OrderType.STOP, qty=qty, price=parent.stop_loss, reduce_only=True,
                parent_id=parent.id, role="stop_loss"))
        if len(legs) == 2:
            legs[0].oco_id, legs[1].oco_id = legs[1].id, legs[0].id
        for leg in legs:
            self._remember(leg)
            self._rest(leg)
        current = self.prices.get(parent.symbol)
        inst = self.catalog.get(parent.symbol)
        for leg in legs:
            if leg.id in self.book.working and self.book.marketable(leg, current):
                fill_price = self.book.fill_price(leg, inst, current)
                self._execute(acct, leg, fill_price, FillCause.BRACKET, refuse=False)

    def close_position(self, account: str, symbol: str, cause: FillCause) -> None:
        """Close at market (with slippage), after cancelling the symbol's working orders."""
        acct = self._account(account)
        catalog_symbol = self._traded(symbol).symbol
        working = self.book.working
        for order in list(self.book.of(account).values()):
            if order.symbol == catalog_symbol and order.id in working:
                self._cancel(order, CancelReason.FLATTEN)
        self._close(acct, catalog_symbol, cause, slip=True)

    def close_all(self, account: str, cause: FillCause) -> None:
        """Cancel everything and close every position: at market with slippage, except a
        copy's stop loss, which closes at the price of the update (SPEC 8)."""
        acct = self._account(account)
        self.cancel_all(account)
        for symbol in list(acct.positions):
            self._close(acct, symbol, cause, slip=cause is not FillCause.COPY_STOP)

    def _close(self, acct: SimAccount, symbol: str, cause: FillCause, slip: bool) -> None:
        pos = acct.positions.get(symbol)
        if pos is None:
            return
        inst = self.catalog.get(symbol)
        side = Side.closing(pos.qty)
        price = self.prices.get(symbol)
        if slip:
            price = self.book.slipped(inst, side, price)
        self._fill(acct, inst, side, abs(pos.qty), price, cause, None,
                   check_risk=cause not in (FillCause.LIQUIDATION, FillCause.COPY_STOP))

    # --- leverage and margin --------------------------------------------------

    def set_leverage(self, account: str, symbol: str, leverage: Decimal | int) -> None:
        acct = self._account(account)
        inst = self._traded(symbol)
        changed = self.ledger.set_leverage(acct, inst, leverage)
        self._setting_touched(acct, inst.symbol)
        if changed is not None:
            self._emit(LeverageChanged(self.name, account, symbol, changed,
                                       inst.symbol in acct.positions))

    def set_margin_mode(self, account: str, symbol: str, mode: MarginMode) -> None:
        acct = self._account(account)
        inst = self._traded(symbol)
        if self.ledger.set_margin_mode(acct, inst, mode):
            self._setting_touched(acct, inst.symbol)

    def adjust_margin(self, account: str, symbol: str, amount: Decimal) -> None:
        acct = self._account(account)
        inst = self._traded(symbol)
        before = self.ledger.adjust_margin(acct, inst, amount)
        self._touched(acct, inst.symbol)
        self._emit(MarginAdjusted(self.name, account, symbol, amount, before))

    # --- risk ---------------------------------------------------------------

    def _check_risk(self, acct: SimAccount) -> None:
        if not self.ledger.watched(acct):
            return
        rule = self.ledger.observe_risk(acct)
        self._touched(acct)
        if rule is None:
            return
        self.cancel_all(acct.id)
        for symbol in list(acct.positions):
            self._close(acct, symbol, FillCause.RISK, slip=True)
        # Reported after the flatten: its exit fills are copied before the group pauses.
        self._emit(AccountBreached(self.name, acct.id, rule))

    def is_breached(self, account: str) -> bool:
        return self._account(account).breached is not None

    def reset_breach(self, account: str) -> None:
        acct = self._account(account)
        self.ledger.reset_breach(acct)
        self._touched(acct)

    # --- the market moves -----------------------------------------------------

    def on_price(self, family: str) -> None:
        """Trigger working orders, then liquidations, then risk checks (SPEC 2, 3)."""
        book = self.book
        accounts = self.ledger.accounts
        for order in book.triggered(family):
            fill_price = book.fill_price(order, self.catalog.get(order.symbol),
                                         self.prices.get(order.symbol), resting=True)
            cause = FillCause.BRACKET if order.parent_id else FillCause.ORDER
            self._execute(accounts[order.account], order, fill_price, cause, refuse=False)
        for acct in self.ledger.holders(family):
            self._liquidate(acct, family)
            self._check_risk(acct)

    def _liquidate(self, acct: SimAccount, family: str) -> None:
        """Isolated positions the price liquidates first, then (at the equity that
        leaves) the cross ones, all at the update price."""
        for symbol in self.ledger.isolated_liquidations(acct, family):
            self._close(acct, symbol, FillCause.LIQUIDATION, slip=False)
        for symbol in self.ledger.cross_liquidation(acct):
            self._close(acct, symbol, FillCause.LIQUIDATION, slip=False)

    def margin_level(self, account: str, symbol: str) -> Decimal | None:
        """(position margin + uPnL) / maintenance margin of an isolated position."""
        return self.ledger.margin_level(self._account(account), self._instrument(symbol))

    def position_margin(self, account: str, symbol: str) -> Decimal:
        acct = self._account(account)
        inst = self._instrument(symbol)
        pos = acct.positions.get(inst.symbol)
        if pos is None:
            return ZERO
        return self.ledger.position_margin(acct, pos, inst, self.prices.get(inst.symbol))

    def _position_view(self, acct: SimAccount, pos: SimPosition, symbol: str) -> PositionView:
        inst = self.catalog.get(pos.symbol)
        price = self.prices.get(pos.symbol)
        leverage, mode = self.ledger.setting(acct, pos.symbol)
        return PositionView(
            symbol=symbol, qty=pos.qty, avg_price=pos.avg,
            leverage=None if inst.is_future else leverage,
            margin_mode=None if inst.is_future else mode,
            margin=self.ledger.position_margin(acct, pos, inst, price),
            unrealized=unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier))

    def position_detail(self, account: str, symbol: str) -> PositionView | None:
        """One position, priced now; cheaper than a whole `view` (the UI's hot path)."""
        acct = self._account(account)
        pos = acct.positions.get(self.symbols.catalog(symbol))
        if pos is None:
            return None
        return self._position_view(acct, pos, symbol)

    def close_cost(self, symbol: str, qty: Decimal) -> Decimal:
        """What closing `qty` at market costs beyond the current price: fees and slippage."""
        inst = self._instrument(symbol)
        slip = self.settings.slippage_ticks * inst.tick * qty * inst.multiplier
        return self.ledger.fee(qty) + slip

    def realized_net(self, account: str) -> Decimal:
        """Realized PnL net of fees."""
        acct = self._account(account)
        return acct.realized - acct.fees

    def total_pnl(self, account: str) -> Decimal:
        """What the account made: realized net of fees, plus unrealized over every
        position (equity above the balance)."""
        acct = self._account(account)
        return acct.realized - acct.fees + self.ledger.equity(acct) - acct.balance

    def isolated_floor(self, account: str, symbol: str) -> Decimal:
        """The least margin an isolated position may keep: qty x avg / leverage (SPEC 8)."""
        return self.ledger.isolated_floor(self._account(account), self._instrument(symbol))

    def available(self, account: str) -> Decimal:
        return self.ledger.available(self._account(account))

    def equity(self, account: str) -> Decimal:
        return self.ledger.equity(self._account(account))

    # --- views --------------------------------------------------------------

    def position(self, account: str, symbol: str) -> Decimal:
        pos = self._account(account).positions.get(self.symbols.catalog(symbol))
        return pos.qty if pos else ZERO

    def positions(self, account: str) -> dict[str, Decimal]:
        """Every signed position of the account, by native symbol: no pricing, so a
        dashboard refresh can reconcile hundreds of followers cheaply."""
        native = self.symbols.native
        return {native(s): p.qty for s, p in self._account(account).positions.items()}

    def working_orders(self, account: str, symbol: str | None = None) -> list[OrderInfo]:
        self._account(account)
        wanted = None if symbol is None else self.symbols.catalog(symbol)
        info = self.book.info
        return [info(o) for o in self.book.of(account).values() if wanted in (None, o.symbol)]

    def order(self, order_id: str) -> OrderInfo | None:
        order = self.book.get(order_id)
        return self.book.info(order) if order else None

    def order_status(self, order_id: str) -> OrderStatus | None:
        return self.book.status.get(order_id)

    def order_by_client_id(self, client_id: str) -> OrderInfo | None:
        return self.book.by_client_id(client_id)

    def reject_reason(self, order_id: str) -> tuple[RejectReason, str] | None:
        """Why the broker rejected an order it had accepted for matching, if it did."""
        return self.book.rejects.get(order_id)

    def view(self, account: str) -> AccountView:
        acct = self._account(account)
        native = self.symbols.native
        positions = tuple(self._position_view(acct, pos, native(pos.symbol))
                          for pos in acct.positions.values())
        equity = self.ledger.equity(acct)
        used = self.ledger.used_margin(acct)
        return AccountView(
            id=acct.id, broker=self.name, balance=acct.balance, equity=equity,
            available=equity - used, used_margin=used, realized=acct.realized, fees=acct.fees,
            breached=acct.breached, risk=acct.risk, positions=positions,
            orders=tuple(self.book.info(o) for o in self.book.of(account).values()),
        )

    # --- persistence: the store reads and restores a broker's own state ------------

    def account_state(self, account: str) -> SimAccount:
        return self._account(account)

    def accounts(self) -> list[str]:
        return list(self.ledger.accounts)

    def counters(self) -> tuple[int, int]:
        return self.book.next_id, self._next_fill

    def status_of(self, order_id: str) -> OrderStatus | None:
        return self.book.status.get(order_id)

    def restore(self, accounts: list[SimAccount], working: list[SimOrder],
                counters: tuple[int, int],
                known: list[tuple[SimOrder, OrderStatus]],
                rejects: dict[str, tuple[RejectReason, str]] | None = None) -> None:
        """Rebuild from a store: accounts with their positions and settings, the
        working orders, the id counters, and earlier orders a retry may ask about
        (with the reasons of those that were rejected)."""
        for acct in accounts:
            acct.orders = {}
            self.ledger.accounts[acct.id] = acct
            self.book.open(acct.id, acct.orders)
        next_id, self._next_fill = counters
        self.book.restore(working, known, rejects or {}, next_id)

    def today_pnl(self, account: str) -> Decimal:
        """Today's PnL as the daily loss limit measures it (SPEC 3): equity minus the
        day's starting equity, which a breach reset restarts and funding moves shift."""
        return self.ledger.today_pnl(self._account(account))
