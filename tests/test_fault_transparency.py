"""SPEC 9's fault-transparency property (issue 10): a scenario run with only transient
faults (timeouts that did or did not reach the broker, fills in pieces) and with
disconnects around leader orders ends exactly as the same scenario without them:
the same positions, averages, balances, orders, copies, failures and refused steps.

The scenarios are random: three brokers with their own naming, ratio followers with
ratios, crosses and sync toggles, a Smart Sync copy, leader market, limit and stop
orders with brackets, price moves, modifies and cancels, flattens and resyncs.
`SYNCTUI_LONG=1` runs ten times as many.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from synctui.scenario.model import parse_scenario
from synctui.scenario.report import report
from synctui.scenario.runner import replay_in_memory, replay_with_store
from tests.conftest import scaled

FOLLOWERS = {"f1": "tv", "f2": "px", "f3": "tv", "f4": "px"}
TICK = {"MNQ": 25, "BTCUSDT": 1}  # price moves in these units of the tick
BASE = {"MNQ": 21000, "BTCUSDT": 50000}
SCALE = {"MNQ": "0.25", "BTCUSDT": "0.1"}


def base_desk() -> dict[str, Any]:
    return {
        "prices": dict(BASE),
        "brokers": {"lead": {"fee_per_contract": "0.5"},
                    "tv": {"naming": "tradovate", "fee_per_contract": "0.37",
                           "slippage_ticks": 1},
                    "px": {"naming": "projectx"}},
        "accounts": [{"id": "lead", "broker": "lead", "balance": 5000000},
                     *[{"id": f, "broker": b, "balance": 2000000 if f != "f4" else 1500}
                       for f, b in FOLLOWERS.items()],
                     {"id": "me", "broker": "tv", "balance": 1000000}],
        "groups": [{"name": "G", "leader": "lead", "followers": list(FOLLOWERS)}],
        "steps": [],
    }


symbols = st.sampled_from(["MNQ", "BTCUSDT"])
followers = st.sampled_from(list(FOLLOWERS))


@st.composite
def qty(draw: st.DrawFn, symbol: str) -> str:
    if symbol == "MNQ":
        return str(draw(st.integers(1, 4)))
    return f"{draw(st.integers(1, 40)) / 100:.2f}"


@st.composite
def leader_order(draw: st.DrawFn, prices: dict[str, int]) -> dict[str, Any]:
    symbol = draw(symbols)
    side = draw(st.sampled_from(["buy", "sell"]))
    kind = draw(st.sampled_from(["market", "market", "limit", "stop"]))
    step: dict[str, Any] = {"op": "order", "account": "lead", "symbol": symbol,
                            "side": side, "qty": draw(qty(symbol))}
    tick = TICK[symbol]
    here = prices[symbol]
    sign = 1 if side == "buy" else -1
    if kind != "market":
        away = draw(st.integers(1, 6)) * tick
        step["type"] = kind
        step["price"] = str(here - sign * away if kind == "limit" else here + sign * away)
        step["ref"] = f"o{draw(st.integers(0, 10**6))}"
    if draw(st.booleans()):
        entry = int(step.get("price", here))
        step["stop_loss"] = str(entry - sign * draw(st.integers(2, 8)) * tick)
        step["take_profit"] = str(entry + sign * draw(st.integers(2, 8)) * tick)
    if symbol == "BTCUSDT":
        step["price"] = step.get("price") and _scaled(step["price"], symbol)
        for key in ("stop_loss", "take_profit"):
            if key in step:
                step[key] = _scaled(step[key], symbol)
        if step.get("price") is None:
            step.pop("price")
    else:
        for key in ("price", "stop_loss", "take_profit"):
            if key in step:
                step[key] = _scaled(step[key], symbol)
    return step


def _scaled(units: str, symbol: str) -> str:
    """Prices are drawn in ticks; a tick is 0.25 (MNQ) or 0.1 (BTCUSDT)."""
    from decimal import Decimal
    return str(Decimal(units) * Decimal(SCALE[symbol]))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, Any], list[int]]:
    """A desk and its steps; the indices of leader market orders that a disconnect of
    the followers' brokers may wrap."""
    desk = base_desk()
    prices = {s: BASE[s] * (4 if s == "MNQ" else 10) for s in BASE}  # in ticks
    steps: list[dict[str, Any]] = []
    wrappable: list[int] = []
    refs: list[str] = []
    if draw(st.booleans()):
        steps.append({"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
                      "investment": str(draw(st.integers(500, 50000)))})
    for _ in range(draw(st.integers(3, 18))):
        kind = draw(st.sampled_from(["order", "order", "order", "price", "price", "ratio",
                                     "sync", "cross", "modify", "cancel", "flatten",
                                     "resync"]))
        if kind == "order":
            step = draw(leader_order({s: p for s, p in prices.items()}))
            if "ref" in step:
                refs.append(step["ref"])
            elif "price" not in step:
                wrappable.append(len(steps))
            steps.append(step)
        elif kind == "price":
            symbol = draw(symbols)
            prices[symbol] += draw(st.integers(-8, 8)) * TICK[symbol]
            steps.append({"op": "price", "symbol": symbol,
                          "price": _scaled(str(prices[symbol]), symbol)})
        elif kind == "ratio":
            steps.append({"op": "ratio", "group": "G", "follower": draw(followers),
                          "symbol": draw(symbols), "ratio": draw(st.integers(1, 4))})
        elif kind == "sync":
            steps.append({"op": "sync", "group": "G", "follower": draw(followers),
                          "symbol": draw(symbols), "on": draw(st.booleans())})
        elif kind == "cross":
            steps.append({"op": "cross", "group": "G", "follower": draw(followers),
                          "symbol": "MNQ", "to": draw(st.sampled_from(["NQ", None]))})
        elif kind in ("modify", "cancel") and refs:
            ref = draw(st.sampled_from(refs))
            step = {"op": kind, "ref": ref}
            if kind == "modify":
                step["price"] = None  # filled below from the order's own price
                original = next(s for s in steps if s.get("ref") == ref)
                symbol = original["symbol"]
                move = draw(st.integers(-2, 2)) * TICK[symbol]
                units = int(float(original["price"]) / float(SCALE[symbol])) + move
                step["price"] = _scaled(str(max(units, TICK[symbol])), symbol)
            steps.append(step)
        elif kind == "flatten":
            steps.append({"op": "flatten_position", "account": "lead",
                          "symbol": draw(symbols)})
        elif kind == "resync":
            steps.append({"op": "resync", "group": "G", "follower": draw(followers),
                          "symbol": draw(symbols)})
    desk["steps"] = steps
    return desk, wrappable


