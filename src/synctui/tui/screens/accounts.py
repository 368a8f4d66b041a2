"""Accounts: balance, equity, margin, Smart Sync funds, risk limits, breaches.

It renders `account_rows` (synctui.engine.views) and nothing else: every number
is computed below the UI. The table is updated by row key, cell by cell, only
where a value changed, as the follower table is. Reset breach asks first, then
goes through the desk; a refusal comes back as a notification.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Label, Static

from synctui.engine.engine import Engine
from synctui.engine.views import AccountRow, account_rows
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.access import sync_app
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.widgets.columns import SortState, fitting
from synctui.tui.widgets.follower_table import broker_cell
from synctui.tui.widgets.format import money

if TYPE_CHECKING:
    from synctui.tui.app import SyncApp



AMOUNT = 11  # amount columns have a fixed width: a changed cell never relayouts
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("account", "Account", None),
    ("broker", "Broker", None),
    ("balance", "Balance", AMOUNT),
    ("equity", "Equity", AMOUNT),
    ("available", "Available", AMOUNT),
    ("in_use", "In use", AMOUNT),
    ("margin", "Margin used", AMOUNT),
    ("today", "Today's PnL", AMOUNT),
    ("daily", "Daily limit", AMOUNT),
    ("drawdown", "Max drawdown", 12),
    ("status", "Status", 19),
)
# At 80 columns the account, its equity, today's PnL and status stay.
DROP_ORDER = ("drawdown", "daily", "margin", "in_use", "balance", "broker", "available")
GUESSED_WIDTH = {"account": 8, "broker": 10}
RULE_WORDS = {"daily_loss_limit": "daily loss", "max_drawdown": "drawdown"}


def right(text: Text, width: int = AMOUNT) -> Text:
    """Right-aligned by padding: the table does not justify a cell within its column."""
    text.pad_left(max(0, width - text.cell_len))
    return text


def amount(value: Decimal) -> Text:
    """A plain amount (balances are not gains): no sign, no colour."""
    return right(Text(f"{value.quantize(Decimal('0.01')):,}"))


def limit(value: Decimal | None, width: int = AMOUNT) -> Text:
    if value is None:
        return right(Text("none", style="dim"), width)
    return right(Text(f"{value.quantize(Decimal('0.01')):,}"), width)


def status(row: AccountRow) -> Text:
    if row.breached is None:
        return Text("ok", style="green")
    words = RULE_WORDS.get(row.breached, row.breached.replace("_", " "))
    return Text(f"BREACHED {words}", style="bold reverse red")


RENDER: dict[str, Callable[[AccountRow], Any]] = {
    "account": lambda r: Text(r.account, style="bold red" if r.breached else ""),
    "broker": lambda r: broker_cell(r.broker, r.connected),
    "balance": lambda r: amount(r.balance),
    "equity": lambda r: amount(r.equity),
    "available": lambda r: amount(r.available),
    "in_use": lambda r: amount(r.in_use),
    "margin": lambda r: amount(r.used_margin),
    "today": lambda r: right(money(r.today)),
    "daily": lambda r: limit(r.daily_loss_limit),
    "drawdown": lambda r: limit(r.max_drawdown, 12),
    "status": status,
}
# Which cells a changed row field repaints.
FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "account": ("account",), "broker": ("broker",), "balance": ("balance",),
    "equity": ("equity",), "available": ("available",), "in_use": ("in_use",),
    "used_margin": ("margin",), "today": ("today",), "breached": ("account", "status"),
    "daily_loss_limit": ("daily",), "max_drawdown": ("drawdown",), "connected": ("broker",),
}


class AccountTable(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: dict[str, AccountRow] = {}

    shown: tuple[str, ...] = tuple(k for k, _, _ in COLUMNS)

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label, width in COLUMNS:
            if key not in self.shown:
                continue
            # Amount headers sit over their right-aligned numbers.
            header = right(Text(label), width) if width and key != "status" else label
            self.add_column(header, key=key, width=width)

    def on_resize(self, event: events.Resize) -> None:
        """Columns collapse by priority when the table is too narrow for all of them."""
        shown = fitting(COLUMNS, DROP_ORDER, GUESSED_WIDTH, event.size.width)
        if shown == self.shown:
            return
        self.shown = shown
        rows, cursor = list(self._rows.values()), self.cursor_row
        self.clear(columns=True)
        self._rows = {}
        self._add_columns()
        self.show(rows)
        self.move_cursor(row=cursor)

    @property
    def current_account(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return str(row_key.value)

    def row_of(self, account: str) -> AccountRow | None:
        return self._rows.get(account)

    def show(self, rows: list[AccountRow]) -> None:
        """Bring the table to `rows`, touching only the cells whose value changed."""
        wanted = {row.account: row for row in rows}
        for account in [a for a in self._rows if a not in wanted]:
            self.remove_row(account)
            del self._rows[account]
        for account, row in wanted.items():
            old = self._rows.get(account)
            if old == row:
                continue
            if old is None:
                self.add_row(*(RENDER[key](row) for key in self.shown), key=account)
            else:
                for name, columns in FIELD_COLUMNS.items():
                    if getattr(old, name) != getattr(row, name):
                        for column in columns:
                            if column in self.shown:
                                self.update_cell(account, column, RENDER[column](row),
                                                 update_width=column == "broker")
            self._rows[account] = row


class AccountsScreen(Screen[None]):
    DEFAULT_CSS = """
    AccountsScreen {
        layout: vertical;
        padding: 0 1;
    }
    #accounts {
        height: 1fr;
    }
    #account-actions {
        height: 3;
    }
    """
    BINDINGS = [
        Binding("escape", "app.dashboard", "Back"),
        Binding("r", "reset_breach", "Reset breach"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sorting = SortState()

    @property
    def sync_app(self) -> SyncApp:
        return sync_app(self)

    @property
    def engine(self) -> Engine:
        return self.sync_app.desk.engine

    def compose(self) -> ComposeResult:
        yield Label("Accounts", classes="section")
        yield Static("Total funds = balance + in use. Today's PnL and the trailing peak "
                     "restart when a breach is reset.", classes="hint")
        yield AccountTable(id="accounts")
        with Horizontal(id="account-actions"):
            yield Button("Reset breach (r)", id="reset-breach", variant="warning")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_rows()
        self.query_one(AccountTable).focus()

    def on_desk_changed(self, message: DeskChanged) -> None:
        self.refresh_rows()

    def on_screen_resume(self) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        table = self.query_one(AccountTable)
        table.show(account_rows(self.engine))
        self.sorting.apply(table)

    @on(DataTable.HeaderSelected)
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        self.sorting.header_selected(event)

    # --- commands ------------------------------------------------------------------------

    async def _run(self, command: Callable[[Engine], object], done: str) -> bool:
        error = await self.sync_app.desk.run(command, done)
        if error is not None:
            self.notify(error, title="Refused", severity="error", markup=False)
        else:
            self.sync_app.log_action(None, done)
            self.notify(done, title="Done", markup=False)
        self.refresh_rows()
        return error is None

    async def action_reset_breach(self) -> None:
        table = self.query_one(AccountTable)
        account = table.current_account
        if account is None:
            self.notify("Select an account first.", severity="warning", markup=False)
            return
        row = table.row_of(account)
        done = f"reset the breach of {account}"

        def command(engine: Engine) -> None:
            engine.reset_breach(account)

        if row is None or row.breached is None:
            # Nothing would change: the engine says so, no question asked first.
            await self._run(command, done)
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._run(command, done)

        rule = row.breached.replace("_", " ")
        self.app.push_screen(ConfirmModal(
            f"Reset the breach of {account}?",
            f"{account} breached its {rule}. Its trading day restarts from its current "
            f"equity ({row.equity.quantize(Decimal('0.01')):,}): today's PnL and the "
            "trailing peak start again from there, and it will take orders again. "
            "A group it leads stays paused until you activate it.",
            "Reset breach"), answered)

    @on(Button.Pressed, "#reset-breach")
    async def _reset_pressed(self) -> None:
        await self.action_reset_breach()
