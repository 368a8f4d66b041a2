"""Issue 9 (trust): regression tests for data that must survive and copies that
must be right. Every database here is a real file under `tmp_path`."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from synctui.domain.clock import SteppingClock
from synctui.domain.orders import Side
from synctui.scenario.model import parse_scenario
from synctui.scenario.report import report
from synctui.scenario.runner import replay_in_memory, replay_with_store
from synctui.store.store import Store
from synctui.tui.desk import Desk
from tests.world_dump import dump


async def reopened(path: Path, clock: SteppingClock, **kwargs: object) -> Desk:
    desk = Desk(db=path, clock=clock, **kwargs)  # type: ignore[arg-type]
    await desk.open()
    return desk


async def test_the_demo_desk_comes_back_whole_after_a_restart(tmp_path: Path) -> None:
    """Item 1: the desk's own steps (Smart Sync copies and their funds, ratios,
    crosses, a pause) are saved like any later change; after the demo traded a
    while (working orders, mirrors, brackets, copies' positions) a restart
    brings back the same world, compared whole."""
    path = tmp_path / "demo.db"
    clock = SteppingClock()
    desk = await reopened(path, clock)
    world = desk.world
    assert world.engine.state.copies, "the demo desk has Smart Sync copies"
    for _ in range(160):
        await desk.tick()
        clock.advance(timedelta(seconds=0.25))
    before = dump(desk.world)
    assert before["report"]["copies"], "copies are in the report"
    assert any(a["orders"] for a in before["report"]["accounts"].values())
    await desk.close()

    again = await reopened(path, clock, demo=False)
    try:
        assert dump(again.world) == before
    finally:
        await again.close()


async def test_the_desk_built_on_a_store_equals_the_same_desk_built_in_memory(
        tmp_path: Path) -> None:
    """Item 1, at the first start: in-invested funds (BYBIT-SUB-12: 2,000) are in use,
    not gone, after the first restart."""
    path = tmp_path / "demo.db"
    clock = SteppingClock()
    desk = await reopened(path, clock, demo=False)
    first = dump(desk.world)
    await desk.close()
    again = await reopened(path, clock, demo=False)
    try:
        second = dump(again.world)
        assert second == first
        report = second["report"]
        assert report["accounts"]["BYBIT-SUB-12"]["in_use"] == 2000
        assert {key for key in report["copies"]} >= {"BTC Perps/BYBIT-SUB-12"}
    finally:
        await again.close()
    store = await Store.open(path)
    try:
        async with store.db.execute("SELECT count(*) FROM copies") as cursor:
            row = await cursor.fetchone()
        assert row is not None and row[0] == 2
    finally:
        await store.close()


async def test_a_scenario_with_a_refused_step_starts_the_app_and_lists_the_refusal(
        tmp_path: Path) -> None:
    """Item 11: `synctui --scenario FILE` with a refused step starts (as replay goes on)
    and the log lists the refusal with its step number and reason."""
    from synctui.tui.app import make_app

    scenario = tmp_path / "desk.json"
    scenario.write_text(json.dumps({
        "prices": {"MNQ": 21000},
        "accounts": [{"id": "lead", "balance": 50000}, {"id": "f1", "balance": 20000}],
        "groups": [{"name": "G", "leader": "lead", "followers": ["f1"]}],
        "steps": [{"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ",
                   "ratio": 11},
                  {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ",
                   "ratio": 2}]}))
    app = make_app(db=tmp_path / "s.db", scenario=scenario, demo=False, tick_seconds=None,
                   clock=SteppingClock())
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.return_code is None
        texts = [entry.text for entry in app.activity.entries]
        assert any("scenario step 0 refused" in t and "ratio" in t for t in texts), texts
        assert app.desk.engine.group("G").setting("f1", "MNQ").ratio == 2


# --- copies that must be right ---------------------------------------------------------

def both(spec: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Replay in memory and through a real database (each fan-out committed before it is
    sent); both must agree, and the database's is returned."""
    scenario = parse_scenario(json.dumps(spec))
    memory = report(replay_in_memory(scenario))
    stored = report(asyncio.run(replay_with_store(scenario, tmp_path / "r.db")))
    assert stored == memory
    return stored


def pos(result: dict[str, Any], account: str, symbol: str) -> int | float:
    for p in result["accounts"][account]["positions"]:
        if p["symbol"] == symbol:
            return p["qty"] if p["side"] == "long" else -p["qty"]
    return 0


def base(followers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"prices": {"MNQ": 21000},
            "accounts": [{"id": "lead", "balance": 100000}, *followers],
            "groups": [{"name": "G", "leader": "lead",
                        "followers": [f["id"] for f in followers]}], **extra}


def test_a_failed_market_entry_s_bracket_exit_is_not_copied(tmp_path: Path) -> None:
    """Item 5: f1 holds 2 from an earlier copy; its copy of the leader's bracketed entry
    fails (margin); the leader's stop loss of that entry must leave f1's 2 alone."""
    spec = base([{"id": "f1", "balance": 250}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
         "stop_loss": 20990},
        {"op": "price", "symbol": "MNQ", "price": 20990}])
    result = both(spec, tmp_path)
    assert [f["reason"] for f in result["failures"]] == ["insufficient_margin"]
    assert pos(result, "lead", "MNQ") == 2
    assert pos(result, "f1", "MNQ") == 2


