"""The full activity log, filterable by group."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Select

from synctui.engine.views import desk_names
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.access import sync_app
from synctui.tui.widgets.activity_log import LogPanel
from synctui.tui.widgets.text import choices, literal

if TYPE_CHECKING:
    from synctui.tui.app import SyncApp

ALL = "__all__"


class LogScreen(Screen[None]):
    BINDINGS = [Binding("escape,l", "app.dashboard", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.group: str | None = None
        self._shown: tuple[int, str | None] | None = None

    def compose(self) -> ComposeResult:
        app = self.app
        from synctui.tui.app import SyncApp

        assert isinstance(app, SyncApp)
        names = list(desk_names(app.desk.engine).groups)
        yield Label("Activity log, newest first", classes="section")
        yield Select([(literal("All groups"), ALL), *choices(names)], value=ALL,
                     allow_blank=False, id="log-filter")
        with VerticalScroll():
            yield LogPanel(id="full-log")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def on_desk_changed(self, message: DeskChanged) -> None:
        self.show()

    def on_screen_resume(self) -> None:
        self.show()

    @property
    def sync_app(self) -> SyncApp:
        return sync_app(self)

    def show(self) -> None:
        log = self.sync_app.activity
        state = (log.version, self.group)
        if state != self._shown:
            self._shown = state
            self.query_one(LogPanel).show(log.filtered(self.group, 500))

    @on(Select.Changed, "#log-filter")
    def _filter(self, event: Select.Changed) -> None:
        self.group = None if event.value == ALL else str(event.value)
        self.show()
