"""A simulated broker: order matching, margin, liquidation and prop-style risk.

It stands in for a remote broker, so it owns its accounts' money, positions
and orders, and talks in its own symbol naming. Events are reported to
listeners synchronously; a listener must not call back into the broker while
being told (the engine queues them), which keeps matching loops simple.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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
from synctui.brokers.naming import NamingScheme, SymbolMap
from synctui.domain.clock import Clock, SystemClock
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.groups import whole_number
from synctui.domain.instruments import ALL_MARKETS, Catalog, Instrument, Market
from synctui.domain.margin import isolated_liquidated, maintenance_margin, order_margin
from synctui.domain.orders import (
    CancelReason,
    FillCause,
    MarginMode,
    OrderStatus,
    OrderType,
    Side,
    transition,
)
from synctui.domain.position import apply_fill, split_fill, unrealized_pnl
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits, RiskState

ZERO = Decimal(0)
DEFAULT_LEVERAGE = 10
NO_FAULTS = FaultSettings()


@dataclass(slots=True)
class SimPosition:
    symbol: str
    qty: Decimal  # signed
    avg: Decimal
    margin: Decimal = ZERO  # isolated perps only: the margin set aside for it
    seq: int = 0  # opening order, so a restored account lists positions as before


@dataclass(slots=True)
class SimOrder:
    id: str
    account: str
    symbol: str  # catalog symbol
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool = False
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    client_id: str | None = None
    parent_id: str | None = None
    role: str | None = None
    oco_id: str | None = None


@dataclass(slots=True)
class SimAccount:
    id: str
    balance: Decimal
    risk: RiskLimits
    risk_state: RiskState
    positions: dict[str, SimPosition] = field(default_factory=dict)
    settings: dict[str, tuple[int, MarginMode]] = field(default_factory=dict)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    breached: str | None = None
    realized: Decimal = ZERO
    fees: Decimal = ZERO


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
        self._accounts: dict[str, SimAccount] = {}
        self._orders: dict[str, SimOrder] = {}  # every working order, by id
        self._client_ids: dict[str, str] = {}  # client id -> order id, forever
        self._order_log: dict[str, OrderInfo] = {}  # every order ever accepted
        self._status: dict[str, OrderStatus] = {}
        # why each rejected order was rejected: a client asking again after a restart
        # learns the same reason, as from a real broker's order history
        self._rejects: dict[str, tuple[RejectReason, str]] = {}
        self._next_id = 1
        self._next_fill = 1
        self._listeners: list[Listener] = []
        self.changes: BrokerChanges | None = None  # tracked while a store listens
        self.faults = FaultModel(self.settings.faults)
        # client id -> the broker's decision on its first request (rejected or not), so
        # that a retry after a timeout draws no fault and meets the same decision
        self._decided: dict[str, bool] = {}
        # Disconnected, nothing passes between engine and broker; the market goes on and
        # what the broker reports meanwhile is held, and reported on reconnect (SPEC 9).
        self.connected = True
        self.held: list[BrokerEvent] = []
        self._late: list[tuple[datetime, str, OrderRequest]] = []  # submitted, not answered
        self._buffer: list[BrokerEvent] | None = None  # reports held behind an answer

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
        for acct in self._accounts.values():
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
            return self._accounts[account]
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
        """The instrument, refused when this broker does not trade its market."""
        inst = self._instrument(native)
        if inst.market not in self.settings.markets:
            raise OrderRejected(
                RejectReason.UNSUPPORTED_INSTRUMENT,
                f"broker {self.name!r} does not trade {inst.symbol} ({inst.market}); "
                f"it trades {', '.join(sorted(self.settings.markets))}")
        return inst

    def _info(self, order: SimOrder) -> OrderInfo:
        return OrderInfo(
            broker=self.name, id=order.id, account=order.account,
            symbol=self.symbols.native(order.symbol), side=order.side, type=order.type,
            qty=order.qty, price=order.price, reduce_only=order.reduce_only,
            stop_loss=order.stop_loss, take_profit=order.take_profit,
            client_id=order.client_id, parent_id=order.parent_id, role=order.role,
        )

    def has_account(self, account: str) -> bool:
        return account in self._accounts

    def open_account(self, account: str, balance: Decimal, risk: RiskLimits) -> None:
        if account in self._accounts:
            raise Refused(f"account {account!r} already exists at broker {self.name!r}")
        acct = self._accounts[account] = SimAccount(
            id=account, balance=balance, risk=risk, risk_state=RiskState(balance, balance)
        )
        self._touched(acct)

    def fund(self, account: str, amount: Decimal) -> None:
        """Move funds in (+) or out (-) of the balance; not profit, so risk shifts too."""
        acct = self._account(account)
        acct.balance += amount
        acct.risk_state.shift(amount)
        self._touched(acct)

    # --- money --------------------------------------------------------------

    def leverage_of(self, account: str, symbol: str) -> tuple[int, MarginMode]:
        acct = self._account(account)
        return acct.settings.get(self.symbols.catalog(symbol), (DEFAULT_LEVERAGE, MarginMode.CROSS))

    def _setting(self, acct: SimAccount, symbol: str) -> tuple[int, MarginMode]:
        return acct.settings.get(symbol, (DEFAULT_LEVERAGE, MarginMode.CROSS))

    def _position_margin(self, acct: SimAccount, pos: SimPosition, inst: Instrument,
                         price: Decimal) -> Decimal:
        if inst.is_future:
            return abs(pos.qty) * inst.margin_per_contract
        leverage, mode = self._setting(acct, pos.symbol)
        if mode is MarginMode.ISOLATED:
            return pos.margin
        return abs(pos.qty) * price / leverage

    def _equity(self, acct: SimAccount) -> Decimal:
        equity = acct.balance
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            equity += unrealized_pnl(pos.qty, pos.avg, self.prices.get(pos.symbol), inst.multiplier)
        return equity

    def _used_margin(self, acct: SimAccount) -> Decimal:
        used = ZERO
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            used += self._position_margin(acct, pos, inst, self.prices.get(pos.symbol))
        return used

    def _available(self, acct: SimAccount) -> Decimal:
        return self._equity(acct) - self._used_margin(acct)

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
        self._answer(account, request)

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
        if client_id is None or client_id in self._decided or not self.faults.settings.any:
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
        if request.client_id is not None and request.client_id in self._client_ids:
            raise OrderRejected(RejectReason.REJECTED,
                                f"duplicate client order id {request.client_id!r}")
        inst.check_qty(request.qty)
        if request.type is not OrderType.MARKET:
            if request.price is None:
                raise Refused(f"a {request.type} order needs a price")
            inst.check_price(request.price)
        for what, level in (("stop_loss", request.stop_loss), ("take_profit", request.take_profit)):
            if level is not None:
                inst.check_price(level, what)
        current = self.prices.get(inst.symbol)
        if acct.breached:
            raise OrderRejected(RejectReason.ACCOUNT_BREACHED,
                                f"account {account!r} has breached its {acct.breached} "
                                "and takes no orders until the breach is reset")
        order = SimOrder(
            id=self._new_id(), account=account, symbol=inst.symbol, side=request.side,
            type=request.type, qty=request.qty, price=request.price,
            reduce_only=request.reduce_only, stop_loss=request.stop_loss,
            take_profit=request.take_profit, client_id=request.client_id,
        )
        if request.reduce_only and not self._reduces(acct, order):
            raise OrderRejected(
                RejectReason.REJECTED,
                f"reduce-only {request.side} has no {inst.symbol} position to reduce")
        if reject:
            self._remember(order)
            self._set_status(order.id, OrderStatus.REJECTED)
            message = f"broker {self.name!r} rejected the order"
            self._rejects[order.id] = (RejectReason.REJECTED, message)
            self._order_touched(order)
            raise OrderRejected(RejectReason.REJECTED, message)
        if request.type is OrderType.MARKET or self._marketable(order, current):
            fill_price = current
            if request.type is not OrderType.LIMIT:
                fill_price = self._slipped(inst, order.side, current)
            self._remember(order)
            self._execute(acct, order, fill_price, FillCause.ORDER, refuse=True)
            return order.id
        self._remember(order)
        self._rest(acct, order)
        return order.id

    def _set_status(self, order_id: str, status: OrderStatus) -> None:
        """Every status change goes through the lifecycle's transition table."""
        self._status[order_id] = transition(self._status.get(order_id), status)

    def _new_id(self) -> str:
        order_id = f"{self.name}-{self._next_id}"
        self._next_id += 1
        return order_id

    def _remember(self, order: SimOrder) -> None:
        if order.client_id is not None:
            self._client_ids[order.client_id] = order.id
        self._order_log[order.id] = self._info(order)
        self._set_status(order.id, OrderStatus.WORKING)
        self._order_touched(order)

    def _rest(self, acct: SimAccount, order: SimOrder) -> None:
        acct.orders[order.id] = order
        self._orders[order.id] = order
        self._emit(OrderPlaced(self._info(order)))

    def _reduces(self, acct: SimAccount, order: SimOrder) -> bool:
        pos = acct.positions.get(order.symbol)
        return pos is not None and (pos.qty > 0) != (order.side is Side.BUY)

    @staticmethod
    def _marketable(order: SimOrder, price: Decimal) -> bool:
        assert order.price is not None
        if order.type is OrderType.LIMIT:
            return price <= order.price if order.side is Side.BUY else price >= order.price
        if order.type is OrderType.STOP:
            return price >= order.price if order.side is Side.BUY else price <= order.price
        return True

    def _slipped(self, inst: Instrument, side: Side, price: Decimal) -> Decimal:
        """Slippage is always adverse (SPEC 2); never below one tick."""
        slip = self.settings.slippage_ticks * inst.tick
        return price + slip if side is Side.BUY else max(price - slip, inst.tick)

    def modify_order(self, order_id: str, price: Decimal) -> None:
        order = self._working(order_id)
        inst = self.catalog.get(order.symbol)
        inst.check_price(price)
        acct = self._account(order.account)
        current = self.prices.get(order.symbol)
        moved = replace(order, price=price)
        if self._marketable(moved, current):
            fill_price = current if order.type is OrderType.LIMIT else self._slipped(
                inst, order.side, current)
            self._check_affordable(acct, moved, fill_price)
            order.price = price
            self._emit(OrderModified(self._info(order)))
            self._take_off(acct, order)
            self._execute(acct, order, fill_price, FillCause.ORDER, refuse=True)
            return
        order.price = price
        self._order_log[order.id] = self._info(order)
        self._order_touched(order)
        self._emit(OrderModified(self._info(order)))

    def _working(self, order_id: str) -> SimOrder:
        try:
            return self._orders[order_id]
        except KeyError:
            raise Refused(f"order {order_id!r} is not working") from None

    def cancel_order(self, order_id: str) -> None:
        order = self._working(order_id)
        self._cancel(order, CancelReason.REQUESTED)

    def _cancel(self, order: SimOrder, reason: CancelReason) -> None:
        acct = self._accounts[order.account]
        self._take_off(acct, order)
        self._set_status(order.id, OrderStatus.CANCELLED)
        self._order_touched(order)
        self._emit(OrderCancelled(self._info(order), reason))

    def _take_off(self, acct: SimAccount, order: SimOrder) -> None:
        acct.orders.pop(order.id, None)
        self._orders.pop(order.id, None)

    def cancel_all(self, account: str, symbol: str | None = None) -> None:
        acct = self._account(account)
        wanted = None if symbol is None else self.symbols.catalog(symbol)
        for order in list(acct.orders.values()):
            if wanted is None or order.symbol == wanted:
                self._cancel(order, CancelReason.REQUESTED)

    # --- fills --------------------------------------------------------------

    def _check_affordable(self, acct: SimAccount, order: SimOrder, price: Decimal) -> None:
        inst = self.catalog.get(order.symbol)
        pos = acct.positions.get(order.symbol)
        held = pos.qty if pos else ZERO
        qty = order.qty
        if order.reduce_only:
            return
        closed, opened = split_fill(held, order.side.signed(qty))
        if not opened:
            return
        leverage, _mode = self._setting(acct, order.symbol)
        need = order_margin(inst, opened, price, leverage)
        freed = ZERO
        if pos is not None and closed >= abs(held):
            freed = self._position_margin(acct, pos, inst, self.prices.get(order.symbol))
        available = self._available(acct) + freed
        if need > available:
            raise OrderRejected(
                RejectReason.INSUFFICIENT_MARGIN,
                f"{opened} {inst.symbol} needs {need.normalize():f} margin; "
                f"account {acct.id!r} has {available.normalize():f} available",
            )

    def _execute(self, acct: SimAccount, order: SimOrder, price: Decimal, cause: FillCause,
                 refuse: bool) -> None:
        """Fill `order` at `price`. `refuse` raises on a margin shortfall instead of
        reporting `OrderFailed` (a fresh order is refused; a working one fails)."""
        inst = self.catalog.get(order.symbol)
        pos = acct.positions.get(order.symbol)
        held = pos.qty if pos else ZERO
        qty = order.qty
        if order.reduce_only:
            if pos is None or (held > 0) == (order.side is Side.BUY):
                self._order_done(acct, order)
                self._set_status(order.id, OrderStatus.CANCELLED)
                self._order_touched(order)
                self._emit(OrderCancelled(self._info(order), CancelReason.NOTHING_TO_REDUCE))
                return
            qty = min(qty, abs(held))
        sized = order if qty == order.qty else replace(order, qty=qty)
        try:
            self._check_affordable(acct, sized, price)
        except OrderRejected as rejected:
            self._order_done(acct, order)
            self._set_status(order.id, OrderStatus.REJECTED)
            self._rejects[order.id] = (rejected.reason, rejected.message)
            self._order_touched(order)
            if refuse:
                raise
            self._emit(OrderFailed(self._info(order), rejected.reason, rejected.message))
            return
        self._order_done(acct, order)
        self._set_status(order.id, OrderStatus.FILLED)
        self._order_touched(order)
        parts = 1
        if order.client_id is not None:  # a follower's order may fill in pieces (SPEC 9)
            parts = self.faults.parts(int(qty / inst.qty_step))
        self._fill(acct, inst, order.side, qty, price, cause, order, parts=parts)

    def _order_done(self, acct: SimAccount, order: SimOrder) -> None:
        self._take_off(acct, order)
        if order.oco_id is not None:
            sibling = self._orders.get(order.oco_id)
            if sibling is not None:
                self._cancel(sibling, CancelReason.OCO)

    def _fill(self, acct: SimAccount, inst: Instrument, side: Side, qty: Decimal,
              price: Decimal, cause: FillCause, order: SimOrder | None,
              check_risk: bool = True, parts: int = 1) -> None:
        """Apply one fill to the account and report it. Margin is already checked.

        `check_risk` is off while a liquidation closes several positions: the
        liquidation finishes at the update price before the risk rules look.
        `parts` > 1 reports the fill in that many pieces at the same price (SPEC 9's
        partial fills): the books take the whole at once, so the pieces change no
        average, margin or balance a single fill would not; their fees and realized
        PnL add up to the whole's exactly."""
        symbol = inst.symbol
        pos = acct.positions.get(symbol)
        held = pos.qty if pos else ZERO
        avg = pos.avg if pos else ZERO
        equity_before = self._equity(acct)
        leverage, mode = self._setting(acct, symbol)
        outcome = apply_fill(held, avg, side.signed(qty), price, inst.multiplier)
        fee = qty * self.settings.fee_per_contract
        acct.balance += outcome.realized - fee
        acct.realized += outcome.realized
        acct.fees += fee
        if outcome.qty == 0:
            acct.positions.pop(symbol, None)
        else:
            margin = ZERO
            if not inst.is_future and mode is MarginMode.ISOLATED:
                if pos is None or outcome.closed >= abs(held):
                    margin = outcome.opened * price / leverage
                elif outcome.opened:
                    margin = pos.margin + outcome.opened * price / leverage
                else:
                    margin = pos.margin * abs(outcome.qty) / abs(held)
            if pos is None:
                acct.positions[symbol] = SimPosition(symbol, outcome.qty, outcome.avg_price, margin,
                                                     seq=self._next_fill)
            else:
                pos.qty, pos.avg, pos.margin = outcome.qty, outcome.avg_price, margin
        self._touched(acct, symbol)
        step = inst.qty_step
        steps = int(qty / step)
        sizes = [qty] if parts <= 1 else [
            (steps // parts + (1 if i < steps % parts else 0)) * step for i in range(parts)]
        before, realized_left, at = held, outcome.realized, self.clock.now()
        for index, size in enumerate(sizes):
            last = index == len(sizes) - 1
            realized = realized_left if last else outcome.realized * size / qty
            realized_left -= realized
            after = outcome.qty if last else before + side.signed(size)
            fill = Fill(
                id=f"{self.name}-f{self._next_fill}", broker=self.name, account=acct.id,
                symbol=self.symbols.native(symbol), side=side, qty=size, price=price,
                fee=fee if last and len(sizes) == 1 else size * self.settings.fee_per_contract,
                realized=realized, cause=cause,
                position_before=before, position_after=after, equity_before=equity_before,
                leverage=None if inst.is_future else leverage,
                margin_mode=None if inst.is_future else mode,
                order_id=order.id if order else None,
                client_id=order.client_id if order else None,
                parent_id=order.parent_id if order else None,
                role=order.role if order else None,
                stop_loss=order.stop_loss if order else None,
                take_profit=order.take_profit if order else None,
                at=at,
            )
            self._next_fill += 1
            before = after
            if self.changes is not None:
                self.changes.fills.append(fill)
            self._emit(fill)
        if outcome.qty == 0 or (outcome.closed and outcome.opened):
            self._cancel_reduce_only(acct, symbol)
        if order is not None and outcome.opened and (order.stop_loss or order.take_profit):
            self._place_brackets(acct, order, outcome.opened)
        if check_risk:
            self._check_risk(acct)

    def _cancel_reduce_only(self, acct: SimAccount, symbol: str) -> None:
        """A reduce-only order still working when its position goes flat is cancelled (SPEC 8)."""
        for other in list(acct.orders.values()):
            if other.symbol == symbol and other.reduce_only and other.id in self._orders:
                self._cancel(other, CancelReason.POSITION_CLOSED)

    def _place_brackets(self, acct: SimAccount, parent: SimOrder, qty: Decimal) -> None:
        """Stop loss and take profit become reduce-only OCO exits for the opened qty."""
        exit_side = parent.side.opposite
        legs: list[SimOrder] = []
        if parent.take_profit is not None:
            legs.append(SimOrder(
                id=self._new_id(), account=acct.id, symbol=parent.symbol, side=exit_side,
                type=OrderType.LIMIT, qty=qty, price=parent.take_profit, reduce_only=True,
                parent_id=parent.id, role="take_profit"))
        if parent.stop_loss is not None:
            legs.append(SimOrder(
                id=self._new_id(), account=acct.id, symbol=parent.symbol, side=exit_side,
                type=OrderType.STOP, qty=qty, price=parent.stop_loss, reduce_only=True,
                parent_id=parent.id, role="stop_loss"))
        if len(legs) == 2:
            legs[0].oco_id, legs[1].oco_id = legs[1].id, legs[0].id
        for leg in legs:
            self._remember(leg)
            self._rest(acct, leg)
        current = self.prices.get(parent.symbol)
        inst = self.catalog.get(parent.symbol)
        for leg in legs:
            if leg.id in self._orders and self._marketable(leg, current):
                fill_price = current if leg.type is OrderType.LIMIT else self._slipped(
                    inst, leg.side, current)
                self._execute(acct, leg, fill_price, FillCause.BRACKET, refuse=False)

    def close_position(self, account: str, symbol: str, cause: FillCause) -> None:
        """Close at market (with slippage), after cancelling the symbol's working orders."""
        acct = self._account(account)
        catalog_symbol = self._traded(symbol).symbol
        for order in list(acct.orders.values()):
            if order.symbol == catalog_symbol and order.id in self._orders:
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
            price = self._slipped(inst, side, price)
        self._fill(acct, inst, side, abs(pos.qty), price, cause, None,
                   check_risk=cause not in (FillCause.LIQUIDATION, FillCause.COPY_STOP))

    # --- leverage and margin --------------------------------------------------

    def set_leverage(self, account: str, symbol: str, leverage: Decimal | int) -> None:
        acct = self._account(account)
        inst = self._traded(symbol)
        if inst.is_future:
            raise Refused(f"{inst.symbol} is a future: futures have no leverage setting")
        value = whole_number(leverage, "leverage", 1, inst.max_leverage)
        current, mode = self._setting(acct, inst.symbol)
        pos = acct.positions.get(inst.symbol)
        if pos is not None and value != current:
            price = self.prices.get(inst.symbol)
            if mode is MarginMode.ISOLATED:
                old, new = pos.margin, abs(pos.qty) * pos.avg / value
            else:
                old = abs(pos.qty) * price / current
                new = abs(pos.qty) * price / value
            if new - old > self._available(acct):
                raise OrderRejected(
                    RejectReason.INSUFFICIENT_MARGIN,
                    f"leverage {value} needs {(new - old).normalize():f} more margin than "
                    f"account {account!r} has available")
            if mode is MarginMode.ISOLATED:
                pos.margin = new
        acct.settings[inst.symbol] = (value, mode)
        self._setting_touched(acct, inst.symbol)
        if value != current:
            self._emit(LeverageChanged(self.name, account, symbol, value, pos is not None))

    def set_margin_mode(self, account: str, symbol: str, mode: MarginMode) -> None:
        acct = self._account(account)
        inst = self._traded(symbol)
        if inst.is_future:
            raise Refused(f"{inst.symbol} is a future: futures have no margin mode")
        leverage, current = self._setting(acct, inst.symbol)
        if current is mode:
            return
        if inst.symbol in acct.positions:
            raise Refused(f"close the {inst.symbol} position before changing its margin mode")
        acct.settings[inst.symbol] = (leverage, mode)
        self._setting_touched(acct, inst.symbol)

    def adjust_margin(self, account: str, symbol: str, amount: Decimal) -> None:
        acct = self._account(account)
        inst = self._traded(symbol)
        pos = acct.positions.get(inst.symbol)
        leverage, mode = self._setting(acct, inst.symbol)
        if inst.is_future or pos is None or mode is not MarginMode.ISOLATED:
            raise Refused(f"margin can only be adjusted on an open isolated {inst.symbol} position")
        if amount == 0:
            raise Refused("the margin adjustment must not be zero")
        if amount > 0 and amount > self._available(acct):
            raise OrderRejected(RejectReason.INSUFFICIENT_MARGIN,
                                f"account {account!r} has less than {amount} available")
        floor = abs(pos.qty) * pos.avg / leverage
        if amount < 0 and pos.margin + amount < floor:
            raise Refused(f"margin cannot go below {floor.normalize():f} "
                          f"(quantity x average price / leverage)")
        before = pos.margin
        pos.margin += amount
        self._touched(acct, inst.symbol)
        self._emit(MarginAdjusted(self.name, account, symbol, amount, before))

    # --- risk ---------------------------------------------------------------

    def _check_risk(self, acct: SimAccount) -> None:
        if not acct.risk.any or acct.breached:
            return
        rule = acct.risk_state.observe(self._equity(acct), acct.risk)
        self._touched(acct)
        if rule is None:
            return
        acct.breached = rule
        self.cancel_all(acct.id)
        for symbol in list(acct.positions):
            self._close(acct, symbol, FillCause.RISK, slip=True)
        # Reported after the flatten: its exit fills are copied before the group pauses.
        self._emit(AccountBreached(self.name, acct.id, rule))

    def is_breached(self, account: str) -> bool:
        return self._account(account).breached is not None

    def reset_breach(self, account: str) -> None:
        acct = self._account(account)
        if acct.breached is None:
            raise Refused(f"account {account!r} is not breached")
        acct.breached = None
        acct.risk_state.reset(self._equity(acct))
        self._touched(acct)

    # --- the market moves -----------------------------------------------------

    def on_price(self, family: str) -> None:
        """Trigger working orders, then liquidations, then risk checks (SPEC 2, 3)."""
        price_of: dict[str, Decimal] = {}
        for order in [o for o in self._orders.values() if self._in_family(o.symbol, family)]:
            if order.id not in self._orders:
                continue  # cancelled by an earlier fill in this loop (OCO, flat)
            price = price_of.get(order.symbol)
            if price is None:
                price = price_of[order.symbol] = self.prices.get(order.symbol)
            if not self._marketable(order, price):
                continue
            acct = self._accounts[order.account]
            if order.type is OrderType.LIMIT:
                fill_price = order.price
                assert fill_price is not None
            else:
                fill_price = self._slipped(self.catalog.get(order.symbol), order.side, price)
            cause = FillCause.BRACKET if order.parent_id else FillCause.ORDER
            self._execute(acct, order, fill_price, cause, refuse=False)
        for acct in self._holders(family):
            self._liquidate(acct, family)
            self._check_risk(acct)

    def _in_family(self, symbol: str, family: str) -> bool:
        return self.catalog.get(symbol).family == family

    def _holders(self, family: str) -> Iterator[SimAccount]:
        for acct in list(self._accounts.values()):
            if any(self._in_family(s, family) for s in acct.positions):
                yield acct

    def _liquidate(self, acct: SimAccount, family: str) -> None:
        for pos in list(acct.positions.values()):
            inst = self.catalog.get(pos.symbol)
            if inst.is_future or inst.family != family:
                continue
            _lev, mode = self._setting(acct, pos.symbol)
            price = self.prices.get(pos.symbol)
            if mode is MarginMode.ISOLATED and isolated_liquidated(
                    inst, pos.qty, pos.avg, pos.margin, price):
                self._close(acct, pos.symbol, FillCause.LIQUIDATION, slip=False)
        cross = [p for p in acct.positions.values()
                 if not self.catalog.get(p.symbol).is_future
                 and self._setting(acct, p.symbol)[1] is MarginMode.CROSS]
        if not cross:
            return
        maintenance = sum(
            (maintenance_margin(self.catalog.get(p.symbol), p.qty, self.prices.get(p.symbol))
             for p in cross), ZERO)
        if self._equity(acct) <= maintenance:
            for pos in cross:
                self._close(acct, pos.symbol, FillCause.LIQUIDATION, slip=False)

    def margin_level(self, account: str, symbol: str) -> Decimal | None:
        """(position margin + uPnL) / maintenance margin of an isolated position."""
        acct = self._account(account)
        inst = self._instrument(symbol)
        pos = acct.positions.get(inst.symbol)
        if pos is None or inst.is_future or inst.mmr == 0:
            return None
        price = self.prices.get(inst.symbol)
        maintenance = maintenance_margin(inst, pos.qty, price)
        upnl = unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier)
        return (self._position_margin(acct, pos, inst, price) + upnl) / maintenance

    def position_margin(self, account: str, symbol: str) -> Decimal:
        acct = self._account(account)
        inst = self._instrument(symbol)
        pos = acct.positions.get(inst.symbol)
        if pos is None:
            return ZERO
        return self._position_margin(acct, pos, inst, self.prices.get(inst.symbol))

    def position_detail(self, account: str, symbol: str) -> PositionView | None:
        """One position, priced now; cheaper than a whole `view` (the UI's hot path)."""
        acct = self._account(account)
        pos = acct.positions.get(self.symbols.catalog(symbol))
        if pos is None:
            return None
        inst = self.catalog.get(pos.symbol)
        price = self.prices.get(pos.symbol)
        leverage, mode = self._setting(acct, pos.symbol)
        return PositionView(
            symbol=symbol, qty=pos.qty, avg_price=pos.avg,
            leverage=None if inst.is_future else leverage,
            margin_mode=None if inst.is_future else mode,
            margin=self._position_margin(acct, pos, inst, price),
            unrealized=unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier))

    def close_cost(self, symbol: str, qty: Decimal) -> Decimal:
        """What closing `qty` at market costs beyond the current price: fees and slippage."""
        inst = self._instrument(symbol)
        slip = self.settings.slippage_ticks * inst.tick * qty * inst.multiplier
        return qty * self.settings.fee_per_contract + slip

    def realized_net(self, account: str) -> Decimal:
        """Realized PnL net of fees."""
        acct = self._account(account)
        return acct.realized - acct.fees

    def isolated_floor(self, account: str, symbol: str) -> Decimal:
        """The least margin an isolated position may keep: qty x avg / leverage (SPEC 8)."""
        acct = self._account(account)
        inst = self._instrument(symbol)
        pos = acct.positions.get(inst.symbol)
        if pos is None:
            return ZERO
        return abs(pos.qty) * pos.avg / self._setting(acct, inst.symbol)[0]

    def available(self, account: str) -> Decimal:
        return self._available(self._account(account))

    def equity(self, account: str) -> Decimal:
        return self._equity(self._account(account))

    # --- views --------------------------------------------------------------

    def position(self, account: str, symbol: str) -> Decimal:
        pos = self._account(account).positions.get(self.symbols.catalog(symbol))
        return pos.qty if pos else ZERO

    def working_orders(self, account: str, symbol: str | None = None) -> list[OrderInfo]:
        acct = self._account(account)
        wanted = None if symbol is None else self.symbols.catalog(symbol)
        return [self._info(o) for o in acct.orders.values() if wanted in (None, o.symbol)]

    def order(self, order_id: str) -> OrderInfo | None:
        order = self._orders.get(order_id)
        return self._info(order) if order else None

    def order_status(self, order_id: str) -> OrderStatus | None:
        return self._status.get(order_id)

    def order_by_client_id(self, client_id: str) -> OrderInfo | None:
        order_id = self._client_ids.get(client_id)
        return self._order_log.get(order_id) if order_id else None

    def reject_reason(self, order_id: str) -> tuple[RejectReason, str] | None:
        """Why the broker rejected an order it had accepted for matching, if it did."""
        return self._rejects.get(order_id)

    def view(self, account: str) -> AccountView:
        acct = self._account(account)
        positions = []
        for pos in acct.positions.values():
            inst = self.catalog.get(pos.symbol)
            price = self.prices.get(pos.symbol)
            leverage, mode = self._setting(acct, pos.symbol)
            positions.append(PositionView(
                symbol=self.symbols.native(pos.symbol), qty=pos.qty, avg_price=pos.avg,
                leverage=None if inst.is_future else leverage,
                margin_mode=None if inst.is_future else mode,
                margin=self._position_margin(acct, pos, inst, price),
                unrealized=unrealized_pnl(pos.qty, pos.avg, price, inst.multiplier),
            ))
        equity = self._equity(acct)
        used = self._used_margin(acct)
        return AccountView(
            id=acct.id, broker=self.name, balance=acct.balance, equity=equity,
            available=equity - used, used_margin=used, realized=acct.realized, fees=acct.fees,
            breached=acct.breached, risk=acct.risk, positions=tuple(positions),
            orders=tuple(self._info(o) for o in acct.orders.values()),
        )

    # --- persistence: the store reads and restores a broker's own state ------------

    def account_state(self, account: str) -> SimAccount:
        return self._account(account)

    def accounts(self) -> list[str]:
        return list(self._accounts)

    def counters(self) -> tuple[int, int]:
        return self._next_id, self._next_fill

    def status_of(self, order_id: str) -> OrderStatus | None:
        return self._status.get(order_id)

    def restore(self, accounts: list[SimAccount], working: list[SimOrder],
                counters: tuple[int, int],
                known: list[tuple[SimOrder, OrderStatus]],
                rejects: dict[str, tuple[RejectReason, str]] | None = None) -> None:
        """Rebuild from a store: accounts with their positions and settings, the
        working orders, the id counters, and earlier orders a retry may ask about
        (with the reasons of those that were rejected)."""
        for acct in accounts:
            acct.orders = {}
            self._accounts[acct.id] = acct
        for order in working:
            self._accounts[order.account].orders[order.id] = order
            self._orders[order.id] = order
            self._set_status(order.id, OrderStatus.WORKING)
            self._order_log[order.id] = self._info(order)
            if order.client_id is not None:
                self._client_ids[order.client_id] = order.id
        for order, status in known:
            self._status[order.id] = status
            self._order_log[order.id] = self._info(order)
            if order.client_id is not None:
                self._client_ids[order.client_id] = order.id
        self._rejects.update(rejects or {})
        self._next_id, self._next_fill = counters

    def today_pnl(self, account: str) -> Decimal:
        """Today's PnL as the daily loss limit measures it (SPEC 3): equity minus the
        day's starting equity, which a breach reset restarts and funding moves shift."""
        acct = self._account(account)
        return self._equity(acct) - acct.risk_state.day_start
