"""Snapshots of the group management screens (issue 6): fixed desk, frozen clock.

Regenerate on purpose: pytest tests/test_snapshots_groups.py --snapshot-update
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tests.tui_support import SIZE, desk_app


@pytest.fixture(autouse=True)
def _no_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor is the classic one-cell flaky diff."""
    monkeypatch.setattr(Input, "cursor_blink", False)


def test_groups_screen(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, press=["G"])


def test_new_group_modal(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, press=["G", "n", *"Alpha"])


def test_group_settings_with_pending_edits(snap_compare: Any) -> None:
    async def stage(pilot: Pilot[None]) -> None:
        await pilot.press("G")
        await pilot.pause()
        table = pilot.app.screen.query_one(DataTable)
        table.move_cursor(row=1)  # Bravo
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(desk_app(), terminal_size=SIZE, run_before=stage, press=["d"])


def test_add_followers_modal(snap_compare: Any) -> None:
    async def open_bravo(pilot: Pilot[None]) -> None:
        await pilot.press("G")
        await pilot.pause()
        pilot.app.screen.query_one(DataTable).move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(desk_app(), terminal_size=SIZE, run_before=open_bravo,
                        press=["a", "space"])
