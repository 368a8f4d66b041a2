"""The dashboard: groups, the selected group's leader and followers, the log.

It renders the engine's read models (synctui.engine.views) and sends commands
through the desk; refusals come back as messages shown to the trader.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Label, OptionList, Sparkline, Static

from synctui.domain.groups import Group, GroupStatus
from synctui.engine.engine import Engine
from synctui.engine.views import (
    broker_states,
    contracts,
    cross_exposure,
    default_contract,
    desk_names,
    follower_rows,
    follower_totals,
    group_of,
    group_summaries,
    held,
    leader_view,
    resync_consequence,
    resync_preview,
    stopped_groups,
)
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.access import sync_app
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.screens.cross_picker import REMOVE, CrossPicker
from synctui.tui.widgets.activity_log import LogPanel
from synctui.tui.widgets.follower_table import FollowerTable
from synctui.tui.widgets.format import money, plain, qty
from synctui.tui.widgets.group_list import GroupList
from synctui.tui.widgets.leader_panel import LeaderPanel
from synctui.tui.widgets.text import literal

if TYPE_CHECKING:
    from synctui.engine.views import BrokerState, FollowerTotals, GroupSummary
    from synctui.tui.app import SyncApp


def exposure(times: Decimal) -> str:
    """10 -> "10x", 0.1 -> "0.1x"."""
    return f"{times.normalize():f}x"


def brokers_text(states: list[BrokerState]) -> Text:
    """Each broker's connection: "tradovate ●  topstep ○ disconnected  bybit ●"."""
    text = Text(end="")
    for index, state in enumerate(states):
        if index:
            text.append("  ")
        text.append(state.name)  # Text.append never parses markup: names stay literal
        if state.connected:
            text.append(" ●", style="green")
        else:
            text.append(" ○ disconnected", style="bold red")
    return text


