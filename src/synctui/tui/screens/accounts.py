"""Accounts: balance, equity, margin, Smart Sync funds, risk limits, breaches."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Label


class AccountsScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Label("Accounts", classes="section")
        yield Footer()
