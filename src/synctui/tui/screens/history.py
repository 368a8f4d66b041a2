"""History: the order and fill blotter, read from the database.

It shows what `History` (synctui.store.history) reads, newest first, filtered by
group, account, symbol and kind, searched by text; `e` writes every match to a
CSV file beside the database. Reads run on a thread: a search through a long
history never holds the dashboard back. A change of the desk reads again, and
changes that arrive while a read runs make one more read, not one each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from synctui.engine.views import desk_names
from synctui.store.history import BLOTTER_ROWS, HistoryQuery, HistoryRow, Kind
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.access import sync_app
from synctui.tui.widgets.columns import fitting
from synctui.tui.widgets.format import money, price, qty
from synctui.tui.widgets.text import choices, literal

if TYPE_CHECKING:
    from synctui.tui.app import SyncApp

ALL = "__all__"
NARROW = 120  # below it, the filters take two rows
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("time", "Time", 14),
    ("kind", "Kind", 5),
    ("group", "Group", None),
    ("account", "Account", None),
    ("symbol", "Symbol", None),
    ("side", "Side", 4),
    ("qty", "Qty", None),
    ("price", "Price", None),
    ("what", "What", None),
    ("realized", "rPnL", 10),
    ("fee", "Fee", 6),
    ("id", "Order / fill id", None),
)
# At 80 columns the time, the account, the trade and its price stay.
DROP_ORDER = ("id", "fee", "group", "what", "realized", "kind")
GUESSED_WIDTH = {"group": 7, "account": 8, "symbol": 7, "qty": 4, "price": 10, "what": 15,
                 "id": 12}


def when(at: str | None) -> Text:
    """Month, day and time to the second ("01-05 14:31:00"); the CSV keeps all of it."""
    if at is None:
        return Text("-", style="dim")
    return Text(at[5:19].replace("T", " "))


RENDER: dict[str, Callable[[HistoryRow], Any]] = {
    "time": lambda r: when(r.at),
    "kind": lambda r: Text(r.kind.value, style="bold" if r.kind is Kind.FILL else "dim"),
    "group": lambda r: literal(r.group or "-"),
    "account": lambda r: literal(r.account),
    "symbol": lambda r: literal(r.symbol),
    "side": lambda r: Text(r.side, style="green" if r.side == "buy" else "red"),
    "qty": lambda r: Text(qty(r.qty).lstrip("+"), justify="right"),
    "price": lambda r: Text(price(r.price, r.symbol), justify="right"),
    "what": lambda r: literal(r.what, "bold red" if "rejected" in r.what else ""),
    "realized": lambda r: money(r.realized) if r.realized is not None else Text(""),
    "fee": lambda r: Text(f"{r.fee.quantize(Decimal('0.01')):,}" if r.fee is not None else "",
                          justify="right"),
    "id": lambda r: literal(r.id, "dim"),
}


class HistoryScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.dashboard", "Back"),
        Binding("e", "export", "Export CSV"),
        Binding("slash", "search", "Search", key_display="/"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_now = HistoryQuery()
        self.rows: list[HistoryRow] | None = None  # as last read; None before the first
        self._reading = False
        self._again = False
        self._read_at: tuple[int, HistoryQuery] | None = None  # what the rows are of
        self.shown: tuple[str, ...] = tuple(k for k, _, _ in COLUMNS)

    @property
    def sync_app(self) -> SyncApp:
        return sync_app(self)

    def compose(self) -> ComposeResult:
        names = desk_names(self.sync_app.desk.engine)
        yield Label("History: orders and fills, newest first", classes="section")
        with Horizontal(id="history-filters"):
            yield Select([(literal("All groups"), ALL), *choices(names.groups)], value=ALL,
                         allow_blank=False, id="history-group")
            yield Select([(literal("All accounts"), ALL), *choices(names.accounts)],
                         value=ALL, allow_blank=False, id="history-account")
            yield Select([(literal("All symbols"), ALL), *choices(names.symbols)], value=ALL,
                         allow_blank=False, id="history-symbol")
            yield Select([(literal("Orders and fills"), ALL), (literal("Orders"), "order"),
                          (literal("Fills"), "fill")], value=ALL, allow_blank=False,
                         id="history-kind")
            yield Input(placeholder="search ids, accounts, status (/)", id="history-search")
        yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="history-status")
        yield Footer()

    def on_mount(self) -> None:
        self._columns()
        self.reload()

    def on_desk_changed(self, message: DeskChanged) -> None:
        """Read again only when the database has new orders or fills: a price tick
        (ten a second in the demo) changes none."""
        history = self.sync_app.desk.history
        if history is None or self._read_at != (history.version, self.query_now):
            self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_resize(self, event: events.Resize) -> None:
        # Filters in two rows where five would squeeze their labels (an 80-column terminal)
        self.set_class(event.size.width < NARROW, "-narrow")
        shown = fitting(COLUMNS, DROP_ORDER, GUESSED_WIDTH, event.size.width - 2)
        if shown != self.shown:
            self.shown = shown
            self._columns()
            self._show_rows()

    def _columns(self) -> None:
        table = self.query_one("#history-table", DataTable)
        table.clear(columns=True)
        for key, label, width in COLUMNS:
            if key in self.shown:
                table.add_column(label, key=key, width=width)

    # --- reading --------------------------------------------------------------------------

    def reload(self) -> None:
        """Read again; while a read runs, once more after it (changes coalesce)."""
        if self._reading:
            self._again = True
            return
        self._reading = True
        self.run_worker(self._read(), group="history")

    async def _read(self) -> None:
        history = self.sync_app.desk.history
        try:
            while True:
                self._again = False
                if history is None:
                    self._say("History needs a database: this desk is kept in memory.")
                    return
                query = self.query_now
                version = history.version
                try:
                    rows = await history.rows(query)
                except (sqlite3.Error, OSError) as error:
                    self._say(f"The history cannot be read: {error}")
                    return
                if query == self.query_now:
                    self._read_at = (version, query)
                    if rows != self.rows:
                        self.rows = rows
                        self._show_rows()
                if not self._again and query == self.query_now:
                    return
        finally:
            self._reading = False

    def _say(self, text: str) -> None:
        self.query_one("#history-status", Static).update(literal(text))

    def _show_rows(self) -> None:
        if self.rows is None:
            return
        table = self.query_one("#history-table", DataTable)
        row = table.cursor_row
        table.clear()
        for entry in self.rows:
            table.add_row(*(RENDER[key](entry) for key in self.shown),
                          key=f"{entry.kind.value}:{entry.id}")
        if self.rows:
            table.move_cursor(row=min(row, len(self.rows) - 1))
        count = len(self.rows)
        more = f"the newest {BLOTTER_ROWS}" if count >= BLOTTER_ROWS else f"{count}"
        self._say(f"{more} {'row' if count == 1 else 'rows'} · e: export every match to "
                  "CSV · /: search")

    # --- filters --------------------------------------------------------------------------

    @on(Select.Changed)
    def _filter(self, event: Select.Changed) -> None:
        value = None if event.value == ALL else str(event.value)
        field = {"history-group": "group", "history-account": "account",
                 "history-symbol": "symbol", "history-kind": "kind"}.get(event.select.id or "")
        if field is None:
            return
        changes: dict[str, Any] = {field: Kind(value) if field == "kind" and value else value}
        self._query(**changes)

    @on(Input.Changed, "#history-search")
    def _search(self, event: Input.Changed) -> None:
        self._query(text=event.value)

    @on(Input.Submitted, "#history-search")
    def _searched(self, event: Input.Submitted) -> None:
        self.query_one("#history-table", DataTable).focus()

    def _query(self, **changes: Any) -> None:
        query = replace(self.query_now, **changes)
        if query != self.query_now:
            self.query_now = query
            self.reload()

    def action_search(self) -> None:
        self.query_one("#history-search", Input).focus()

    async def action_export(self) -> None:
        desk = self.sync_app.desk
        history = desk.history
        if history is None:
            self.notify("History needs a database: this desk is kept in memory.",
                        severity="warning", markup=False)
            return
        path = desk.export_path()
        self._say(f"Exporting to {path} ...")
        try:
            count = await history.export(self.query_now, path)
        except (sqlite3.Error, OSError) as error:
            self.notify(f"Export failed: {error}", severity="error", markup=False)
            self._show_rows()
            return
        self.notify(f"{count} {'row' if count == 1 else 'rows'} written to {path}",
                    title="Exported", markup=False)
        self._show_rows()
