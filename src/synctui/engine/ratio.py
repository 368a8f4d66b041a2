"""Ratio copying (SPEC 4, 8, 9): market copies of a leader's fills, mirrors of its
working orders, and reconciliation of what each follower should hold.

Everything it needs of the engine comes through `CopyContext` (engine.context);
it never imports `engine.engine` (import-linter keeps it so).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from synctui.brokers.base import Broker, OrderRequest
from synctui.brokers.events import Fill, OrderInfo
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.groups import ContractSetting, Group, GroupStatus
from synctui.domain.instruments import Instrument
from synctui.domain.orders import OrderStatus, Side
from synctui.domain.position import split_fill
from synctui.domain.reconcile import Drift, drifts_of, expectations
from synctui.domain.sizing import opening_qty, proportional_close
from synctui.engine.context import CopyContext


@dataclass(frozen=True, slots=True)
class ResyncPlan:
    """The market orders a resync sends: (side, qty, reduce only), in order."""

    group: str
    follower: str
    symbol: str  # the leader's contract
    traded: str  # the follower's symbol for it
    expected: Decimal
    actual: Decimal
    orders: tuple[tuple[Side, Decimal, bool], ...]


@dataclass(slots=True)
class _Venue:
    """A contract at one follower broker, as a fan-out sizes and names its copies."""

    inst: Instrument
    native: str
    trades: bool = True


@dataclass(slots=True)
class _FanOut:
    """What one leader fill's copies share: the contracts at each follower broker, and
    the moment they were decided (one clock read for the fan-out, not one per copy)."""

    at: datetime
    venues: dict[tuple[str, str], _Venue] = field(default_factory=dict)


class RatioCopier:
    """The rules of ratio copying, applied through a `CopyContext`."""

    def __init__(self, ctx: CopyContext) -> None:
        self.ctx = ctx

    def _active_led_by(self, account: str) -> Group | None:
        group = self.ctx.state.groups.group_led_by(account)
        if group is None or group.status is not GroupStatus.ACTIVE:
            return None
        return group

    def _catalog_symbol(self, order: OrderInfo) -> str:
        return self.ctx.brokers[order.broker].symbols.catalog(order.symbol)

    def on_leader_fill(self, group: Group, fill: Fill, symbol: str, closed: Decimal,
                       opened: Decimal) -> None:
        """Copy a leader's fill to each synced follower that does not hold its own
        mirror of the order (or its own exit of the bracketed entry)."""
        state = self.ctx.state
        handled: set[str] = set()
        if fill.order_id is not None:
            for follower, ids in state.mirrors.get(fill.order_id, {}).items():
                if self._holds_mirror(follower, ids):
                    handled.add(follower)
        if fill.parent_id is not None:
            handled.update(state.bracketed.get(fill.parent_id, {}))
        if fill.order_id is not None and state.waiting:
            # its mirror waits: it fills at the follower's own broker once placed (SPEC 8)
            handled.update(self.ctx.waiting_mirrors(fill.order_id))
        fan_out = _FanOut(self.ctx.clock.now())
        for follower in group.followers:
            setting = group.setting(follower, symbol)
            if not setting.sync or follower in handled:
                continue
            broker = self.ctx.broker_of(follower)
            if broker.connected and not self.ctx.behind(follower):
                self.copy_fill(group, follower, setting, symbol, fill, closed, opened, fan_out,
                               broker)
            else:  # sized when its broker is back (SPEC 9), or after what waits before it,
                # against its position then
                self.ctx.wait(group.name, follower, "fill", fill=fill)

    def _holds_mirror(self, follower: str, ids: list[str]) -> bool:
        """A follower holds a mirror that works, filled or failed (its one outcome).

        A mirror its own broker cancelled (a reduce-only close with nothing left
        to reduce) is not held: the leader's fill reaches that follower as a
        market copy, whose close does nothing on a flat position but whose
        opening part keeps the follower with the leader.
        """
        if not ids:
            return True  # placement failed: the failure was its outcome
        broker = self.ctx.broker_of(follower)
        return any(broker.order_status(i) is not OrderStatus.CANCELLED for i in ids)

    def copy_fill(self, group: Group, follower: str, setting: ContractSetting, symbol: str,
                   fill: Fill, closed: Decimal, opened: Decimal,
                   fan_out: _FanOut | None = None, broker: Broker | None = None) -> None:
        """Closes proportionally (never opening a flat follower), opens qty x ratio.

        `fan_out` keeps what a fan-out asks again for every follower at the same
        broker and contract (the instrument, its native symbol, whether it is traded)
        and when it decided."""
        if broker is None:
            broker = self.ctx.broker_of(follower)
        if fan_out is None:
            fan_out = _FanOut(self.ctx.clock.now())
        traded = setting.cross or symbol
        venue = fan_out.venues.get((broker.name, traded))
        if venue is None:
            venue = _Venue(self.ctx.catalog.get(traded), self.ctx.native(broker, traded))
            venue.trades = broker.trades(venue.native)
            fan_out.venues[(broker.name, traded)] = venue
        inst, native = venue.inst, venue.native
        has_brackets = fill.stop_loss is not None or fill.take_profit is not None
        bracket_of = fill.order_id if has_brackets else None
        if not venue.trades:
            if opened:  # it can hold nothing there, so there is nothing to close
                self.ctx.unsupported(group.name, follower, broker, traded, bracket_of)
            return
        if closed and broker.settling(follower):
            # its earlier copies are not in its position yet: sized now, the close would
            # miss them; it waits for them, then is sized on the position they made
            self.ctx.wait(group.name, follower, "fill", fill=fill)
            return
        current, base = self.ctx.close_basis(broker, follower, native)
        if closed:
            qty = proportional_close(current, base, self.ctx.leader_base(fill), closed,
                                     closed >= abs(fill.position_before), inst)
            if qty > 0:
                self.ctx.send(group.name, follower, traded, OrderRequest(
                    symbol=native, side=fill.side, qty=qty, reduce_only=True,
                    client_id=self.ctx.key(fill.id, follower, "close")), at=fan_out.at)
        if opened:
            qty = opening_qty(opened, setting.ratio, inst)
            if qty < inst.min_qty:
                self.ctx.fail(group.name, follower, traded, RejectReason.REJECTED,
                                f"{opened} x {setting.ratio} is below the {traded} minimum",
                                bracket_of)
                return
            self.ctx.send(group.name, follower, traded, OrderRequest(
                symbol=native, side=fill.side, qty=qty, stop_loss=fill.stop_loss,
                take_profit=fill.take_profit, client_id=self.ctx.key(fill.id, follower, "open")),
                bracket_of=bracket_of, at=fan_out.at)

    def on_leader_order(self, order: OrderInfo) -> None:
        """Mirror a leader's new working order on each synced follower (SPEC 4, 8)."""
        if order.parent_id is not None:
            return  # a bracket: each follower's copy carries its own
        group = self._active_led_by(order.account)
        if group is None:
            return
        leader_broker = self.ctx.brokers[order.broker]
        symbol = leader_broker.symbols.catalog(order.symbol)
        held = leader_broker.position(order.account, order.symbol)
        for follower in group.followers:
            self._mirror(group, follower, order, symbol, held)

    def mirror_waited(self, group: Group, follower: str, order: OrderInfo,
                      held: Decimal) -> None:
        """A mirror that waited for the follower's earlier copies (or its broker): sized
        on the follower's position now and `held`, the leader's at the order's
        placement."""
        symbol = self.ctx.brokers[order.broker].symbols.catalog(order.symbol)
        self._mirror(group, follower, order, symbol, held, waited=True)

    def _mirror(self, group: Group, follower: str, order: OrderInfo, symbol: str,
                held: Decimal, waited: bool = False) -> None:
        assert order.price is not None
        setting = group.setting(follower, symbol)
        if not setting.sync:
            return
        closed, opened = split_fill(held, order.side.signed(order.qty))
        broker = self.ctx.broker_of(follower)
        if not waited and (self.ctx.behind(follower)
                           or (closed and broker.settling(follower))):
            # A closing part sized now would miss the follower's copies still on their
            # way, as a market close would (`copy_fill`); and what waits for the
            # follower goes first. Sized when they are in.
            self.ctx.wait(group.name, follower, "mirror", order_id=order.id, order=order,
                          held=held)
            return
        traded = setting.cross or symbol
        inst = self.ctx.catalog.get(traded)
        native = self.ctx.native(broker, traded)
        if not broker.trades(native):
            if opened:
                self.ctx.state.start_mirror(order.id, follower)
                bracketed = order.stop_loss is not None or order.take_profit is not None
                self.ctx.unsupported(group.name, follower, broker, traded,
                                     order.id if bracketed else None)
            return
        requests: list[OrderRequest] = []
        if closed:
            mine = broker.position(follower, native)
            qty = proportional_close(mine, mine, held, closed, closed >= abs(held), inst)
            if qty > 0:
                requests.append(OrderRequest(
                    symbol=native, side=order.side, qty=qty, type=order.type,
                    price=order.price, reduce_only=True,
                    client_id=self.ctx.key(order.id, follower, "close")))
        if opened:
            requests.append(OrderRequest(
                symbol=native, side=order.side, qty=opening_qty(opened, setting.ratio, inst),
                type=order.type, price=order.price, stop_loss=order.stop_loss,
                take_profit=order.take_profit,
                client_id=self.ctx.key(order.id, follower, "open")))
        if requests:
            self.ctx.state.start_mirror(order.id, follower)
        for request in requests:
            bracketed = request.stop_loss is not None or request.take_profit is not None
            self.ctx.send(group.name, follower, traded, request, mirror_of=order.id,
                          bracket_of=order.id if bracketed else None)

    def _live_mirrors(self, order: OrderInfo) -> Iterator[tuple[str, Broker, str]]:
        """Mirrors that a leader's modify or cancel still reaches (SPEC 8).

        A leader bracket leg's mirror is the follower's leg of the same role on
        the follower's copy of the bracketed order.
        """
        group = self._active_led_by(order.account)
        if group is None:
            return
        if order.parent_id is not None:
            links = self.ctx.state.bracketed.get(order.parent_id, {})
        else:
            links = self.ctx.state.mirrors.get(order.id, {})
        for follower, ids in links.items():
            if follower not in group.followers:
                continue
            broker = self.ctx.broker_of(follower)
            if order.parent_id is not None:
                parents = set(ids)
                for leg in broker.working_orders(follower):
                    if leg.parent_id in parents and leg.role == order.role:
                        yield group.name, broker, leg.id
                continue
            for order_id in ids:
                if broker.order(order_id) is not None:
                    yield group.name, broker, order_id

    def on_leader_modify(self, order: OrderInfo) -> None:
        assert order.price is not None
        for group, broker, order_id in list(self._live_mirrors(order)):
            mirror = broker.order(order_id)
            if mirror is None:
                continue
            if not broker.connected:
                self.ctx.wait(group, mirror.account, "modify", order_id=order_id,
                              price=order.price)
                continue
            try:
                broker.modify_order(order_id, order.price)
            except OrderRejected as rejected:
                self.ctx.fail(group, mirror.account, self._catalog_symbol(mirror), rejected.reason,
                           rejected.message)
            except Refused as refused:
                self.ctx.fail(group, mirror.account, self._catalog_symbol(mirror),
                           RejectReason.REJECTED, refused.message)

    def on_leader_cancel(self, order: OrderInfo) -> None:
        for group, broker, order_id in list(self._live_mirrors(order)):
            mirror = broker.order(order_id)
            if mirror is None:
                continue
            if broker.connected:
                broker.cancel_order(order_id)
            else:
                self.ctx.wait(group, mirror.account, "cancel", order_id=order_id)

    def withdraw_mirrors(self, group: Group, follower: str, symbol: str) -> None:
        if group.leader is None:
            return
        leader_broker = self.ctx.broker_of(group.leader)
        leader_native = self.ctx.native(leader_broker, symbol)
        broker = self.ctx.broker_of(follower)
        for leader_order, links in self.ctx.state.mirrors.items():
            ids = links.get(follower)
            if not ids:
                continue
            info = leader_broker.order(leader_order)
            if info is not None and info.symbol != leader_native:
                continue
            for order_id in ids:
                mirror = broker.order(order_id)
                if mirror is not None and self._catalog_symbol(mirror) == group.traded_symbol(
                        follower, symbol):
                    if broker.connected:
                        broker.cancel_order(order_id)
                    else:
                        self.ctx.wait(group.name, follower, "cancel", order_id=order_id)
        traded = group.traded_symbol(follower, symbol)
        for intent in list(self.ctx.state.intents.values()):  # mirrors not sent yet
            if (intent.follower == follower and intent.mirror_of is not None
                    and intent.group == group.name and intent.symbol == traded):
                self.ctx.state.finish_intent(intent.key, None)

    def _positions(self, account: str) -> dict[str, Decimal]:
        """An account's signed positions by catalog symbol."""
        broker = self.ctx.broker_of(account)
        catalog = broker.symbols.catalog
        return {catalog(s): qty for s, qty in broker.positions(account).items()}

    def out_of_sync(self, group: str | None = None) -> list[Drift]:
        """Every synced ratio follower of an active group with a leader that does not hold
        ratio x the leader's position (through its cross), in group, follower and
        catalog order."""
        found: list[Drift] = []
        for g in self.ctx.state.groups.groups.values():
            if (group is not None and g.name != group) or g.leader is None \
                    or g.status is not GroupStatus.ACTIVE:
                continue
            leader = self._positions(g.leader)
            for follower in g.followers:
                found.extend(drifts_of(g, follower, leader, self._positions(follower),
                                       self.ctx.catalog))
        return found

    def resync_plan(self, group: str, follower: str, symbol: str) -> ResyncPlan:
        """What a resync would send: a close of the wrong side first, then the open;
        no brackets. Refused unless the follower is a synced ratio follower of an active
        group; no orders when it is in sync. The TUI shows this before it is confirmed."""
        g = self.ctx.state.groups.get(group)
        self.ctx.catalog.get(symbol)
        if follower not in g.followers:
            kind = "a Smart Sync copy" if follower in g.copies else "not a ratio follower"
            raise Refused(f"{follower!r} is {kind} of group {group!r}: only ratio followers "
                          "are resynced")
        if g.status is not GroupStatus.ACTIVE or g.leader is None:
            raise Refused(f"group {group!r} is not active: resync copies nothing")
        setting = g.setting(follower, symbol)
        if not setting.sync:
            raise Refused(f"{follower!r} is not synced for {symbol}: turn sync on to resync")
        traded = setting.cross or symbol
        held = self._positions(follower)
        wanted = expectations(g, follower, self._positions(g.leader), held, self.ctx.catalog)
        expected = wanted.get(traded, (symbol, Decimal(0)))[1]
        actual = held.get(traded, Decimal(0))
        orders: list[tuple[Side, Decimal, bool]] = []  # side, qty, reduce only
        if expected != actual:
            opening = expected
            if actual != 0 and (expected == 0 or (expected > 0) != (actual > 0)):
                orders.append((Side.closing(actual), abs(actual), True))
            elif actual != 0 and abs(expected) < abs(actual):
                orders.append((Side.closing(actual), abs(actual) - abs(expected), True))
                opening = Decimal(0)
            elif actual != 0:
                opening = expected - actual
            if opening != 0:
                orders.append((Side.BUY if opening > 0 else Side.SELL, abs(opening), False))
        return ResyncPlan(group, follower, symbol, traded, expected, actual, tuple(orders))

    def resync(self, group: str, follower: str, symbol: str) -> None:
        """Send the orders of `resync_plan`; each may fail on its own (SPEC 9)."""
        plan = self.resync_plan(group, follower, symbol)
        if not plan.orders:
            return
        broker = self.ctx.broker_of(follower)
        native = self.ctx.native(broker, plan.traded)
        with self.ctx.command():
            self.ctx.state.resyncs += 1
            self.ctx.state.touch("resync")
            tag = f"resync-{self.ctx.state.resyncs}"
            if not broker.trades(native):
                self.ctx.unsupported(group, follower, broker, plan.traded)
                return
            for side, qty, reduce_only in plan.orders:
                leg = "close" if reduce_only else "open"
                self.ctx.send(group, follower, plan.traded, OrderRequest(
                    symbol=native, side=side, qty=qty, reduce_only=reduce_only,
                    client_id=self.ctx.key(tag, follower, plan.traded, leg)))
