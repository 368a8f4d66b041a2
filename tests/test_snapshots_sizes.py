"""Issue 12, item 8: the dashboard at 80x24 (columns collapse by priority, the account
and its P&L stay, dialogs fit) and at 200x50 (the log takes the room).

Regenerate on purpose after a UI change: pytest tests/test_snapshots_sizes.py --snapshot-update
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, DataTable

from synctui.tui.screens.history import HistoryScreen
from synctui.tui.widgets.follower_table import FollowerTable
from tests.test_tui_history import db_app
from tests.tui_support import desk_app

SMALL = (80, 24)
LARGE = (200, 50)


def test_dashboard_at_80x24(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SMALL)


def test_copy_dialog_at_80x24(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SMALL, press=["s"])


def test_dashboard_at_200x50(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=LARGE)


async def _history_read(pilot: Pilot[None]) -> None:
    """H, then wait for the blotter's read on its thread."""
    await pilot.press("H")
    for _ in range(100):
        await asyncio.sleep(0.05)
        await pilot.pause()
        screen = pilot.app.screen
        if isinstance(screen, HistoryScreen) and screen.rows is not None \
                and not screen._reading:
            break


def test_history_at_80x24(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(db_app(tmp_path / "desk.db"), terminal_size=SMALL,
                        run_before=_history_read)


def test_history(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(db_app(tmp_path / "desk.db"), terminal_size=(150, 30),
                        run_before=_history_read)


async def test_at_80x24_the_account_its_p_and_l_and_status_stay_and_follow_fits() -> None:
    app = desk_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        table = app.screen.query_one(FollowerTable)
        shown = [c.key.value for c in table.columns.values()]
        assert {"account", "position", "upnl", "status"} <= set(shown), shown
        assert "latency" not in shown
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= \
            table.size.width
        await pilot.press("A")
        await pilot.pause()
        accounts = app.screen.query_one(DataTable)
        shown = [c.key.value for c in accounts.columns.values()]
        assert {"account", "equity", "today", "status"} <= set(shown), shown
        assert sum(c.get_render_width(accounts) for c in accounts.columns.values()) <= \
            accounts.size.width
        await pilot.press("escape")
        await pilot.press("s")
        await pilot.pause()
        follow = app.screen.query_one("#follow", Button)
        region = follow.region
        assert region.height > 0 and region.bottom <= SMALL[1] and region.right <= SMALL[0]
    # and wide, every column is back
    app = desk_app()
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause()
        table = app.screen.query_one(FollowerTable)
        assert len(table.columns) == 15
        log = app.screen.query_one("#log")
        assert log.region.height >= 20  # the log takes the room
