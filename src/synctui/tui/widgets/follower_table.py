"""The follower table of one group and contract.

Updated by row key, cell by cell, only where a value changed (as memray's
and dolphie's live tables do): no clear() on a tick, so no flicker and the
cursor stays where the trader left it. One click on a control cell acts.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from synctui.engine.views import FollowerRow, FollowerStatus
from synctui.tui.widgets.format import money, price, qty

# Columns whose content changes width get a fixed width, so a changed cell never
# forces a relayout of a 500-row table; the others size to their first content.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("account", "Account", None),
    ("broker", "Broker", None),
    ("sync", "Synced 0/0", 10),
    ("minus", " ", None),
    ("ratio", "Ratio", 5),
    ("plus", " ", None),
    ("cross", "Cross", 6),
    ("position", "Position", 8),
    ("avg", "Avg", 9),
    ("upnl", "uPnL", 9),
    ("rpnl", "rPnL", 9),
    ("status", "Status", 11),
    ("flatten", " ", None),
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
        self._rows: dict[str, FollowerRow] = {}
        # DataTable keys its cell cache on a table-wide update counter, so one changed
        # cell re-renders every visible cell. This cache is keyed per cell instead.
        self._versions: dict[tuple[str, str], int] = {}
        self._cells: LRUCache[tuple[Any, ...], Any] = LRUCache(maxsize=20_000)

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def current_follower(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return str(row_key.value)

    def show(self, rows: list[FollowerRow]) -> None:
        """Bring the table to `rows`, touching only what changed: rows are compared as
        frozen snapshots first, so cells are built only for rows that moved."""
        wanted = {row.account: row for row in rows}
        for account in [a for a in self._rows if a not in wanted]:
            self.remove_row(account)
            del self._rows[account]
            del self._shown[account]
            self._cells.clear()
        for account, row in wanted.items():
            old_row = self._rows.get(account)
            if old_row == row:
                continue
            values = cells(row)
            old = self._shown.get(account)
            if old is None:
                self.add_row(*values, key=account)
            else:
                for (column, _, _), before, after in zip(COLUMNS, old, values, strict=True):
                    if before != after:
                        self.update_cell(account, column, after)
                        self._versions[(account, column)] = self._versions.get(
                            (account, column), 0) + 1
            self._rows[account] = row
            self._shown[account] = values
        synced = sum(1 for row in rows if row.sync)
        label = Text(f"Synced {synced}/{len(rows)}", style="bold")
        sync_column = next((c for k, c in self.columns.items() if k.value == "sync"), None)
        if sync_column is not None and sync_column.label != label:
            sync_column.label = label
            self.refresh()

    def reset(self) -> None:
        self.clear()
        self._shown = {}
        self._rows = {}
        self._cells.clear()

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> Any:
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor,
                                        hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor,
                                        hover)
        key = (row_key, column_key, row_index, base_style, width, cursor, hover,
               self._show_hover_cursor, self._pseudo_class_state,
               self._versions.get((str(row_key.value), str(column_key.value)), 0))
        rendered = self._cells.get(key)
        if rendered is None:
            rendered = super()._render_cell(row_index, column_index, base_style, width, cursor,
                                            hover)
            self._cells[key] = rendered
        return rendered

    async def _on_click(self, event: events.Click) -> None:
        """One click on a cell acts on it (DataTable's own needs two)."""
        meta = event.style.meta
        before = self.cursor_coordinate
        await super()._on_click(event)
        event.prevent_default()  # Textual would run DataTable's handler again otherwise
        row, column = meta.get("row", -1), meta.get("column", -1)
        if row >= 0 and column >= 0 and Coordinate(row, column) != before:
            self._post_selected_message()
