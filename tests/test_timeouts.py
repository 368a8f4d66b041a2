"""Timeouts on the way to the followers' brokers (issue 10, item 7b; SPEC 9, STYLE.md
"Exactly-once").

A request that times out may or may not have reached the broker; only asking the broker
for the client order id can tell. The engine asks, so a retry never makes a second
order and never loses one. Here the followers' two brokers (each with its own contract
naming) time out on 20% of the orders, half of those having reached the broker, over a
long seeded run of leader market, limit and stop orders with brackets, modifies,
cancels and price moves that trigger them, copied by ratio followers (ratios, a cross)
and a Smart Sync copy, all through a real database. Then:

- the orders table holds exactly one order per client id, and one per eligible
  follower and leg of every leader fill (and per mirror of a leader working order);
- the engine's intents are all sent: none pending, none failed, nothing waiting;
- the final state (positions, balances, orders, copies, failures, refused steps) is
  the same run's without faults.

`SYNCTUI_LONG=1` runs ten times as many steps.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from synctui.brokers.faults import BrokerTimeout, FaultModel
from synctui.domain.clock import SteppingClock
from synctui.domain.position import split_fill
from synctui.engine.engine import copy_key
from synctui.scenario.model import parse_scenario
from synctui.scenario.report import report
from synctui.scenario.runner import Replay, build_world, replay_with_store, run_step
from tests.conftest import scaled

LEADER = "lead"
FOLLOWERS = {"f1": "tv", "f2": "px", "f3": "tv", "f4": "px"}
SMART = "me"
SYMBOLS = ("MNQ", "BTCUSDT")
BASE = {"MNQ": Decimal(21000), "BTCUSDT": Decimal(50000)}
TICK = {"MNQ": Decimal("0.25"), "BTCUSDT": Decimal("0.1")}
MAX_WORKING = 6  # leader working entries at once; more and the run cancels instead
STEPS = scaled(800, 10000)
SEED = 20260110


def desk() -> dict[str, Any]:
    """A leader at its own broker; followers at `tv` (Tradovate names) and `px`
    (ProjectX names), rich enough that no copy fails; f2 and f4 copy at ratios, f3
    trades NQ for MNQ (a cross), `me` follows in Smart Sync mode (at `tv`)."""
    return {
        "prices": {s: str(p) for s, p in BASE.items()},
        "brokers": {"lead": {"fee_per_contract": "0.5"},
                    "tv": {"naming": "tradovate", "fee_per_contract": "0.37",
                           "slippage_ticks": 1},
                    "px": {"naming": "projectx"}},
        "accounts": [{"id": LEADER, "broker": "lead", "balance": 100_000_000},
                     *[{"id": f, "broker": b, "balance": 100_000_000}
                       for f, b in FOLLOWERS.items()],
                     {"id": SMART, "broker": "tv", "balance": 100_000_000}],
        "groups": [{"name": "G", "leader": LEADER, "followers": list(FOLLOWERS)}],
        "steps": [
            {"op": "ratio", "group": "G", "follower": "f2", "symbol": "MNQ", "ratio": 2},
            {"op": "ratio", "group": "G", "follower": "f4", "symbol": "BTCUSDT", "ratio": 3},
            {"op": "cross", "group": "G", "follower": "f3", "symbol": "MNQ", "to": "NQ"},
            {"op": "follow", "group": "G", "account": SMART, "mode": "smart_sync",
             "investment": 50_000_000},
        ],
    }


def with_faults(spec: dict[str, Any], timeout: str = "0.2",
                reached: str = "0.5") -> dict[str, Any]:
    faulty = copy.deepcopy(spec)
    for seed, name in enumerate(("tv", "px")):
        faulty["brokers"][name]["faults"] = {
            "seed": SEED + seed, "timeout": timeout, "timeout_reached": reached}
    return faulty


# --- a long run, each step decided from the state the steps before left -------------

def _brackets(rng: random.Random, buy: bool, symbol: str, at: Decimal) -> dict[str, str]:
    if rng.random() < 0.5:
        return {}
    loss, profit = (rng.randint(4, 30) * TICK[symbol] for _ in range(2))
    if buy:
        return {"stop_loss": str(max(at - loss, TICK[symbol])), "take_profit": str(at + profit)}
    return {"stop_loss": str(at + loss), "take_profit": str(max(at - profit, TICK[symbol]))}


def _qty(rng: random.Random, symbol: str) -> str:
    if symbol == "MNQ":
        return str(rng.randint(1, 5))
    return str(Decimal(rng.randint(1, 40)) * Decimal("0.01"))


def _next_step(run: Replay, rng: random.Random, index: int) -> dict[str, Any]:
    """A market order (with or without brackets), an opening limit or stop order (it
    rests; followers mirror it), a modify or cancel of one, or a price move that may
    trigger them. Working orders only open: a reducing one is mirrored at a quantity
    fixed when placed, which the faults do not change but which would blur the count
    of copies expected per leader fill."""
    engine = run.engine
    symbol = rng.choice(SYMBOLS)
    broker = engine.broker_of(LEADER)
    native = broker.symbols.native(symbol)
    price = run.world.prices.get(symbol)
    roll = rng.random()
    order = {"op": "order", "account": LEADER, "symbol": symbol, "qty": _qty(rng, symbol)}
    if roll < 0.35:
        buy = rng.random() < 0.5
        return {**order, "side": "buy" if buy else "sell", **_brackets(rng, buy, symbol, price)}
    refs = {order_id: ref for ref, order_id in run.refs.items()}
    working = [o for o in broker.working_orders(LEADER, native) if o.id in refs]
    if roll < 0.55 and len(working) < MAX_WORKING:
        held = broker.position(LEADER, native)
        buy = rng.random() < 0.5 if held == 0 else held > 0
        kind = rng.choice(("limit", "stop"))
        away = rng.randint(1, 10) * TICK[symbol]
        below = buy == (kind == "limit")  # rests, never marketable
        level = max(price - away, TICK[symbol]) if below else price + away
        return {**order, "side": "buy" if buy else "sell", "type": kind, "price": str(level),
                "ref": f"w{index}", **_brackets(rng, buy, symbol, level)}
    if roll < 0.7 and working:
        target = rng.choice(working)
        assert target.price is not None
        if rng.random() < 0.4 or len(working) >= MAX_WORKING:
            return {"op": "cancel", "ref": refs[target.id]}
        moved = target.price + rng.randint(-6, 6) * TICK[symbol]
        return {"op": "modify", "ref": refs[target.id], "price": str(max(moved, TICK[symbol]))}
    drift = -1 if price > BASE[symbol] else 1  # pulled back towards the base price
    steps = rng.randint(-16, 16) + drift * rng.randint(0, 4)
    return {"op": "price", "symbol": symbol,
            "price": str(max(TICK[symbol], price + steps * TICK[symbol]))}


def long_run(steps: int, seed: int) -> dict[str, Any]:
    """The desk with `steps` more steps, decided one by one on an in-memory replay of
    the steps before (without faults)."""
    spec = desk()
    scenario = parse_scenario(json.dumps(spec))
    run = Replay(build_world(scenario, SteppingClock()))
    for index, raw in enumerate(spec["steps"]):
        assert run_step(run, index, raw) is None
    rng = random.Random(seed)
    for index in range(len(spec["steps"]), len(spec["steps"]) + steps):
        raw = _next_step(run, rng, index)
        assert run_step(run, index, raw) is None
        spec["steps"].append(raw)
    return spec


# --- what the database shows ---------------------------------------------------------

@dataclass
class Copies:
    """What a finished run's database holds about its copies."""

    leader_fills: int = 0
    intents: Counter[str] = field(default_factory=Counter)  # by status
    keys: set[str] = field(default_factory=set)  # client ids of the follower orders
    pending: int = 0  # pending events and waiting copies
    failures: list[tuple[str, str]] = field(default_factory=list)
    smart: int = 0  # orders of the Smart Sync copy
    kinds: Counter[str] = field(default_factory=Counter)  # leader fills by order kind
    mirrors: int = 0  # mirrors of leader working orders
    problems: list[str] = field(default_factory=list)


