"""Groups: every group, a new group, and a group's settings with staged edits.

Settings edits are pending until Save (SPEC 4): each staged edit is previewed
by the engine on a copy of the groups, so a refusal shows inline, with its
reason, the moment it is staged, and the preview shows the automatic status
change Save would cause. Save applies all of them or none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.validation import ValidationResult, Validator
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    Select,
    SelectionList,
    Static,
    Switch,
)

from synctui.domain.errors import Refused
from synctui.domain.groups import (
    AddFollowers,
    Group,
    GroupEdit,
    GroupStatus,
    RemoveFollowers,
    RemoveLeader,
    SetActive,
    SetLeader,
)
from synctui.engine.group_views import (
    cannot_trade,
    describe_status,
    disconnected_broker,
    free_accounts,
    group_rows,
    group_totals,
    unassigned_accounts,
)
from synctui.engine.views import desk_names
from synctui.tui.messages import DeskChanged
from synctui.tui.screens.access import sync_app as _app
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.widgets.columns import SortState
from synctui.tui.widgets.follower_table import OFFLINE
from synctui.tui.widgets.format import money, plain
from synctui.tui.widgets.group_list import BADGE
from synctui.tui.widgets.text import choices, literal

if TYPE_CHECKING:
    pass


class GroupsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.dashboard", "Back"),
        Binding("n", "new_group", "New Group"),
        Binding("enter", "open_group", "Settings"),
        Binding("s", "copy_group", "Copy (Smart Sync)"),
    ]

    def compose(self) -> ComposeResult:
        yield Label("Groups", classes="section")
        yield DataTable(id="groups-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="groups-totals")
        with Horizontal(id="groups-actions"):
            yield Button("+ New Group (n)", id="new-group", variant="primary")
            yield Button("Settings (enter)", id="open-group")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in (("name", "Group"), ("status", "Status"), ("leader", "Leader"),
                           ("followers", "Followers"), ("copies", "Smart Sync"),
                           ("today", "Leader today"), ("pnl", "Followers' P&L")):
            table.add_column(label, key=key)
        self.refresh_rows()
        table.focus()

    def __init__(self) -> None:
        super().__init__()
        self.sorting = SortState()

    def on_screen_resume(self) -> None:
        self.refresh_rows()

    def on_desk_changed(self, message: DeskChanged) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        table = self.query_one(DataTable)
        current = table.cursor_row
        table.clear()
        rows = group_rows(_app(self).desk.engine)
        for row in rows:
            badge, style = BADGE[row.status]
            status = Text(f" {badge} ", style=style)
            if row.reason:
                status.append(f" {row.reason}", style="dim italic")
            table.add_row(literal(row.name), status,
                          literal(row.leader) if row.leader else literal("none", "dim"),
                          str(row.followers), str(row.copies), money(row.today),
                          money(row.followers_pnl), key=row.name)
        self.sorting.apply(table)
        sums = group_totals(rows)
        totals = Text("All groups  leaders today ", style="dim")
        totals.append_text(plain(money(sums.today)))
        totals.append("  followers' P&L ", style="dim")
        totals.append_text(plain(money(sums.followers_pnl)))
        self.query_one("#groups-totals", Static).update(totals)
        if table.row_count:
            table.move_cursor(row=min(current, table.row_count - 1))

    @on(DataTable.HeaderSelected)
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        self.sorting.header_selected(event)

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_open_group(self) -> None:
        name = self._selected()
        if name is not None:
            self.app.push_screen(GroupSettingsScreen(name))

    def action_copy_group(self) -> None:
        _app(self).action_copy_group(self._selected())

    def action_new_group(self) -> None:
        def created(name: str | None) -> None:
            self.refresh_rows()
            if name:
                self.notify(f"Group {name} created", title="Groups", markup=False)

        self.app.push_screen(NewGroupModal(), created)

    @on(DataTable.RowSelected, "#groups-table")
    def _row_selected(self) -> None:
        self.action_open_group()

    @on(Button.Pressed, "#new-group")
    def _new(self) -> None:
        self.action_new_group()

    @on(Button.Pressed, "#open-group")
    def _open(self) -> None:
        self.action_open_group()


class GroupName(Validator):
    """A group's name: not empty, not taken (SPEC 4), said in words as it is typed."""

    def __init__(self, taken: set[str]) -> None:
        super().__init__()
        self.taken = taken

    def validate(self, value: str) -> ValidationResult:
        if not value.strip():
            return self.failure("A group needs a name.")
        if value in self.taken:
            return self.failure(f"A group named {value!r} already exists.")
        return self.success()


