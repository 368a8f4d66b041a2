"""The follower table of one group and contract.

Updated by row key, cell by cell, only where a value changed (as memray's
and dolphie's live tables do): no clear() on a tick, so no flicker and the
cursor stays where the trader left it. One click on a control cell acts.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from synctui.engine.views import FollowerRow, FollowerStatus
from synctui.tui.widgets.format import money, price, qty

COLUMNS: tuple[tuple[str, str], ...] = (
    ("account", "Account"),
    ("broker", "Broker"),
    ("sync", "Synced 0/0"),
    ("minus", " "),
    ("ratio", "Ratio"),
    ("plus", " "),
    ("cross", "Cross"),
    ("position", "Position"),
    ("avg", "Avg"),
    ("upnl", "uPnL"),
    ("rpnl", "rPnL"),
    ("status", "Status"),
    ("flatten", " "),
)
STATUS_STYLE = {
    FollowerStatus.IN_SYNC: "green",
    FollowerStatus.OUT_OF_SYNC: "yellow",
    FollowerStatus.FAILED: "bold red",
    FollowerStatus.BREACHED: "reverse red",
    FollowerStatus.OFF: "dim",
}


def cells(row: FollowerRow) -> tuple[Any, ...]:
    return (
        row.account,
        row.broker,
        Text("[x] on" if row.sync else "[ ] off", style="bold green" if row.sync else "dim"),
        Text("[-]", style="bold" if row.ratio > 1 else "dim"),
        Text(f"x{row.ratio}", style="bold", justify="center"),
        Text("[+]", style="bold" if row.ratio < 10 else "dim"),
        Text(f"-> {row.cross}" if row.cross else "none", style="cyan" if row.cross else "dim"),
        Text(qty(row.position), justify="right"),
        Text(price(row.avg_price), justify="right"),
        money(row.unrealized),
        money(row.realized),
        Text(row.status, style=STATUS_STYLE.get(row.status, "")),
        Text("flatten", style="underline"),
    )


class FollowerTable(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="cell", zebra_stripes=True, **kwargs)
        self._shown: dict[str, tuple[Any, ...]] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def current_follower(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return str(row_key.value)

    def show(self, rows: list[FollowerRow]) -> None:
        """Bring the table to `rows`, touching only what changed."""
        wanted = {row.account: cells(row) for row in rows}
        for account in [a for a in self._shown if a not in wanted]:
            self.remove_row(account)
            del self._shown[account]
        for account, values in wanted.items():
            old = self._shown.get(account)
            if old is None:
                self.add_row(*values, key=account)
            else:
                for (column, _), before, after in zip(COLUMNS, old, values, strict=True):
                    if before != after:
                        self.update_cell(account, column, after, update_width=True)
            self._shown[account] = values
        synced = sum(1 for row in rows if row.sync)
        label = Text(f"Synced {synced}/{len(rows)}", style="bold")
        sync_column = next((c for k, c in self.columns.items() if k.value == "sync"), None)
        if sync_column is not None and sync_column.label != label:
            sync_column.label = label
            self._require_update_dimensions = True
            self.refresh()

    def reset(self) -> None:
        self.clear()
        self._shown = {}

    async def _on_click(self, event: events.Click) -> None:
        """One click on a cell acts on it (DataTable's own needs two)."""
        meta = event.style.meta
        before = self.cursor_coordinate
        await super()._on_click(event)
        event.prevent_default()  # Textual would run DataTable's handler again otherwise
        row, column = meta.get("row", -1), meta.get("column", -1)
        if row >= 0 and column >= 0 and Coordinate(row, column) != before:
            self._post_selected_message()