def copies_in(db: Path) -> Copies:
    """Check, by client id, that every leader fill has exactly one order per eligible
    follower and leg. Every follower here is synced for every symbol of the active
    group all along, so a leader market fill is copied to each of them once per leg
    (close, open) it has; a fill of a leader working order or bracket leg is not copied
    again (the follower's mirror or bracket filled at its own broker; SPEC 4), while a
    leader working order gets one mirror per follower. The Smart Sync copy gets one
    order per opening leg of every leader fill, and at most one per closing leg (it is
    sized on its own position). Nothing else has a client id."""
    seen = Copies()
    with sqlite3.connect(db) as conn:
        def rows(sql: str, *params: object) -> list[tuple[Any, ...]]:
            return list(conn.execute(sql, params))

        orders: dict[str, list[tuple[str, str, str]]] = {}
        for client_id, order_id, account, status in rows(
                "SELECT client_id, id, account, status FROM orders "
                "WHERE client_id IS NOT NULL"):
            orders.setdefault(client_id, []).append((order_id, account, status))
        seen.keys = set(orders)
        intents = {key: (status, order_id) for key, status, order_id in rows(
            "SELECT key, status, order_id FROM intents")}
        seen.intents = Counter(status for status, _ in intents.values())
        seen.pending = rows("SELECT (SELECT count(*) FROM pending_events) + "
                            "(SELECT count(*) FROM waiting)")[0][0]
        seen.failures = rows("SELECT account, reason FROM failures")
        (sub,), = rows("SELECT sub FROM copies WHERE account = ?", SMART)
        expected: set[str] = set()

        def one_order(key: str, follower: str, what: str) -> None:
            expected.add(key)
            status, order_id = intents.get(key, ("missing", None))
            got = orders.get(key, [])
            if status != "sent" or [(o[0], o[1]) for o in got] != [(order_id, follower)]:
                seen.problems.append(f"{what}, {follower}: intent {status} ({order_id}), "
                                     f"orders with its client id: {got}")

        leader_fills = rows(
            "SELECT f.id, f.symbol, f.side, f.qty, f.position_before, o.type, o.parent_id "
            "FROM fills f LEFT JOIN orders o ON o.id = f.order_id WHERE f.account = ? "
            "ORDER BY f.rowid", LEADER)
        seen.leader_fills = len(leader_fills)
        for fill_id, symbol, side, qty, before, kind, parent in leader_fills:
            signed = Decimal(qty) if side == "buy" else -Decimal(qty)
            closed, opened = split_fill(Decimal(before), signed)
            what = f"leader fill {fill_id} ({side} {qty} {symbol} {kind})"
            mirrored = parent is not None or kind in ("limit", "stop")
            seen.kinds["bracket" if parent is not None else kind or "none"] += 1
            for leg, size in (("close", closed), ("open", opened)):
                for follower in [] if mirrored or not size else FOLLOWERS:
                    one_order(copy_key(fill_id, follower, leg), follower, f"{what} {leg}")
                key = copy_key(fill_id, sub, leg)
                if (leg == "open" and size) or key in intents:
                    one_order(key, sub, f"{what} {leg}")
                    seen.smart += 1
        for order_id, symbol, status in rows(
                "SELECT id, symbol, status FROM orders WHERE account = ? "
                "AND type != 'market' AND parent_id IS NULL", LEADER):
            for follower in FOLLOWERS:
                one_order(copy_key(order_id, follower, "open"), follower,
                          f"leader {status} order {order_id} ({symbol}), mirror")
                seen.mirrors += 1
        for key in sorted((set(intents) | set(orders)) - expected)[:5]:
            seen.problems.append(f"client id {key} belongs to no leader fill or order: "
                                 f"{intents.get(key)} {orders.get(key)}")
    return seen


