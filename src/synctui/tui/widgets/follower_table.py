"""The follower table of one group and contract.

Updated by row key, cell by cell, only where a value changed (as memray's
and dolphie's live tables do): no clear() on a tick, so no flicker and the
cursor stays where the trader left it. One click on a control cell acts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from synctui.engine.views import FollowerRow, FollowerStatus
from synctui.tui.widgets.columns import fitting
from synctui.tui.widgets.format import money, price, qty
from synctui.tui.widgets.text import literal

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
    ("rpnl", "Acct rPnL", 9),  # the account's, all contracts: no per-contract figure
    ("pnl", "Acct P&L", 9),  # the account's realized + unrealized, all contracts
    ("status", "Status", 10),
    ("latency", "Latency", 9),
    ("flatten", " ", None),
)
# Which columns go first when the table is narrower than all of them (an 80-column
# terminal): the account, its position, P&L and status stay to the last.
DROP_ORDER = ("flatten", "rpnl", "latency", "avg", "cross", "minus", "plus", "broker", "pnl",
              "sync", "ratio")
# Content widths of the columns sized to their content, as the demo desk renders them.
GUESSED_WIDTH = {"account": 7, "broker": 9, "minus": 3, "plus": 3, "flatten": 7}
STATUS_STYLE = {
    FollowerStatus.IN_SYNC: "green",
    FollowerStatus.OUT_OF_SYNC: "yellow",
    FollowerStatus.FAILED: "bold red",
    FollowerStatus.BREACHED: "reverse red",
    FollowerStatus.OFF: "dim",
    FollowerStatus.IDLE: "dim",
}


def status_cell(row: FollowerRow) -> Text:
    """The status word; for a follower out of sync, what it must still trade to hold
    what it should (SPEC 9's expected minus actual, signed), as "out +2"; a failed
    copy that left it so, "failed +2". Compact: the table fits 150 columns."""
    text = row.status
    if row.difference is not None and row.status == FollowerStatus.OUT_OF_SYNC:
        text = f"out {qty(row.difference)}"
    elif row.difference is not None and row.status == FollowerStatus.FAILED:
        text = f"failed {qty(row.difference)}"
    return Text(text, style=STATUS_STYLE.get(row.status, ""), overflow="ellipsis",
                no_wrap=True)


OFFLINE = "○ offline"  # a disconnected broker, in every table that lists accounts


def broker_cell(name: str, connected: bool) -> Text:
    """A broker's name; a disconnected one is marked as the header marks it."""
    if connected:
        return literal(name)
    return literal(f"{name} {OFFLINE}", "bold red")


def duration(value: timedelta) -> str:
    """A copy latency as a trader reads it, in at most five characters: milliseconds
    below a second, then seconds (a copy that waited for a reconnect)."""
    ms = value / timedelta(milliseconds=1)
    if ms < 999.5:
        return f"{ms:.0f}ms"
    if ms < 9_950:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 1000:.0f}s" if ms < 99_500 else ">99s"


def latency_cell(row: FollowerRow) -> Text:
    if row.latency is None:
        return Text("-", style="dim", justify="right")
    last, p95 = row.latency
    return Text(f"{duration(last)}/{duration(p95)}", justify="right")


RENDER: dict[str, Callable[[FollowerRow], Any]] = {
    "account": lambda r: literal(r.account),
    "broker": lambda r: broker_cell(r.broker, r.connected),
    "sync": lambda r: Text("[x] on" if r.sync else "[ ] off",
                           style="bold green" if r.sync else "dim"),
    "minus": lambda r: Text("[-]", style="bold" if r.ratio > 1 else "dim"),
    "ratio": lambda r: Text(f"x{r.ratio}", style="bold", justify="center"),
    "plus": lambda r: Text("[+]", style="bold" if r.ratio < 10 else "dim"),
    "cross": lambda r: Text(f"-> {r.cross}" if r.cross else "none",
                            style="cyan" if r.cross else "dim"),
    "position": lambda r: Text(qty(r.position), justify="right"),
    "avg": lambda r: Text(price(r.avg_price, r.traded), justify="right"),
    "upnl": lambda r: money(r.unrealized),
    "rpnl": lambda r: money(r.realized),
    "pnl": lambda r: money(r.pnl),
    "status": status_cell,
    "latency": latency_cell,
    "flatten": lambda r: Text("flatten", style="underline"),
}
# Which cells a changed row field repaints: a tick that moves only uPnL builds one cell.
FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "account": ("account",), "broker": ("broker",), "sync": ("sync",),
    "ratio": ("minus", "ratio", "plus"), "cross": ("cross",), "traded": (),
    "position": ("position",), "avg_price": ("avg",), "unrealized": ("upnl",),
    "realized": ("rpnl",), "status": ("status",), "difference": ("status",),
    "connected": ("broker",), "latency": ("latency",), "pnl": ("pnl",),
}


def cells(row: FollowerRow, shown: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(RENDER[key](row) for key in shown)


class FollowerTable(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="cell", zebra_stripes=True, **kwargs)
        self._rows: dict[str, FollowerRow] = {}
        # DataTable keys its cell cache on a table-wide update counter, so one changed
        # cell re-renders every visible cell. This cache is keyed per cell instead.
        self._versions: dict[tuple[str, str], int] = {}
        self._cells: LRUCache[tuple[Any, ...], Any] = LRUCache(maxsize=20_000)

    shown: tuple[str, ...] = tuple(k for k, _, _ in COLUMNS)

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label, width in COLUMNS:
            if key in self.shown:
                self.add_column(label, key=key, width=width)

    def on_resize(self, event: events.Resize) -> None:
        """Columns collapse by priority when the table is too narrow for all of them."""
        shown = fitting(COLUMNS, DROP_ORDER, GUESSED_WIDTH, event.size.width)
        if shown == self.shown:
            return
        self.shown = shown
        rows = list(self._rows.values())
        cursor = self.cursor_coordinate
        self.clear(columns=True)
        self._rows = {}
        self._cells.clear()
        self._add_columns()
        self.show(rows)
        self.move_cursor(row=cursor.row, column=min(cursor.column, len(shown) - 1))

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
            self._cells.clear()
        for account, row in wanted.items():
            old_row = self._rows.get(account)
            if old_row == row:
                continue
            if old_row is None:
                self.add_row(*cells(row, self.shown), key=account)
            else:
                for name, columns in FIELD_COLUMNS.items():
                    if getattr(old_row, name) != getattr(row, name):
                        for column in columns:
                            if column not in self.shown:
                                continue
                            # A broker marked offline is wider: its column grows once.
                            self.update_cell(account, column, RENDER[column](row),
                                             update_width=column == "broker")
                            version = (account, column)
                            self._versions[version] = self._versions.get(version, 0) + 1
            self._rows[account] = row
        synced = sum(1 for row in rows if row.sync)
        label = Text(f"Synced {synced}/{len(rows)}", style="bold")
        sync_column = next((c for k, c in self.columns.items() if k.value == "sync"), None)
        if sync_column is not None and sync_column.label != label:
            sync_column.label = label
            self.refresh()

    def reset(self) -> None:
        self.clear()
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
