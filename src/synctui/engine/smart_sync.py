"""Smart Sync (SPEC 5): copying by fund usage into isolated copies.

Each copy is a sub-account at the follower's broker, so its funds and
positions are isolated by construction: the account's own positions, risk
rules and other copies never mix with it. Copies follow fills, not working
orders: when a leader order fills, the copy opens or closes at market.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal

from synctui.brokers.base import Broker, OrderRequest
from synctui.brokers.events import Fill, LeverageChanged, MarginAdjusted
from synctui.domain.copies import MIN_INVESTMENT, SAFE_MARGIN_LEVEL, Copy, CopyStatus, OnStop
from synctui.domain.errors import OrderRejected, Refused, RejectReason
from synctui.domain.groups import Group, GroupStatus
from synctui.domain.instruments import LIMIT
from synctui.domain.margin import order_margin
from synctui.domain.orders import FillCause, MarginMode, Side
from synctui.domain.risk import RiskLimits
from synctui.domain.sizing import fund_usage, margin_sync_delta, proportional_close, smart_qty
from synctui.engine.context import CopyContext
from synctui.engine.events import CopyChanged

ZERO = Decimal(0)


def _amount(value: Decimal, what: str) -> Decimal:
    if not value.is_finite() or abs(value) >= LIMIT:
        raise Refused(f"{what} {value} is out of range")
    return value


class SmartSync:
    def __init__(self, ctx: CopyContext) -> None:
        self.ctx = ctx

    # --- commands -------------------------------------------------------------------

    def follow(self, group: str, account: str, mode: str, investment: Decimal,
               copy_open_positions: bool = False, stop_loss: Decimal | None = None,
               on_stop: OnStop = OnStop.CLOSE) -> Copy:
        ctx = self.ctx
        if mode != "smart_sync":
            raise Refused(f"follow mode must be smart_sync, not {mode!r}")
        g = ctx.state.groups.get(group)
        broker = ctx.broker_of(account)
        if account in ctx.state.subs:
            raise Refused(f"{account!r} is a copy, not an account")
        if g.leader == account:
            raise Refused(f"account {account!r} leads group {group!r} and cannot copy it")
        if account in g.followers:
            raise Refused(f"account {account!r} follows group {group!r} in ratio mode: "
                          "remove it first to switch to Smart Sync")
        existing = ctx.state.copies.get((group, account))
        if existing is not None and existing.status is not CopyStatus.ENDED:
            raise Refused(f"account {account!r} already copies group {group!r}")
        investment = _amount(investment, "investment")
        if investment < MIN_INVESTMENT:
            raise Refused(f"the investment must be at least {MIN_INVESTMENT}")
        if stop_loss is not None and (_amount(stop_loss, "stop loss") <= 0):
            raise Refused("the total stop loss must be a positive amount")
        available = broker.available(account)
        if investment > available:
            raise Refused(f"account {account!r} has {available.normalize():f} available, "
                          f"less than the investment {investment}")
        with ctx.command(f"{account} followed in Smart Sync"):
            sub = f"{account}~copy{ctx.state.next_copy}"
            ctx.state.next_copy += 1
            broker.open_account(sub, ZERO, RiskLimits())
            broker.fund(account, -investment)
            broker.fund(sub, investment)
            copy = Copy(group, account, sub, investment, copy_open_positions, stop_loss,
                        on_stop)
            ctx.state.put_copy(copy)
            g.copies.add(account)
            ctx.state.groups.on_follower_added(g, ctx.breached(g.leader))
            ctx.state.touch("groups")
            ctx.publish(CopyChanged(group, account, copy.status, "followed"))
            if copy_open_positions and g.status is GroupStatus.ACTIVE and g.leader:
                self._copy_open_positions(g, copy)
        return copy

    def _copy_open_positions(self, group: Group, copy: Copy) -> None:
        """Each open leader position, as if the leader had just opened it at the
        current price (usage = that position's margin / leader equity)."""
        assert group.leader is not None
        leader_broker = self.ctx.broker_of(group.leader)
        view = leader_broker.view(group.leader)
        for pos in view.positions:
            symbol = leader_broker.symbols.catalog(pos.symbol)
            usage = fund_usage(pos.margin, view.equity)
            side = Side.BUY if pos.qty > 0 else Side.SELL
            self._open(copy, symbol, side, usage, pos.leverage, pos.margin_mode,
                       f"open:{group.leader}:{pos.symbol}", ZERO)

    def unfollow(self, group: str, account: str) -> None:
        """Close the copy's positions at market, return its funds, end it."""
        ctx = self.ctx
        copy = self._copy(group, account)
        if copy.status is CopyStatus.ENDED:
            raise Refused(f"account {account!r} no longer copies group {group!r}")
        g = ctx.state.groups.get(group)
        with ctx.command(f"{account} unfollowed"):
            broker = ctx.broker_of(copy.sub)
            broker.close_all(copy.sub, FillCause.UNFOLLOW)
            self._return_funds(copy)
            copy.status = CopyStatus.ENDED
            ctx.state.put_copy(copy)
            g.copies.discard(account)
            ctx.state.groups.on_follower_removed(g)
            ctx.state.touch("groups")
            ctx.publish(CopyChanged(group, account, copy.status, "unfollowed"))

    def set_investment(self, group: str, account: str, investment: Decimal) -> None:
        ctx = self.ctx
        copy = self._copy(group, account)
        if copy.status is CopyStatus.ENDED:
            raise Refused(f"account {account!r} no longer copies group {group!r}")
        if copy.status is CopyStatus.STOPPED:
            raise Refused("a stopped copy's investment cannot be changed: unfollow it")
        investment = _amount(investment, "investment")
        if investment < MIN_INVESTMENT:
            raise Refused(f"the investment must be at least {MIN_INVESTMENT}")
        broker = ctx.broker_of(account)
        delta = investment - copy.investment
        if delta > 0 and delta > broker.available(account):
            raise Refused(f"account {account!r} has {broker.available(account).normalize():f} "
                          f"available, less than the raise of {delta}")
        if delta < 0:
            spare = broker.available(copy.sub)
            used = broker.view(copy.sub).used_margin
            if -delta > spare or investment < used:
                raise Refused(f"the copy has {max(spare, ZERO).normalize():f} available: it "
                              f"cannot give back {-delta}")
        with ctx.command():
            broker.fund(account, -delta)
            broker.fund(copy.sub, delta)
            copy.investment = investment
            ctx.state.put_copy(copy)
            ctx.publish(CopyChanged(group, account, copy.status, "investment"))
            if delta > 0:
                self._retry_leverage(copy)

    def set_stop_loss(self, group: str, account: str, stop_loss: Decimal | None,
                      on_stop: OnStop = OnStop.CLOSE) -> None:
        """Change the total stop loss (None: no stop loss) and what a stop does."""
        ctx = self.ctx
        copy = self._copy(group, account)
        if copy.status is CopyStatus.ENDED:
            raise Refused(f"account {account!r} no longer copies group {group!r}")
        if stop_loss is not None and _amount(stop_loss, "stop loss") <= 0:
            raise Refused("the total stop loss must be a positive amount")
        on_stop = OnStop(on_stop)
        with ctx.command():
            copy.stop_loss = stop_loss
            copy.on_stop = on_stop
            ctx.state.put_copy(copy)
            ctx.publish(CopyChanged(group, account, copy.status, "stop loss"))
            if copy.status is CopyStatus.ACTIVE and stop_loss is not None:
                self.check_stops([copy.sub])

    def _copy(self, group: str, account: str) -> Copy:
        self.ctx.state.groups.get(group)
        copy = self.ctx.state.copies.get((group, account))
        if copy is None:
            raise Refused(f"account {account!r} does not copy group {group!r}")
        return copy

    def _return_funds(self, copy: Copy) -> None:
        if copy.funds_returned:
            return
        broker = self.ctx.broker_of(copy.sub)
        funds = broker.view(copy.sub).balance
        broker.fund(copy.sub, -funds)
        broker.fund(copy.account, funds)
        copy.funds_returned = True

    # --- copying fills ------------------------------------------------------------------

    def active_copies(self, group: Group) -> list[Copy]:
        copies = self.ctx.state.copies
        return [c for a in sorted(group.copies) if (c := copies.get((group.name, a)))
                and c.mirrors]

    def on_leader_fill(self, group: Group, fill: Fill, symbol: str, closed: Decimal,
                       opened: Decimal) -> None:
        for copy in self.active_copies(group):
            if self.ctx.connected(copy.sub):
                self.copy_fill(copy, fill, symbol, closed, opened)
            else:
                self.ctx.wait(group.name, copy.sub, "fill", fill=fill)

    def copy_fill(self, copy: Copy, fill: Fill, symbol: str, closed: Decimal,
                   opened: Decimal) -> None:
        ctx = self.ctx
        broker = ctx.broker_of(copy.sub)
        native = broker.symbols.native(symbol)
        inst = ctx.catalog.get(symbol)
        bracketed = ctx.state.bracketed
        if fill.parent_id is not None and bracketed.get(fill.parent_id, {}).get(copy.sub) == []:
            return  # its copy of this exit's entry failed (SPEC 8: a leg belongs to its entry)
        has_brackets = fill.stop_loss is not None or fill.take_profit is not None
        bracket_of = fill.order_id if has_brackets else None
        if not broker.trades(native):
            if opened:
                ctx.unsupported(copy.group, copy.sub, broker, symbol, bracket_of)
            return
        freed = ZERO
        spent = ZERO  # what the queued close will cost: fees and slippage
        held, base = ctx.close_basis(broker, copy.sub, native)
        if closed:
            qty = proportional_close(held, base, ctx.leader_base(fill), closed,
                                     closed >= abs(fill.position_before), inst)
            if qty > 0:
                if qty == abs(held):
                    freed = broker.position_margin(copy.sub, native)
                spent = broker.close_cost(native, qty)
                ctx.send(copy.group, copy.sub, symbol, OrderRequest(
                    symbol=native, side=fill.side, qty=qty, reduce_only=True,
                    client_id=ctx.key(fill.id, copy.sub, "close")))
        if opened:
            leverage = fill.leverage or 1
            margin = order_margin(inst, opened, fill.price, leverage)
            usage = fund_usage(margin, fill.equity_before)
            self._open(copy, symbol, fill.side, usage, fill.leverage, fill.margin_mode,
                       fill.id, freed, spent, bracket_of)

    def _open(self, copy: Copy, symbol: str, side: Side, usage: Decimal,
              leverage: int | None, mode: MarginMode | None, event: str,
              freed: Decimal, spent: Decimal = ZERO, bracket_of: str | None = None) -> None:
        """Size by fund usage at the leader's leverage, margin mode and side (SPEC 5).

        In a reversal the close is still queued: `freed` is the margin it will free
        and `spent` its fees and slippage, so the open is sized on the copy as it
        will be once closed."""
        ctx = self.ctx
        broker = ctx.broker_of(copy.sub)
        native = broker.symbols.native(symbol)
        inst = ctx.catalog.get(symbol)
        lev = 1
        if not inst.is_future and leverage is not None:
            lev = self._sync_setting(copy, broker, native, leverage, mode)
        price = ctx.prices.get(symbol)
        available = broker.available(copy.sub) + freed - spent
        qty = smart_qty(broker.equity(copy.sub) - spent, usage, inst, price, lev)
        if qty < inst.min_qty:
            qty = inst.min_qty
        if order_margin(inst, qty, price, lev) > available:
            ctx.fail(copy.group, copy.sub, symbol, RejectReason.INSUFFICIENT_MARGIN,
                              f"the copy has {max(available, ZERO).normalize():f} available, "
                              f"less than the margin of {qty} {symbol}", bracket_of)
            return
        ctx.send(copy.group, copy.sub, symbol, OrderRequest(
            symbol=native, side=side, qty=qty, client_id=ctx.key(event, copy.sub, "open")),
            bracket_of=bracket_of)

    def _sync_setting(self, copy: Copy, broker: Broker, native: str, leverage: int,
                      mode: MarginMode | None) -> int:
        """Take the leader's margin mode and leverage; returns the leverage in force."""
        current, current_mode = broker.leverage_of(copy.sub, native)
        if mode is not None and mode is not current_mode:
            # refused while the copy still holds a position in the old mode: keep that
            with contextlib.suppress(Refused):
                broker.set_margin_mode(copy.sub, native, mode)
        if leverage != current:
            try:
                broker.set_leverage(copy.sub, native, leverage)
            except Refused as refused:
                self._leverage_failed(copy, native, leverage, refused.message)
                return current
        return leverage

    def _leverage_failed(self, copy: Copy, native: str, leverage: int, message: str) -> None:
        broker = self.ctx.broker_of(copy.sub)
        symbol = broker.symbols.catalog(native)
        copy.pending_leverage[symbol] = leverage
        self.ctx.state.put_copy(copy)
        self.ctx.fail(copy.group, copy.account, symbol, RejectReason.LEVERAGE_SYNC_FAILED,
                          message)

    def _retry_leverage(self, copy: Copy) -> None:
        broker = self.ctx.broker_of(copy.sub)
        for symbol, leverage in list(copy.pending_leverage.items()):
            native = broker.symbols.native(symbol)
            try:
                broker.set_leverage(copy.sub, native, leverage)
            except Refused:
                continue
            del copy.pending_leverage[symbol]
            self.ctx.state.put_copy(copy)

    # --- leverage and margin sync ------------------------------------------------------------

    def on_leverage(self, group: Group, event: LeverageChanged) -> None:
        """The copy's position takes the leader's new leverage (SPEC 5, 8)."""
        leader_broker = self.ctx.brokers[event.broker]
        symbol = leader_broker.symbols.catalog(event.symbol)
        for copy in self.active_copies(group):
            broker = self.ctx.broker_of(copy.sub)
            native = broker.symbols.native(symbol)
            copy.pending_leverage.pop(symbol, None)
            try:
                broker.set_leverage(copy.sub, native, event.leverage)
            except OrderRejected as rejected:
                self._leverage_failed(copy, native, event.leverage, rejected.message)

    def on_margin(self, group: Group, event: MarginAdjusted) -> None:
        """A copy adjusts its isolated margin by `copy margin x delta / M` (SPEC 5)."""
        leader_broker = self.ctx.brokers[event.broker]
        symbol = leader_broker.symbols.catalog(event.symbol)
        for copy in self.active_copies(group):
            broker = self.ctx.broker_of(copy.sub)
            native = broker.symbols.native(symbol)
            if broker.position(copy.sub, native) == 0:
                continue
            if broker.leverage_of(copy.sub, native)[1] is not MarginMode.ISOLATED:
                continue
            margin = broker.position_margin(copy.sub, native)
            delta = margin_sync_delta(margin, event.delta, event.margin_before)
            if delta > 0:
                level = broker.margin_level(copy.sub, native)
                if level is not None and level > SAFE_MARGIN_LEVEL:
                    continue
                try:
                    broker.adjust_margin(copy.sub, native, delta)
                except Refused as refused:
                    self.ctx.fail(copy.group, copy.account, symbol,
                                      RejectReason.MARGIN_SYNC_FAILED, refused.message)
            elif delta < 0:
                floor = broker.isolated_floor(copy.sub, native)
                delta = max(delta, floor - margin)
                if delta < 0:
                    broker.adjust_margin(copy.sub, native, delta)

    # --- stop loss -----------------------------------------------------------------------------

    def check_stops(self, subs: list[str] | None = None) -> None:
        """Total stop loss on realized + unrealized PnL, on every price update (every
        copy) and fill (the copies of `subs`, looked up: a fan-out's thousand fills
        each walking every copy was quadratic)."""
        ctx = self.ctx
        if subs is None:
            copies = list(ctx.state.copies.values())
        else:
            # a sub-account's key may hold a newer copy (followed again): not this one
            copies = [c for sub in subs
                      if (c := ctx.state.copy_of_sub(sub)) is not None and c.sub == sub]
        for copy in copies:
            if copy.status is not CopyStatus.ACTIVE or copy.stop_loss is None:
                continue
            broker = ctx.broker_of(copy.sub)
            if not broker.connected:
                continue  # its stop is checked again once its broker is back
            pnl = broker.equity(copy.sub) - copy.investment
            if pnl > -copy.stop_loss:
                continue
            copy.status = CopyStatus.STOPPED
            if copy.on_stop is OnStop.CLOSE:
                broker.close_all(copy.sub, FillCause.COPY_STOP)
                self._return_funds(copy)
            ctx.state.put_copy(copy)
            ctx.publish(CopyChanged(copy.group, copy.account, copy.status, "stopped"))

    # --- group actions -------------------------------------------------------------------------

    def flatten(self, group: Group) -> None:
        """Flatten All and Emergency Stop close copies' positions too (SPEC 5)."""
        copies = self.ctx.state.copies
        for account in sorted(group.copies):
            copy = copies.get((group.name, account))
            if copy is None or copy.status is CopyStatus.ENDED:
                continue
            if self.ctx.connected(copy.sub):
                self.ctx.broker_of(copy.sub).close_all(copy.sub, FillCause.GROUP_FLATTEN)
            else:
                self.ctx.wait(group.name, copy.sub, "close_all")