# --- runs ----------------------------------------------------------------------------

@dataclass
class Timeouts:
    decided: int = 0
    reached: int = 0


def count_timeouts(monkeypatch: pytest.MonkeyPatch) -> Timeouts:
    """Count the timeouts the fault models decide; they decide exactly as before."""
    counted = Timeouts()
    decide = FaultModel.times_out

    def times_out(self: FaultModel) -> BrokerTimeout | None:
        timeout = decide(self)
        if timeout is not None:
            counted.decided += 1
            counted.reached += timeout.reached
        return timeout

    monkeypatch.setattr(FaultModel, "times_out", times_out)
    return counted


def through_database(spec: dict[str, Any], db: Path) -> dict[str, Any]:
    return report(asyncio.run(replay_with_store(parse_scenario(json.dumps(spec)), db)))


def assert_exactly_once(seen: Copies, clean: Copies) -> None:
    assert not seen.problems, (f"{len(seen.problems)} problems over {seen.leader_fills} "
                               "leader fills; first ones:\n" + "\n".join(seen.problems[:10]))
    assert seen.intents.keys() == {"sent"}, seen.intents  # none pending, none failed
    assert seen.pending == 0 and seen.failures == []
    # the very orders of the run without faults, by client id
    assert seen.keys == clean.keys and seen.intents == clean.intents
    assert seen.leader_fills == clean.leader_fills


