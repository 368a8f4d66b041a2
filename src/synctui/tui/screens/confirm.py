"""Every destructive action asks first, saying exactly what will happen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from synctui.tui.widgets.text import literal


class ConfirmModal(ModalScreen[bool]):
    """Its title and consequence name accounts and groups: shown literally."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Confirm"),
    ]

    def __init__(self, title: str, consequence: str, confirm: str = "Confirm") -> None:
        super().__init__()
        self._title = title
        self._consequence = consequence
        self._confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="modal"):
            yield Label(literal(self._title), classes="modal-title")
            yield Static(literal(self._consequence), id="consequence")
            with Horizontal(classes="modal-buttons"):
                yield Button("Cancel (n)", id="cancel")
                yield Button(f"{self._confirm} (y)", id="ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