def test_a_failed_working_entry_s_bracket_exit_is_not_copied(tmp_path: Path) -> None:
    """Item 5, working entries: f1's mirror fails at its fill (margin); f2 joined after
    the order was placed, so it gets the fill as a market copy, which fails too.
    Neither gets the leader's take profit of that entry."""
    spec = base([{"id": "f1", "balance": 250}, {"id": "f2", "balance": 250}],
                steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "remove_followers", "group": "G", "accounts": ["f2"]},
        {"op": "order", "account": "f2", "symbol": "MNQ", "side": "buy", "qty": 2},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
         "type": "limit", "price": 20995, "take_profit": 21010},
        {"op": "add_followers", "group": "G", "accounts": ["f2"]},
        {"op": "price", "symbol": "MNQ", "price": 20995},
        {"op": "price", "symbol": "MNQ", "price": 21010}])
    result = both(spec, tmp_path)
    assert sorted((f["account"], f["reason"]) for f in result["failures"]) == [
        ("f1", "insufficient_margin"), ("f2", "insufficient_margin")]
    assert pos(result, "lead", "MNQ") == 2
    assert pos(result, "f1", "MNQ") == 2
    assert pos(result, "f2", "MNQ") == 2


def test_closes_in_one_price_update_are_sized_on_positions_before_it(
        tmp_path: Path) -> None:
    """Item 6: in one update the leader's resting limit sell (f1 holds no mirror of it)
    fills, then the leader's take profit and f1's own copy of it. f1's share of the limit
    sell is sized on its 6 before the update, not on the 4 its own leg left."""
    spec = base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 4},
        {"op": "sync", "group": "G", "follower": "f1", "symbol": "MNQ", "on": False},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 2,
         "type": "limit", "price": 21010},
        {"op": "sync", "group": "G", "follower": "f1", "symbol": "MNQ", "on": True},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2,
         "take_profit": 21010},
        {"op": "price", "symbol": "MNQ", "price": 21010}])
    result = both(spec, tmp_path)
    assert result["failures"] == []
    assert pos(result, "lead", "MNQ") == 2
    assert pos(result, "f1", "MNQ") == 2


def test_two_exits_in_one_update_close_shares_of_the_same_starting_position(
        tmp_path: Path) -> None:
    """Item 6 with rounding in play: leader 3 -> 2 -> 1 in one update by two resting
    sells that f1 holds no mirror of. f1 holds 4 (a copy of 3 and one of its own): each
    exit closes round(4 x 1/3) = 1 of the 4 it held before the update, leaving 2; sizing
    the second on the shrunken 3 would close round(3 x 1/2) = 2 and leave 1."""
    spec = base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 3},
        {"op": "order", "account": "f1", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "pause", "group": "G"},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1,
         "type": "limit", "price": 21010},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1,
         "type": "limit", "price": 21005},
        {"op": "activate", "group": "G"},
        {"op": "price", "symbol": "MNQ", "price": 21010}])
    result = both(spec, tmp_path)
    assert result["failures"] == []
    assert pos(result, "lead", "MNQ") == 1
    assert pos(result, "f1", "MNQ") == 2


def test_a_copy_s_failed_bracketed_open_does_not_copy_that_entry_s_exit(
        tmp_path: Path) -> None:
    """Item 5 for a Smart Sync copy: its open of a bracketed entry fails (its investment
    was lowered to what its margin uses); the leader's stop loss of that entry closes
    nothing of the copy's earlier 0.1 (before: 0.1 x 0.8 / 1.8 of it)."""
    spec = {"prices": {"BTCUSDT": 50000},
            "accounts": [{"id": "lead", "balance": 10000}, {"id": "me", "balance": 5000}],
            "groups": [{"name": "G", "leader": "lead"}],
            "steps": [
                {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
                 "investment": 1000},
                {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy",
                 "margin": 5000, "leverage": 10},
                {"op": "set_investment", "group": "G", "account": "me", "investment": 510},
                {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy",
                 "qty": "0.8", "stop_loss": 49000},
                {"op": "price", "symbol": "BTCUSDT", "price": 49000}]}
    result = both(spec, tmp_path)
    assert result["errors"] == []
    assert [f["reason"] for f in result["failures"]] == ["insufficient_margin"]
    assert pos(result, "lead", "BTCUSDT") == 1
    positions = result["copies"]["G/me"]["positions"]
    assert [(p["symbol"], p["qty"]) for p in positions] == [("BTCUSDT", 0.1)]


