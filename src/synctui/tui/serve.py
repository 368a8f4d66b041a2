"""`synctui serve`: the dashboard in a browser, through textual-serve (issue 14).

textual-serve runs the app once per browser tab, each a process of its own that
opens the database. The database's one-instance lock refuses a second: two engines
on one database would copy every trade twice. So a second tab is refused, and it
says so on its own screen (`Refused`), while the first goes on. The page is
textual-serve's own, without its web font from another host: a browser on the
desk's machine asks 127.0.0.1 and nothing else.

There is no authentication: whoever reaches the port drives the desk. It listens
on 127.0.0.1 unless told otherwise, and says so loudly when told.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from synctui.tui.widgets.text import literal

TEMPLATES = Path(__file__).parent / "web"
LOCAL = {"127.0.0.1", "localhost", "::1"}
WEB_DRIVER = "textual.drivers.web_driver:WebDriver"


def served() -> bool:
    """This process is an app textual-serve started for a browser tab."""
    return os.environ.get("TEXTUAL_DRIVER") == WEB_DRIVER


def command(db: Path | None, scenario: Path | None, seed: int) -> str:
    """The command textual-serve runs for each tab: this Python, this synctui."""
    args = [sys.executable, "-m", "synctui.cli", "--seed", str(seed)]
    if db is not None:
        args += ["--db", str(db.expanduser().resolve())]
    if scenario is not None:
        args += ["--scenario", str(scenario.expanduser().resolve())]
    return shlex.join(args)


def warning(host: str) -> str | None:
    if host in LOCAL:
        return None
    return (f"synctui: WARNING: serving on {host}, beyond this machine, with no "
            "authentication: anyone who reaches the port can trade on this desk")


def serve(host: str, port: int, db: Path | None, scenario: Path | None, seed: int) -> int:
    from textual_serve.server import Server

    said = warning(host)
    if said is not None:
        print(said, file=sys.stderr, flush=True)
    server = Server(command(db, scenario, seed), host=host, port=port, title="synctui",
                    templates_path=TEMPLATES)
    server.serve()
    return 0


class Refused(App[None]):
    """A browser tab whose desk could not open (most often: another tab has the
    database): the reason on screen until the tab is closed or q is pressed."""

    BINDINGS = [Binding("q", "quit", "Quit")]
    CSS = "Refused { align: center middle; } #why { width: 70; padding: 1 2; border: heavy red; }"

    def __init__(self, why: str) -> None:
        super().__init__()
        self.why = why

    def compose(self) -> ComposeResult:
        yield Static(literal(f"synctui cannot open this desk here.\n\n{self.why}\n\n"
                             "One synctui per database: a second would copy every trade "
                             "twice. Use the tab that has it, or close this one (q)."),
                     id="why")
