"""Everything a world holds, as plain data, to compare two worlds for equality.

Used to prove that a world that went through the store comes back whole:
every account (money, risk state, breach, positions with their margin and
opening order, leverage settings, working orders field by field), every copy,
group, setting, failure, the prices, the brokers' counters, and the engine's
links that open state still needs (mirrors, bracketed copies and copy owners
of orders that still work). History the store keeps but does not load (links
of orders that are done) is left out on purpose: a restart needs open state.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from synctui.brokers.sim import SimBroker
from synctui.engine.world import World
from synctui.scenario.report import report
from synctui.scenario.runner import Replay


def dump(world: World) -> dict[str, Any]:
    state = world.engine.state
    working: set[str] = set()
    brokers: dict[str, Any] = {}
    for name, broker in world.brokers.items():
        assert isinstance(broker, SimBroker)
        accounts = {}
        for account in broker.accounts():
            acct = broker.account_state(account)
            working.update(acct.orders)
            accounts[account] = {
                "balance": acct.balance, "realized": acct.realized, "fees": acct.fees,
                "risk": asdict(acct.risk), "risk_state": asdict(acct.risk_state),
                "breached": acct.breached,
                "positions": [asdict(p) for p in acct.positions.values()],
                "settings": dict(acct.settings),
                "orders": [asdict(o) for o in acct.orders.values()],
            }
        brokers[name] = {"settings": broker.settings, "counters": broker.counters(),
                         "accounts": accounts}
    parents = {o["parent_id"] for b in brokers.values() for a in b["accounts"].values()
               for o in a["orders"] if o["parent_id"]}
    groups = {
        name: {"leader": g.leader, "status": g.status, "reason": g.reason,
               "followers": list(g.followers), "copies": sorted(g.copies),
               "settings": dict(g.settings)}
        for name, g in state.groups.groups.items()
    }
    return {
        "report": report(Replay(world)),
        "prices": {f: (world.prices.symbol_of(f), p)
                   for f, p in world.prices.families().items()},
        "brokers": brokers,
        "accounts": dict(state.accounts),
        "groups": groups,
        "group_order": list(state.groups.groups),
        "copies": {k: asdict(c) for k, c in state.copies.items()},
        "subs": dict(state.subs),
        "next_copy": state.next_copy,
        "failures": list(state.failures),
        "intents": list(state.intents),
        "mirrors": {k: v for k, v in state.mirrors.items() if k in working},
        "bracketed": {k: v for k, v in state.bracketed.items() if k in parents},
        "copy_group": {k: v for k, v in state.copy_group.items() if k in working},
        "pending_events": world.engine.pending_events,
        "custom": list(world.custom),
    }
