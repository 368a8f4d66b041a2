"""Snapshot of the Accounts screen on the fixed desk of tests/fixtures/desk.json.

Regenerate on purpose after a UI change:
pytest tests/test_snapshots_accounts.py --snapshot-update
"""

from __future__ import annotations

from typing import Any

from tests.tui_support import SIZE, desk_app


def test_accounts_screen(snap_compare: Any) -> None:
    assert snap_compare(desk_app(), terminal_size=SIZE, press=["A"])
