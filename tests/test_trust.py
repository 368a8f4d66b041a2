"""Issue 9 (trust): regression tests for data that must survive and copies that
must be right. Every database here is a real file under `tmp_path`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from synctui.domain.clock import SteppingClock
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