class Dashboard(Screen[None]):
    # A narrow terminal (80 columns) drops the price chart and narrows the group list;
    # a tall one gives the activity log the room (synctui.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-normal")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    BINDINGS = [
        Binding("space", "toggle_sync", "Sync"),
        Binding("a", "toggle_all", "Sync all"),
        Binding("plus,equals_sign", "ratio(1)", "Ratio +", key_display="+"),
        Binding("minus", "ratio(-1)", "Ratio -", key_display="-"),
        Binding("c", "cross", "Cross"),
        Binding("f", "flatten_position", "Flatten pos"),
        Binding("F", "flatten_all", "Flatten All"),
        Binding("o", "cancel_orders", "Cancel orders"),
        Binding("E", "emergency_stop", "EMERGENCY", key_display="E"),
        Binding("left_square_bracket", "contract(-1)", "Prev contract", show=False),
        Binding("right_square_bracket", "contract(1)", "Next contract", show=False),
        Binding("g", "log_scope", "Log scope", show=False),
        Binding("s", "copy_group", "Copy (Smart Sync)"),
        Binding("r", "resync", "Resync"),
        Binding("p", "pause_resume", "Pause/Resume group", show=False),
        Binding("R", "resume_all", "Resume all", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.group_name: str | None = None
        self.contract: str | None = None
        self.contracts: list[str] = []
        self.log_this_group = True
        self._log_shown: tuple[int, str | None, bool] | None = None

    @property
    def sync_app(self) -> SyncApp:
        return sync_app(self)

    @property
    def engine(self) -> Engine:
        return self.sync_app.desk.engine

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Label("synctui", id="brand")
            yield Static(id="desk-status")
            yield Static(id="brokers")
            yield Button("EMERGENCY STOP (E)", id="emergency", variant="error")
        with Horizontal(id="banner"):
            yield Static(id="banner-text")
            yield Button("Resume all (R)", id="resume-all", variant="success")
        with Horizontal(id="body"):
            with Vertical(id="sidebar"):
                yield Label("Groups", classes="section")
                yield GroupList(id="groups")
                yield Label("Price", classes="section", id="price-title")
                yield Static(id="price-label")
                yield Sparkline([], id="price-chart")
            with Vertical(id="main"):
                yield LeaderPanel(id="leader")
                yield Static(id="contracts")
                yield FollowerTable(id="followers")
                yield Static(id="follower-totals")
                with Horizontal(id="actions"):
                    yield Button("Flatten Position (f)", id="flatten-position")
                    yield Button("Cancel Orders (o)", id="cancel-orders", variant="warning")
                    yield Button("Flatten All (F)", id="flatten-all", variant="error")
                yield Label("Activity", classes="section", id="log-title")
                yield LogPanel(id="log")
        yield Footer()

    def on_mount(self) -> None:
        if self.sync_app.startup_error is not None:
            return  # the desk never opened: the app is ending with its message
        self.refresh_views()
        self.query_one(FollowerTable).focus()

    def on_desk_changed(self, message: DeskChanged) -> None:
        self.refresh_views()

    def on_screen_resume(self) -> None:
        if self.sync_app.startup_error is None:
            self.refresh_views()

    # --- rendering -----------------------------------------------------------------------

    def current_group(self) -> Group | None:
        if self.group_name is None:
            return None
        return group_of(self.engine, self.group_name)

    def refresh_views(self) -> None:
        engine = self.engine
        summaries = group_summaries(engine)
        groups = self.query_one(GroupList)
        groups.show(summaries)
        if self.group_name is None or self.group_name not in {s.name for s in summaries}:
            self.group_name = summaries[0].name if summaries else None
            groups.highlighted = 0 if summaries else None
        group = self.current_group()
        self.query_one(LeaderPanel).show(leader_view(engine, group) if group else None)
        self.contracts = contracts(engine, group) if group else []
        if self.contract not in self.contracts:
            self.contract = default_contract(engine, group, self.contracts) if group else None
        self._render_contracts()
        table = self.query_one(FollowerTable)
        rows = (follower_rows(engine, group, self.contract)
                if group is not None and self.contract is not None else [])
        table.show(rows)
        self._render_totals(follower_totals(rows) if rows else None)
        self._render_price()
        self._render_log()
        self._render_status(summaries)

    def _render_contracts(self) -> None:
        """A contract selector: [ and ] switch, a click picks."""
        text = Text("Contract  ", style="dim")
        for symbol in self.contracts:
            click = Style(meta={"@click": f"screen.pick_contract({symbol!r})"})
            style = Style(bold=True, reverse=True) if symbol == self.contract else Style()
            text.append(f" {symbol} ", style=style + click)
            text.append(" ")
        text.append("  [ ] switch", style="dim")
        self.query_one("#contracts", Static).update(text)

    def _render_totals(self, totals: FollowerTotals | None) -> None:
        """The follower table's foot: the contract's unrealized over the followers, and
        what their accounts made in all."""
        text = Text()
        if totals is not None:
            text.append("Followers' total  ", style="dim")
            text.append(f"uPnL {self.contract} ", style="dim")
            text.append_text(plain(money(totals.unrealized)))
            text.append("  rPnL ", style="dim")
            text.append_text(plain(money(totals.realized)))
            text.append("  P&L ", style="dim")
            text.append_text(plain(money(totals.pnl)))
            text.append(" (all contracts)", style="dim")
        self.query_one("#follower-totals", Static).update(text)

    def _render_price(self) -> None:
        if self.contract is None:
            return
        family = self.engine.catalog.get(self.contract).family
        history = self.sync_app.price_history.get(family)
        price = self.engine.prices.maybe(self.contract)
        label = f"{self.contract} {price.normalize():,f}" if price is not None else "no price"
        self.query_one("#price-label", Static).update(literal(label))
        chart = self.query_one(Sparkline)
        data = list(history) if history else []
        if chart.data != data:
            chart.data = data

    def _render_log(self) -> None:
        log = self.sync_app.activity
        scope = self.group_name if self.log_this_group else None
        state = (log.version, scope, self.log_this_group)
        if state == self._log_shown:
            return
        self._log_shown = state
        self.query_one(LogPanel).show(log.filtered(scope, 30))
        title = f"Activity: {scope} (g: all groups)" if scope else "Activity: all groups (g)"
        self.query_one("#log-title", Label).update(literal(title))

    def _render_status(self, summaries: list[GroupSummary]) -> None:
        active = sum(1 for s in summaries if s.status == "active")
        self.query_one("#desk-status", Static).update(
            f"{len(summaries)} groups, {active} active")
        self.query_one("#brokers", Static).update(brokers_text(broker_states(self.engine)))
        stopped = stopped_groups(summaries)
        banner = self.query_one("#banner")
        banner.set_class(bool(stopped), "-shown")
        if stopped:
            self.query_one("#banner-text", Static).update(literal(
                f"EMERGENCY STOP: {len(stopped)} group{'s' if len(stopped) != 1 else ''} "
                f"paused ({', '.join(stopped)}). Nothing is copied until resumed."))

    # --- selection -----------------------------------------------------------------------

    @on(OptionList.OptionHighlighted, "#groups")
    def _group_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        name = event.option.id
        if name and name != self.group_name:
            self.group_name = name
            self.contract = None
            self.query_one(FollowerTable).reset()
            self.refresh_views()

    def action_contract(self, step: int) -> None:
        if not self.contracts or self.contract is None:
            return
        index = (self.contracts.index(self.contract) + step) % len(self.contracts)
        self.action_pick_contract(self.contracts[index])

    def action_pick_contract(self, symbol: str) -> None:
        if symbol != self.contract:
            self.contract = symbol
            self.query_one(FollowerTable).reset()
            self.refresh_views()

    def action_copy_group(self) -> None:
        self.sync_app.action_copy_group(self.group_name)

    def action_log_scope(self) -> None:
        self.log_this_group = not self.log_this_group
        self.refresh_views()

    # --- commands ------------------------------------------------------------------------

    async def _run(self, command: Callable[[Engine], object], done: str | None = None,
                   *, desk_wide: bool = False) -> bool:
        """Run a command; a `desk_wide` one (Emergency Stop) is logged for no group."""
        error = await self.sync_app.desk.run(command, done or "")
        self.sync_app.watch_brokers()
        if error is not None:
            self.notify(error, title="Refused", severity="error", markup=False)
        elif done:
            self.sync_app.log_action(None if desk_wide else self.group_name, done)
        self.refresh_views()
        return error is None

    def _selection(self) -> tuple[Group, str, str] | None:
        group = self.current_group()
        follower = self.query_one(FollowerTable).current_follower
        if group is None or self.contract is None or follower is None:
            self.notify("Select a follower first.", severity="warning", markup=False)
            return None
        return group, self.contract, follower

    async def action_toggle_sync(self) -> None:
        chosen = self._selection()
        if chosen:
            group, symbol, follower = chosen
            on_now = group.setting(follower, symbol).sync
            await self._run(lambda e: e.set_sync(group.name, follower, symbol, not on_now),
                            f"sync {'off' if on_now else 'on'} for {follower} on {symbol}")

    async def action_toggle_all(self) -> None:
        group = self.current_group()
        if group is None or self.contract is None:
            return
        symbol = self.contract
        all_on = all(group.setting(f, symbol).sync for f in group.followers)
        await self._run(lambda e: e.set_sync(group.name, None, symbol, not all_on),
                        f"sync {'off' if all_on else 'on'} for every follower on {symbol}")

    async def action_ratio(self, step: int) -> None:
        chosen = self._selection()
        if chosen:
            group, symbol, follower = chosen
            ratio = group.setting(follower, symbol).ratio + step
            await self._run(lambda e: e.set_ratio(group.name, follower, symbol, ratio),
                            f"ratio x{ratio} for {follower} on {symbol}")

    def action_cross(self) -> None:
        chosen = self._selection()
        if not chosen:
            return
        group, symbol, follower = chosen
        catalog = self.engine.catalog
        family = catalog.get(symbol).family
        # each choice says what it does to the exposure: MNQ to NQ is ten times
        choices = [(i.symbol, f"{i.name}  ({times} the exposure of {symbol})")
                   for i in catalog.family(family)
                   for times in [exposure(cross_exposure(self.engine, symbol, i.symbol))]]
        current = group.setting(follower, symbol).cross

        async def picked(result: str | None) -> None:
            if result is None:
                return
            to = None if result == REMOVE else result
            await self._run(lambda e: e.set_cross(group.name, follower, symbol, to),
                            f"cross {symbol} -> {to or 'none'} for {follower}")

        self.app.push_screen(CrossPicker(follower, symbol, choices, current), picked)

    def _confirm(self, title: str, consequence: str, command: Callable[[Engine], object],
                 done: str, confirm: str, *, desk_wide: bool = False) -> None:
        async def answered(yes: bool | None) -> None:
            if yes:
                await self._run(command, done, desk_wide=desk_wide)

        self.app.push_screen(ConfirmModal(title, consequence, confirm), answered)

    def action_flatten_position(self) -> None:
        chosen = self._selection()
        if not chosen:
            return
        group, symbol, follower = chosen
        traded = group.traded_symbol(follower, symbol)
        position = held(self.engine, follower, traded)
        what = (f"its {qty(position)} {traded} position" if position
                else f"its (flat) {traded} position")
        self._confirm(
            f"Flatten {traded} for {follower}?",
            f"Cancels {follower}'s working {traded} orders and closes {what} at market.",
            lambda e: e.flatten_position(follower, traded),
            f"flatten {traded} for {follower}", "Flatten")

    def action_resync(self) -> None:
        """Bring the selected follower to what it should hold for the selected contract
        (SPEC 9). The confirmation lists the exact orders from the engine's plan; in
        sync, or not allowed, it says so instead and nothing is asked."""
        chosen = self._selection()
        if not chosen:
            return
        group, symbol, follower = chosen
        preview = resync_preview(self.engine, group.name, follower, symbol)
        if preview.refused is not None:
            self.notify(preview.refused, title="Resync refused", severity="error",
                        markup=False)
            return
        if preview.in_sync:
            held = qty(preview.actual) if preview.actual is not None else "0"
            self.notify(f"{follower} is in sync for {symbol} (holds {held} "
                        f"{preview.traded}): nothing to send.", title="Resync",
                        markup=False)
            return
        self._confirm(f"Resync {follower} on {symbol}?", resync_consequence(preview),
                      lambda e: e.resync(group.name, follower, symbol),
                      f"resync {follower} on {symbol}: {preview.orders}", "Resync")

    def action_flatten_all(self) -> None:
        group = self.current_group()
        if group is None:
            return
        members = len(group.followers) + (1 if group.leader else 0)
        self._confirm(
            f"Flatten All in {group.name}?",
            f"Closes every position and cancels every working order of all {members} "
            f"accounts in {group.name} (leader included) and of its Smart Sync copies, "
            "at market. The group keeps its status.",
            lambda e: e.flatten_all(group.name), "Flatten All", "Flatten All")

    def action_cancel_orders(self) -> None:
        group = self.current_group()
        if group is None:
            return
        self._confirm(
            f"Cancel Orders in {group.name}?",
            f"Cancels every working order of every account in {group.name}, leader "
            "included. Positions stay open.",
            lambda e: e.cancel_orders(group.name), "Cancel Orders", "Cancel Orders")

    async def action_pause_resume(self) -> None:
        """Pause the selected group, or activate it when it is not active."""
        group = self.current_group()
        if group is None:
            return
        if group.status is GroupStatus.ACTIVE:
            await self._run(lambda e: e.pause(group.name), f"paused {group.name}")
        else:
            await self._run(lambda e: e.activate(group.name), f"activated {group.name}")

    async def action_resume_all(self) -> None:
        """Activate every group Emergency Stop paused; one that cannot be (a breached
        leader) says why and stays paused."""
        stopped = stopped_groups(group_summaries(self.engine))
        if not stopped:
            self.notify("No group is stopped.", markup=False)
            return
        for name in stopped:
            await self._run(partial(Engine.activate, group=name), f"resumed {name}",
                            desk_wide=True)

    def action_emergency_stop(self) -> None:
        count = len(desk_names(self.engine).groups)
        self._confirm(
            "EMERGENCY STOP?",
            f"Flattens every position and cancels every working order in all {count} "
            "groups at market, then pauses every group. Nothing is copied until you "
            "activate a group again.",
            lambda e: e.emergency_stop(), "EMERGENCY STOP", "Stop everything",
            desk_wide=True)

    # --- mouse ---------------------------------------------------------------------------

    @on(Button.Pressed)
    async def _button(self, event: Button.Pressed) -> None:
        actions: dict[str | None, Callable[[], Any]] = {
            "emergency": self.action_emergency_stop,
            "resume-all": self.action_resume_all,
            "flatten-all": self.action_flatten_all,
            "cancel-orders": self.action_cancel_orders,
            "flatten-position": self.action_flatten_position,
        }
        action = actions.get(event.button.id)
        if action is not None:
            result = action()
            if result is not None:
                await result

    @on(DataTable.CellSelected, "#followers")
    async def _cell(self, event: DataTable.CellSelected) -> None:
        column = event.cell_key.column_key.value
        if column == "sync":
            await self.action_toggle_sync()
        elif column == "minus":
            await self.action_ratio(-1)
        elif column == "plus":
            await self.action_ratio(1)
        elif column == "cross":
            self.action_cross()
        elif column == "flatten":
            self.action_flatten_position()

    @on(DataTable.HeaderSelected, "#followers")
    async def _header(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value == "sync":
            await self.action_toggle_all()