class NewGroupModal(ModalScreen[str | None]):
    """+ New Group: a name, an optional leader, followers. With a leader it starts
    active (SPEC 4); without, it is Not Configured."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        engine = _app(self).desk.engine
        free = unassigned_accounts(engine)
        with Vertical(id="new-group", classes="modal"):
            yield Label("New Group", classes="modal-title")
            yield Input(placeholder="name", id="group-name",
                        validators=[GroupName(set(desk_names(engine).groups))])
            yield Label("", id="name-help", classes="hint")
            yield Label("Leader (optional: without one the group is Not Configured)")
            yield Select(choices(free), prompt="no leader", id="group-leader")
            yield Label("Followers")
            yield SelectionList[str](*choices(free), id="group-followers")
            yield Static("", id="new-group-error", classes="error")
            with Horizontal(classes="modal-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#group-name", Input).focus()

    @on(Input.Changed, "#group-name")
    def _name_changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        valid = result is not None and result.is_valid
        self.query_one("#name-help", Label).update(literal(
            "" if valid or result is None else "; ".join(result.failure_descriptions)))
        self.query_one("#create", Button).disabled = not valid

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#create")
    async def _create(self) -> None:
        name = self.query_one("#group-name", Input).value
        choice = self.query_one("#group-leader", Select)
        leader = None if choice.is_blank() else str(choice.value)  # no leader: Not Configured
        followers = list(self.query_one("#group-followers", SelectionList).selected)
        error = await _app(self).desk.run(
            lambda e: e.create_group(name, leader, followers), f"create group {name}")
        if error is not None:
            self.query_one("#new-group-error", Static).update(Text(error, style="bold red"))
            return
        self.dismiss(name)


class AddFollowersModal(ModalScreen[list[str]]):
    """A multi-select of eligible accounts: 'Add N Followers'."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, group: str, choices: list[str],
                 notes: dict[str, str] | None = None) -> None:
        super().__init__()
        self.group = group
        self.choices = choices
        self.notes = notes or {}  # account -> what of the group its broker cannot trade

    def compose(self) -> ComposeResult:
        with Vertical(id="add-followers", classes="modal"):
            yield Label(literal(f"Add followers to {self.group}"), classes="modal-title")
            if self.choices:
                yield Label("Accounts with no role in another group.", classes="hint")
            else:
                yield Label("No eligible account: each already holds a role in a group.",
                            classes="hint")
            yield SelectionList[str](
                *[(literal(f"{a}  ({self.notes[a]})" if a in self.notes else a), a)
                  for a in self.choices], id="follower-choices")
            with Horizontal(classes="modal-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Add 0 Followers", id="add", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    @on(SelectionList.SelectedChanged)
    def _changed(self) -> None:
        count = len(self.query_one(SelectionList).selected)
        button = self.query_one("#add", Button)
        button.label = f"Add {count} Follower{'s' if count != 1 else ''}"
        button.disabled = count == 0

    @on(Button.Pressed, "#add")
    def _add(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss([])


class LeaderModal(ModalScreen[str | None]):
    """Pick the leader to stage. Stage with no account chosen stages nothing and says
    what to do instead: choose one, or Cancel (Remove leader is its own action)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, group: str, choices: list[str],
                 notes: dict[str, str] | None = None) -> None:
        super().__init__()
        self.group = group
        self.choices = choices
        self.notes = notes or {}  # account -> what of the group its broker cannot trade

    def compose(self) -> ComposeResult:
        with Vertical(id="leader-picker", classes="modal"):
            yield Label(literal(f"Leader of {self.group}"), classes="modal-title")
            yield Select(choices(self.choices), prompt="choose an account",
                         id="leader-choice")
            yield Label("", id="leader-help", classes="hint")
            with Horizontal(classes="modal-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Stage", id="stage", variant="primary")

    @on(Button.Pressed, "#stage")
    def _stage(self) -> None:
        choice = self.query_one(Select)
        if choice.is_blank():
            self.query_one("#leader-help", Label).update(
                "Choose an account first, or Cancel. Remove leader (L) removes the leader.")
            return
        self.dismiss(str(choice.value))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class GroupSettingsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "leave", "Back"),
        Binding("l", "change_leader", "Change leader"),
        Binding("L", "remove_leader", "Remove leader"),
        Binding("a", "add_followers", "Add followers"),
        Binding("d", "remove_follower", "Remove follower"),
        Binding("space", "toggle_active", "Active on/off"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+d", "discard", "Discard"),
    ]

    def __init__(self, group: str) -> None:
        super().__init__()
        self.group_name = group
        self.pending: list[GroupEdit] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="group-settings"):
            yield Label(literal(f"Group {self.group_name}"), classes="section")
            yield Static(id="group-summary")
            with Horizontal(id="active-row"):
                yield Label("Active ")
                yield Switch(id="active-switch")
            with Horizontal(classes="settings-buttons"):
                yield Button("Change leader (l)", id="change-leader")
                yield Button("Remove leader (L)", id="remove-leader")
                yield Button("+ Add Followers (a)", id="add-followers")
                yield Button("Remove follower (d)", id="remove-follower")
            yield DataTable(id="settings-followers", cursor_type="row")
            yield Static(id="pending", classes="pending")
            yield Static(id="settings-error", classes="error")
            with Horizontal(classes="settings-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="success")
                yield Button("Discard (ctrl+d)", id="discard", variant="warning")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_column("Follower", key="follower")
        self.query_one(DataTable).add_column("", key="state")
        self.show()

    def preview(self) -> Group:
        return _app(self).desk.engine.preview_group_edits(self.group_name, self.pending)

    def show(self) -> None:
        engine = _app(self).desk.engine
        saved = engine.group(self.group_name)
        group = self.preview()
        summary = Text()
        summary.append("Leader: ", style="dim")
        summary.append(group.leader or "none", style="bold" if group.leader else "dim")
        offline = disconnected_broker(engine, group.leader) if group.leader else None
        if offline is not None:
            summary.append(f" ({offline} {OFFLINE})", style="bold red")
        summary.append("   Status: ", style="dim")
        summary.append(describe_status(group), style="bold")
        if group.status is not saved.status or group.reason is not saved.reason:
            summary.append(f"   (now {describe_status(saved)}; Save changes it)",
                           style="yellow")
        self.query_one("#group-summary", Static).update(summary)
        switch = self.query_one(Switch)
        with switch.prevent(Switch.Changed):
            switch.value = group.status is GroupStatus.ACTIVE
        table = self.query_one(DataTable)
        table.clear()
        for follower in group.followers:
            state = Text("" if follower in saved.followers else "pending add", style="yellow")
            offline = disconnected_broker(engine, follower)
            if offline is not None:  # its copies wait for the broker (SPEC 9)
                state.append(("  " if state else "") + f"{offline} {OFFLINE}", style="bold red")
            table.add_row(literal(follower), state, key=follower)
        for follower in saved.followers:
            if follower not in group.followers:
                table.add_row(Text(follower, style="strike dim"),
                              Text("pending removal", style="yellow"), key=follower)
        pending = Text()
        if self.pending:
            pending.append(f"{len(self.pending)} pending edit"
                           f"{'s' if len(self.pending) != 1 else ''} (not saved): ",
                           style="bold yellow")
            pending.append("; ".join(edit.describe() for edit in self.pending))
        else:
            pending.append("No pending edits.", style="dim")
        self.query_one("#pending", Static).update(pending)

    def stage(self, edit: GroupEdit) -> None:
        """Stage an edit if the engine's preview accepts it; else say why, inline."""
        try:
            _app(self).desk.engine.preview_group_edits(self.group_name, [*self.pending, edit])
        except Refused as refused:
            self.query_one("#settings-error", Static).update(
                Text(f"Refused: {refused.message}", style="bold red"))
            return
        self.pending.append(edit)
        self.query_one("#settings-error", Static).update("")
        self.show()

    # --- edits -------------------------------------------------------------------------

    def action_change_leader(self) -> None:
        engine = _app(self).desk.engine
        choices = free_accounts(engine, self.preview())

        def chosen(account: str | None) -> None:
            if account:
                self.stage(SetLeader(account))

        self.app.push_screen(LeaderModal(self.group_name, choices), chosen)

    def action_remove_leader(self) -> None:
        self.stage(RemoveLeader())

    def action_add_followers(self) -> None:
        engine = _app(self).desk.engine
        group = self.preview()
        choices = free_accounts(engine, group)
        notes = {a: note for a in choices if (note := cannot_trade(engine, group, a))}

        def chosen(accounts: list[str] | None) -> None:
            if accounts:
                self.stage(AddFollowers(tuple(accounts)))

        self.app.push_screen(AddFollowersModal(self.group_name, choices, notes), chosen)

    def action_remove_follower(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        follower = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        if follower in self.preview().followers:
            self.stage(RemoveFollowers((follower,)))

    def action_toggle_active(self) -> None:
        self.stage(SetActive(self.preview().status is not GroupStatus.ACTIVE))

    @on(Switch.Changed, "#active-switch")
    def _switch(self, event: Switch.Changed) -> None:
        if event.value != (self.preview().status is GroupStatus.ACTIVE):
            self.stage(SetActive(event.value))
        self.show()

    # --- save, discard, leave ------------------------------------------------------------

    async def action_save(self) -> None:
        if not self.pending:
            self.notify("Nothing to save.", markup=False)
            return
        edits = list(self.pending)
        error = await _app(self).desk.run(
            lambda e: e.apply_group_edits(self.group_name, edits),
            f"save {self.group_name}: " + "; ".join(edit.describe() for edit in edits))
        if error is not None:
            self.query_one("#settings-error", Static).update(
                Text(f"Refused: {error}", style="bold red"))
            return
        self.pending = []
        self.query_one("#settings-error", Static).update("")
        _app(self).log_action(self.group_name, "saved: " + "; ".join(
            edit.describe() for edit in edits))
        self.notify(f"{self.group_name} saved", title="Groups", markup=False)
        self.show()

    def action_discard(self) -> None:
        self.pending = []
        self.query_one("#settings-error", Static).update("")
        self.show()

    def action_leave(self) -> None:
        if not self.pending:
            self.app.pop_screen()
            return
        count = len(self.pending)

        def answered(discard: bool | None) -> None:
            if discard:
                self.pending = []
                self.app.pop_screen()

        self.app.push_screen(ConfirmModal(
            f"Leave {self.group_name} with {count} unsaved edit{'s' if count != 1 else ''}?",
            "Leaving drops the pending edits: " + "; ".join(e.describe() for e in self.pending)
            + ". Nothing was changed.", "Discard and leave"), answered)

    @on(Button.Pressed)
    async def _button(self, event: Button.Pressed) -> None:
        handlers = {
            "change-leader": self.action_change_leader,
            "remove-leader": self.action_remove_leader,
            "add-followers": self.action_add_followers,
            "remove-follower": self.action_remove_follower,
            "discard": self.action_discard,
        }
        if event.button.id == "save":
            await self.action_save()
        elif event.button.id in handlers:
            handlers[event.button.id]()
