"""The synctui app. `make_app` builds it; the CLI only parses arguments."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from time import monotonic

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.timer import Timer

from synctui.domain.clock import Clock
from synctui.domain.errors import REASON_TEXT
from synctui.domain.groups import REASON_WORDS, GroupStatus
from synctui.engine.events import (
    AccountBreachedEvent,
    AccountFilled,
    CopyChanged,
    CopyFailed,
    EngineEvent,
    GroupChanged,
    PriceMoved,
)
from synctui.engine.views import broker_states, copy_journal
from synctui.engine.world import OpenFailed, World
from synctui.scenario.model import ScenarioError
from synctui.store.database import StoreError
from synctui.store.session import freeze_start_up
from synctui.tui.alerts import Alert, Alerts
from synctui.tui.desk import Desk, LiveDesk
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.dashboard import Dashboard
from synctui.tui.screens.help import HelpScreen
from synctui.tui.screens.log import LogScreen
from synctui.tui.widgets.activity_log import ActivityLog, Entry
from synctui.tui.widgets.format import price, qty, set_price_places

TICK_SECONDS = 0.25  # the demo market moves four times a second
REPAINT_SECONDS = 0.1  # screens repaint at most this often for changes they did not ask for
HISTORY = 120


def _groups() -> Screen[None]:
    from synctui.tui.screens.groups import GroupsScreen

    return GroupsScreen()


def _accounts() -> Screen[None]:
    from synctui.tui.screens.accounts import AccountsScreen

    return AccountsScreen()


def _history() -> Screen[None]:
    from synctui.tui.screens.history import HistoryScreen

    return HistoryScreen()


def _copies() -> Screen[None]:
    from synctui.tui.screens.copies import CopiesScreen

    return CopiesScreen()


class SyncApp(App[None]):
    CSS_PATH = "synctui.tcss"
    TITLE = "synctui"
    # The top-level sections are modes: each keeps its one screen (and what is pushed
    # on it), so G A M G A M switches between six screens and never stacks more.
    MODES = {"dashboard": Dashboard, "groups": _groups, "copies": _copies,
             "accounts": _accounts, "log": LogScreen, "history": _history}
    DEFAULT_MODE = "dashboard"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("l", "log", "Log"),
        Binding("G", "groups", "Groups"),
        Binding("A", "accounts", "Accounts"),
        Binding("M", "copies", "My Copies"),
        Binding("H", "history", "History"),
        Binding("t", "toggle_theme", "Theme"),
    ]

    def __init__(self, desk: Desk, *, tick_seconds: float | None = TICK_SECONDS,
                 bell: bool = True) -> None:
        super().__init__()
        self.desk = desk
        self.alerts = Alerts()
        self.bell_on = bell  # alerts ring the terminal bell too (`synctui --no-bell`)
        self.tick_seconds = tick_seconds
        self.activity = ActivityLog()
        self.price_history: dict[str, deque[float]] = {}
        self.theme = "textual-dark"
        self.startup_error: str | None = None
        # Why the app ended on a database it cannot use (at start or mid-session): the
        # CLI prints it as one line and exits 2.
        self.failure: str | None = None
        self._change_posted = False  # a DeskChanged is on its way: no second one
        self._last_handover = 0.0
        self._handover: Timer | None = None
        # Each broker's connection as last logged: a change is logged and notified once.
        self.connections: dict[str, bool] = {}
        # Once the first screen is up, the start-up objects leave the collector's sight
        # (the CLI sets this; a test process runs many apps and keeps none of them).
        self.freeze_start_up = False

    async def on_load(self) -> None:
        """Open the desk before the first screen exists; a database or scenario that
        cannot be used ends the app with its message (exit 2), never a traceback."""
        try:
            await self.desk.open()
        except (StoreError, ScenarioError, OpenFailed) as error:
            self.startup_error = self.failure = str(error)
            self.exit(return_code=2)
            return
        for refusal in self.desk.refusals:  # `--scenario` steps refused, as replay lists them
            self.log_action(None, f"scenario step {refusal['step']} refused: "
                                  f"{refusal['message']}", kind="failure")
        if self.desk.refusals:
            count = len(self.desk.refusals)
            self.notify(f"{count} scenario step{'s' if count > 1 else ''} refused: "
                        "see the log (l)", severity="warning", markup=False)
        catalog = self.desk.engine.catalog
        set_price_places({i.symbol: i.tick for i in catalog})
        self.desk.engine.subscribe(self._on_engine_event)
        copy_journal(self.desk.engine)  # a copy's fills and investment changes, from now on
        self.connections = {b.name: b.connected for b in broker_states(self.desk.engine)}
        for family, now in self.desk.engine.prices.families().items():
            self.price_history.setdefault(family, deque(maxlen=HISTORY)).append(float(now))

    def on_mount(self) -> None:
        if self.startup_error is not None:
            return
        if self.freeze_start_up:  # the CLI's app, not a test's: see freeze_start_up
            self.call_after_refresh(freeze_start_up)
        if self.tick_seconds and self.desk.driver is not None:
            self.set_interval(self.tick_seconds, self._tick)

    async def on_unmount(self) -> None:
        if self.startup_error is None:
            try:
                await self.desk.close()
            except StoreError as error:  # the last save failed: say so, exit 2
                self.failure = self.failure or str(error)

    def _handle_exception(self, error: Exception) -> None:
        """A save that fails mid-session (a full disk during the demo, a file made
        read-only) ends the app with its one-line message and exit 2, not a
        traceback; the store refuses every later save, so nothing half-saved follows."""
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, StoreError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            super()._handle_exception(error)
            return
        if self.failure is None:
            self.failure = str(cause)
        self.exit(return_code=2)

    async def _tick(self) -> None:
        await self.desk.tick()
        self.desk_changed()

    def watch_brokers(self) -> None:
        """Log and notify each broker that dropped or came back since the last look.
        The engine publishes no event for a connection change, so the app compares the
        brokers' state after every demo tick and every command it runs."""
        for state in broker_states(self.desk.engine):
            before = self.connections.get(state.name, True)
            if before == state.connected:
                continue
            self.connections[state.name] = state.connected
            if state.connected:
                text = (f"broker {state.name} reconnected: what waited for it is sent, "
                        "its fills meanwhile are copied")
            else:
                text = (f"broker {state.name} disconnected: copies for its accounts wait "
                        "until it reconnects")
            self.log_action(None, text, kind="broker")
            self.notify(text, title="Broker", markup=False,
                        severity="information" if state.connected else "warning")

    def desk_changed(self) -> None:
        """Tell the screens the desk changed: one message, however many changes."""
        if not self._change_posted:
            self._change_posted = True
            self.post_message(DeskChanged())

    def on_desk_changed(self, message: DeskChanged) -> None:
        """Hand the change to every screen of the current mode's stack (a screen under
        a dialog shows too); a screen of another mode renders when it is shown again.
        At most one hand-over per REPAINT_SECONDS: a command's burst of engine events
        is one repaint, the last change always among it."""
        self._change_posted = False
        wait = self._last_handover + REPAINT_SECONDS - monotonic()
        if wait > 0:
            if self._handover is None:
                self._handover = self.set_timer(wait, self._hand_over)
            return
        self._hand_over()

    def _hand_over(self) -> None:
        self._handover = None
        self._last_handover = monotonic()
        self.watch_brokers()
        for alert in self.alerts.out_of_sync(
                (d.group, d.account, d.traded) for d in self.desk.engine.out_of_sync()):
            self.alert(alert)
        for screen in self.screen_stack:
            screen.post_message(DeskChanged())

    def refresh_dashboard(self) -> None:
        """At once, for a trader's own action (not held back with the market's)."""
        self._change_posted = False
        self._hand_over()

    # --- engine events -> log, notifications, chart ----------------------------------------

    def alert(self, alert: Alert) -> None:
        self.notify(alert.text, title=alert.title, markup=False,
                    severity="error" if alert.severity == "error" else "warning")
        if self.bell_on:
            self.bell()

    def log_action(self, group: str | None, text: str, kind: str = "action") -> None:
        self.activity.add(Entry(self.desk.clock.now(), group, kind, text))

    def _on_engine_event(self, event: EngineEvent) -> None:
        """The app's one engine observer: the log, notifications, the chart, and the
        one DeskChanged the screens render from."""
        self.desk_changed()
        now = self.desk.clock.now()
        if isinstance(event, PriceMoved):
            self.price_history.setdefault(event.family, deque(maxlen=HISTORY)).append(
                float(event.price))
        elif isinstance(event, AccountFilled):
            text = (f"{event.account} {event.side} {qty(event.qty).lstrip('+')} {event.symbol}"
                    f" @ {price(event.price, event.symbol)}")
            if event.cause != "order":
                text += f" ({event.cause.replace('_', ' ')})"
            if event.smart:
                text = f"Smart Sync copy of {text}"
            self.activity.add(Entry(event.at, event.group, "copy" if event.copy else "fill",
                                    text))
            if event.copy:
                self.alerts.copied(event.group, event.account)
        elif isinstance(event, CopyFailed):
            f = event.failure
            words = REASON_TEXT.get(f.reason, f.reason)
            text = f"{f.account} {f.symbol}: {words} [{f.reason}]"
            self.activity.add(Entry(f.at, f.group, "failure", text))
            failed = self.alerts.copy_failed(f.group, f.account, f.reason, text)
            if failed is not None:
                self.alert(failed)
        elif isinstance(event, GroupChanged):
            reason = f": {REASON_WORDS[event.reason]}" if event.reason else ""
            text = f"{event.status.replace('_', ' ')}{reason}"
            if event.cause and event.reason is None:
                text += f" ({event.cause})"
            self.activity.add(Entry(now, event.group, "status", text))
            if event.previous is not None:
                self.notify(f"{event.group} is now {text}", title="Group status",
                            severity="warning" if event.status is not GroupStatus.ACTIVE
                            else "information", markup=False)
        elif isinstance(event, AccountBreachedEvent):
            text = f"{event.account} breached its {event.rule.replace('_', ' ')}"
            self.activity.add(Entry(now, None, "breach", text))
            self.alert(self.alerts.breached(text))
        elif isinstance(event, CopyChanged):
            self.activity.add(Entry(now, event.group, "smart",
                                    f"Smart Sync copy of {event.account}: {event.what}"))
            if event.what == "stopped":
                self.alert(self.alerts.stop_loss_hit(event.group, event.account))

    # --- app actions ----------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def _section(self, mode: str) -> None:
        """Show a top-level section; each keeps what was open in it. The section's own
        key pressed inside it again goes back to its list: a screen opened there is
        left by its own `action_leave`, which asks first when edits are unsaved."""
        if mode != self.current_mode:
            await self.switch_mode(mode)
            return
        leave = getattr(self.screen, "action_leave", None)
        if leave is not None and not isinstance(self.screen, ModalScreen):
            result = leave()
            if inspect.isawaitable(result):
                await result

    async def action_dashboard(self) -> None:
        await self._section("dashboard")

    async def action_log(self) -> None:
        await self._section("log" if self.current_mode != "log" else "dashboard")

    async def action_groups(self) -> None:
        await self._section("groups")

    async def action_accounts(self) -> None:
        await self._section("accounts")

    async def action_copies(self) -> None:
        await self._section("copies")

    async def action_history(self) -> None:
        await self._section("history")

    def action_copy_group(self, group: str | None) -> None:
        """The Smart Sync Copy dialog, for a group (from the dashboard or Groups)."""
        from synctui.tui.screens.copies import CopyDialog

        def followed(result: object) -> None:
            self.refresh_dashboard()

        self.push_screen(CopyDialog(group=group), followed)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette: Textual's own commands, then every key binding of the screen it
        was opened on and of the app, by name (so a new key is in the palette at once),
        each once."""
        seen: set[str] = set()
        for command in super().get_system_commands(screen):
            seen.add(command.title.casefold())
            yield command
        for node, binding in palette_bindings(screen, self):
            title = binding.description
            if not title or title.casefold() in seen:
                continue
            seen.add(title.casefold())
            key = binding.key_display or binding.key.split(",")[0]
            yield SystemCommand(title, f"{PALETTE_HELP.get(binding.action, title)} ({key})",
                                partial(self.run_action, binding.action, node))


# What a palette entry says beside its name, where the binding's name is not enough.
PALETTE_HELP = {
    "toggle_sync": "Sync on/off for the selected follower",
    "toggle_all": "The Synced n/m master toggle",
    "cross": "Pick a same-family cross symbol",
    "flatten_position": "Close the selected follower's position (asks first)",
    "resync": "Bring the selected follower to what it should hold (asks first)",
    "flatten_all": "Close everything in this group (asks first)",
    "cancel_orders": "Cancel every working order in this group (asks first)",
    "emergency_stop": "Flatten every group, then pause them (asks first)",
    "copy_group": "Copy this group's leader with Smart Sync",
    "log": "Every copy, failure and status change",
    "groups": "Every group; new group; group settings",
    "accounts": "Balances, margin, risk limits, reset a breach",
    "copies": "Smart Sync copies: follow, settings, unfollow",
    "history": "Every order and fill from the database: filter, search, export CSV",
    "export": "Write every order and fill shown to a CSV file",
    "help": "Every key",
}


def palette_bindings(screen: Screen[object], app: App[None]) -> Iterable[
        tuple[DOMNode, Binding]]:
    """The bindings of `screen` (those of a dialog, if one is open) and then the app's."""
    for node in (screen, app):
        for binding in node.BINDINGS:
            if isinstance(binding, Binding):
                yield node, binding


def make_app(*, world: World | None = None, db: Path | None = None,
             scenario: Path | None = None, seed: int = 7, clock: Clock | None = None,
             demo: bool = True, tick_seconds: float | None = TICK_SECONDS,
             bell: bool = True, live: LiveDesk | None = None) -> SyncApp:
    """The app, apart from the CLI, so tests build it directly (with a `world`, in memory)."""
    desk = Desk(world, db=db, scenario=scenario, seed=seed, clock=clock, demo=demo, live=live)
    return SyncApp(desk, tick_seconds=tick_seconds, bell=bell)
