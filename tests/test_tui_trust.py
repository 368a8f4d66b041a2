"""Pilot tests that the TUI can be trusted with what a user gives it (issue 9, item 11).

a. Names are shown as typed: an account, group or copy named like Rich markup
   (`[/x]`, `[bold]B`) is shown literally on every screen, never parsed (and
   never crashes the app).
b. New Group and Change leader work when no leader is chosen.
c. Quitting while the demo market is committing a tick always quits, and the
   database holds what memory held.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from html import unescape
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Select

import synctui.store.store as store_module
from synctui.domain.clock import SteppingClock
from synctui.domain.groups import GroupStatus
from synctui.domain.orders import Side
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.report import report
from synctui.scenario.runner import Replay
from synctui.store.session import Session
from synctui.store.store import Store
from synctui.tui.app import SyncApp, make_app
from synctui.tui.screens.copies import CopiesScreen, CopyDialog
from synctui.tui.screens.groups import (
    GroupSettingsScreen,
    GroupsScreen,
    LeaderModal,
    NewGroupModal,
)
from synctui.tui.screens.help import HelpScreen
from synctui.tui.screens.log import LogScreen
from tests.tui_support import DESK, SIZE, desk_app, played

# --- a. markup-looking names -------------------------------------------------------------

LEADER, FOLLOWER, FOLLOWER_2 = "[bold]L", "[/x]", "[red]x"
SPARE, COPIER = "[i]S", "[@click=app.quit]F"
GROUP, GROUP_2 = "[bold]B", "[/]G"
RENAMED = {"LEAD-1": LEADER, "APEX-11": FOLLOWER, "APEX-12": FOLLOWER_2,
           "SPARE-41": SPARE, "FUND-31": COPIER, "Alpha": GROUP, "Bravo": GROUP_2}


def markup_world() -> World:
    """The fixture desk with its names replaced by strings that are Rich markup."""
    text = DESK.read_text()
    for old, new in RENAMED.items():
        text = text.replace(json.dumps(old), json.dumps(new))
    return played(parse_scenario(text))


def screen_text(app: SyncApp) -> str:
    """What the terminal shows, as plain text (from the SVG screenshot)."""
    svg = app.export_screenshot()
    return unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def shown(pilot: Pilot[None], *names: str) -> None:
    await pilot.pause()
    text = screen_text(pilot.app)  # type: ignore[arg-type]
    missing = [name for name in names if name not in text]
    assert not missing, f"not shown literally on {pilot.app.screen}: {missing}"


async def test_markup_names_are_shown_literally_on_every_screen() -> None:
    world = markup_world()
    app = make_app(world=world, demo=False, tick_seconds=None)
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts shown
        # A copy whose name (group/account) is markup too, for My Copies.
        assert await app.desk.run(lambda e: e.follow(GROUP, COPIER, "smart_sync",
                                                     Decimal(5000))) is None
        app.refresh_dashboard()
        await shown(pilot, GROUP, GROUP_2, LEADER, FOLLOWER, FOLLOWER_2,
                    f"Activity: {GROUP}")
        # A failed copy's notification names the group and its reason in brackets: TOP-22
        # (1,000) cannot afford 10 more MNQ.
        assert await app.desk.run(lambda e: e.place_order(LEADER, "MNQ", Side.BUY,
                                                          qty=Decimal(10))) is None
        await shown(pilot, f"{GROUP}: TOP-22 MNQ", "[insufficient_margin]")
        app.clear_notifications()

        await pilot.press("F")  # a confirmation naming the group
        await shown(pilot, f"Flatten All in {GROUP}?")
        await pilot.press("n")
        await pilot.press("c")  # the cross picker names the follower
        await shown(pilot, f"for {FOLLOWER}")
        await pilot.press("escape")

        await pilot.press("l")
        assert isinstance(app.screen, LogScreen)
        await shown(pilot, GROUP, "[insufficient_margin]")
        app.screen.query_one(Select).expanded = True  # the filter offers every group
        await shown(pilot, GROUP_2)
        await pilot.press("escape", "escape")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await shown(pilot, "Keys")
        await pilot.press("escape")

        await pilot.press("G")
        assert isinstance(app.screen, GroupsScreen)
        await shown(pilot, GROUP, GROUP_2, LEADER)
        await pilot.press("enter")
        settings = app.screen
        assert isinstance(settings, GroupSettingsScreen)
        assert settings.group_name == GROUP
        await shown(pilot, f"Group {GROUP}", LEADER, FOLLOWER, FOLLOWER_2)
        await pilot.press("l")
        assert isinstance(app.screen, LeaderModal)
        await shown(pilot, f"Leader of {GROUP}")
        app.screen.query_one(Select).expanded = True
        await shown(pilot, SPARE)
        await pilot.press("escape", "escape")
        await pilot.press("a")
        await shown(pilot, f"Add followers to {GROUP}", SPARE)
        await pilot.press("escape")
        await pilot.press("escape")
        assert isinstance(app.screen, GroupsScreen)

        await pilot.press("n")
        modal = app.screen
        assert isinstance(modal, NewGroupModal)
        await shown(pilot, SPARE)  # the followers list
        await pilot.press(*GROUP)  # a name already taken: the rule quotes it
        await shown(pilot, f"A group named '{GROUP}' already exists.")
        modal.query_one("#group-leader", Select).expanded = True
        await shown(pilot, SPARE)
        await pilot.press("escape", "escape")
        await pilot.press("escape")

        await pilot.press("M")
        assert isinstance(app.screen, CopiesScreen)
        await shown(pilot, f"{GROUP}/{COPIER}")
        await pilot.press("enter")
        await shown(pilot, f"Copy of {GROUP} by {COPIER}")
        await pilot.press("escape")
        await pilot.press("n")
        dialog = app.screen
        assert isinstance(dialog, CopyDialog)
        dialog.query_one("#group", Select).value = GROUP
        dialog.query_one("#account", Select).value = SPARE
        await shown(pilot, f"{GROUP} (leader {LEADER}", f"{LEADER}'s open positions",
                    f"{SPARE} (", f"{SPARE} has")
        await pilot.press("escape", "escape")

        await pilot.press("A")
        await shown(pilot, LEADER, FOLLOWER, FOLLOWER_2, SPARE, COPIER)
        assert app.return_code is None  # nothing crashed, and the click-name quit nothing


def test_every_notification_of_the_tui_is_plain_text() -> None:
    """notify() takes a str and parses it as markup unless told not to; every message of
    synctui may carry a name, so every call says markup=False (widgets/text.py)."""
    tui = Path(__file__).parents[1] / "src" / "synctui" / "tui"
    calls = {(path.name, node.lineno): any(
                 k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
                 for k in node.keywords)
             for path in sorted(tui.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "notify"}
    assert len(calls) > 10
    assert all(calls.values()), [call for call, plain in calls.items() if not plain]


# --- b. no leader chosen -----------------------------------------------------------------

async def test_a_new_group_with_no_leader_is_not_configured() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G", "n")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, NewGroupModal)
        await pilot.press(*"Delta")
        await pilot.press("tab", "tab")  # past the leader: none chosen
        await pilot.press("space")  # the first free account follows
        await pilot.press("tab", "tab")
        await pilot.pause()
        assert app.focused is modal.query_one("#create", Button)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, GroupsScreen)
        delta = app.desk.engine.group("Delta")
        assert (delta.leader, delta.followers, delta.status) == (
            None, ["SPARE-41"], GroupStatus.NOT_CONFIGURED)


async def test_change_leader_with_nothing_chosen_asks_and_changes_nothing() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")
        await pilot.pause()
        app.screen.query_one(DataTable).move_cursor(row=0)  # Alpha, led by LEAD-1
        await pilot.press("enter")
        await pilot.pause()
        settings = app.screen
        assert isinstance(settings, GroupSettingsScreen)
        await pilot.press("l")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, LeaderModal)
        await pilot.press("tab", "tab")
        assert app.focused is modal.query_one("#stage", Button)
        await pilot.press("enter")  # Stage, with no account chosen
        await pilot.pause()
        assert app.screen is modal  # it stays open and says what to do
        assert "Choose an account" in str(modal.query_one("#leader-help").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is settings and settings.pending == []
        alpha = app.desk.engine.group("Alpha")
        assert (alpha.leader, alpha.status) == ("LEAD-1", GroupStatus.ACTIVE)


# --- c. quitting during a commit ---------------------------------------------------------

QUIT_WITHIN = 15.0  # seconds: far more than a quit takes, far less than a hang


async def run_until_quit(app: SyncApp, act: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    """Run the app, let `act` drive it, press q; fail if the app does not end in time."""
    async def session() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await act(pilot)
            await pilot.press("q")

    task = asyncio.create_task(session())
    done, _ = await asyncio.wait({task}, timeout=QUIT_WITHIN)
    if not done:
        task.cancel()
        raise AssertionError(f"the app did not quit within {QUIT_WITHIN}s")
    task.result()


async def stored_report(db: Path) -> dict[str, Any]:
    """The desk as the database holds it, read back by a fresh store."""
    store = await Store.open(db)
    try:
        session = await Session.start(store, SteppingClock(), _never_build)
        return report(Replay(session.world))
    finally:
        await store.close()


def _never_build() -> World:
    raise AssertionError("the database was empty")


def demo_app(db: Path) -> SyncApp:
    return make_app(db=db, scenario=DESK, clock=SteppingClock(), demo=True,
                    tick_seconds=0.005)


async def test_quit_while_a_tick_is_committing_quits_and_keeps_every_change(
        tmp_path: Path) -> None:
    """A tick's commit waits for the store's one writer (a slow read or checkpoint
    holds it) when q is pressed, and gets it only once the desk starts closing. The
    commit itself runs on the loop's thread in one go (`Store._commit`), so nothing
    cancels it halfway: what the tick changed is written before the app ends."""
    db = tmp_path / "desk.db"
    app = demo_app(db)
    waiting = asyncio.Event()
    commits: list[str] = []
    memory: dict[str, Any] = {}

    async def act(pilot: Pilot[None]) -> None:
        await pilot.pause()
        store = app.desk.session.store  # type: ignore[union-attr]
        await store._writer.acquire()  # the one writer is busy elsewhere
        real_commit, real_write = store._commit, store_module._write

        async def commit(batch: Any) -> None:
            waiting.set()
            await real_commit(batch)

        def write(db: Any, steps: Any) -> None:
            real_write(db, steps)
            commits.append("committed")

        store._commit = commit  # type: ignore[method-assign]
        store_module._write = write  # type: ignore[assignment]
        await asyncio.wait_for(waiting.wait(), QUIT_WITHIN)  # then q is pressed

    original_close = app.desk.close

    async def close() -> None:
        store = app.desk.session.store  # type: ignore[union-attr]
        store._writer.release()
        await original_close()
        memory.update(report(Replay(app.desk.world)))

    app.desk.close = close  # type: ignore[method-assign]
    real_write = store_module._write
    try:
        await run_until_quit(app, act)
    finally:
        store_module._write = real_write  # type: ignore[assignment]
    assert commits, "the waiting commit never landed"
    assert memory, "the desk was never closed"
    assert await stored_report(db) == memory


async def test_quitting_twenty_times_mid_market_always_quits_and_keeps_the_desk(
        tmp_path: Path) -> None:
    """Quit at twenty different moments of a fast market on one database: each run
    resumes from the last, and the database always matches memory at the end."""
    db = tmp_path / "desk.db"
    for run in range(20):
        app = demo_app(db)
        memory: dict[str, Any] = {}

        async def act(pilot: Pilot[None], run: int = run) -> None:
            for _ in range(run % 5 + 1):
                await pilot.pause(0.003)

        original_close = app.desk.close

        async def close(app: SyncApp = app, original: Callable[[], Awaitable[None]]
                        = original_close, memory: dict[str, Any] = memory) -> None:
            await original()
            memory.update(report(Replay(app.desk.world)))

        app.desk.close = close  # type: ignore[method-assign]
        await run_until_quit(app, act)
        assert memory, f"run {run}: the desk was never closed"
        assert await stored_report(db) == memory, f"run {run}"


async def test_the_cli_app_takes_its_start_up_objects_out_of_the_collectors_sight(
        monkeypatch: Any) -> None:
    """Issue 11: full garbage collections walked the dashboard's imports and the desk
    (50-80 ms inside a fan-out). The CLI's app freezes what start-up built once its
    first screen is up; an app a test builds does not (a test process runs many)."""
    import gc

    from synctui import cli

    ran: list[bool] = []
    monkeypatch.setattr(SyncApp, "run", lambda self, *a, **k: ran.append(self.freeze_start_up))
    assert cli.main(["--db", "/nonexistent/never-opened.db"]) == 0
    assert ran == [True]

    assert desk_app().freeze_start_up is False
    app = desk_app()
    app.freeze_start_up = True
    gc.unfreeze()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.pause()
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
