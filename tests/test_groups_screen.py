"""Pilot tests of managing groups (issue 6), asserting the engine's state.

Fixture desk: Alpha (active, LEAD-1 with APEX-11, APEX-12, TOP-21, TOP-22),
Bravo (paused by hand, LEAD-2 with FUND-31), Charlie (no leader); SPARE-41
holds no role.
"""

from __future__ import annotations

from textual.widgets import DataTable, Input, Select, SelectionList

from synctui.domain.groups import GroupStatus, PauseReason
from synctui.tui.app import SyncApp
from synctui.tui.screens.confirm import ConfirmModal
from synctui.tui.screens.groups import (
    AddFollowersModal,
    GroupSettingsScreen,
    GroupsScreen,
    LeaderModal,
    NewGroupModal,
)
from tests.tui_support import SIZE, desk_app


async def open_settings(app: SyncApp, pilot: object, group: str) -> GroupSettingsScreen:
    await app.run_action("groups")
    await _pause(pilot)
    screen = app.screen
    assert isinstance(screen, GroupsScreen)
    table = screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(group))
    await _pause(pilot)
    screen.action_open_group()
    await _pause(pilot)
    settings = app.screen
    assert isinstance(settings, GroupSettingsScreen)
    return settings


async def _pause(pilot: object) -> None:
    await pilot.pause()  # type: ignore[attr-defined]


async def test_the_groups_screen_lists_every_group_with_its_badge() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, GroupsScreen)
        table = screen.query_one(DataTable)
        assert [str(k.value) for k in table.rows] == ["Alpha", "Bravo", "Charlie"]
        assert "Paused" in str(table.get_cell("Bravo", "status"))
        assert "paused by hand" in str(table.get_cell("Bravo", "status"))
        assert str(table.get_cell("Alpha", "followers")) == "4"


async def test_create_a_group_that_activates_itself() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, NewGroupModal)
        await pilot.press(*"Delta")
        modal.query_one("#group-leader", Select).value = "SPARE-41"
        await pilot.pause()
        await pilot.click("#create")
        await pilot.pause()
        delta = app.desk.engine.group("Delta")
        assert (delta.leader, delta.status) == ("SPARE-41", GroupStatus.ACTIVE)


async def test_a_duplicate_or_empty_name_is_refused_as_it_is_typed() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, NewGroupModal)
        await pilot.press(*"Alpha")
        await pilot.pause()
        assert "already exists" in str(modal.query_one("#name-help").render())
        assert modal.query_one("#create").disabled
        modal.query_one("#group-name", Input).value = ""
        await pilot.pause()
        assert "needs a name" in str(modal.query_one("#name-help").render())
        assert set(app.desk.engine.state.groups.groups) == {"Alpha", "Bravo", "Charlie"}


async def test_staged_edits_change_nothing_until_save() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Bravo")
        settings.query_one(DataTable).move_cursor(row=0)
        await pilot.press("d")  # remove FUND-31: the preview pauses for no followers
        await pilot.pause()
        assert settings.pending
        assert app.desk.engine.group("Bravo").followers == ["FUND-31"]
        assert "pending" in str(settings.query_one("#pending").render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        bravo = app.desk.engine.group("Bravo")
        assert bravo.followers == []
        assert settings.pending == []


async def test_discard_drops_every_pending_edit() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Alpha")
        await pilot.press("space")  # stage: pause
        await pilot.press("L")  # stage: remove the leader
        await pilot.pause()
        assert len(settings.pending) == 2
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert settings.pending == []
        alpha = app.desk.engine.group("Alpha")
        assert (alpha.leader, alpha.status) == ("LEAD-1", GroupStatus.ACTIVE)


async def test_add_followers_reactivates_a_paused_group() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Bravo")
        await pilot.press("a")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, AddFollowersModal)
        assert modal.choices == ["SPARE-41"]  # every other account holds a role
        modal.query_one(SelectionList).select("SPARE-41")
        await pilot.pause()
        assert str(modal.query_one("#add").label) == "Add 1 Follower"
        await pilot.click("#add")
        await pilot.pause()
        assert "Active" in str(settings.query_one("#group-summary").render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        bravo = app.desk.engine.group("Bravo")
        assert bravo.followers == ["FUND-31", "SPARE-41"]
        assert bravo.status is GroupStatus.ACTIVE


async def test_change_leader_of_a_group_without_one() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Charlie")
        await pilot.press("l")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, LeaderModal)
        modal.query_one(Select).value = "SPARE-41"
        await pilot.click("#stage")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        charlie = app.desk.engine.group("Charlie")
        assert (charlie.leader, charlie.status, charlie.reason) == (
            "SPARE-41", GroupStatus.PAUSED, PauseReason.LEADER_ASSIGNED)
        assert settings.pending == []


async def test_a_refused_edit_is_shown_inline_and_not_staged() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Charlie")
        await pilot.press("space")  # activate a group with no leader
        await pilot.pause()
        assert settings.pending == []
        assert "has no leader" in str(settings.query_one("#settings-error").render())
        assert app.desk.engine.group("Charlie").status is GroupStatus.NOT_CONFIGURED


async def test_leaving_with_pending_edits_asks_first() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Alpha")
        await pilot.press("space")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # stay
        await pilot.pause()
        assert app.screen is settings and settings.pending
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")  # discard and leave
        await pilot.pause()
        assert isinstance(app.screen, GroupsScreen)
        assert app.desk.engine.group("Alpha").status is GroupStatus.ACTIVE


async def test_pause_and_activate_with_the_active_toggle() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        settings = await open_settings(app, pilot, "Alpha")
        await pilot.press("space", "ctrl+s")
        await pilot.pause()
        alpha = app.desk.engine.group("Alpha")
        assert (alpha.status, alpha.reason) == (GroupStatus.PAUSED, PauseReason.PAUSED)
        await pilot.click("#active-switch")
        await pilot.pause()
        assert settings.pending
        await pilot.click("#save")
        await pilot.pause()
        assert app.desk.engine.group("Alpha").status is GroupStatus.ACTIVE


async def test_remove_the_leader_and_save() -> None:
    app = desk_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_settings(app, pilot, "Bravo")
        await pilot.click("#remove-leader")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        bravo = app.desk.engine.group("Bravo")
        assert (bravo.leader, bravo.status) == (None, GroupStatus.NOT_CONFIGURED)
        assert bravo.followers == ["FUND-31"]
