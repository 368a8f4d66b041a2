"""A simulated broker's matching: its working orders and their registry (SPEC 2, 8).

New order ids, the orders working now (in placement order, and by account), the
log of every order accepted with its status (every move through the lifecycle's
`transition` table), client ids, why rejected orders were rejected; and the
matching rules: whether an order is marketable at a price, where it fills
(adverse slippage), which working orders a price update triggers.

It is apart from the venue (`sim.SimBroker`) and from the ledger
(`ledger.Ledger`), as NautilusTrader's matching engine is apart from its
accounts and takes its fill model from outside (STYLE.md, "Matching apart from
the venue"): the matching rules can be tested without money, events or a
connection. So the book moves no money and emits nothing: the venue decides when
an order rests, fills or is cancelled, and reports it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from synctui.brokers.events import OrderInfo
from synctui.brokers.naming import SymbolMap
from synctui.domain.errors import Refused, RejectReason
from synctui.domain.instruments import Catalog, Instrument
from synctui.domain.numbers import decimal_or_none
from synctui.domain.orders import OrderStatus, OrderType, Side, transition
from synctui.domain.prices import PriceBook

ZERO = Decimal(0)


# Done orders kept in memory per broker: enough for every retry and mirror check of a
# session (pending intents are answered at once); the rest is history in the database.
KEEP_DONE = 20_000
DONE = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
# A new order that fills as it is placed: working, then filled, both moves checked once
FILLED_AT_ONCE = transition(transition(None, OrderStatus.WORKING), OrderStatus.FILLED)


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


# A done order, as kept: SimOrder's fields in order, as text. A string, not a tuple: the
# collector never tracks a string, while a tuple stays in its youngest generation until
# a collection looks at it, and a fan-out frees about as many objects as it makes, so
# that took long: 40,000 records in one young generation, a 20 ms pause.
DoneOrder = str
_SEP, _JSON = "\x1f", "\x02"  # fields apart; a record written as JSON instead


def _record(o: SimOrder) -> DoneOrder:
    """The fields apart by \\x1f, None as "" (no field is ever ""); as JSON when some
    name holds the separator itself (names are the user's)."""
    record = (
        f"{o.id}\x1f{o.account}\x1f{o.symbol}\x1f{o.side._value_}\x1f{o.type._value_}"
        f"\x1f{o.qty}\x1f{'' if o.price is None else o.price}\x1f"
        f"{'1' if o.reduce_only else ''}\x1f{'' if o.stop_loss is None else o.stop_loss}"
        f"\x1f{'' if o.take_profit is None else o.take_profit}\x1f{o.client_id or ''}"
        f"\x1f{o.parent_id or ''}\x1f{o.role or ''}\x1f{o.oco_id or ''}")
    if record.count(_SEP) == 13 and not record.startswith(_JSON):
        return record
    return _JSON + json.dumps([
        o.id, o.account, o.symbol, o.side._value_, o.type._value_, str(o.qty),
        None if o.price is None else str(o.price), "1" if o.reduce_only else "",
        None if o.stop_loss is None else str(o.stop_loss),
        None if o.take_profit is None else str(o.take_profit), o.client_id, o.parent_id,
        o.role, o.oco_id])


def _fields(record: DoneOrder) -> list[str | None]:
    raw: list[str | None] = (json.loads(record[1:]) if record.startswith(_JSON)
                             else list(record.split(_SEP)))
    return [value or None for value in raw]


def _order(record: DoneOrder) -> SimOrder:
    f = _fields(record)
    return SimOrder(str(f[0]), str(f[1]), str(f[2]), Side(str(f[3])), OrderType(str(f[4])),
                    Decimal(str(f[5])), decimal_or_none(f[6]), bool(f[7]),
                    decimal_or_none(f[8]), decimal_or_none(f[9]), f[10], f[11], f[12], f[13])


def _client_id(record: DoneOrder) -> str | None:
    """The record's client id, its eleventh field: asked of every order that leaves the
    registry, so only the fields up to it are split."""
    if record.startswith(_JSON):
        return _fields(record)[10]
    return record.split(_SEP, 11)[10] or None


class OrderBook:
    """The orders of one broker, named `name`. Order reports (`OrderInfo`) carry the
    broker's own symbols (`symbols`); fills slip `slippage_ticks` ticks."""

    def __init__(self, name: str, catalog: Catalog, prices: PriceBook, symbols: SymbolMap,
                 slippage_ticks: Decimal = ZERO) -> None:
        self.name = name
        self.catalog = catalog
        self.prices = prices
        self.symbols = symbols
        self.slippage_ticks = slippage_ticks
        self.working: dict[str, SimOrder] = {}  # every working order, by id, as placed
        self.by_account: dict[str, dict[str, SimOrder]] = {}  # account -> its working
        self.client_ids: dict[str, str] = {}  # client id -> order id, forever
        # every order accepted and not done, as it is now (its report is made when
        # asked: a fan-out's thousand orders need none)
        self.log: dict[str, SimOrder] = {}
        # the last KEEP_DONE done orders, as text (`_record`): as orders, tens of
        # thousands of objects the garbage collector walked; a string it never tracks
        self.done: dict[str, DoneOrder] = {}
        self.status: dict[str, OrderStatus] = {}
        # why each rejected order was rejected: a client asking again after a restart
        # learns the same reason, as from a real broker's order history
        self.rejects: dict[str, tuple[RejectReason, str]] = {}
        self.next_id = 1
        self._done: deque[str] = deque()  # done orders, oldest first

    # --- the registry -------------------------------------------------------------

    def open(self, account: str, orders: dict[str, SimOrder] | None = None) -> None:
        """An account that may hold working orders, indexed in `orders` (the account
        state's own dict, so that it reads whole)."""
        self.by_account[account] = {} if orders is None else orders

    def of(self, account: str) -> dict[str, SimOrder]:
        """The account's working orders, by id, as placed."""
        return self.by_account[account]

    def new_id(self) -> str:
        order_id = f"{self.name}-{self.next_id}"
        self.next_id += 1
        return order_id

    def info(self, order: SimOrder) -> OrderInfo:
        return OrderInfo(
            broker=self.name, id=order.id, account=order.account,
            symbol=self.symbols.native(order.symbol), side=order.side, type=order.type,
            qty=order.qty, price=order.price, reduce_only=order.reduce_only,
            stop_loss=order.stop_loss, take_profit=order.take_profit,
            client_id=order.client_id, parent_id=order.parent_id, role=order.role,
        )

    def set_status(self, order_id: str, status: OrderStatus) -> None:
        """Every status change goes through the lifecycle's transition table."""
        self.status[order_id] = transition(self.status.get(order_id), status)
        if status in DONE:
            self._forget_old(order_id)

    def _forget_old(self, order_id: str) -> None:
        """Memory stays flat: only the last `KEEP_DONE` done orders are kept here. Older
        ones live in the database; a restart loads those its pending intents ask about,
        and the database refuses a second order with a client id (UNIQUE)."""
        self._keep_done(order_id, self.log.pop(order_id, None))

    def _keep_done(self, order_id: str, order: SimOrder | None) -> None:
        """A done order among the last KEEP_DONE (as text); the oldest one past them
        leaves with its status, reject reason and client id."""
        if order is not None:
            self.done[order_id] = _record(order)
        self._done.append(order_id)
        while len(self._done) > KEEP_DONE:
            old = self._done.popleft()
            record = self.done.pop(old, None)
            self.status.pop(old, None)
            self.rejects.pop(old, None)
            client_id = None if record is None else _client_id(record)
            if client_id is not None:
                self.client_ids.pop(client_id, None)

    def known(self, order_id: str) -> bool:
        """Whether the order is still in memory: working, or among the last done."""
        return order_id in self.log or order_id in self.done

    def remember(self, order: SimOrder) -> None:
        """Accept an order: logged, its client id known, working."""
        if order.client_id is not None:
            self.client_ids[order.client_id] = order.id
        self.log[order.id] = order
        self.set_status(order.id, OrderStatus.WORKING)

    def filled_at_once(self, order: SimOrder) -> None:
        """Accept an order that filled as it was placed: what `remember`, then a FILLED
        status, do (working, then filled: both moves in the transition table)."""
        if order.client_id is not None:
            self.client_ids[order.client_id] = order.id
        self.status[order.id] = FILLED_AT_ONCE
        self._keep_done(order.id, order)

    def rest(self, order: SimOrder) -> None:
        """Put an accepted order on the book, to wait for its price."""
        self.by_account[order.account][order.id] = order
        self.working[order.id] = order

    def take_off(self, order: SimOrder) -> None:
        self.by_account[order.account].pop(order.id, None)
        self.working.pop(order.id, None)

    def reject(self, order_id: str, reason: RejectReason, message: str) -> None:
        self.set_status(order_id, OrderStatus.REJECTED)
        self.rejects[order_id] = (reason, message)

    def modified(self, order: SimOrder) -> None:
        """The order's price moved: the log holds the order itself, so it says so."""
        self.log[order.id] = order

    def get(self, order_id: str) -> SimOrder | None:
        return self.working.get(order_id)

    def working_order(self, order_id: str) -> SimOrder:
        try:
            return self.working[order_id]
        except KeyError:
            raise Refused(f"order {order_id!r} is not working") from None

    def by_client_id(self, client_id: str) -> OrderInfo | None:
        order_id = self.client_ids.get(client_id)
        if order_id is None:
            return None
        order = self.log.get(order_id)
        if order is None:
            record = self.done.get(order_id)
            if record is None:
                return None
            order = _order(record)
        return self.info(order)

    def restore(self, working: Iterable[SimOrder], known: Iterable[tuple[SimOrder, OrderStatus]],
                rejects: dict[str, tuple[RejectReason, str]], next_id: int) -> None:
        """Rebuild: the working orders (their accounts opened), earlier orders with
        their statuses, the reasons of rejected ones, the next id."""
        for order in working:
            self.rest(order)
            self.set_status(order.id, OrderStatus.WORKING)
            self.log[order.id] = order
            if order.client_id is not None:
                self.client_ids[order.client_id] = order.id
        for order, status in known:
            self.status[order.id] = status
            if status in DONE:
                self.done[order.id] = _record(order)
            else:
                self.log[order.id] = order
            if order.client_id is not None:
                self.client_ids[order.client_id] = order.id
        self.rejects.update(rejects)
        self.next_id = next_id

    # --- matching -------------------------------------------------------------------

    @staticmethod
    def marketable(order: SimOrder, price: Decimal) -> bool:
        """Whether a limit or stop order would fill at `price` (a limit buy at or
        below its price, a stop buy at or above; sells mirrored)."""
        assert order.price is not None
        if order.type is OrderType.LIMIT:
            return price <= order.price if order.side is Side.BUY else price >= order.price
        if order.type is OrderType.STOP:
            return price >= order.price if order.side is Side.BUY else price <= order.price
        return True

    def slipped(self, inst: Instrument, side: Side, price: Decimal) -> Decimal:
        """Slippage is always adverse (SPEC 2); never below one tick."""
        slip = self.slippage_ticks * inst.tick
        return price + slip if side is Side.BUY else max(price - slip, inst.tick)

    def fill_price(self, order: SimOrder, inst: Instrument, price: Decimal,
                   resting: bool = False) -> Decimal:
        """Where a marketable order fills when the market is at `price`: a limit order
        at `price` when it is placed (or moved) marketable, at its own price when a
        price update reaches it `resting`; any other order at `price` slipped."""
        if order.type is OrderType.LIMIT:
            if resting:
                assert order.price is not None
                return order.price
            return price
        return self.slipped(inst, order.side, price)

    def triggered(self, family: str) -> Iterator[SimOrder]:
        """The working orders of the family that its current price makes marketable,
        in placement order. Lazy: an order taken off while the caller fills an earlier
        one (an OCO sibling, a reduce-only order gone flat) is skipped."""
        price_of: dict[str, Decimal] = {}
        catalog = self.catalog
        for order in [o for o in self.working.values()
                      if catalog.get(o.symbol).family == family]:
            if order.id not in self.working:
                continue
            price = price_of.get(order.symbol)
            if price is None:
                price = price_of[order.symbol] = self.prices.get(order.symbol)
            if self.marketable(order, price):
                yield order
