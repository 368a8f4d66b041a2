"""Pick a cross symbol: only contracts of the same family are offered."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from synctui.tui.widgets.text import literal

REMOVE = "__remove__"


class CrossPicker(ModalScreen[str | None]):
    """Returns a symbol, REMOVE to drop the cross, or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("x", "remove", "Remove cross"),
    ]

    def __init__(self, follower: str, leader_symbol: str, choices: list[tuple[str, str]],
                 current: str | None) -> None:
        super().__init__()
        self._follower = follower
        self._leader_symbol = leader_symbol
        self._choices = choices
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="cross-picker", classes="modal"):
            yield Label(literal(f"Cross {self._leader_symbol} for {self._follower}"),
                        classes="modal-title")
            yield Label("Same family only. Enter picks, x removes the cross, Esc cancels.",
                        classes="hint")
            chosen = self._current or self._leader_symbol
            options = [Option(literal(f"{'● ' if s == chosen else '  '}{s:<8} {name}"), id=s)
                       for s, name in self._choices]
            options.append(Option(literal("  x  remove the cross"), id=REMOVE))
            yield OptionList(*options, id="cross-options")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_remove(self) -> None:
        self.dismiss(REMOVE)
