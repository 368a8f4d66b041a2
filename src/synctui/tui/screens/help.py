"""Every key, in one place."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

KEYS: tuple[tuple[str, str], ...] = (
    ("up / down", "move in the list or table that has focus"),
    ("tab / shift+tab", "next / previous panel"),
    ("[ / ]", "previous / next contract"),
    ("space", "toggle sync for the follower under the cursor"),
    ("a", "toggle sync for all followers of this contract (the Synced n/m header)"),
    ("+ / -", "ratio up / down (x1..x10)"),
    ("c", "pick a cross symbol (same family); x in the picker removes it"),
    ("f", "flatten the follower's position (asks first)"),
    ("r", "resync the follower for this contract: the orders that bring it to what it "
          "should hold (asks first, listing them)"),
    ("F", "Flatten All: every position and order of the group (asks first)"),
    ("o", "Cancel Orders of the group (asks first)"),
    ("E", "Emergency Stop: flatten every group, then pause them (asks first)"),
    ("R", "Resume all: activate every group Emergency Stop paused"),
    ("p", "pause / resume the selected group"),
    ("s", "Copy (Smart Sync): follow this group's leader with an investment"),
    ("G", "Groups: every group, new group (n), group settings (enter)"),
    ("A", "Accounts: balances, margin, risk limits, reset a breach (r)"),
    ("M", "My Copies: Smart Sync copies, new copy (n), details, investment, stop loss, "
          "unfollow (u)"),
    ("H", "History: every order and fill from the database; filter by group, account, "
          "symbol, kind; / search; e export CSV"),
    ("escape", "back to the dashboard (from a section), or close a dialog"),
    ("g", "activity log: this group only / all groups"),
    ("l", "the full activity log"),
    ("t", "switch dark / light theme"),
    ("ctrl+p", "command palette: every action by name"),
    ("? / f1", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical(id="help", classes="modal"):
            yield Label("Keys", classes="modal-title")
            yield Static(table)
            yield Label("Every button and cell also works with the mouse.", classes="hint")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