def with_faults(desk: dict[str, Any], seed: int, wrapped: list[int]) -> dict[str, Any]:
    faulty = copy.deepcopy(desk)
    for name in ("tv", "px"):
        faulty["brokers"][name]["faults"] = {
            "seed": seed + (name == "px"), "timeout": "0.4", "timeout_reached": "0.5",
            "partial": "0.5"}
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(faulty["steps"]):
        if index in wrapped:
            broker = "tv" if index % 2 else "px"
            steps += [{"op": "disconnect", "broker": broker}, step,
                      {"op": "reconnect", "broker": broker}]
        else:
            steps.append(step)
    faulty["steps"] = steps
    return faulty


def replayed(desk: dict[str, Any]) -> dict[str, Any]:
    result = report(replay_in_memory(parse_scenario(json.dumps(desk))))
    _renumber(result)
    return result


def _renumber(result: dict[str, Any]) -> None:
    """Refused steps are numbered by the run's own steps; the faulty run has the wrapping
    disconnects in between, so compare their messages in order."""
    result["errors"] = [e["message"] for e in result["errors"]]


@settings(max_examples=scaled(500, 5000), deadline=None)
@given(case=scenario(), seed=st.integers(0, 10**6), data=st.data())
def test_transient_faults_and_disconnects_around_leader_orders_change_nothing(
        case: tuple[dict[str, Any], list[int]], seed: int, data: st.DataObject) -> None:
    desk, wrappable = case
    wrapped = data.draw(st.lists(st.sampled_from(wrappable), unique=True)) if wrappable else []
    clean = replayed(desk)
    assert replayed(with_faults(desk, seed, wrapped)) == clean


@settings(max_examples=scaled(25, 250), deadline=None)
@given(case=scenario(), seed=st.integers(0, 10**6))
def test_the_same_holds_through_the_database(tmp_path_factory: Any,
                                            case: tuple[dict[str, Any], list[int]],
                                            seed: int) -> None:
    desk, wrappable = case
    folder: Path = tmp_path_factory.mktemp("ft")
    clean = report(asyncio.run(replay_with_store(parse_scenario(json.dumps(desk)),
                                                 folder / "clean.db")))
    faulty = report(asyncio.run(replay_with_store(
        parse_scenario(json.dumps(with_faults(desk, seed, wrappable))), folder / "f.db")))
    _renumber(clean)
    _renumber(faulty)
    assert faulty == clean
