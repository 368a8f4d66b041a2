"""The final state as SPEC 7's JSON: catalog symbols, numbers at the edge."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from synctui.brokers.base import AccountView
from synctui.domain.copies import Copy
from synctui.engine import views
from synctui.scenario.runner import Replay

PLACES = Decimal("1e-10")


def number(value: Decimal | None) -> int | float | None:
    """Decimal to a JSON number: whole values stay integers, others keep 10 places."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(value.quantize(PLACES))


def _positions(world: Replay, view: AccountView) -> list[dict[str, Any]]:
    symbols = world.world.brokers[view.broker].symbols
    return [
        {
            "symbol": symbols.catalog(p.symbol),
            "broker_symbol": p.symbol,
            "side": "long" if p.qty > 0 else "short",
            "qty": number(abs(p.qty)),
            "avg_price": number(p.avg_price),
            "leverage": p.leverage,
            "margin_mode": p.margin_mode.value if p.margin_mode else None,
            "margin": number(p.margin),
            "unrealized_pnl": number(p.unrealized),
        }
        for p in view.positions
    ]


def _account(world: Replay, view: AccountView, in_use: Decimal) -> dict[str, Any]:
    symbols = world.world.brokers[view.broker].symbols
    return {
        "broker": view.broker,
        "balance": number(view.balance),
        "equity": number(view.equity),
        "available": number(view.available),
        "in_use": number(in_use),
        "used_margin": number(view.used_margin),
        "realized_pnl": number(view.realized),
        "fees": number(view.fees),
        "breached": view.breached is not None,
        "breach": view.breached,
        "positions": _positions(world, view),
        "orders": [
            {
                "id": o.id,
                "symbol": symbols.catalog(o.symbol),
                "side": o.side.value,
                "type": o.type.value,
                "qty": number(o.qty),
                "price": number(o.price),
                "reduce_only": o.reduce_only,
                "stop_loss": number(o.stop_loss),
                "take_profit": number(o.take_profit),
                "role": o.role,
            }
            for o in view.orders
        ],
    }


def _copy(world: Replay, copy: Copy) -> dict[str, Any]:
    view = world.engine.broker_of(copy.sub).view(copy.sub)
    realized = view.realized - view.fees  # a copy's fees count in its realized PnL (SPEC 8)
    equity = copy.investment + realized if copy.funds_returned else view.equity
    return {
        "group": copy.group,
        "account": copy.account,
        "status": copy.status.value,
        "investment": number(copy.investment),
        "equity": number(equity),
        "realized_pnl": number(realized),
        "unrealized_pnl": number(view.equity - view.balance),
        "available": number(view.available if not copy.funds_returned else equity),
        "used_margin": number(view.used_margin),
        "copy_open_positions": copy.copy_open_positions,
        "stop_loss": number(copy.stop_loss),
        "on_stop": copy.on_stop.value,
        "positions": _positions(world, view),
    }


def in_use(world: Replay, account: str) -> Decimal:
    """The account's Smart Sync funds held apart from its balance (rule in engine.views)."""
    return views.in_use(world.engine, account)


def report(world: Replay) -> dict[str, Any]:
    engine = world.engine
    accounts = {
        account: _account(world, engine.broker_of(account).view(account),
                          in_use(world, account))
        for account in engine.state.accounts
    }
    copies = {copy.key: _copy(world, copy) for copy in engine.state.copies.values()}
    groups = {
        name: {
            "status": group.status.value,
            "reason": group.reason.value if group.reason else None,
            "leader": group.leader,
            "followers": list(group.followers),
        }
        for name, group in engine.state.groups.groups.items()
    }
    failures = [
        {"group": f.group, "account": f.account, "symbol": f.symbol, "reason": f.reason.value,
         "message": f.message}
        for f in engine.state.failures
    ]
    return {
        "accounts": accounts,
        "copies": copies,
        "groups": groups,
        "failures": failures,
        "errors": list(world.errors),
        "prices": {family: number(price)
                   for family, price in world.world.prices.families().items()},
        "out_of_sync": [
            {"group": d.group, "account": d.account, "symbol": d.symbol,
             "expected": number(d.expected), "actual": number(d.actual)}
            for d in engine.out_of_sync()],
        "brokers": {name: {"connected": broker.connected, "markets": sorted(broker.markets)}
                    for name, broker in world.world.brokers.items()},
    }
