"""Snapshots of the main screens at a fixed size, with a frozen clock and the
fixed desk of tests/fixtures/desk.json: byte-stable run to run.

Regenerate on purpose after a UI change: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from textual.pilot import Pilot

from synctui.domain.orders import Side
from tests.tui_support import SIZE, desk_app


def test_dashboard(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE)


def test_cross_picker(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, press=["down", "down", "c"])


def test_confirm_modal(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, press=["F"])


def test_activity_log(snap_compare: Any) -> None:
    async def trade(pilot: Pilot[None]) -> None:
        app = pilot.app
        await app.desk.run(lambda e: e.set_ratio("Alpha", "APEX-11", "MNQ", 2))
        await app.desk.run(lambda e: e.place_order("LEAD-1", "MNQ", Side.BUY, qty=Decimal(10)))
        await app.desk.run(lambda e: e.pause("Alpha"))
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(desk_app(), terminal_size=SIZE, run_before=trade, press=["l"])
