"""Snapshots of the Smart Sync screens at a fixed size on the fixed desk of
tests/fixtures/desk.json: My Copies, the Copy dialog, a copy's details.

Regenerate on purpose after a UI change:
pytest tests/test_snapshots_copies.py --snapshot-update
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from tests.tui_support import SIZE, desk_app


@pytest.fixture(autouse=True)
def _steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor would make the frame depend on timing."""
    monkeypatch.setattr(Input, "cursor_blink", False)


async def _one_copy(pilot: Pilot[None]) -> None:
    """Open My Copies (its history is recorded from then on), follow Alpha with
    SPARE-41 copying LEAD-1's open 2 MNQ, then raise the investment."""
    app = pilot.app
    await pilot.press("M")
    assert await app.desk.run(lambda e: e.follow(  # type: ignore[attr-defined]
        "Alpha", "SPARE-41", "smart_sync", Decimal(10000), copy_open_positions=True,
        stop_loss=Decimal(500))) is None
    assert await app.desk.run(  # type: ignore[attr-defined]
        lambda e: e.set_investment("Alpha", "SPARE-41", Decimal(12000))) is None
    app.clear_notifications()
    await pilot.pause()


def test_my_copies(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, run_before=_one_copy)


def test_copy_dialog(snap_compare: Any) -> None:
    async def fill(pilot: Pilot[None]) -> None:
        await pilot.press("M", "n")
        await pilot.pause()
        pilot.app.screen.query_one("#account", Select).value = "SPARE-41"
        await pilot.pause()
        await pilot.click("#investment")
        await pilot.press(*"30000")
        await pilot.pause()

    assert snap_compare(desk_app(), terminal_size=SIZE, run_before=fill)


def test_copy_details(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, run_before=_one_copy, press=["enter"])