# --- markets (SPEC 9) ------------------------------------------------------------------

def markets_desk(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"prices": {"MNQ": 21000, "BTCUSDT": 50000},
            "instruments": [{"symbol": "NQX", "family": "NQ", "tick": "0.25",
                             "max_leverage": 20, "market": "perps"}],
            "brokers": {"cme": {"markets": ["futures"]}, "bybit": {"markets": ["perps"]}},
            "accounts": [{"id": "lead", "broker": "bybit", "balance": 100000},
                         {"id": "fut", "broker": "cme", "balance": 100000},
                         {"id": "perp", "broker": "bybit", "balance": 100000},
                         {"id": "flead", "broker": "cme", "balance": 100000},
                         {"id": "fut2", "broker": "cme", "balance": 100000}],
            "groups": [{"name": "G", "leader": "lead", "followers": ["fut", "perp"]},
                       {"name": "F", "leader": "flead"}],
            "steps": steps}


def test_a_copy_to_a_broker_that_does_not_trade_the_contract_fails_unsent(
        tmp_path: Path) -> None:
    """Item 7: market copy, mirror (once per leader order: its fill adds no second
    failure), Smart Sync open; the account never holds the instrument."""
    result = both(markets_desk([
        {"op": "follow", "group": "F", "account": "perp", "mode": "smart_sync",
         "investment": 1000},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "qty": "0.1"},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "qty": "0.1",
         "type": "limit", "price": 49900},
        {"op": "price", "symbol": "BTCUSDT", "price": 49900},
        {"op": "order", "account": "flead", "symbol": "MNQ", "side": "buy", "qty": 1}]),
        tmp_path)
    assert [(f["group"], f["account"], f["symbol"], f["reason"])
            for f in result["failures"]] == [
        ("G", "fut", "BTCUSDT", "unsupported_instrument"),
        ("G", "fut", "BTCUSDT", "unsupported_instrument"),
        ("F", "perp", "MNQ", "unsupported_instrument")]
    assert result["accounts"]["fut"]["positions"] == []
    assert result["accounts"]["fut"]["orders"] == []
    assert pos(result, "perp", "BTCUSDT") == 0.2
    assert result["copies"]["F/perp"]["positions"] == []
    assert result["brokers"]["cme"] == {"connected": True, "markets": ["futures"]}


def test_an_account_s_own_steps_on_a_market_its_broker_does_not_trade_are_refused(
        tmp_path: Path) -> None:
    """Item 7: the leader's own order, leverage, margin and flatten are refused steps,
    and so is a cross to a symbol the follower's broker does not trade."""
    result = both(markets_desk([
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "set_leverage", "account": "flead", "symbol": "BTCUSDT", "leverage": 5},
        {"op": "flatten_position", "account": "lead", "symbol": "MNQ"},
        {"op": "cross", "group": "F", "follower": "fut2", "symbol": "MNQ", "to": "NQX"},
        {"op": "add_followers", "group": "F", "accounts": ["fut2"]},
        {"op": "cross", "group": "F", "follower": "fut2", "symbol": "MNQ", "to": "NQX"},
        {"op": "cross", "group": "F", "follower": "fut2", "symbol": "MNQ", "to": "NQ"},
        {"op": "cross", "group": "F", "follower": "fut2", "symbol": "MNQ", "to": None}]),
        tmp_path)
    refused = [e["step"] for e in result["errors"]]
    assert refused[:3] == [0, 1, 2]
    assert 5 in refused and 6 not in refused and 7 not in refused
    assert "does not trade" in result["errors"][0]["message"]
    assert "does not trade NQX" in next(e for e in result["errors"] if e["step"] == 5)[
        "message"]
    assert result["accounts"]["lead"]["positions"] == []


def test_markets_survive_a_restart(tmp_path: Path) -> None:
    result = both(markets_desk([
        {"op": "restart"},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "qty": "0.1"},
        {"op": "order", "account": "flead", "symbol": "BTCUSDT", "side": "buy", "qty": "1"}]),
        tmp_path)
    assert [f["reason"] for f in result["failures"]] == ["unsupported_instrument"]
    assert [e["step"] for e in result["errors"]] == [2]


