"""Copy-group rules (SPEC 4, 6, 8): statuses and their automatic transitions, the
one-role rule, names, and the per-follower ratio / sync / cross settings.

Every refused command must raise `Refused` and leave the groups exactly as they were.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from synctui.domain.errors import Refused
from synctui.domain.groups import Group, GroupStatus, PauseReason
from synctui.domain.orders import OrderType, Side
from synctui.engine.events import EngineEvent, GroupChanged
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import World, build_world

D = Decimal
ACTIVE = GroupStatus.ACTIVE
PAUSED = GroupStatus.PAUSED
NOT_CONFIGURED = GroupStatus.NOT_CONFIGURED


def make_world(groups: list[dict[str, Any]] | None = None,
               accounts: list[dict[str, Any]] | None = None) -> World:
    """A world with a leader, two followers and a few spare accounts, all on one sim broker."""
    if accounts is None:
        accounts = [{"id": name, "balance": 50000}
                    for name in ("lead", "f1", "f2", "spare", "lead2", "f3")]
    if groups is None:
        groups = [{"name": "G", "leader": "lead", "followers": ["f1", "f2"]}]
    scenario = {"prices": {"MNQ": 21000, "MES": 6000}, "accounts": accounts,
                "groups": groups, "steps": []}
    return build_world(parse_scenario(json.dumps(scenario)))


def snapshot(world: World) -> dict[str, Group]:
    return copy.deepcopy(world.engine.state.groups.groups)


def assert_refused_changes_nothing(world: World, command: Callable[[], object]) -> None:
    before = snapshot(world)
    with pytest.raises(Refused):
        command()
    assert snapshot(world) == before


def status(world: World, name: str) -> tuple[GroupStatus, PauseReason | None]:
    group = world.engine.group(name)
    return group.status, group.reason


def qty(world: World, account: str, symbol: str) -> Decimal:
    broker = world.engine.broker_of(account)
    return broker.position(account, broker.symbols.native(symbol))


def breach(world: World, account: str) -> None:
    """Make `account` breach a 100 daily loss limit: 1 MES long loses 5 x 20 = 100."""
    engine = world.engine
    engine.place_order(account, "MES", Side.BUY, qty=D(1))
    engine.set_price("MES", D(5980))
    assert engine.broker_of(account).is_breached(account)


def risky_accounts() -> list[dict[str, Any]]:
    return [
        {"id": "lead", "balance": 50000, "risk": {"daily_loss_limit": 100}},
        {"id": "f1", "balance": 50000},
        {"id": "f2", "balance": 50000},
        {"id": "spare", "balance": 50000},
        {"id": "lead2", "balance": 50000},
    ]


# --- statuses ------------------------------------------------------------------------


def test_new_group_with_leader_is_active_with_or_without_followers() -> None:
    world = make_world(groups=[])
    world.engine.create_group("Solo", leader="lead")
    world.engine.create_group("Team", leader="lead2", followers=["f1"])
    assert status(world, "Solo") == (ACTIVE, None)
    assert status(world, "Team") == (ACTIVE, None)
    assert world.engine.group("Solo").followers == []
    assert world.engine.group("Team").followers == ["f1"]


def test_new_group_without_leader_is_not_configured() -> None:
    world = make_world(groups=[])
    world.engine.create_group("Empty")
    world.engine.create_group("Waiting", followers=["f1", "f2"])
    assert status(world, "Empty") == (NOT_CONFIGURED, None)
    assert status(world, "Waiting") == (NOT_CONFIGURED, None)
    assert world.engine.group("Waiting").followers == ["f1", "f2"]


def test_set_leader_on_not_configured_group_pauses_it_until_activated() -> None:
    world = make_world(groups=[{"name": "N", "followers": ["f1"]}])
    world.engine.set_leader("N", "lead")
    assert world.engine.group("N").leader == "lead"
    assert status(world, "N") == (PAUSED, PauseReason.LEADER_ASSIGNED)

    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MNQ") == 0  # paused: nothing copied yet

    world.engine.activate("N")
    assert status(world, "N") == (ACTIVE, None)
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MNQ") == 1


def test_changing_the_leader_of_an_active_group_keeps_it_active() -> None:
    world = make_world()
    world.engine.set_leader("G", "spare")
    group = world.engine.group("G")
    assert group.leader == "spare"
    assert status(world, "G") == (ACTIVE, None)
    assert group.followers == ["f1", "f2"]
    # The old leader is free again and may lead another group.
    world.engine.create_group("H", leader="lead")
    assert world.engine.group("H").leader == "lead"


def test_remove_leader_makes_the_group_not_configured() -> None:
    world = make_world()
    world.engine.remove_leader("G")
    group = world.engine.group("G")
    assert group.leader is None
    assert status(world, "G") == (NOT_CONFIGURED, None)
    assert group.followers == ["f1", "f2"]
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MNQ") == 0


def test_removing_the_last_follower_pauses_an_active_group() -> None:
    world = make_world()
    world.engine.remove_followers("G", ["f1"])
    assert status(world, "G") == (ACTIVE, None)
    world.engine.remove_followers("G", ["f2"])
    assert status(world, "G") == (PAUSED, PauseReason.NO_FOLLOWERS)
    assert world.engine.group("G").followers == []


def test_removing_several_followers_at_once_down_to_none_pauses() -> None:
    world = make_world()
    world.engine.remove_followers("G", ["f1", "f2"])
    assert status(world, "G") == (PAUSED, PauseReason.NO_FOLLOWERS)


def _pause_by_hand(world: World) -> None:
    world.engine.pause("G")


def _pause_by_emergency_stop(world: World) -> None:
    world.engine.emergency_stop()


def _pause_by_last_follower_leaving(world: World) -> None:
    world.engine.remove_followers("G", ["f1", "f2"])


def _pause_by_leader_assignment(world: World) -> None:
    world.engine.remove_leader("G")
    world.engine.set_leader("G", "lead")


@pytest.mark.parametrize(
    ("pause", "reason"),
    [
        (_pause_by_hand, PauseReason.PAUSED),
        (_pause_by_emergency_stop, PauseReason.EMERGENCY_STOP),
        (_pause_by_last_follower_leaving, PauseReason.NO_FOLLOWERS),
        (_pause_by_leader_assignment, PauseReason.LEADER_ASSIGNED),
    ],
    ids=["by_hand", "emergency_stop", "no_followers", "leader_assigned"],
)
def test_adding_a_follower_reactivates_a_paused_group_whatever_paused_it(
        pause: Callable[[World], None], reason: PauseReason) -> None:
    world = make_world()
    pause(world)
    assert status(world, "G") == (PAUSED, reason)
    world.engine.add_followers("G", ["spare"])
    assert status(world, "G") == (ACTIVE, None)
    assert "spare" in world.engine.group("G").followers
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "spare", "MNQ") == 1


def test_adding_a_follower_does_not_reactivate_when_the_leader_is_breached() -> None:
    world = make_world(accounts=risky_accounts())
    breach(world, "lead")
    assert status(world, "G") == (PAUSED, PauseReason.LEADER_BREACHED)
    world.engine.add_followers("G", ["spare"])
    assert world.engine.group("G").followers == ["f1", "f2", "spare"]
    assert status(world, "G") == (PAUSED, PauseReason.LEADER_BREACHED)


def test_adding_a_follower_to_a_not_configured_group_keeps_it_not_configured() -> None:
    world = make_world(groups=[{"name": "N"}])
    world.engine.add_followers("N", ["f1"])
    assert status(world, "N") == (NOT_CONFIGURED, None)


def test_activate_is_refused_without_a_leader() -> None:
    world = make_world(groups=[{"name": "N", "followers": ["f1"]}])
    assert_refused_changes_nothing(world, lambda: world.engine.activate("N"))
    assert status(world, "N") == (NOT_CONFIGURED, None)


def test_activate_is_refused_while_the_leader_is_breached_until_reset() -> None:
    world = make_world(accounts=risky_accounts())
    breach(world, "lead")
    assert_refused_changes_nothing(world, lambda: world.engine.activate("G"))
    assert status(world, "G") == (PAUSED, PauseReason.LEADER_BREACHED)

    world.engine.reset_breach("lead")
    world.engine.activate("G")
    assert status(world, "G") == (ACTIVE, None)


def test_a_breached_leader_group_can_be_reactivated_after_the_leader_changes() -> None:
    world = make_world(accounts=risky_accounts())
    breach(world, "lead")
    world.engine.set_leader("G", "lead2")
    assert world.engine.group("G").status is PAUSED
    world.engine.activate("G")
    assert status(world, "G") == (ACTIVE, None)


def test_a_leader_breached_when_assigned_leaves_the_group_paused_leader_breached() -> None:
    world = make_world(groups=[{"name": "N", "followers": ["f1"]}], accounts=risky_accounts())
    breach(world, "lead")
    world.engine.set_leader("N", "lead")
    assert status(world, "N") == (PAUSED, PauseReason.LEADER_BREACHED)


def test_a_new_group_with_a_breached_leader_is_paused_leader_breached() -> None:
    world = make_world(groups=[], accounts=risky_accounts())
    breach(world, "lead")
    world.engine.create_group("N", leader="lead", followers=["f1"])
    assert status(world, "N") == (PAUSED, PauseReason.LEADER_BREACHED)


def test_pause_is_refused_without_a_leader() -> None:
    world = make_world(groups=[{"name": "N", "followers": ["f1"]}])
    assert_refused_changes_nothing(world, lambda: world.engine.pause("N"))
    assert status(world, "N") == (NOT_CONFIGURED, None)


def test_pause_by_hand_has_reason_paused_and_stops_copying() -> None:
    world = make_world()
    world.engine.pause("G")
    assert status(world, "G") == (PAUSED, PauseReason.PAUSED)
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MNQ") == 0
    world.engine.activate("G")
    assert status(world, "G") == (ACTIVE, None)


def test_noops_are_not_refused_and_change_nothing() -> None:
    """SPEC 8: activating an active group, pausing a paused one and assigning the same
    leader again are no-ops, not refusals."""
    world = make_world(groups=[
        {"name": "G", "leader": "lead", "followers": ["f1"]},
        {"name": "P", "leader": "lead2", "followers": ["f2"]},
    ])
    world.engine.pause("P")
    events: list[EngineEvent] = []
    world.engine.subscribe(events.append)
    before = snapshot(world)

    world.engine.activate("G")
    world.engine.pause("P")
    world.engine.set_leader("G", "lead")
    world.engine.set_leader("P", "lead2")

    assert snapshot(world) == before
    assert status(world, "G") == (ACTIVE, None)
    assert status(world, "P") == (PAUSED, PauseReason.PAUSED)
    assert [e for e in events if isinstance(e, GroupChanged)] == []


def test_status_changes_are_published_as_group_changed() -> None:
    world = make_world()
    events: list[EngineEvent] = []
    world.engine.subscribe(events.append)
    world.engine.pause("G")
    world.engine.activate("G")
    changes = [(e.group, e.status, e.reason, e.previous) for e in events
               if isinstance(e, GroupChanged)]
    assert changes == [
        ("G", PAUSED, PauseReason.PAUSED, ACTIVE),
        ("G", ACTIVE, None, PAUSED),
    ]


def test_a_new_group_is_published_with_no_previous_status() -> None:
    world = make_world(groups=[])
    events: list[EngineEvent] = []
    world.engine.subscribe(events.append)
    world.engine.create_group("A", leader="lead", followers=["f1"])
    world.engine.create_group("B")
    changes = [(e.group, e.status, e.reason, e.previous) for e in events
               if isinstance(e, GroupChanged)]
    assert changes == [("A", ACTIVE, None, None), ("B", NOT_CONFIGURED, None, None)]


# --- names and the one-role rule -------------------------------------------------------


def test_empty_group_name_is_refused() -> None:
    world = make_world()
    assert_refused_changes_nothing(world, lambda: world.engine.create_group(""))
    assert set(world.engine.state.groups.groups) == {"G"}


def test_duplicate_group_name_is_refused_and_the_existing_group_is_untouched() -> None:
    world = make_world()
    assert_refused_changes_nothing(
        world, lambda: world.engine.create_group("G", leader="spare"))
    assert world.engine.group("G").leader == "lead"
    assert world.engine.group("G").followers == ["f1", "f2"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(lambda w: w.engine.create_group("H", leader="f1"), id="follower_leads_new"),
        pytest.param(lambda w: w.engine.create_group("H", leader="spare", followers=["f1"]),
                     id="follower_follows_new"),
        pytest.param(lambda w: w.engine.create_group("H", leader="lead"), id="leader_leads_new"),
        pytest.param(lambda w: w.engine.create_group("H", leader="spare", followers=["lead"]),
                     id="leader_follows_new"),
        pytest.param(lambda w: w.engine.add_followers("H", ["f1"]), id="follower_added_to_H"),
        pytest.param(lambda w: w.engine.add_followers("H", ["lead"]), id="leader_added_to_H"),
        pytest.param(lambda w: w.engine.set_leader("H", "f2"), id="follower_set_leader_H"),
        pytest.param(lambda w: w.engine.set_leader("H", "lead"), id="leader_set_leader_H"),
        pytest.param(lambda w: w.engine.add_followers("G", ["lead"]), id="leader_follows_own"),
        pytest.param(lambda w: w.engine.set_leader("G", "f1"), id="follower_leads_own"),
        pytest.param(lambda w: w.engine.add_followers("G", ["f1"]), id="follows_twice"),
        pytest.param(lambda w: w.engine.create_group("H2", leader="spare", followers=["f3", "f3"]),
                     id="listed_twice"),
        pytest.param(lambda w: w.engine.create_group("H2", leader="f3", followers=["f3"]),
                     id="leads_and_follows_new"),
    ],
)
def test_one_role_in_one_group(command: Callable[[World], object]) -> None:
    world = make_world(groups=[
        {"name": "G", "leader": "lead", "followers": ["f1", "f2"]},
        {"name": "H"},
    ])
    assert_refused_changes_nothing(world, lambda: command(world))


def test_adding_several_followers_is_all_or_nothing() -> None:
    world = make_world(groups=[
        {"name": "G", "leader": "lead", "followers": ["f1"]},
        {"name": "H", "leader": "lead2", "followers": ["f2"]},
    ])
    assert_refused_changes_nothing(world, lambda: world.engine.add_followers("G", ["spare", "f2"]))
    assert world.engine.group("G").followers == ["f1"]


def test_removing_several_followers_is_all_or_nothing() -> None:
    world = make_world()
    assert_refused_changes_nothing(
        world, lambda: world.engine.remove_followers("G", ["f1", "spare"]))
    assert_refused_changes_nothing(
        world, lambda: world.engine.remove_followers("G", ["f1", "f1"]))
    assert world.engine.group("G").followers == ["f1", "f2"]


def test_a_removed_follower_may_join_another_group() -> None:
    world = make_world()
    world.engine.remove_followers("G", ["f1"])
    world.engine.create_group("H", leader="f1", followers=["spare"])
    assert world.engine.group("H").leader == "f1"
    assert status(world, "H") == (ACTIVE, None)


def test_unknown_accounts_and_groups_are_refused() -> None:
    world = make_world()
    engine = world.engine
    for command in (
        lambda: engine.create_group("H", leader="ghost"),
        lambda: engine.create_group("H", followers=["ghost"]),
        lambda: engine.add_followers("G", ["ghost"]),
        lambda: engine.set_leader("G", "ghost"),
        lambda: engine.remove_followers("G", ["spare"]),
        lambda: engine.activate("Nope"),
        lambda: engine.pause("Nope"),
        lambda: engine.set_ratio("Nope", "f1", "MNQ", 2),
    ):
        assert_refused_changes_nothing(world, command)
    assert "H" not in engine.state.groups.groups


# --- ratio ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1, 10, D(2), D("7.0")])
def test_ratio_accepts_whole_numbers_from_1_to_10(ratio: Decimal | int) -> None:
    world = make_world()
    world.engine.set_ratio("G", "f1", "MNQ", ratio)
    assert world.engine.group("G").setting("f1", "MNQ").ratio == int(ratio)
    assert world.engine.group("G").setting("f2", "MNQ").ratio == 1
    assert world.engine.group("G").setting("f1", "MES").ratio == 1


@pytest.mark.parametrize("ratio", [11, 0, -1, D("1.5"), D("10.01")])
def test_ratio_outside_1_to_10_or_fractional_is_refused(ratio: Decimal | int) -> None:
    world = make_world()
    world.engine.set_ratio("G", "f1", "MNQ", 3)
    assert_refused_changes_nothing(world, lambda: world.engine.set_ratio("G", "f1", "MNQ", ratio))
    assert world.engine.group("G").setting("f1", "MNQ").ratio == 3


def test_ratio_for_an_account_that_does_not_follow_is_refused() -> None:
    world = make_world()
    assert_refused_changes_nothing(
        world, lambda: world.engine.set_ratio("G", "spare", "MNQ", 2))
    assert_refused_changes_nothing(
        world, lambda: world.engine.set_ratio("G", "f1", "NOPE", 2))


def test_ratio_is_used_for_copies() -> None:
    world = make_world()
    world.engine.set_ratio("G", "f2", "MNQ", 4)
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(2))
    assert qty(world, "f1", "MNQ") == 2
    assert qty(world, "f2", "MNQ") == 8


# --- sync ------------------------------------------------------------------------------------


def test_master_sync_writes_into_every_follower_and_a_later_toggle_overrides() -> None:
    world = make_world()
    engine = world.engine
    engine.set_sync("G", None, "MNQ", False)
    group = engine.group("G")
    assert group.setting("f1", "MNQ").sync is False
    assert group.setting("f2", "MNQ").sync is False

    engine.set_sync("G", "f2", "MNQ", True)
    assert group.setting("f1", "MNQ").sync is False
    assert group.setting("f2", "MNQ").sync is True

    engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MNQ") == 0
    assert qty(world, "f2", "MNQ") == 1
    assert engine.state.failures == []  # sync off records no failure


def test_master_sync_on_turns_every_follower_back_on() -> None:
    world = make_world()
    engine = world.engine
    engine.set_sync("G", "f1", "MNQ", False)
    engine.set_sync("G", None, "MNQ", True)
    group = engine.group("G")
    assert group.setting("f1", "MNQ").sync is True
    assert group.setting("f2", "MNQ").sync is True


def test_master_sync_only_reaches_current_followers_and_one_contract() -> None:
    world = make_world()
    engine = world.engine
    engine.set_sync("G", None, "MNQ", False)
    engine.add_followers("G", ["spare"])
    group = engine.group("G")
    assert group.setting("spare", "MNQ").sync is True
    assert group.setting("f1", "MES").sync is True

    engine.place_order("lead", "MES", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MES") == 1
    engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "spare", "MNQ") == 1
    assert qty(world, "f1", "MNQ") == 0


def test_sync_for_a_non_follower_or_unknown_symbol_is_refused() -> None:
    world = make_world()
    assert_refused_changes_nothing(
        world, lambda: world.engine.set_sync("G", "spare", "MNQ", False))
    assert_refused_changes_nothing(
        world, lambda: world.engine.set_sync("G", None, "NOPE", False))


# --- cross -----------------------------------------------------------------------------------


def test_cross_within_the_family_is_accepted_and_can_be_removed() -> None:
    world = make_world()
    world.engine.set_cross("G", "f1", "MNQ", "NQ")
    assert world.engine.group("G").setting("f1", "MNQ").cross == "NQ"
    world.engine.set_cross("G", "f1", "MNQ", None)
    assert world.engine.group("G").setting("f1", "MNQ").cross is None


@pytest.mark.parametrize("target", ["MES", "ES", "BTCUSDT", "NOPE"])
def test_cross_to_another_family_or_unknown_symbol_is_refused(target: str) -> None:
    world = make_world()
    world.engine.set_cross("G", "f1", "MNQ", "NQ")
    assert_refused_changes_nothing(
        world, lambda: world.engine.set_cross("G", "f1", "MNQ", target))
    assert world.engine.group("G").setting("f1", "MNQ").cross == "NQ"


def test_cross_is_refused_while_holding_a_position_in_the_traded_symbol() -> None:
    world = make_world()
    engine = world.engine
    engine.set_cross("G", "f1", "MNQ", "NQ")
    engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "NQ") == 1

    assert_refused_changes_nothing(world, lambda: engine.set_cross("G", "f1", "MNQ", None))
    assert_refused_changes_nothing(world, lambda: engine.set_cross("G", "f1", "MNQ", "MNQ"))
    assert engine.group("G").setting("f1", "MNQ").cross == "NQ"

    engine.flatten_position("f1", "NQ")
    engine.set_cross("G", "f1", "MNQ", None)
    assert engine.group("G").setting("f1", "MNQ").cross is None


def test_cross_is_refused_while_holding_the_leader_symbol_without_a_cross() -> None:
    world = make_world()
    engine = world.engine
    engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
    assert qty(world, "f1", "MNQ") == 1
    assert_refused_changes_nothing(world, lambda: engine.set_cross("G", "f1", "MNQ", "NQ"))
    assert engine.group("G").setting("f1", "MNQ").cross is None


def test_cross_is_allowed_when_only_another_symbol_is_held() -> None:
    world = make_world()
    engine = world.engine
    engine.place_order("f1", "MES", Side.BUY, qty=D(1))
    engine.place_order("f1", "NQ", Side.BUY, qty=D(1))
    # f1 trades MNQ for the MNQ contract and holds none of it: the cross may be set.
    engine.set_cross("G", "f1", "MNQ", "NQ")
    assert engine.group("G").setting("f1", "MNQ").cross == "NQ"


def test_cross_is_refused_while_a_working_order_rests_in_the_traded_symbol() -> None:
    world = make_world()
    engine = world.engine
    engine.place_order("lead", "MNQ", Side.BUY, qty=D(1), type=OrderType.LIMIT, price=D(20990))
    broker = engine.broker_of("f1")
    assert len(broker.working_orders("f1", broker.symbols.native("MNQ"))) == 1
    assert_refused_changes_nothing(world, lambda: engine.set_cross("G", "f1", "MNQ", "NQ"))

    engine.cancel_orders("G")
    engine.set_cross("G", "f1", "MNQ", "NQ")
    assert engine.group("G").setting("f1", "MNQ").cross == "NQ"


def test_cross_for_a_non_follower_is_refused() -> None:
    world = make_world()
    assert_refused_changes_nothing(
        world, lambda: world.engine.set_cross("G", "spare", "MNQ", "NQ"))