def test_a_long_run_with_timeouts_makes_one_order_per_copy_and_ends_as_without(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = long_run(STEPS, SEED)
    clean = through_database(spec, tmp_path / "clean.db")
    timeouts = count_timeouts(monkeypatch)
    faulty = through_database(with_faults(spec), tmp_path / "faulty.db")

    seen, without = copies_in(tmp_path / "faulty.db"), copies_in(tmp_path / "clean.db")
    assert not without.problems, without.problems[:10]  # the check holds without faults
    # the run met its faults: about 20% of the follower orders timed out, both kinds
    orders = sum(seen.intents.values())
    assert orders > STEPS, (orders, STEPS)
    assert 0.1 * orders < timeouts.decided < 0.3 * orders, (timeouts, orders)
    assert 0.3 * timeouts.decided < timeouts.reached < 0.7 * timeouts.decided, timeouts
    kinds = Counter(s["op"] if s["op"] != "order" else s.get("type", "market")
                    for s in spec["steps"])
    assert min(kinds[k] for k in ("market", "limit", "stop", "modify", "cancel")) > 0, kinds
    assert_exactly_once(seen, without)
    assert seen.smart > 0 and seen.mirrors > 0, (seen.smart, seen.mirrors)
    assert min(seen.kinds[k] for k in ("market", "limit", "stop", "bracket")) > 0, seen.kinds
    assert faulty == clean
    print(f"\n{STEPS} steps {dict(kinds)}: {seen.leader_fills} leader fills "
          f"{dict(seen.kinds)}, "
          f"{orders} follower orders ({seen.mirrors} mirrors, {seen.smart} Smart Sync), "
          f"{timeouts.decided} timeouts ({timeouts.reached} reached the broker)")


@pytest.mark.parametrize("reached", ["0", "1"], ids=["never-reached", "always-reached"])
def test_every_order_timing_out_changes_nothing(tmp_path: Path, reached: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The extremes: every follower order's first request times out, and the broker
    never (the retry must send it) or always (the retry must find it) got it."""
    spec = long_run(scaled(40, 400), SEED + 1)
    clean = through_database(spec, tmp_path / "clean.db")
    timeouts = count_timeouts(monkeypatch)
    faulty = through_database(with_faults(spec, timeout="1", reached=reached),
                              tmp_path / "faulty.db")
    seen = copies_in(tmp_path / "faulty.db")
    assert timeouts.decided >= sum(seen.intents.values()) > 0  # every order, at least
    assert timeouts.reached == (timeouts.decided if reached == "1" else 0)
    assert_exactly_once(seen, copies_in(tmp_path / "clean.db"))
    assert faulty == clean