async def test_the_demo_puts_every_account_on_a_broker_that_trades_its_contracts(
        tmp_path: Path) -> None:
    """Item 7: the demo's brokers list their markets (futures at Tradovate and Topstep,
    perps at Bybit); its leaders trade only what their brokers trade, so a long run
    has no `unsupported_instrument` copy and nobody holds another market's contract."""
    clock = SteppingClock()
    desk = await reopened(tmp_path / "demo.db", clock)
    try:
        for _ in range(400):
            await desk.tick()
            clock.advance(timedelta(seconds=0.25))
        engine = desk.engine
        markets = {name: broker.markets for name, broker in engine.brokers.items()}
        assert markets["bybit"] == {"perps"} and markets["tradovate"] == {"futures"}
        assert not [f for f in engine.state.failures
                    if f.reason.value == "unsupported_instrument"]
        held = 0
        for account in [*engine.state.accounts, *engine.state.subs]:
            broker = engine.broker_of(account)
            for p in broker.view(account).positions:
                held += 1
                assert broker.trades(p.symbol), (account, p.symbol)
        assert held, "the demo traded"
    finally:
        await desk.close()


# --- readings SPEC 8 settled (item 8): they stay as they are -------------------------

def test_a_cross_to_the_own_symbol_is_no_cross_and_a_same_cross_is_never_refused(
        tmp_path: Path) -> None:
    result = both(base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "cross", "group": "G", "follower": "f1", "symbol": "MNQ", "to": "NQ"},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
        {"op": "cross", "group": "G", "follower": "f1", "symbol": "MNQ", "to": "NQ"},
        {"op": "cross", "group": "G", "follower": "f1", "symbol": "MNQ", "to": "MNQ"},
        {"op": "flatten_position", "account": "f1", "symbol": "NQ"},
        {"op": "cross", "group": "G", "follower": "f1", "symbol": "MNQ", "to": "MNQ"},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1}]),
        tmp_path)
    assert [e["step"] for e in result["errors"]] == [3]  # held in NQ: flatten first
    assert pos(result, "f1", "NQ") == 0
    assert pos(result, "f1", "MNQ") == 1  # the cross to MNQ removed the cross


def test_sync_off_cancels_the_follower_s_mirrors_and_keeps_its_exits(
        tmp_path: Path) -> None:
    result = both(base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
         "stop_loss": 20900},
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
         "type": "limit", "price": 20950},
        {"op": "sync", "group": "G", "follower": "f1", "symbol": "MNQ", "on": False}]),
        tmp_path)
    orders = result["accounts"]["f1"]["orders"]
    assert [(o["type"], o["role"]) for o in orders] == [("stop", "stop_loss")]
    assert pos(result, "f1", "MNQ") == 1


def test_a_mirror_cancelled_at_the_follower_s_side_gets_the_fill_as_a_market_copy(
        tmp_path: Path) -> None:
    result = both(base([{"id": "f1", "balance": 100000}], steps=[
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2,
         "type": "limit", "price": 20950},
        {"op": "flatten_position", "account": "f1", "symbol": "MNQ"},
        {"op": "price", "symbol": "MNQ", "price": 20950}]), tmp_path)
    assert result["accounts"]["f1"]["orders"] == []
    assert pos(result, "f1", "MNQ") == 2


async def test_add_followers_and_the_copy_dialog_say_who_cannot_trade_the_group(
        tmp_path: Path) -> None:
    """Item 7 in the TUI: an account whose broker does not trade the group's contracts
    is marked in Add Followers and in the Copy dialog's account list."""
    from textual.widgets import Select, SelectionList

    from synctui.scenario.runner import build_world
    from synctui.tui.app import make_app
    from synctui.tui.screens.copies import CopyDialog
    from synctui.tui.screens.groups import AddFollowersModal, GroupSettingsScreen

    desk = markets_desk([])
    desk["accounts"].append({"id": "spare", "broker": "bybit", "balance": 5000})
    world = build_world(parse_scenario(json.dumps(desk)), SteppingClock())
    world.engine.place_order("flead", "MNQ", Side.BUY, qty=Decimal(1))
    app = make_app(world=world, demo=False, tick_seconds=None)
    async with app.run_test(size=(150, 42)) as pilot:
        app.push_screen(GroupSettingsScreen("F"))
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, AddFollowersModal)
        prompts = {str(o.prompt) for o in modal.query_one(SelectionList)._options}
        assert "spare  (cannot trade MNQ)" in prompts and "fut2" in prompts
        await pilot.press("escape")
        await pilot.pause()
        app.push_screen(CopyDialog())
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, CopyDialog)
        dialog.query_one("#group", Select).value = "F"
        await pilot.pause()
        labels = [str(label) for label, _value in
                  dialog.query_one("#account", Select)._options]
        assert any(lb.startswith("spare (bybit") and "cannot trade MNQ" in lb
                   for lb in labels), labels
        assert not any(lb.startswith("fut2") and "cannot" in lb for lb in labels), labels
