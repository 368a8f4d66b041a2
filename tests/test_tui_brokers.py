"""Pilot tests of what the TUI shows of real-broker trouble (SPEC 9, issue 10):
each broker's connection, followers out of sync by how much, copy latency, and
the resync key. Each asserts on the engine's state and on the screen.

The desk is tests/fixtures/desk.json (see tests/test_tui.py): Alpha led by
LEAD-1 long 2 MNQ; APEX-11 (x1), APEX-12 (x3) at tradovate; TOP-21 (x1, crossed
to NQ), TOP-22 (x1) at topstep. Bravo is paused.
"""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from synctui.domain.clock import SteppingClock
from synctui.domain.orders import Side
from synctui.engine.views import leader_view
from synctui.scenario.model import load_scenario
from synctui.scenario.runner import Replay, build_world, run_step
from synctui.tui.app import SyncApp, make_app
from synctui.tui.screens.accounts import AccountTable
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.screens.dashboard import Dashboard
from synctui.tui.screens.groups import GroupSettingsScreen
from synctui.tui.screens.help import KEYS
from synctui.tui.widgets.follower_table import FollowerTable
from synctui.tui.widgets.leader_panel import render_leader
from tests.tui_support import DESK, SIZE, desk_app

WIDE = (180, 42)  # the latency column is the first to go when the table is narrower


def cell(app: SyncApp, account: str, column: str) -> str:
    return str(app.screen.query_one(FollowerTable).get_cell(account, column))


def header(app: SyncApp) -> str:
    return str(app.screen.query_one("#brokers", Static).render())


def leader_text(app: SyncApp) -> str:
    """The leader panel as it is drawn, in plain text."""
    group = app.desk.engine.group("Alpha")
    console = Console(width=140, file=io.StringIO(), record=True)
    console.print(render_leader(leader_view(app.desk.engine, group)))
    return console.export_text()


def position(app: SyncApp, account: str, symbol: str = "MNQ") -> Decimal:
    broker = app.desk.engine.broker_of(account)
    return broker.position(account, broker.symbols.native(symbol))


async def act(pilot: Pilot[None], command: object) -> None:
    """Run an engine command as the demo or another screen would, then repaint."""
    app = pilot.app
    assert isinstance(app, SyncApp)
    await app.desk.run(command)  # type: ignore[arg-type]
    app.refresh_dashboard()
    await pilot.pause()


async def to_row(pilot: Pilot[None], row: int) -> None:
    pilot.app.screen.query_one(FollowerTable).move_cursor(row=row, column=0)
    await pilot.pause()


# --- a. connection state --------------------------------------------------------------


async def test_the_header_shows_each_broker_and_follows_a_disconnect() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert header(app) == "tradovate ●  topstep ●"
        await act(pilot, lambda e: e.disconnect("topstep"))
        assert app.desk.engine.brokers["topstep"].connected is False
        assert header(app) == "tradovate ●  topstep ○ disconnected"
        # The log says so once, and so does a notification.
        said = [e.text for e in app.activity.entries if e.kind == "broker"]
        assert len(said) == 1 and said[0].startswith("broker topstep disconnected")
        assert any(n.title == "Broker" for n in app._notifications)
        await act(pilot, lambda e: e.reconnect("topstep"))
        assert app.desk.engine.brokers["topstep"].connected is True
        assert header(app) == "tradovate ●  topstep ●"
        said = [e.text for e in app.activity.entries if e.kind == "broker"]
        assert len(said) == 2
        assert {said[0].split(":")[0], said[1].split(":")[0]} == {
            "broker topstep disconnected", "broker topstep reconnected"}


async def test_a_disconnected_brokers_followers_are_marked_and_catch_up() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert cell(app, "TOP-22", "broker") == "topstep"
        await act(pilot, lambda e: e.disconnect("topstep"))
        assert cell(app, "TOP-21", "broker") == "topstep ○ offline"
        assert cell(app, "TOP-22", "broker") == "topstep ○ offline"
        assert cell(app, "APEX-11", "broker") == "tradovate"
        # The leader adds 1: the tradovate followers copy it, the topstep ones wait and
        # are shown out of sync by what they still lack.
        await act(pilot, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY, qty=Decimal(1)))
        assert position(app, "APEX-11") == 3 and position(app, "TOP-22") == 2
        assert cell(app, "APEX-11", "status") == "in sync"
        assert cell(app, "TOP-22", "status") == "out +1"
        assert cell(app, "TOP-21", "status") == "out +1"
        await act(pilot, lambda e: e.reconnect("topstep"))
        assert position(app, "TOP-22") == 3 and position(app, "TOP-21", "NQ") == 3
        assert cell(app, "TOP-22", "broker") == "topstep"
        assert cell(app, "TOP-22", "status") == "in sync"


