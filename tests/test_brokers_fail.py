"""SPEC 9: brokers that fail (seeded faults) and disconnect (waiting copies, signal
expiry, held reports, group actions that wait). Each scenario is replayed in memory
and through a real database, and both must agree."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import replay_with_store
from synctui.store.store import Store
from tests.test_trust import both, pos


def desk(steps: list[dict[str, Any]], faults: dict[str, Any] | None = None,
         expiry: int | None = None) -> dict[str, Any]:
    """A leader at `cme`; f1 and a Smart Sync follower at `tv` (the broker that fails);
    f2 at `cme`. Fees, so that pieces of a fill carry fees of their own."""
    group: dict[str, Any] = {"name": "G", "leader": "lead", "followers": ["f1", "f2"]}
    if expiry is not None:
        group["signal_expiry"] = expiry
    return {"prices": {"MNQ": 21000, "BTCUSDT": 50000},
            "brokers": {"cme": {}, "tv": {"faults": faults or {}, "fee_per_contract": "0.37"}},
            "accounts": [{"id": "lead", "broker": "cme", "balance": 100000},
                         {"id": "f1", "broker": "tv", "balance": 100000},
                         {"id": "f2", "broker": "cme", "balance": 100000},
                         {"id": "me", "broker": "tv", "balance": 100000}],
            "groups": [group], "steps": steps}


def buy(qty: int | str, symbol: str = "MNQ", **more: Any) -> dict[str, Any]:
    return {"op": "order", "account": "lead", "symbol": symbol, "side": "buy", "qty": qty,
            **more}


def sell(qty: int | str, symbol: str = "MNQ", **more: Any) -> dict[str, Any]:
    return {"op": "order", "account": "lead", "symbol": symbol, "side": "sell", "qty": qty,
            **more}


DISCONNECT = {"op": "disconnect", "broker": "tv"}
RECONNECT = {"op": "reconnect", "broker": "tv"}


def test_copies_wait_for_a_disconnected_broker_and_go_in_order_at_the_price_then(
        tmp_path: Path) -> None:
    result = both(desk([
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 10000},
        DISCONNECT, buy(4), sell(1), {"op": "price", "symbol": "MNQ", "price": 21010}]),
        tmp_path / "a")
    assert result["brokers"]["tv"]["connected"] is False
    assert pos(result, "f1", "MNQ") == 0 and pos(result, "f2", "MNQ") == 3
    assert result["copies"]["G/me"]["positions"] == []
    assert [d["account"] for d in result["out_of_sync"]] == ["f1"]
    result = both(desk([
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 10000},
        DISCONNECT, buy(4), sell(1), {"op": "price", "symbol": "MNQ", "price": 21010},
        RECONNECT]), tmp_path / "b")
    assert result["brokers"]["tv"]["connected"] is True
    assert pos(result, "f1", "MNQ") == 3 and result["out_of_sync"] == []
    f1 = result["accounts"]["f1"]
    assert f1["positions"][0]["avg_price"] == 21010  # at the price on reconnect
    assert [p["qty"] for p in result["copies"]["G/me"]["positions"]] != []
    assert result["failures"] == []


def test_a_waiting_copy_older_than_the_signal_expiry_fails_expired(tmp_path: Path) -> None:
    result = both(desk([DISCONNECT, buy(1), {"op": "wait", "seconds": 31}, buy(1),
                        {"op": "wait", "seconds": 10}, RECONNECT], expiry=30), tmp_path)
    assert [(f["account"], f["reason"]) for f in result["failures"]] == [("f1", "expired")]
    assert pos(result, "f1", "MNQ") == 1 and pos(result, "f2", "MNQ") == 2


def test_a_mirror_behind_a_waiting_copy_waits_in_turn_and_expires_like_it(
        tmp_path: Path) -> None:
    """A leader order rested while f1's copy of a fill waits for its broker: the mirror
    waits behind it (placed first, it would jump the queue) and goes after it on
    reconnect, sized then; past the signal expiry both fail `expired`."""
    steps = [DISCONNECT, buy(2), sell(1, type="limit", price=21100), RECONNECT]
    result = both(desk(steps, expiry=30), tmp_path / "a")
    assert pos(result, "f1", "MNQ") == 2 and result["failures"] == []
    assert [(o["side"], o["qty"], o["price"]) for o in
            result["accounts"]["f1"]["orders"]] == [("sell", 1, 21100)]
    steps.insert(3, {"op": "wait", "seconds": 31})
    result = both(desk(steps, expiry=30), tmp_path / "b")
    assert [(f["account"], f["reason"]) for f in result["failures"]] == [
        ("f1", "expired"), ("f1", "expired")]
    assert pos(result, "f1", "MNQ") == 0 and result["accounts"]["f1"]["orders"] == []


def test_a_leader_order_that_fills_while_its_mirror_waits_is_not_copied_again(
        tmp_path: Path) -> None:
    """SPEC 8: a follower whose mirror is still waiting for its broker gets no separate
    market copy of the leader's fill. On reconnect the mirror is placed as the order
    was, sized against the leader's position at its placement, and fills at the
    follower's broker: f1 ends with half, like the leader (a second copy of the fill
    would have closed it all)."""
    result = both(desk([DISCONNECT, buy(2), sell(1, type="limit", price=21100),
                        {"op": "price", "symbol": "MNQ", "price": 21100},
                        {"op": "restart"}, RECONNECT]), tmp_path)
    assert pos(result, "lead", "MNQ") == 1 and pos(result, "f2", "MNQ") == 1
    assert pos(result, "f1", "MNQ") == 1 and result["accounts"]["f1"]["orders"] == []
    assert result["failures"] == [] and result["out_of_sync"] == []


def test_own_steps_on_a_disconnected_broker_are_refused_and_repeats_are_no_ops(
        tmp_path: Path) -> None:
    result = both(desk([
        DISCONNECT, DISCONNECT,
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "set_leverage", "account": "f1", "symbol": "BTCUSDT", "leverage": 5},
        {"op": "flatten_position", "account": "f1", "symbol": "MNQ"},
        {"op": "disconnect", "broker": "nowhere"},
        RECONNECT, RECONNECT,
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "buy", "qty": 1}]), tmp_path)
    assert [e["step"] for e in result["errors"]] == [2, 3, 4, 5]
    assert "disconnected" in result["errors"][0]["message"]
    assert pos(result, "f1", "MNQ") == 1


def test_the_market_goes_on_at_a_disconnected_broker_and_its_reports_come_on_reconnect(
        tmp_path: Path) -> None:
    """The leader's broker is the one away: its resting order fills meanwhile; the fill
    is reported, and copied, on reconnect."""
    spec = desk([
        buy(1), {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2,
                 "type": "limit", "price": 20990},
        {"op": "disconnect", "broker": "cme"},
        {"op": "price", "symbol": "MNQ", "price": 20990}])
    result = both(spec, tmp_path / "a")
    assert pos(result, "lead", "MNQ") == 3
    assert pos(result, "f1", "MNQ") == 3  # its own mirror filled at its broker
    spec["steps"].append({"op": "reconnect", "broker": "cme"})
    result = both(spec, tmp_path / "b")
    assert pos(result, "f2", "MNQ") == 3 and result["out_of_sync"] == []


def test_a_leader_fill_reported_on_reconnect_is_copied_then(tmp_path: Path) -> None:
    """The leader's stop fills while its broker is away; followers that hold no mirror
    (added after it was placed) get it as a market copy when the fill is reported."""
    spec = desk([
        {"op": "remove_followers", "group": "G", "accounts": ["f1"]},
        buy(1), {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
                 "type": "stop", "price": 21010},
        {"op": "add_followers", "group": "G", "accounts": ["f1"]},
        {"op": "disconnect", "broker": "cme"},
        {"op": "price", "symbol": "MNQ", "price": 21010},
        {"op": "price", "symbol": "MNQ", "price": 21020},
        {"op": "reconnect", "broker": "cme"}])
    result = both(spec, tmp_path)
    assert pos(result, "lead", "MNQ") == 2
    assert pos(result, "f1", "MNQ") == 1
    assert result["accounts"]["f1"]["positions"][0]["avg_price"] == 21020


def test_group_actions_wait_for_a_disconnected_member(tmp_path: Path) -> None:
    spec = desk([buy(2), DISCONNECT, {"op": "flatten_all", "group": "G"}])
    result = both(spec, tmp_path / "a")
    assert pos(result, "lead", "MNQ") == 0 and pos(result, "f1", "MNQ") == 2
    spec["steps"].append(RECONNECT)
    result = both(spec, tmp_path / "b")
    assert pos(result, "f1", "MNQ") == 0


def test_a_broker_that_rejects_every_follower_order(tmp_path: Path) -> None:
    result = both(desk([buy(1), sell(1)], faults={"reject": 1}), tmp_path)
    assert [(f["account"], f["reason"]) for f in result["failures"]] == [("f1", "rejected")]
    assert result["errors"] == []
    assert pos(result, "f2", "MNQ") == 0 and pos(result, "f1", "MNQ") == 0


def test_timeouts_that_did_or_did_not_reach_the_broker_make_exactly_one_order(
        tmp_path: Path) -> None:
    steps = [buy(3), {"op": "price", "symbol": "MNQ", "price": 21005}, sell(1),
             buy("0.5", "BTCUSDT"), sell("0.2", "BTCUSDT"), sell(2)]
    clean = both(desk(steps), tmp_path / "clean")
    for reached in (0, 1):
        faulty = both(desk(steps, faults={"seed": 3, "timeout": 1,
                                          "timeout_reached": reached}),
                      tmp_path / f"t{reached}")
        assert faulty == clean
    db = tmp_path / "orders.db"
    asyncio.run(replay_with_store(parse_scenario(json.dumps(
        desk(steps, faults={"timeout": 1, "timeout_reached": 1}))), db))
    rows = asyncio.run(_rows(db, "SELECT count(*), count(DISTINCT client_id) FROM orders "
                                 "WHERE account = 'f1'"))
    assert rows[0][0] == rows[0][1] == 5


def test_partial_fills_arrive_in_pieces_and_end_as_one(tmp_path: Path) -> None:
    steps = [buy(4), buy("0.9", "BTCUSDT"), {"op": "price", "symbol": "MNQ", "price": 21010},
             {"op": "price", "symbol": "BTCUSDT", "price": 50100}, sell(3),
             sell("0.4", "BTCUSDT")]
    clean = both(desk(steps), tmp_path / "clean")
    db = tmp_path / "partial.db"
    asyncio.run(replay_with_store(parse_scenario(json.dumps(
        desk(steps, faults={"seed": 1, "partial": 1}))), db))
    assert both(desk(steps, faults={"seed": 1, "partial": 1}), tmp_path / "p") == clean
    counts = asyncio.run(_rows(db, "SELECT order_id, count(*), sum(qty) FROM fills "
                                   "WHERE account = 'f1' GROUP BY order_id"))
    assert all(2 <= n <= 4 for _order, n, _qty in counts), counts
    whole = tmp_path / "whole.db"
    asyncio.run(replay_with_store(parse_scenario(json.dumps(desk(steps))), whole))
    money = "SELECT realized, fee FROM fills WHERE account = 'f1'"
    for column in (0, 1):  # the pieces' realized PnL and fees add up to the whole's
        assert (sum(Decimal(r[column]) for r in asyncio.run(_rows(db, money)))
                == sum(Decimal(r[column]) for r in asyncio.run(_rows(whole, money))))


def test_what_waits_survives_a_restart(tmp_path: Path) -> None:
    result = both(desk([
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 10000},
        DISCONNECT, buy(2), {"op": "order", "account": "lead", "symbol": "MNQ",
                             "side": "buy", "qty": 1, "type": "limit", "price": 20990},
        {"op": "restart"}, {"op": "wait", "seconds": 5}, {"op": "restart"}, RECONNECT],
        expiry=60), tmp_path)
    assert result["failures"] == []
    assert pos(result, "f1", "MNQ") == 2
    assert [o["price"] for o in result["accounts"]["f1"]["orders"]] == [20990]
    assert result["copies"]["G/me"]["positions"] != []


async def _rows(db: Path, sql: str) -> list[Any]:
    store = await Store.open(db)
    try:
        async with store.db.execute(sql) as cursor:
            return list(await cursor.fetchall())
    finally:
        await store.close()


def test_a_resync_plan_says_which_orders_it_will_send() -> None:
    from synctui.domain.orders import Side
    from synctui.scenario.runner import replay_in_memory

    run = replay_in_memory(parse_scenario(json.dumps(desk([
        buy(2), {"op": "order", "account": "f1", "symbol": "MNQ", "side": "sell", "qty": 3},
        {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 2}]))))
    plan = run.engine.resync_plan("G", "f1", "MNQ")
    assert (plan.expected, plan.actual) == (4, -1)
    assert plan.orders == ((Side.BUY, 1, True), (Side.BUY, 4, False))
    assert run.engine.resync_plan("G", "f2", "MNQ").orders == ()
    run.engine.resync("G", "f1", "MNQ")
    assert run.engine.out_of_sync() == []


def test_copy_latency_is_measured_from_the_leader_event_to_the_acknowledgement() -> None:
    from datetime import timedelta

    from synctui.domain.clock import SteppingClock
    from synctui.scenario.runner import build_world

    clock = SteppingClock(step=timedelta(milliseconds=1))
    world = build_world(parse_scenario(json.dumps(desk([]))), clock)
    assert world.engine.copy_latency("G", "f1") is None
    from decimal import Decimal as D

    from synctui.domain.orders import Side
    for _ in range(3):
        world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    last, p95 = world.engine.copy_latency("G", "f1") or (None, None)
    assert last is not None and p95 is not None
    assert timedelta(0) < last <= p95 < timedelta(seconds=1)


def test_a_late_broker_answers_later_and_delays_no_other(tmp_path: Path) -> None:
    """tv answers after 2 s: its follower's copy is in flight until then (in the
    meantime f1 holds nothing, and the copy is not sent twice); f2 at cme has its
    copy at once."""
    spec = desk([buy(2), {"op": "price", "symbol": "MNQ", "price": 21005}])
    spec["brokers"]["tv"]["ack_delay"] = 2
    result = both(spec, tmp_path / "a")
    assert pos(result, "f2", "MNQ") == 2 and pos(result, "f1", "MNQ") == 0
    spec["steps"] += [{"op": "wait", "seconds": 1}, {"op": "wait", "seconds": 1}]
    result = both(spec, tmp_path / "b")
    assert pos(result, "f1", "MNQ") == 2 and result["failures"] == []
    assert result["accounts"]["f1"]["positions"][0]["avg_price"] == 21005
    assert result["out_of_sync"] == []


def test_a_close_waits_for_a_late_broker_s_answer_and_is_sized_on_what_it_made(
        tmp_path: Path) -> None:
    """tv answers after 2 s. The leader halves its position before f1's opening copy is
    answered: sized then, f1's close would see it flat and send nothing (f1 would end
    holding the whole). The close waits for the answer and halves what it made."""
    spec = desk([buy(2), sell(1)])
    spec["brokers"]["tv"]["ack_delay"] = 2
    result = both(spec, tmp_path / "a")
    assert pos(result, "f2", "MNQ") == 1 and pos(result, "f1", "MNQ") == 0
    spec["steps"] += [{"op": "wait", "seconds": 1}] * 2  # the open is answered
    result = both(spec, tmp_path / "b")
    assert pos(result, "f1", "MNQ") == 2  # and the close sent, answered 2 s later
    spec["steps"] += [{"op": "wait", "seconds": 1}] * 2
    result = both(spec, tmp_path / "c")
    assert pos(result, "f1", "MNQ") == 1 and pos(result, "f2", "MNQ") == 1
    assert result["failures"] == [] and result["out_of_sync"] == []


def test_a_closing_mirror_waits_for_a_late_broker_s_answer_and_is_sized_on_what_it_made(
        tmp_path: Path) -> None:
    """tv answers after 2 s. f1 holds 2 and its copy of the leader's next 2 is on its way
    when the leader rests a limit sell of half its 4. Sized then, f1's mirror would halve
    the 2 it shows and leave it 3 when the limit fills. The mirror waits for the answer
    and halves the 4 it made."""
    spec = desk([buy(2), {"op": "wait", "seconds": 1}, {"op": "wait", "seconds": 1}, buy(2),
                 sell(2, type="limit", price=21100)])
    spec["brokers"]["tv"]["ack_delay"] = 2
    spec["steps"] += [{"op": "wait", "seconds": 1}] * 2  # the second open is answered
    spec["steps"] += [{"op": "wait", "seconds": 1}] * 2  # and the mirror it waited for
    result = both(spec, tmp_path / "a")
    assert pos(result, "f1", "MNQ") == 4
    assert [(o["side"], o["qty"], o["price"]) for o in
            result["accounts"]["f1"]["orders"]] == [("sell", 2, 21100)]
    spec["steps"] += [{"op": "price", "symbol": "MNQ", "price": 21100}]
    result = both(spec, tmp_path / "b")
    assert pos(result, "lead", "MNQ") == 2
    assert pos(result, "f1", "MNQ") == 2 and pos(result, "f2", "MNQ") == 2
    assert result["failures"] == [] and result["out_of_sync"] == []


def test_a_copy_that_waited_counts_its_wait_in_its_latency() -> None:
    from datetime import timedelta

    from synctui.domain.clock import SteppingClock
    from synctui.scenario.model import parse_step
    from synctui.scenario.runner import Replay, apply_step, build_world

    clock = SteppingClock()
    run = Replay(build_world(parse_scenario(json.dumps(desk([]))), clock))
    for raw in (DISCONNECT, buy(1), {"op": "wait", "seconds": 7}, RECONNECT):
        apply_step(run, parse_step(raw))
    last, _p95 = run.engine.copy_latency("G", "f1") or (None, None)
    assert last == timedelta(seconds=7)
    assert run.engine.copy_latency("G", "f2") == (timedelta(0), timedelta(0))
