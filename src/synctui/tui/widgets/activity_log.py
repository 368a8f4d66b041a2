"""The activity log: newest first, filterable by group."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

KIND_STYLE = {
    "copy": "green",
    "fill": "cyan",
    "failure": "bold red",
    "status": "yellow",
    "breach": "reverse red",
    "smart": "magenta",
    "action": "bold",
    "broker": "bold yellow",
}


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    group: str | None
    kind: str
    text: str


class ActivityLog:
    """The entries themselves (UI state), shared by the panel and the log screen."""

    def __init__(self, size: int = 1000) -> None:
        self.entries: deque[Entry] = deque(maxlen=size)
        self.version = 0

    def add(self, entry: Entry) -> None:
        self.entries.appendleft(entry)
        self.version += 1

    def filtered(self, group: str | None, limit: int) -> list[Entry]:
        """A group's entries and the desk-wide ones (a broker's connection, a breach,
        Emergency Stop); a fill of an account in no group is not the group's."""
        rows = []
        for entry in self.entries:
            if group is None or entry.group == group or (
                    entry.group is None and entry.kind not in ("fill", "copy")):
                rows.append(entry)
                if len(rows) >= limit:
                    break
        return rows


def render_log(entries: list[Entry]) -> Table | Text:
    if not entries:
        return Text("Nothing yet.", style="dim italic")
    table = Table(box=None, show_header=False, pad_edge=False, expand=True, padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(ratio=1)
    for entry in entries:
        table.add_row(entry.at.strftime("%H:%M:%S"), Text(entry.group or ""),
                      Text(entry.kind, style=KIND_STYLE.get(entry.kind, "")), Text(entry.text))
    return table


class LogPanel(Static):
    entries: list[Entry] = []

    def show(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.update(render_log(entries))
