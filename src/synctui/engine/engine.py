"""The copy engine (SPEC 4): one API for scenarios, tests and the TUI.

Brokers report events synchronously; the engine queues them and handles them
in order once the command that caused them has returned, so copying never
re-enters a broker's matching loop. Every public method either completes or
raises `Refused` having changed nothing it owns.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from synctui.brokers.base import Broker, OrderRequest
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
    PriceUpdated,
)
from synctui.brokers.faults import BrokerTimeout
from synctui.domain.clock import Clock, SystemClock
from synctui.domain.copies import Copy, OnStop
from synctui.domain.errors import Refused, RejectReason
from synctui.domain.groups import (
    AddFollowers,
    Group,
    GroupBook,
    GroupEdit,
    GroupStatus,
    PauseReason,
    RemoveFollowers,
    RemoveLeader,
    SetLeader,
)
from synctui.domain.instruments import Catalog
from synctui.domain.margin import qty_for_margin
from synctui.domain.orders import (
    FillCause,
    MarginMode,
    OrderStatus,
    OrderType,
    Side,
    check_brackets,
)
from synctui.domain.position import split_fill
from synctui.domain.prices import PriceBook
from synctui.domain.reconcile import Drift
from synctui.domain.risk import RiskLimits
from synctui.engine.events import (
    EVENT_TYPES,
    AccountBreachedEvent,
    AccountFilled,
    CopyFailed,
    EngineEvent,
    Failure,
    GroupChanged,
    OrderChanged,
    PriceMoved,
)
from synctui.engine.ratio import RatioCopier, ResyncPlan
from synctui.engine.smart_sync import SmartSync
from synctui.engine.state import EngineState, Intent, Waiting

Observer = Callable[[EngineEvent], None]


_CHANGES: dict[type, str] = {OrderPlaced: "placed", OrderModified: "modified",
                             OrderCancelled: "cancelled"}
_ORDER_CHANGES = (OrderPlaced, OrderModified, OrderCancelled)
_ANSWERS = (OrderAcknowledged, OrderRefused)  # a broker's answer to a submitted order
LATENCY_SAMPLES = 200  # per follower and group, for the dashboard's last / p95
KEEP_COPY_LINKS = 50_000  # copy links kept in memory; the database has them all


KEY_DIGITS = 13  # the event's sequence number in a client id, zero-padded


def copy_key(*parts: str) -> str:
    """A deterministic client order id (a retry or a restart that handles the same
    leader event again makes the same one): a prefix that sorts by the leader event it
    copies (its fill's or order's sequence number), then a hash of the whole tuple, so
    ("1", "23") and ("12", "3") can never collide as a concatenation would.

    Keys that arrive in order append to the end of the database's key indexes
    instead of landing on a random page each (a blake2b hash alone scattered a
    fan-out's thousand keys over the whole B-tree). 35 characters of [a-z0-9-],
    what a real exchange accepts (Binance: at most 36 of [A-Za-z0-9_-]). An older
    database's keys (24 hex characters) never equal one of these."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=10).hexdigest()
    return f"{_key_prefix(parts[0] if parts else '')}-{digest}"


@lru_cache(maxsize=256)
def _key_prefix(event: str) -> str:
    """"f" + the number of a fill id ("tv-f12"), "o" + an order id's ("tv-7"), "r" + a
    resync's ("resync-3"); "x" and zeros for anything else (no order to keep)."""
    head, _, tail = event.rpartition("-")
    kind, digits = "x", ""
    if tail[:1] == "f" and tail[1:].isascii() and tail[1:].isdigit():
        kind, digits = "f", tail[1:]
    elif tail.isascii() and tail.isdigit() and head:
        kind, digits = ("r" if head == "resync" else "o"), tail
    return kind + digits.zfill(KEY_DIGITS)[-KEY_DIGITS:]


def wait_key(*parts: str) -> str:
    """The key of something kept for a disconnected broker (not a client order id):
    a hash of the tuple, as before, so waiting rows an older version wrote keep
    their keys."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


class Engine:
    def __init__(self, brokers: Mapping[str, Broker], prices: PriceBook, catalog: Catalog,
                 clock: Clock | None = None, state: EngineState | None = None) -> None:
        self.brokers = dict(brokers)
        self.prices = prices
        self.catalog = catalog
        self.clock: Clock = clock or SystemClock()
        self.state = state or EngineState()
        self._queue: deque[BrokerEvent] = deque()
        self._handled = 0  # events taken off the queue so far: the first queued one's number
        self._draining = False
        self._observers: list[tuple[Observer, tuple[type, ...]]] = []
        # event type -> the observers that want it: an event nobody wants is not built
        # (a store wants no fills: a fan-out's thousand `AccountFilled` cost it nothing)
        self._wanted: dict[type, list[Observer]] = {kind: [] for kind in EVENT_TYPES}
        self.deferred = False  # True when a store must commit intents before they are sent
        self._before: dict[str, tuple[GroupStatus, PauseReason | None]] | None = None
        self._cause: str | None = None
        # Positions before the current price update's first fill, by (broker, account,
        # native symbol): every proportional close of the update is sized on them
        # (SPEC 8). None outside a price update.
        self._update: dict[tuple[str, str, str], Decimal] | None = None
        self._recording = False  # the brokers are matching a price update right now
        self._since: datetime | None = None  # the leader event a resumed copy waited for
        # (group, follower) -> recent copy latencies: leader event to broker acknowledgement
        self._latency: dict[tuple[str, str], deque[timedelta]] = {}
        self._latency_read: dict[tuple[str, str], tuple[timedelta, timedelta]] = {}
        self._link_ages: deque[str] = deque()  # copy links made here, the oldest first
        self._unsubscribe = [b.subscribe(self._on_broker_event) for b in self.brokers.values()]
        self.ratio = RatioCopier(self)
        self.smart = SmartSync(self)

    def close(self) -> None:
        """Stop listening to the brokers (a restart builds a new engine on them)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # --- observers ------------------------------------------------------------

    def subscribe(self, observer: Observer,
                  wants: tuple[type, ...] = EVENT_TYPES) -> Callable[[], None]:
        """Tell `observer` of the events of the kinds it `wants` (every kind unless
        told), until the returned function is called."""
        entry = (observer, wants)
        self._observers.append(entry)
        self._index_observers()

        def unsubscribe() -> None:
            self._observers.remove(entry)
            self._index_observers()
        return unsubscribe

    def _index_observers(self) -> None:
        self._wanted = {kind: [o for o, wants in self._observers if kind in wants]
                        for kind in EVENT_TYPES}

    def publish(self, event: EngineEvent) -> None:
        for observer in self._wanted[type(event)]:
            observer(event)

    # --- command plumbing -------------------------------------------------------

    @contextmanager
    def command(self, cause: str | None = None) -> Iterator[None]:
        """Run a command, then handle what the brokers reported and publish status changes
        (with `cause`, so a log can explain an automatic transition)."""
        if self._before is None:
            self._before = self._statuses()
            self._cause = cause
            self._update = None  # a new command: the last price update is over
        try:
            yield
        finally:
            self._drain()

    def _statuses(self) -> dict[str, tuple[GroupStatus, PauseReason | None]]:
        return {name: (g.status, g.reason) for name, g in self.state.groups.groups.items()}

    def _publish_status_changes(self) -> None:
        before, self._before = self._before or {}, None
        for name, group in self.state.groups.groups.items():
            old = before.get(name)
            if old != (group.status, group.reason):
                self.state.touch("groups")
                self.publish(GroupChanged(name, group.status, group.reason,
                                           old[0] if old else None, self._cause))
        self._cause = None

    def _drain(self) -> None:
        """Handle queued broker events in order, sending each event's intents before
        the next event is handled (its copies must see the positions they made).

        Deferred, it stops at the first event that leaves intents, so that the
        driver can commit them before `dispatch` sends them (the outbox).
        """
        if self._draining:
            return
        self._draining = True
        try:
            while True:
                if self.ready_to_send:
                    if self.deferred:
                        return
                    self.dispatch()
                    continue
                if self._resume_ready():
                    continue
                if not self._queue:
                    self._publish_status_changes()
                    return
                self._handled += 1
                self._handle(self._queue.popleft())
        finally:
            self._draining = False

    def settle(self) -> bool:
        """Go on handling events after a dispatch. True when all is handled."""
        self._drain()
        return self.idle

    @property
    def idle(self) -> bool:
        """Nothing to send, resume or handle (intents for a disconnected broker wait)."""
        return not self._queue and not self.ready_to_send and self._ready_waiting() is None

    @property
    def ready_to_send(self) -> bool:
        """Some intent can go: its broker is connected. Stops at the first one."""
        return any(self._reachable(i) for i in self.state.intents.values())

    def _reachable(self, intent: Intent) -> bool:
        return self.broker_of(intent.follower).connected

    def _sendable(self) -> list[tuple[Intent, Broker]]:
        """The intents whose broker is connected, with that broker (asked once)."""
        broker_of = self.broker_of
        return [(i, b) for i in self.state.intents.values()
                if (b := broker_of(i.follower)).connected]

    def _resume_ready(self) -> bool:
        """Resume, in one pass, the first thing kept for each follower that can go
        now. Followers are apart: one's copies never size another's. A follower's next
        item waits for the next pass, after what this one sent: it is sized against
        the position that made. (One item per pass, and so per commit of its intents,
        took 2.7 s to send 10,000 copies that waited for a broker.)"""
        seen: set[str] = set()
        resumed = False
        for item in list(self.state.waiting.values()):
            if item.account in seen:
                continue
            seen.add(item.account)
            broker = self.brokers[item.broker]
            if broker.connected and not broker.settling(item.account):
                self._resume(item)
                resumed = True
        return resumed

    def _ready_waiting(self) -> Waiting | None:
        """The first thing kept for a follower that can go now: its broker is
        connected and none of its orders is still on its way (`Broker.settling`)."""
        for item in self.state.waiting.values():
            broker = self.brokers[item.broker]
            if broker.connected and not broker.settling(item.account):
                return item
        return None

    def behind(self, account: str) -> bool:
        """Something is kept for the account: what comes after it waits its turn."""
        return account in self.state.waiting_for

    # --- disconnected brokers (SPEC 9) ----------------------------------------------------

    def connected(self, account: str) -> bool:
        return self.broker_of(account).connected

    def _broker_named(self, name: str) -> Broker:
        try:
            return self.brokers[name]
        except KeyError:
            raise Refused(f"there is no broker named {name!r}") from None

    def disconnect(self, broker: str) -> None:
        """Nothing passes between engine and broker until it reconnects: copies for its
        accounts wait, its own reports are held. A repeated disconnect is a no-op."""
        b = self._broker_named(broker)
        if b.connected:
            with self.command():
                b.disconnect()

    def reconnect(self, broker: str) -> None:
        """What waited is done in order (each copy sized now), then what the broker did
        meanwhile is reported and handled. A repeated reconnect is a no-op."""
        b = self._broker_named(broker)
        if not b.connected:
            with self.command(f"broker {broker} reconnected"):
                b.reconnect()

    def wait(self, group: str, account: str, action: str, fill: Fill | None = None,
             order_id: str | None = None, price: Decimal | None = None,
             order: OrderInfo | None = None, held: Decimal | None = None) -> None:
        """Keep something for a follower whose broker is disconnected (for its
        reconnect), or whose earlier copies are still on their way (a close sized now
        would miss them), in order."""
        broker = self.broker_of(account)
        ref = fill.id if fill is not None else (order_id or "")
        self.state.add_waiting(Waiting(
            wait_key("wait", action, account, ref), broker.name, group, account, action,
            self.clock.now(), fill, order_id, price, order, held))

    def waiting_mirrors(self, order_id: str) -> set[str]:
        """The followers whose mirror of the leader order waits (`wait`, "mirror")."""
        return {w.account for w in self.state.waiting.values()
                if w.action == "mirror" and w.order_id == order_id}

    def _expired(self, group: str, at: datetime | None) -> bool:
        g = self.state.groups.groups.get(group)
        if g is None or g.signal_expiry is None or at is None:
            return False
        age = self.clock.now() - at
        seconds = Decimal(age.days * 86400 + age.seconds) + Decimal(age.microseconds) / 10**6
        return seconds > g.signal_expiry

    def _resume(self, item: Waiting) -> None:
        self.state.finish_waiting(item.key)
        broker = self.broker_of(item.account)
        if item.action == "fill":
            assert item.fill is not None
            self._resume_fill(item, item.fill)
            return
        if item.action == "mirror":
            self._resume_mirror(item)
            return
        try:
            if item.action == "close_all":
                broker.close_all(item.account, FillCause.GROUP_FLATTEN)
            elif item.action == "cancel_all":
                broker.cancel_all(item.account)
            elif item.order_id is None or broker.order(item.order_id) is None:
                return  # the order is done: nothing left to modify or cancel
            elif item.action == "cancel":
                broker.cancel_order(item.order_id)
            elif item.action == "modify" and item.price is not None:
                broker.modify_order(item.order_id, item.price)
        except Refused as refused:
            symbol = ""
            if item.order_id is not None and (info := broker.order(item.order_id)):
                symbol = broker.symbols.catalog(info.symbol)
            self.fail(item.group, item.account, symbol, getattr(
                refused, "reason", RejectReason.REJECTED), refused.message)

    def _resume_mirror(self, item: Waiting) -> None:
        """A leader order's mirror that waited, placed now (SPEC 9: the waiting leader
        events are applied in order, each sized as if it happened then): against the
        follower's position now and the leader's at the order's placement, at the
        order's price now (as it was, when the order filled meanwhile: the mirror then
        fills at the follower's broker, and the leader's fill is not copied again,
        SPEC 8). A cancelled order, or a follower no longer eligible, gets nothing."""
        group = self.state.groups.groups.get(item.group)
        if group is None or group.status is not GroupStatus.ACTIVE or group.leader is None \
                or item.account not in group.followers or item.order is None \
                or item.held is None:
            return
        leader = self.brokers[item.order.broker]
        if leader.order_status(item.order.id) is OrderStatus.CANCELLED:
            return
        order = leader.order(item.order.id) or item.order
        if self._expired(item.group, item.at):
            self.fail(item.group, item.account, leader.symbols.catalog(order.symbol),
                      RejectReason.EXPIRED, "the copy waited past the signal expiry",
                      order.id if order.stop_loss or order.take_profit else None)
            return
        self._since = item.at
        try:
            self.ratio.mirror_waited(group, item.account, order, item.held)
        finally:
            self._since = None

    def _resume_fill(self, item: Waiting, fill: Fill) -> None:
        self._since = item.at
        try:
            self._copy_waited(item, fill)
        finally:
            self._since = None

    def _copy_waited(self, item: Waiting, fill: Fill) -> None:
        """A leader fill a follower missed while its broker was away: copied now, sized
        against its position now, if it is still eligible (SPEC 9)."""
        group = self.state.groups.groups.get(item.group)
        if group is None or group.status is not GroupStatus.ACTIVE:
            return
        symbol = self.brokers[fill.broker].symbols.catalog(fill.symbol)
        closed, opened = split_fill(fill.position_before, fill.side.signed(fill.qty))
        has_brackets = fill.stop_loss is not None or fill.take_profit is not None
        copy = self.state.copy_of_sub(item.account)
        if copy is not None:
            if not copy.mirrors or copy.account not in group.copies:
                return
            if self._expired(item.group, item.at):
                self.fail(item.group, item.account, symbol, RejectReason.EXPIRED,
                          "the copy waited for its broker past the signal expiry",
                          fill.order_id if has_brackets else None)
                return
            self.smart.copy_fill(copy, fill, symbol, closed, opened)
            return
        setting = group.setting(item.account, symbol)
        if item.account not in group.followers or not setting.sync:
            return
        if self._expired(item.group, item.at):
            self.fail(item.group, item.account, setting.cross or symbol, RejectReason.EXPIRED,
                      "the copy waited for its broker past the signal expiry",
                      fill.order_id if has_brackets else None)
            return
        self.ratio.copy_fill(group, item.account, setting, symbol, fill, closed, opened)

    def _on_broker_event(self, event: BrokerEvent) -> None:
        if isinstance(event, _ANSWERS):  # a tuple made once: `A | B` makes a union per call
            self._answered(event)
            return
        if self._recording and isinstance(event, Fill) and self._update is not None:
            self._update.setdefault((event.broker, event.account, event.symbol),
                                    event.position_before)
        if self._only_told(event):
            return
        self._queue.append(event)

    def _only_told(self, event: BrokerEvent) -> bool:
        """A report that copies nothing and changes nothing here (a ratio follower's own
        fill or order change: followers lead nothing) is told to observers at once
        instead of queued: a fan-out's thousand follower fills never wait in the queue
        nor in the store's pending events."""
        if isinstance(event, Fill):
            account = event.account
        elif isinstance(event, _ORDER_CHANGES):
            account = event.order.account
        else:
            return False
        if account in self.state.subs or self.state.groups.group_led_by(account) is not None:
            return False
        if isinstance(event, Fill):
            # what `_on_fill` does for an account that is no sub-account and leads nothing
            if self._wanted[AccountFilled]:
                self._publish_fill(event, self.brokers[event.broker].symbols.catalog(
                    event.symbol))
        else:
            self._order_changed(event.order, _CHANGES[type(event)])
        return True

    def close_basis(self, broker: Broker, account: str, native: str) -> tuple[Decimal, Decimal]:
        """An account's position now, and the one a proportional close is sized on:
        its position before the current price update's first fill (SPEC 8), taken at
        its first fill in the update or, failing that, before its first copy."""
        current = broker.position(account, native)
        if self._update is None:
            return current, current
        return current, self._update.setdefault((broker.name, account, native), current)

    def leader_base(self, fill: Fill) -> Decimal:
        """The leader's Q for a proportional close: before the update's first fill when
        the exit happened in a price update, unless the leader changed side since."""
        before = fill.position_before
        if self._update is None:
            return before
        start = self._update.get((fill.broker, fill.account, fill.symbol), before)
        return start if start != 0 and (start > 0) == (before > 0) else before

    @property
    def pending_events(self) -> list[BrokerEvent]:
        """Broker events not handled yet: a store keeps them, so a crash loses none."""
        return list(self._queue)

    @property
    def pending_span(self) -> tuple[int, int]:
        """The numbers of the events not handled yet, [first, end): every event queued
        gets the next number, so a store appends the new ones and deletes the handled
        ones instead of rewriting them all (a burst's queue was rewritten at every save)."""
        return self._handled, self._handled + len(self._queue)

    def pending_from(self, number: int) -> Iterator[BrokerEvent]:
        """The events not handled yet from the one numbered `number` on."""
        return itertools.islice(self._queue, number - self._handled, None)

    def requeue(self, events: list[BrokerEvent]) -> None:
        self._queue.extend(events)

    # --- accounts -----------------------------------------------------------------

    def broker_of(self, account: str) -> Broker:
        """The broker of an account, or of a Smart Sync copy's sub-account."""
        owner = self.state.subs.get(account)
        try:
            return self.brokers[self.state.accounts[owner[1] if owner else account]]
        except KeyError:
            raise Refused(f"there is no account {account!r}") from None

    def owner(self, account: str) -> str:
        """The account a sub-account belongs to (itself for an account)."""
        owner = self.state.subs.get(account)
        return owner[1] if owner else account

    @staticmethod
    def key(*parts: str) -> str:
        return copy_key(*parts)

    def add_account(self, account: str, broker: str, balance: Decimal,
                    risk: RiskLimits | None = None) -> None:
        if not account:
            raise Refused("an account needs an id")
        if account in self.state.accounts or "~copy" in account:
            raise Refused(f"account {account!r} already exists" if account in self.state.accounts
                          else "an account id may not contain '~copy'")
        if broker not in self.brokers:
            raise Refused(f"there is no broker named {broker!r}")
        if balance < 0:
            raise Refused("a starting balance cannot be negative")
        self.brokers[broker].open_account(account, balance, risk or RiskLimits())
        self.state.accounts[account] = broker
        self.state.touch("accounts")

    def native(self, broker: Broker, symbol: str) -> str:
        return broker.symbols.native(symbol)

    @staticmethod
    def _check_online(broker: Broker) -> None:
        """An account's own step on a disconnected broker is refused (SPEC 9)."""
        if not broker.connected:
            raise Refused(f"broker {broker.name!r} is disconnected: nothing reaches it "
                          "until it reconnects")

    @staticmethod
    def _check_traded(broker: Broker, native: str) -> None:
        """An account's own step on a market its broker does not trade is refused (SPEC 9)."""
        if not broker.trades(native):
            symbol = broker.symbols.catalog(native)
            raise Refused(f"broker {broker.name!r} does not trade {symbol} "
                          f"(it trades {', '.join(sorted(broker.markets))})")

    # --- market ---------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal) -> None:
        with self.command():
            family = self.prices.set(symbol, price)
            self._update = {}
            self._recording = True
            try:
                for broker in self.brokers.values():
                    broker.on_price(family)
            finally:
                self._recording = False
            self._queue.append(PriceUpdated(family))
            self.publish(PriceMoved(family, price))

    # --- an account's own orders -------------------------------------------------------

    def place_order(self, account: str, symbol: str, side: Side, *, qty: Decimal | None = None,
                    margin: Decimal | None = None, type: OrderType = OrderType.MARKET,  # noqa: A002
                    price: Decimal | None = None, stop_loss: Decimal | None = None,
                    take_profit: Decimal | None = None, leverage: Decimal | int | None = None,
                    margin_mode: MarginMode | None = None) -> str:
        """An account's own order. Leverage and margin mode, when given, are set first
        and put back if the order is refused."""
        broker = self.broker_of(account)
        inst = self.catalog.get(symbol)
        native = self.native(broker, symbol)
        self._check_online(broker)
        self._check_traded(broker, native)
        if (qty is None) == (margin is None):
            raise Refused("an order needs either a qty or a margin, not both")
        if type is not OrderType.MARKET and price is None:
            raise Refused(f"a {type} order needs a price")
        if type is OrderType.MARKET and price is not None:
            raise Refused("a market order takes no price")
        if inst.is_future and (leverage is not None or margin_mode is not None):
            raise Refused(f"{symbol} is a future: futures have no leverage or margin mode")
        if stop_loss is not None or take_profit is not None:
            check_brackets(side, price if price is not None else self.prices.get(symbol),
                           stop_loss, take_profit)
        with self.command():
            saved = None if inst.is_future else broker.leverage_of(account, native)
            try:
                if margin_mode is not None:
                    broker.set_margin_mode(account, native, margin_mode)
                if leverage is not None:
                    broker.set_leverage(account, native, leverage)
                if margin is not None:
                    if margin <= 0:
                        raise Refused("the margin of an order must be positive")
                    at = price if price is not None else self.prices.get(symbol)
                    lev = broker.leverage_of(account, native)[0] if not inst.is_future else 1
                    qty = qty_for_margin(inst, margin, at, lev)
                    if qty < inst.min_qty:
                        raise Refused(f"a margin of {margin} buys less than the minimum "
                                      f"{inst.min_qty} {symbol}")
                assert qty is not None
                return broker.place_order(account, OrderRequest(
                    symbol=native, side=side, qty=qty, type=type, price=price,
                    stop_loss=stop_loss, take_profit=take_profit))
            except Refused:
                if saved is not None:
                    self._restore_setting(broker, account, native, saved)
                raise

    @staticmethod
    def _restore_setting(broker: Broker, account: str, native: str,
                         saved: tuple[int, MarginMode]) -> None:
        try:
            broker.set_margin_mode(account, native, saved[1])
            broker.set_leverage(account, native, saved[0])
        except Refused:  # pragma: no cover - the position did not change, so it fits
            pass

    def _order(self, order_id: str) -> tuple[Broker, OrderInfo]:
        for broker in self.brokers.values():
            info = broker.order(order_id)
            if info is not None:
                return broker, info
        raise Refused(f"order {order_id!r} is not working")

    def modify_order(self, order_id: str, price: Decimal) -> None:
        broker, _info = self._order(order_id)
        self._check_online(broker)
        with self.command():
            broker.modify_order(order_id, price)

    def cancel_order(self, order_id: str) -> None:
        broker, _info = self._order(order_id)
        self._check_online(broker)
        with self.command():
            broker.cancel_order(order_id)

    def set_leverage(self, account: str, symbol: str, leverage: Decimal | int) -> None:
        broker = self.broker_of(account)
        self._check_online(broker)
        native = self.native(broker, symbol)
        with self.command():
            broker.set_leverage(account, native, leverage)

    def adjust_margin(self, account: str, symbol: str, amount: Decimal) -> None:
        broker = self.broker_of(account)
        self._check_online(broker)
        native = self.native(broker, symbol)
        with self.command():
            broker.adjust_margin(account, native, amount)

    def reset_breach(self, account: str) -> None:
        broker = self.broker_of(account)
        self._check_online(broker)
        with self.command():
            broker.reset_breach(account)

    # --- groups -------------------------------------------------------------------------

    def breached(self, account: str | None) -> bool:
        return account is not None and self.broker_of(account).is_breached(account)

    def _known(self, accounts: list[str]) -> None:
        for account in accounts:
            self.broker_of(account)

    def group(self, name: str) -> Group:
        return self.state.groups.get(name)

    def create_group(self, name: str, leader: str | None = None,
                     followers: list[str] | None = None, *,
                     signal_expiry: Decimal | None = None) -> None:
        followers = list(followers or [])
        self._known(([leader] if leader else []) + followers)
        if signal_expiry is not None and signal_expiry <= 0:
            raise Refused("a signal expiry is a number of seconds above 0")
        with self.command():
            group = self.state.groups.create(name, leader, followers, self.breached(leader))
            group.signal_expiry = signal_expiry
            self.state.touch("groups")

    def set_leader(self, group: str, account: str) -> None:
        self._known([account])
        with self.command("a leader was assigned"):
            self.state.groups.set_leader(group, account, self.breached(account))
            self.state.touch("groups")

    def remove_leader(self, group: str) -> None:
        with self.command("the leader was removed"):
            self.state.groups.remove_leader(group)
            self.state.touch("groups")

    def add_followers(self, group: str, accounts: list[str]) -> None:
        self._known(accounts)
        with self.command("followers were added"):
            leader = self.state.groups.get(group).leader
            self.state.groups.add_followers(group, accounts, self.breached(leader))
            self.state.touch("groups")

    def remove_followers(self, group: str, accounts: list[str]) -> None:
        with self.command("followers were removed"):
            self.state.groups.remove_followers(group, accounts)
            self.state.touch("groups")

    def activate(self, group: str) -> None:
        with self.command("activated by hand"):
            leader = self.state.groups.get(group).leader
            self.state.groups.activate(group, self.breached(leader))
            self.state.touch("groups")

    def pause(self, group: str) -> None:
        with self.command():
            self.state.groups.pause(group)
            self.state.touch("groups")

    def set_ratio(self, group: str, follower: str, symbol: str, ratio: Decimal | int) -> None:
        with self.command():
            self.state.groups.set_ratio(group, follower, symbol, ratio, self.catalog)
            self.state.touch("groups")

    def set_sync(self, group: str, follower: str | None, symbol: str, on: bool) -> None:
        """Sync off withdraws the follower's working mirrors in that contract, so an
        entry copied earlier cannot fill after the follower stopped copying. Bracket
        exits stay: they protect what the follower holds."""
        with self.command():
            self.state.groups.set_sync(group, follower, symbol, on, self.catalog)
            self.state.touch("groups")
            if not on:
                g = self.state.groups.get(group)
                for account in [follower] if follower else list(g.followers):
                    self.ratio.withdraw_mirrors(g, account, symbol)

    def set_cross(self, group: str, follower: str, symbol: str, to: str | None) -> None:
        with self.command():
            g = self.state.groups.get(group)
            holds = False
            if follower in g.followers:
                broker = self.broker_of(follower)
                native = self.native(broker, g.traded_symbol(follower, symbol))
                holds = (broker.position(follower, native) != 0
                         or bool(broker.working_orders(follower, native)))
            target = None if to is None or to == symbol else to
            if (target is not None and follower in g.followers
                    and self.catalog.get(target).family == self.catalog.get(symbol).family):
                broker = self.broker_of(follower)
                if not broker.trades(self.native(broker, target)):
                    raise Refused(f"cannot cross {symbol} to {target}: broker {broker.name!r} "
                                  f"of {follower!r} does not trade {target}")
            self.state.groups.set_cross(group, follower, symbol, to, self.catalog, holds)
            self.state.touch("groups")

    # --- reconciliation (SPEC 9) ---------------------------------------------------------

    def out_of_sync(self, group: str | None = None) -> list[Drift]:
        """Synced ratio followers of active groups that do not hold what they should."""
        return self.ratio.out_of_sync(group)

    def resync(self, group: str, follower: str, symbol: str) -> None:
        self.ratio.resync(group, follower, symbol)

    def resync_plan(self, group: str, follower: str, symbol: str) -> ResyncPlan:
        return self.ratio.resync_plan(group, follower, symbol)

    def copy_latency(self, group: str, follower: str) -> tuple[timedelta, timedelta] | None:
        """The last and the 95th percentile copy latency of a follower (or a copy's owner)
        in a group: from the leader event to its broker acknowledging the copy. Kept in
        memory for the dashboard; None before its first copy."""
        key = (group, follower)
        cached = self._latency_read.get(key)
        if cached is not None:
            return cached
        samples = self._latency.get(key)
        if not samples:
            return None
        ordered = sorted(samples)
        read = samples[-1], ordered[min(len(ordered) - 1, (95 * len(ordered)) // 100)]
        self._latency_read[key] = read  # until its next sample: a refresh reads it again
        return read

    # --- Smart Sync (SPEC 5) -------------------------------------------------------------

    def follow(self, group: str, account: str, mode: str, investment: Decimal, *,
               copy_open_positions: bool = False, stop_loss: Decimal | None = None,
               on_stop: OnStop = OnStop.CLOSE) -> Copy:
        return self.smart.follow(group, account, mode, investment, copy_open_positions,
                                 stop_loss, on_stop)

    def unfollow(self, group: str, account: str) -> None:
        self.smart.unfollow(group, account)

    def set_investment(self, group: str, account: str, investment: Decimal) -> None:
        self.smart.set_investment(group, account, investment)

    # --- staged group edits ---------------------------------------------------------------

    def preview_group_edits(self, group: str, edits: Sequence[GroupEdit]) -> Group:
        """The group as it would be after `edits`, automatic transitions included,
        without changing anything. Refused: which edit, and why."""
        book = copy.deepcopy(self.state.groups)
        self._apply_edits(book, group, edits)
        return book.get(group)

    def apply_group_edits(self, group: str, edits: Sequence[GroupEdit]) -> None:
        """Save staged edits: all of them, or (refused) none."""
        self.preview_group_edits(group, edits)
        with self.command("; ".join(edit.describe() for edit in edits)):
            self._apply_edits(self.state.groups, group, edits)
            self.state.touch("groups")

    def _apply_edits(self, book: GroupBook, group: str, edits: Sequence[GroupEdit]) -> None:
        for index, edit in enumerate(edits):
            try:
                self._apply_edit(book, group, edit)
            except Refused as refused:
                raise Refused(f"edit {index + 1} ({edit.describe()}): {refused.message}") from None

    def _apply_edit(self, book: GroupBook, group: str, edit: GroupEdit) -> None:
        if isinstance(edit, SetLeader):
            self._known([edit.account])
            book.set_leader(group, edit.account, self.breached(edit.account))
        elif isinstance(edit, RemoveLeader):
            book.remove_leader(group)
        elif isinstance(edit, AddFollowers):
            self._known(list(edit.accounts))
            book.add_followers(group, list(edit.accounts),
                               self.breached(book.get(group).leader))
        elif isinstance(edit, RemoveFollowers):
            book.remove_followers(group, list(edit.accounts))
        elif edit.active:
            book.activate(group, self.breached(book.get(group).leader))
        else:
            book.pause(group)

    # --- actions ------------------------------------------------------------------------

    def _members(self, group: Group) -> list[str]:
        return ([group.leader] if group.leader else []) + list(group.followers)

    def flatten_all(self, group: str) -> None:
        """Close every position and cancel every order of every member, leader included.
        These exits are not copied: every member is flattened directly."""
        g = self.state.groups.get(group)
        with self.command():
            self._flatten_members(g)

    def _flatten_members(self, group: Group) -> None:
        """A member at a disconnected broker is flattened when it reconnects (SPEC 9)."""
        for account in self._members(group):
            if self.connected(account):
                self.broker_of(account).close_all(account, FillCause.GROUP_FLATTEN)
            else:
                self.wait(group.name, account, "close_all")
        self.smart.flatten(group)

    def cancel_orders(self, group: str) -> None:
        g = self.state.groups.get(group)
        with self.command():
            for account in self._members(g):
                if self.connected(account):
                    self.broker_of(account).cancel_all(account)
                else:
                    self.wait(g.name, account, "cancel_all")

    def flatten_position(self, account: str, symbol: str) -> None:
        """One account, one symbol: cancel its working orders there and close at market.
        On a leader this is an exit like any other, and is copied (SPEC 8)."""
        broker = self.broker_of(account)
        self._check_online(broker)
        native = self.native(broker, symbol)
        with self.command():
            broker.close_position(account, native, FillCause.FLATTEN)

    def emergency_stop(self) -> None:
        """Flatten All on every group, then pause every group that has a leader."""
        with self.command():
            for group in self.state.groups.groups.values():
                self._flatten_members(group)
            self._drain()
            for group in self.state.groups.groups.values():
                if group.status is GroupStatus.ACTIVE:
                    self.state.groups.pause(group.name, PauseReason.EMERGENCY_STOP)
            self.state.touch("groups")

    # --- handling broker events ---------------------------------------------------------

    def _handle(self, event: BrokerEvent) -> None:
        if isinstance(event, Fill):
            self._on_fill(event)
        elif isinstance(event, OrderPlaced):
            self._order_changed(event.order, "placed")
            self.ratio.on_leader_order(event.order)
        elif isinstance(event, OrderModified):
            self._order_changed(event.order, "modified")
            self.ratio.on_leader_modify(event.order)
        elif isinstance(event, OrderCancelled):
            self._order_changed(event.order, "cancelled")
            if event.reason.mirrored:
                self.ratio.on_leader_cancel(event.order)
        elif isinstance(event, OrderFailed):
            self._order_changed(event.order, "failed")
            group = self.state.copy_group.get(event.order.id)
            if group is not None:
                self.fail(group, event.order.account, self._catalog_symbol(event.order),
                           event.reason, event.message)
        elif isinstance(event, PriceUpdated):
            self.smart.check_stops()
        elif isinstance(event, LeverageChanged | MarginAdjusted):
            led = self._active_group_led_by(event.account)
            if led is not None:
                if isinstance(event, LeverageChanged):
                    self.smart.on_leverage(led, event)
                else:
                    self.smart.on_margin(led, event)
        elif isinstance(event, AccountBreached):
            self.publish(AccountBreachedEvent(event.account, event.rule))
            led = self.state.groups.group_led_by(event.account)
            if led is not None:
                self.state.groups.pause(led.name, PauseReason.LEADER_BREACHED)
                self.state.touch("groups")

    def _catalog_symbol(self, order: OrderInfo) -> str:
        return self.brokers[order.broker].symbols.catalog(order.symbol)

    def _order_changed(self, order: OrderInfo, change: str) -> None:
        if self._wanted[OrderChanged]:
            self.publish(OrderChanged(order.account, order.id, self._catalog_symbol(order),
                                       order.side, order.type, order.qty, order.price, change))

    def _active_group_led_by(self, account: str) -> Group | None:
        group = self.state.groups.group_led_by(account)
        if group is None or group.status is not GroupStatus.ACTIVE:
            return None
        return group

    def fail(self, group: str, account: str, symbol: str, reason: RejectReason,
             message: str, bracket_of: str | None = None) -> None:
        """A copy that failed. When it copied a bracketed entry, the entry's exits are
        not copied to that follower either (SPEC 8: a bracket leg belongs to its entry)."""
        if bracket_of is not None:
            self.state.mark_bracketed(bracket_of, account, None)
        failure = Failure(group, self.owner(account), symbol, reason, message, self.clock.now())
        self.state.add_failure(failure)
        self.publish(CopyFailed(failure))

    def unsupported(self, group: str, follower: str, broker: Broker, symbol: str,
                    bracket_of: str | None = None) -> None:
        """A copy for a market the follower's broker does not trade: not sent (SPEC 9)."""
        self.fail(group, follower, symbol, RejectReason.UNSUPPORTED_INSTRUMENT,
                        f"broker {broker.name!r} does not trade {symbol}", bracket_of)

    def send(self, group: str, follower: str, symbol: str, request: OrderRequest,
             mirror_of: str | None = None, bracket_of: str | None = None,
             at: datetime | None = None) -> None:
        """Queue a follower (or copy) order as an intent, decided `at` (now unless told;
        a fan-out's copies share one time); `dispatch` sends it."""
        assert request.client_id is not None
        self.state.add_intent(Intent(request.client_id, group, follower, symbol, request,
                                     mirror_of, bracket_of, at or self.clock.now(),
                                     self._since))

    @property
    def outbox(self) -> list[Intent]:
        return list(self.state.intents.values())

    def dispatch(self) -> None:
        """Send every pending intent. A key the broker already knows was sent before a
        restart: its outcome is taken from the broker, never sent twice."""
        while True:
            batch = self._sendable()  # dispatching makes no new intents: one pass each
            if not batch:
                return
            intents = self.state.intents
            for intent, broker in batch:
                if intent.key in intents:
                    self._dispatch(intent, broker)

    def _waited(self, intent: Intent) -> Intent | None:
        """An intent that waited for its broker, as it is to be sent now: None when it
        expired (a failure) or mirrors a leader order cancelled meanwhile; a mirror of
        a leader order whose price moved goes at the new price."""
        if self._expired(intent.group, intent.at):
            self.fail(intent.group, intent.follower, intent.symbol, RejectReason.EXPIRED,
                      "the copy waited for its broker past the signal expiry",
                      intent.bracket_of)
            return None
        if intent.mirror_of is None:
            return intent
        leader = None
        for broker in self.brokers.values():
            if broker.order_status(intent.mirror_of) is not None:
                leader = broker
                break
        if leader is None:
            return intent
        if leader.order_status(intent.mirror_of) is OrderStatus.CANCELLED:
            return None
        info = leader.order(intent.mirror_of)
        if info is not None and info.price is not None and intent.request.price != info.price:
            return replace(intent, request=replace(intent.request, price=info.price))
        return intent

    def _dispatch(self, intent: Intent, broker: Broker | None = None) -> None:
        """Send one intent. A client id the broker already holds was sent before (a
        restart, or a timeout that reached it): its outcome is taken from the broker and
        it is never sent again. Otherwise it is submitted; its answer arrives as an
        event (`_answered`), at once or later."""
        if broker is None:
            broker = self.broker_of(intent.follower)
        known = broker.order_by_client_id(intent.key)
        if known is not None:
            if broker.order_status(known.id) is OrderStatus.REJECTED:
                reason, message = broker.reject_reason(known.id) or (
                    RejectReason.REJECTED, "the broker rejected the order before the restart")
                self._refused(intent, reason, message)
            else:
                self._accepted(intent, known.id)
            return
        waited = self._waited(intent)
        if waited is None:
            self.state.finish_intent(intent.key, None)
            return
        self.state.submit_intent(waited)
        try:
            broker.submit(intent.follower, waited.request)
        except BrokerTimeout:
            # Ask again with the same client id: a broker that has it answers with that
            # order (the known branch above), one that does not takes it now.
            self._dispatch(waited, broker)
        except Refused as refused:
            self._refused(waited, getattr(refused, "reason", RejectReason.REJECTED),
                          refused.message)

    def _answered(self, event: OrderAcknowledged | OrderRefused) -> None:
        """A broker's answer to a submitted intent. Handled as it arrives, before the
        reports queued behind it, so that the links it makes (mirrors, bracketed
        copies) are there when the order's own fills and the leader's next are handled."""
        intent = self.state.inflight.get(event.client_id) or self.state.intents.get(
            event.client_id)
        if intent is None:
            return  # completed already (asked by client id after a timeout or restart)
        if isinstance(event, OrderAcknowledged):
            self._accepted(intent, event.order_id)
        else:
            self._refused(intent, event.reason, event.message)

    def _refused(self, intent: Intent, reason: RejectReason, message: str) -> None:
        self.fail(intent.group, intent.follower, intent.symbol, reason, message,
                  intent.bracket_of)
        self.state.finish_intent(intent.key, None)

    def _accepted(self, intent: Intent, order_id: str) -> None:
        who = (intent.group, self.owner(intent.follower))
        self.state.last_result[(*who, intent.symbol)] = True
        if intent.at is not None:
            self._latency_read.pop(who, None)
            samples = self._latency.get(who)
            if samples is None:  # not `setdefault`: that would build a deque every time
                samples = self._latency[who] = deque(maxlen=LATENCY_SAMPLES)
            samples.append(self.clock.now() - (intent.since or intent.at))
        self.state.link_copy(order_id, intent.group)
        self._link_ages.append(order_id)
        if len(self.state.copy_group) > KEEP_COPY_LINKS:
            self._forget_old_copies()
        if intent.mirror_of is not None:
            self.state.link_mirror(intent.mirror_of, intent.follower, order_id)
        if intent.bracket_of is not None:
            self.state.mark_bracketed(intent.bracket_of, intent.follower, order_id)
        self.state.finish_intent(intent.key, order_id)

    def _forget_old_copies(self) -> None:
        """Memory stays flat: past KEEP_COPY_LINKS, each new link lets go of up to two
        of the oldest (their group is in the database, on the intent that made them; a
        restart loads the working). One still working is kept, as the newest. So the
        cost is spread over the copies: a sweep of half the links at once held a
        1,000-follower fan-out for 20-30 ms every 25 leader fills."""
        links, ages = self.state.copy_group, self._link_ages
        for _ in range(2):
            if not ages:
                return
            order_id = ages.popleft()
            if order_id not in links:
                continue
            if any(b.order(order_id) is not None for b in self.brokers.values()):
                ages.append(order_id)
            else:
                del links[order_id]

    def poll(self) -> None:
        """Let brokers that answer late answer what is due (the demo's delay)."""
        with self.command():
            for broker in self.brokers.values():
                broker.poll()

    def _on_fill(self, fill: Fill) -> None:
        symbol = self.brokers[fill.broker].symbols.catalog(fill.symbol)
        smart_copy = self.state.copy_of_sub(fill.account)
        if smart_copy is not None:
            if self._wanted[AccountFilled]:
                self.publish(AccountFilled(smart_copy.account, symbol, fill.side, fill.qty,
                                            fill.price, fill.realized, fill.fee, fill.cause,
                                            smart_copy.group, True, fill.at, smart=True))
            self.smart.check_stops([fill.account])
            return
        group = self._active_group_led_by(fill.account)
        if self._wanted[AccountFilled]:
            self._publish_fill(fill, symbol)
        if group is None or fill.cause is FillCause.GROUP_FLATTEN:
            return
        closed, opened = split_fill(fill.position_before, fill.side.signed(fill.qty))
        self.ratio.on_leader_fill(group, fill, symbol, closed, opened)
        self.smart.on_leader_fill(group, fill, symbol, closed, opened)

    def _publish_fill(self, fill: Fill, symbol: str) -> None:
        """Tell observers of an account's fill, with the group it belongs to."""
        copy_group = self.state.copy_group
        order_id = fill.order_id
        owner = None if order_id is None else copy_group.get(order_id)
        copied = owner is not None or (order_id is not None and order_id in copy_group)
        if owner is None:  # the leader's own fill, or a follower's own exit or
            # liquidation: it belongs to the one group the account has a role in
            role = self.state.groups.role_of(fill.account)
            owner = role[0] if role else None
        self.publish(AccountFilled(fill.account, symbol, fill.side, fill.qty, fill.price,
                                    fill.realized, fill.fee, fill.cause, owner, copied,
                                    fill.at))
