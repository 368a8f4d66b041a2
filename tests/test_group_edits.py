"""Staged group edits (issue 6): previewed on a copy, saved all or nothing."""

from __future__ import annotations

import pytest

from synctui.domain.errors import Refused
from synctui.domain.groups import (
    AddFollowers,
    GroupStatus,
    PauseReason,
    RemoveFollowers,
    RemoveLeader,
    SetActive,
    SetLeader,
)
from tests.tui_support import desk_world


def test_preview_changes_nothing_and_shows_the_automatic_pause() -> None:
    world = desk_world()
    engine = world.engine
    preview = engine.preview_group_edits("Bravo", [RemoveFollowers(("FUND-31",))])
    assert preview.followers == []
    assert (preview.status, preview.reason) == (GroupStatus.PAUSED, PauseReason.PAUSED)
    assert engine.group("Bravo").followers == ["FUND-31"]


def test_adding_followers_reactivates_a_paused_group_in_the_preview() -> None:
    engine = desk_world().engine
    preview = engine.preview_group_edits("Bravo", [AddFollowers(("SPARE-41",))])
    assert preview.status is GroupStatus.ACTIVE
    assert engine.group("Bravo").status is GroupStatus.PAUSED


def test_save_applies_every_edit_in_order() -> None:
    engine = desk_world().engine
    engine.apply_group_edits("Charlie", [SetLeader("SPARE-41"), SetActive(True)])
    charlie = engine.group("Charlie")
    assert (charlie.leader, charlie.status) == ("SPARE-41", GroupStatus.ACTIVE)


def test_a_refused_edit_refuses_the_whole_save_and_changes_nothing() -> None:
    engine = desk_world().engine
    with pytest.raises(Refused) as refused:
        engine.apply_group_edits("Charlie", [SetLeader("SPARE-41"),
                                             AddFollowers(("APEX-11",))])
    assert "edit 2 (add APEX-11)" in refused.value.message
    assert "already the follower of group 'Alpha'" in refused.value.message
    assert engine.group("Charlie").leader is None
    assert engine.group("Charlie").status is GroupStatus.NOT_CONFIGURED


def test_activating_without_a_leader_is_refused_with_its_reason() -> None:
    engine = desk_world().engine
    with pytest.raises(Refused, match="has no leader"):
        engine.apply_group_edits("Alpha", [RemoveLeader(), SetActive(True)])
    assert engine.group("Alpha").leader == "LEAD-1"


def test_a_status_change_carries_the_command_that_caused_it() -> None:
    from synctui.engine.events import EngineEvent, GroupChanged

    engine = desk_world().engine
    events: list[EngineEvent] = []
    engine.subscribe(events.append)
    engine.add_followers("Bravo", ["SPARE-41"])
    changes = [e for e in events if isinstance(e, GroupChanged)]
    assert [(e.group, e.status, e.cause) for e in changes] == [
        ("Bravo", GroupStatus.ACTIVE, "followers were added")]