async def test_every_table_that_lists_accounts_marks_a_disconnected_broker() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await act(pilot, lambda e: e.follow("Alpha", "SPARE-41", "smart_sync",
                                            Decimal(2000)))
        await act(pilot, lambda e: e.disconnect("tradovate"))
        assert not app.desk.engine.brokers["tradovate"].connected
        # The dashboard: the leader panel and the follower table.
        assert "LEAD-1 at tradovate ○ offline" in leader_text(app)
        assert cell(app, "APEX-11", "broker") == "tradovate ○ offline"
        # Accounts.
        await pilot.press("A")
        accounts = app.screen.query_one(AccountTable)
        assert str(accounts.get_cell("APEX-11", "broker")) == "tradovate ○ offline"
        assert str(accounts.get_cell("TOP-21", "broker")) == "topstep"
        await pilot.press("escape")
        # My Copies.
        await pilot.press("M")
        await pilot.pause()
        copies = app.screen.query_one("#copies", DataTable)
        assert str(copies.get_cell("Alpha/SPARE-41", "key")) == \
            "Alpha/SPARE-41  tradovate ○ offline"
        await pilot.press("escape")
        # Group settings: its leader and followers.
        app.push_screen(GroupSettingsScreen("Alpha"))
        await pilot.pause()
        table = app.screen.query_one("#settings-followers", DataTable)
        assert str(table.get_cell("APEX-12", "state")) == "tradovate ○ offline"
        assert str(table.get_cell("TOP-22", "state")) == ""
        assert "LEAD-1 (tradovate ○ offline)" in str(
            app.screen.query_one("#group-summary", Static).render())
        await pilot.press("escape")
        await act(pilot, lambda e: e.reconnect("tradovate"))
        await pilot.press("A")
        accounts = app.screen.query_one(AccountTable)
        assert str(accounts.get_cell("APEX-11", "broker")) == "tradovate"


# --- b. out of sync, from the engine's reconciliation -----------------------------------


async def test_a_ratio_change_shows_out_of_sync_with_the_difference() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_row(pilot, 0)
        await pilot.press("plus")  # APEX-11 x2: should hold 4, holds 2
        drifts = app.desk.engine.out_of_sync("Alpha")
        assert [(d.account, d.symbol, d.expected, d.actual) for d in drifts] == [
            ("APEX-11", "MNQ", 4, 2)]
        assert cell(app, "APEX-11", "status") == "out +2"
        assert cell(app, "APEX-12", "status") == "in sync"
        await to_row(pilot, 0)
        await pilot.press("minus", "minus")  # x1 is the floor: back in sync
        assert app.desk.engine.out_of_sync("Alpha") == []
        assert cell(app, "APEX-11", "status") == "in sync"


async def test_a_follower_holding_more_is_out_by_a_negative_difference() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await act(pilot, lambda e: e.place_order("APEX-12", "MNQ", Side.BUY, qty=Decimal(1)))
        assert cell(app, "APEX-12", "status") == "out -1"


async def test_a_paused_group_is_not_reconciled() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, Dashboard)
        await pilot.press("down")  # the group list: Bravo, paused
        await pilot.pause()
        screen.query_one("#groups").focus()
        await pilot.press("down")
        await pilot.pause()
        assert screen.group_name == "Bravo"
        assert app.desk.engine.out_of_sync("Bravo") == []
        assert cell(app, "FUND-31", "status") == "not active"


# --- c. copy latency -------------------------------------------------------------------


def stepping_desk_app(step: timedelta) -> SyncApp:
    """The test desk on a clock that moves `step` at every read: copies take time."""
    scenario = load_scenario(DESK)
    world = build_world(scenario, SteppingClock(step=step))
    run = Replay(world)
    for index, raw in enumerate(scenario.steps):
        run_step(run, index, raw)
    assert not run.errors, run.errors
    return make_app(world=world, demo=False, tick_seconds=None)


async def test_the_latency_column_shows_last_and_p95() -> None:
    app = stepping_desk_app(timedelta(milliseconds=3))
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        for follower in ("APEX-11", "APEX-12", "TOP-21", "TOP-22"):
            latency = app.desk.engine.copy_latency("Alpha", follower)
            assert latency is not None and latency[0] > timedelta(0)
            last, p95 = (int(v / timedelta(milliseconds=1)) for v in latency)
            assert cell(app, follower, "latency") == f"{last}ms/{p95}ms"
        await act(pilot, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY, qty=Decimal(1)))
        latency = app.desk.engine.copy_latency("Alpha", "APEX-11")
        assert latency is not None
        last, p95 = (int(v / timedelta(milliseconds=1)) for v in latency)
        assert cell(app, "APEX-11", "latency") == f"{last}ms/{p95}ms"


async def test_a_follower_never_copied_shows_no_latency() -> None:
    app = desk_app()
    async with app.run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert app.desk.engine.copy_latency("Alpha", "APEX-11") == (timedelta(0), timedelta(0))
        assert cell(app, "APEX-11", "latency") == "0ms/0ms"
        await act(pilot, lambda e: e.add_followers("Alpha", ["SPARE-41"]))
        assert app.desk.engine.copy_latency("Alpha", "SPARE-41") is None
        assert cell(app, "SPARE-41", "latency") == "-"


def test_latency_reads_in_ms_then_seconds() -> None:
    from synctui.tui.widgets.follower_table import duration

    assert [duration(timedelta(milliseconds=ms)) for ms in (0, 3, 999, 2500, 42_000, 200_000)] \
        == ["0ms", "3ms", "999ms", "2.5s", "42s", ">99s"]


# --- d. resync, confirmed with the exact orders ----------------------------------------


async def test_r_resyncs_after_listing_the_orders() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_row(pilot, 0)
        await pilot.press("plus")  # APEX-11 x2: out +2
        await pilot.press("r")
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        text = str(modal.query_one("#consequence", Static).render())
        assert "APEX-11 holds +2 MNQ and should hold +4" in text
        assert "Sends at market: buy 2 MNQ." in text
        assert position(app, "APEX-11") == 2  # nothing sent before the answer
        await pilot.press("y")
        await pilot.pause()
        assert position(app, "APEX-11") == 4
        assert app.desk.engine.out_of_sync("Alpha") == []
        assert cell(app, "APEX-11", "status") == "in sync"


async def test_resync_on_the_wrong_side_closes_first_and_cancel_sends_nothing() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await act(pilot, lambda e: e.place_order("APEX-11", "MNQ", Side.SELL, qty=Decimal(4)))
        assert cell(app, "APEX-11", "status") == "out +4"
        await to_row(pilot, 0)
        await pilot.press("r")
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        text = str(modal.query_one("#consequence", Static).render())
        assert "Sends at market: buy 2 MNQ to close, then buy 2 MNQ." in text
        await pilot.press("n")
        await pilot.pause()
        assert position(app, "APEX-11") == -2
        await pilot.press("r", "y")
        await pilot.pause()
        assert position(app, "APEX-11") == 2
        assert cell(app, "APEX-11", "status") == "in sync"


async def test_resync_in_sync_or_refused_says_so_and_asks_nothing() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await to_row(pilot, 1)
        await pilot.press("r")
        assert isinstance(app.screen, Dashboard)
        assert any(n.title == "Resync" and "APEX-12 is in sync for MNQ" in n.message
                   for n in app._notifications)
        await pilot.press("space")  # sync off: a resync is refused, with the reason
        assert not app.desk.engine.group("Alpha").setting("APEX-12", "MNQ").sync
        await pilot.press("r")
        assert isinstance(app.screen, Dashboard)
        assert any(n.title == "Resync refused" and "not synced" in n.message
                   for n in app._notifications)
        assert position(app, "APEX-12") == 6


async def test_resync_of_a_disconnected_follower_says_the_orders_wait() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await act(pilot, lambda e: e.disconnect("topstep"))
        await act(pilot, lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY, qty=Decimal(1)))
        await to_row(pilot, 3)
        await pilot.press("r")
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        text = str(modal.query_one("#consequence", Static).render())
        assert "buy 1 MNQ" in text and "topstep is disconnected" in text


def test_resync_is_in_the_help_the_readme_and_the_palette() -> None:
    assert any(key == "r" and "resync" in what for key, what in KEYS)
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| `r` | Resync" in readme


async def test_resync_is_a_palette_command() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Resync" in titles
