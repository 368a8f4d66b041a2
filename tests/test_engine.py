"""The ratio-mode copy engine (SPEC 4, 6, 8): what each follower trades for a leader's
fills and working orders, failures, the group actions, breaches, mixed brokers,
observers and restarts.

Expected numbers are worked out by hand from the SPEC. MNQ: multiplier 2, margin 100
per contract; NQ: 20 / 1000; MES: 5 / 50. No fees or slippage unless stated.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from synctui.domain.errors import Refused, RejectReason
from synctui.domain.groups import GroupStatus, PauseReason
from synctui.domain.orders import FillCause, MarginMode, OrderType, Side
from synctui.engine.events import AccountFilled, CopyFailed, EngineEvent, GroupChanged
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import World, build_world

D = Decimal
BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
STOP = OrderType.STOP

Order = tuple[str, Side, OrderType, Decimal, Decimal | None, bool]


def make_world(accounts: list[dict[str, Any]] | None = None,
               groups: list[dict[str, Any]] | None = None,
               brokers: dict[str, Any] | None = None,
               prices: dict[str, Any] | None = None) -> World:
    """By default: lead 50,000; f1 and f2 20,000; group G = lead -> [f1, f2]."""
    scenario: dict[str, Any] = {
        "prices": prices or {"MNQ": 21000, "MES": 6000, "BTCUSDT": 50000},
        "accounts": accounts or [
            {"id": "lead", "balance": 50000},
            {"id": "f1", "balance": 20000},
            {"id": "f2", "balance": 20000},
        ],
        "groups": groups if groups is not None else [
            {"name": "G", "leader": "lead", "followers": ["f1", "f2"]}],
        "steps": [],
    }
    if brokers is not None:
        scenario["brokers"] = brokers
    return build_world(parse_scenario(json.dumps(scenario)))


def ratio3_world(**kwargs: Any) -> World:
    """The default world with f2 at ratio 3 for MNQ."""
    world = make_world(**kwargs)
    world.engine.set_ratio("G", "f2", "MNQ", 3)
    return world


def positions(world: World, account: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Catalog symbol -> (signed qty, average price)."""
    broker = world.engine.broker_of(account)
    return {broker.symbols.catalog(p.symbol): (p.qty, p.avg_price)
            for p in broker.view(account).positions}


def qty(world: World, account: str, symbol: str = "MNQ") -> Decimal:
    held = positions(world, account).get(symbol)
    return held[0] if held else D(0)


def orders(world: World, account: str) -> list[Order]:
    """Working orders as (catalog symbol, side, type, qty, price, reduce_only), sorted."""
    broker = world.engine.broker_of(account)
    found = [(broker.symbols.catalog(o.symbol), o.side, o.type, o.qty, o.price, o.reduce_only)
             for o in broker.view(account).orders]
    return sorted(found, key=repr)


def balance(world: World, account: str) -> Decimal:
    return world.engine.broker_of(account).view(account).balance


def failures(world: World) -> list[tuple[str, str, str, RejectReason]]:
    return [(f.group, f.account, f.symbol, f.reason) for f in world.engine.state.failures]


def record(world: World) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    world.engine.subscribe(events.append)
    return events


def fills(events: list[EngineEvent], account: str) -> list[AccountFilled]:
    return [e for e in events if isinstance(e, AccountFilled) and e.account == account]


def buy(world: World, account: str, amount: int | str, symbol: str = "MNQ", **kw: Any) -> str:
    return world.engine.place_order(account, symbol, BUY, qty=D(amount), **kw)


def sell(world: World, account: str, amount: int | str, symbol: str = "MNQ", **kw: Any) -> str:
    return world.engine.place_order(account, symbol, SELL, qty=D(amount), **kw)


def price(world: World, value: int | str, symbol: str = "MNQ") -> None:
    world.engine.set_price(symbol, D(value))


# --- opening and closing ---------------------------------------------------------------


def test_an_opening_fill_copies_qty_times_ratio() -> None:
    world = ratio3_world()
    buy(world, "lead", 2)
    assert positions(world, "lead") == {"MNQ": (D(2), D(21000))}
    assert positions(world, "f1") == {"MNQ": (D(2), D(21000))}
    assert positions(world, "f2") == {"MNQ": (D(6), D(21000))}
    buy(world, "lead", 1)
    assert qty(world, "f1") == 3
    assert qty(world, "f2") == 9
    assert failures(world) == []


def test_a_short_entry_is_copied_short() -> None:
    world = ratio3_world()
    sell(world, "lead", 2)
    assert positions(world, "f1") == {"MNQ": (D(-2), D(21000))}
    assert positions(world, "f2") == {"MNQ": (D(-6), D(21000))}


def test_partial_closes_are_copied_as_the_same_fraction() -> None:
    world = ratio3_world()
    buy(world, "lead", 4)  # f1 4, f2 12
    price(world, 21010)
    sell(world, "lead", 1)  # 1/4: f1 closes 1, f2 closes 3
    assert qty(world, "f1") == 3
    assert qty(world, "f2") == 9
    sell(world, "lead", 1)  # 1/3: f1 closes 1, f2 closes 3
    assert qty(world, "lead") == 2
    assert positions(world, "f1") == {"MNQ": (D(2), D(21000))}
    assert positions(world, "f2") == {"MNQ": (D(6), D(21000))}
    # Realized: each closed contract made 10 points x 2.
    assert balance(world, "lead") == D(50040)
    assert balance(world, "f1") == D(20040)
    assert balance(world, "f2") == D(20120)


@pytest.mark.parametrize(
    ("leader_qty", "own_extra", "leader_sells", "expected_after"),
    [
        (2, 3, 1, 2),   # holds 5, closes 5 x 1/2 = 2.5 -> 3
        (4, 2, 1, 4),   # holds 6, closes 6 x 1/4 = 1.5 -> 2
        (3, 1, 1, 3),   # holds 4, closes 4 x 1/3 = 1.33 -> 1
        (4, 1, 3, 1),   # holds 5, closes 5 x 3/4 = 3.75 -> 4
        (3, -2, 1, 1),  # holds 1, closes 1 x 1/3 = 0.33 -> 0: no order
    ],
)
def test_proportional_close_is_rounded_half_up(leader_qty: int, own_extra: int,
                                               leader_sells: int, expected_after: int) -> None:
    world = make_world()
    buy(world, "lead", leader_qty)
    if own_extra > 0:
        buy(world, "f1", own_extra)  # the follower's own trade: not copied anywhere
    else:
        sell(world, "f1", -own_extra)
    sell(world, "lead", leader_sells)
    assert qty(world, "f1") == expected_after
    assert qty(world, "f2") == leader_qty - leader_sells
    assert failures(world) == []


def test_leader_flat_means_the_follower_closes_all_of_its_position() -> None:
    world = ratio3_world()
    buy(world, "lead", 3)  # f1 3, f2 9
    buy(world, "f1", 2)  # f1 5 (2 of its own)
    price(world, 21005)
    sell(world, "lead", 3)
    assert positions(world, "lead") == {}
    assert positions(world, "f1") == {}
    assert positions(world, "f2") == {}
    assert balance(world, "f1") == D(20000) + 5 * 5 * 2
    assert balance(world, "f2") == D(20000) + 9 * 5 * 2


def test_a_flat_follower_is_never_opened_by_a_leader_exit() -> None:
    world = ratio3_world()
    world.engine.set_sync("G", "f2", "MNQ", False)
    buy(world, "lead", 2)
    world.engine.set_sync("G", "f2", "MNQ", True)
    sell(world, "lead", 1)
    assert positions(world, "f2") == {}
    sell(world, "lead", 1)
    assert positions(world, "f2") == {}
    assert orders(world, "f2") == []
    assert positions(world, "f1") == {}
    assert failures(world) == []


def test_a_follower_added_later_copies_nothing_the_leader_already_holds() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "late", "balance": 20000},
    ], groups=[{"name": "G", "leader": "lead", "followers": ["f1"]}])
    buy(world, "lead", 2)
    world.engine.add_followers("G", ["late"])
    assert positions(world, "late") == {}
    sell(world, "lead", 1)  # an exit: late is flat and stays flat
    assert positions(world, "late") == {}
    buy(world, "lead", 3)  # its first copy is the leader's next opening fill
    assert positions(world, "late") == {"MNQ": (D(3), D(21000))}
    assert qty(world, "f1") == 4


def test_a_leader_exit_never_adds_to_an_opposite_follower_position() -> None:
    world = make_world()
    world.engine.set_sync("G", "f2", "MNQ", False)
    buy(world, "lead", 2)
    sell(world, "f2", 2)  # f2 is short on its own
    world.engine.set_sync("G", "f2", "MNQ", True)
    sell(world, "lead", 1)
    assert qty(world, "f2") == -2
    sell(world, "lead", 1)
    assert qty(world, "f2") == -2
    assert qty(world, "f1") == 0


def test_a_reversal_is_a_full_close_plus_an_open_of_the_remainder_x_ratio() -> None:
    world = ratio3_world()
    buy(world, "lead", 2)  # f1 2, f2 6
    price(world, 21010)
    sell(world, "lead", 5)  # close 2, open 3 short
    assert positions(world, "lead") == {"MNQ": (D(-3), D(21010))}
    assert positions(world, "f1") == {"MNQ": (D(-3), D(21010))}
    assert positions(world, "f2") == {"MNQ": (D(-9), D(21010))}
    assert balance(world, "lead") == D(50000) + 2 * 10 * 2
    assert balance(world, "f1") == D(20000) + 2 * 10 * 2
    assert balance(world, "f2") == D(20000) + 6 * 10 * 2


def test_a_reversal_on_a_flat_follower_only_opens_the_remainder() -> None:
    world = ratio3_world()
    world.engine.set_sync("G", "f2", "MNQ", False)
    buy(world, "lead", 2)
    world.engine.set_sync("G", "f2", "MNQ", True)
    sell(world, "lead", 5)
    assert positions(world, "f2") == {"MNQ": (D(-9), D(21000))}
    assert qty(world, "f1") == -3


def test_sync_off_gets_no_order_and_no_failure_for_that_contract_only() -> None:
    world = ratio3_world()
    world.engine.set_sync("G", "f2", "MNQ", False)
    buy(world, "lead", 2)
    buy(world, "lead", 1, type=LIMIT, price=D(20990))
    assert positions(world, "f2") == {}
    assert orders(world, "f2") == []
    assert qty(world, "f1") == 2
    assert failures(world) == []
    buy(world, "lead", 1, symbol="MES")
    assert positions(world, "f2") == {"MES": (D(1), D(6000))}


def test_a_paused_group_copies_and_mirrors_nothing() -> None:
    world = ratio3_world()
    world.engine.pause("G")
    buy(world, "lead", 2)
    buy(world, "lead", 1, type=LIMIT, price=D(20990))
    for follower in ("f1", "f2"):
        assert positions(world, follower) == {}
        assert orders(world, follower) == []
    world.engine.activate("G")
    sell(world, "lead", 2)  # an exit of a position the followers never got
    assert positions(world, "f1") == {}
    assert positions(world, "f2") == {}


def test_a_cross_follower_trades_the_cross_symbol_same_qty_rule_same_prices() -> None:
    world = ratio3_world()
    world.engine.set_cross("G", "f1", "MNQ", "NQ")
    buy(world, "lead", 2)
    assert positions(world, "f1") == {"NQ": (D(2), D(21000))}
    assert positions(world, "f2") == {"MNQ": (D(6), D(21000))}
    price(world, 21010)
    sell(world, "lead", 1)
    assert positions(world, "f1") == {"NQ": (D(1), D(21000))}
    assert balance(world, "f1") == D(20000) + 1 * 10 * 20  # NQ multiplier 20
    buy(world, "lead", 1, type=LIMIT, price=D(21000))
    assert orders(world, "f1") == [("NQ", BUY, LIMIT, D(1), D(21000), False)]


def test_a_failure_names_the_cross_symbol() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 1500},
        {"id": "f2", "balance": 20000},
    ])
    world.engine.set_cross("G", "f1", "MNQ", "NQ")
    buy(world, "lead", 2)  # 2 NQ need 2,000 margin; f1 has 1,500
    assert failures(world) == [("G", "f1", "NQ", RejectReason.INSUFFICIENT_MARGIN)]
    assert positions(world, "f1") == {}
    assert qty(world, "f2") == 2


# --- working orders -----------------------------------------------------------------------


def test_limit_and_stop_orders_are_mirrored_at_the_same_price_qty_x_ratio() -> None:
    world = ratio3_world()
    buy(world, "lead", 2, type=LIMIT, price=D(20990))
    buy(world, "lead", 1, type=STOP, price=D(21020))
    assert orders(world, "f1") == sorted([
        ("MNQ", BUY, LIMIT, D(2), D(20990), False),
        ("MNQ", BUY, STOP, D(1), D(21020), False),
    ], key=repr)
    assert orders(world, "f2") == sorted([
        ("MNQ", BUY, LIMIT, D(6), D(20990), False),
        ("MNQ", BUY, STOP, D(3), D(21020), False),
    ], key=repr)

    price(world, 20990)  # the limits fill; the leader's fill is not copied again
    assert positions(world, "lead") == {"MNQ": (D(2), D(20990))}
    assert positions(world, "f1") == {"MNQ": (D(2), D(20990))}
    assert positions(world, "f2") == {"MNQ": (D(6), D(20990))}

    price(world, 21020)  # the stops fill at the update price
    # (2 x 20990 + 1 x 21020) / 3 = 21000; (6 x 20990 + 3 x 21020) / 9 = 21000
    assert positions(world, "lead") == {"MNQ": (D(3), D(21000))}
    assert positions(world, "f1") == {"MNQ": (D(3), D(21000))}
    assert positions(world, "f2") == {"MNQ": (D(9), D(21000))}
    assert orders(world, "f1") == []
    assert orders(world, "f2") == []
    assert failures(world) == []


def test_a_reducing_working_order_is_mirrored_reduce_only_with_qty_fixed_at_placement() -> None:
    world = ratio3_world()
    buy(world, "lead", 2)  # f1 2, f2 6
    sell(world, "lead", 1, type=LIMIT, price=D(21010))  # half the leader's position
    assert orders(world, "f1") == [("MNQ", SELL, LIMIT, D(1), D(21010), True)]
    assert orders(world, "f2") == [("MNQ", SELL, LIMIT, D(3), D(21010), True)]

    buy(world, "f2", 3)  # f2 now holds 9; its mirror stays at 3
    assert orders(world, "f2") == [("MNQ", SELL, LIMIT, D(3), D(21010), True)]

    price(world, 21010)
    assert qty(world, "lead") == 1
    assert qty(world, "f1") == 1
    assert qty(world, "f2") == 6
    assert balance(world, "f2") == D(20000) + 3 * 10 * 2
    assert failures(world) == []


def test_a_reducing_working_order_is_not_mirrored_to_a_flat_follower() -> None:
    world = make_world()
    world.engine.set_sync("G", "f2", "MNQ", False)
    buy(world, "lead", 2)
    world.engine.set_sync("G", "f2", "MNQ", True)
    sell(world, "lead", 1, type=LIMIT, price=D(21010))
    assert orders(world, "f2") == []
    price(world, 21010)
    assert positions(world, "f2") == {}


def test_a_reversing_working_order_is_mirrored_as_a_close_plus_an_opening_order() -> None:
    world = ratio3_world()
    buy(world, "lead", 2)  # f1 2, f2 6
    sell(world, "lead", 5, type=LIMIT, price=D(21010))
    assert orders(world, "f1") == sorted([
        ("MNQ", SELL, LIMIT, D(2), D(21010), True),
        ("MNQ", SELL, LIMIT, D(3), D(21010), False),
    ], key=repr)
    assert orders(world, "f2") == sorted([
        ("MNQ", SELL, LIMIT, D(6), D(21010), True),
        ("MNQ", SELL, LIMIT, D(9), D(21010), False),
    ], key=repr)

    price(world, 21010)
    assert positions(world, "lead") == {"MNQ": (D(-3), D(21010))}
    assert positions(world, "f1") == {"MNQ": (D(-3), D(21010))}
    assert positions(world, "f2") == {"MNQ": (D(-9), D(21010))}
    assert balance(world, "f2") == D(20000) + 6 * 10 * 2
    assert orders(world, "f1") == []
    assert orders(world, "f2") == []


def test_modify_and_cancel_are_mirrored() -> None:
    world = ratio3_world()
    order_id = buy(world, "lead", 2, type=LIMIT, price=D(20990))
    world.engine.modify_order(order_id, D(20980))
    assert orders(world, "f1") == [("MNQ", BUY, LIMIT, D(2), D(20980), False)]
    assert orders(world, "f2") == [("MNQ", BUY, LIMIT, D(6), D(20980), False)]

    price(world, 20985)  # above the modified limit: nothing fills
    assert positions(world, "f1") == {}

    world.engine.cancel_order(order_id)
    assert orders(world, "lead") == []
    assert orders(world, "f1") == []
    assert orders(world, "f2") == []


def test_a_modify_that_makes_the_order_marketable_fills_the_mirrors_once() -> None:
    world = ratio3_world()
    order_id = buy(world, "lead", 2, type=LIMIT, price=D(20990))
    world.engine.modify_order(order_id, D(21000))  # marketable at 21000
    assert positions(world, "lead") == {"MNQ": (D(2), D(21000))}
    assert positions(world, "f1") == {"MNQ": (D(2), D(21000))}
    assert positions(world, "f2") == {"MNQ": (D(6), D(21000))}


def test_modify_and_cancel_do_not_reach_mirrors_while_paused_or_of_a_removed_follower() -> None:
    world = ratio3_world()
    order_id = buy(world, "lead", 2, type=LIMIT, price=D(20990))
    world.engine.pause("G")
    world.engine.modify_order(order_id, D(20980))
    assert orders(world, "f1") == [("MNQ", BUY, LIMIT, D(2), D(20990), False)]

    world.engine.activate("G")
    world.engine.remove_followers("G", ["f2"])
    world.engine.cancel_order(order_id)
    assert orders(world, "f1") == []
    assert orders(world, "f2") == [("MNQ", BUY, LIMIT, D(6), D(20990), False)]


def test_mirrored_fill_not_copied_again_unmirrored_followers_get_market_copy() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
        {"id": "late", "balance": 20000},
    ])
    world.engine.set_ratio("G", "f2", "MNQ", 3)
    world.engine.set_sync("G", "f2", "MNQ", False)
    buy(world, "lead", 2, type=LIMIT, price=D(20990))
    world.engine.set_sync("G", "f2", "MNQ", True)  # synced on after placement: no mirror
    world.engine.add_followers("G", ["late"])  # added after placement: no mirror
    assert orders(world, "f2") == []
    assert orders(world, "late") == []

    price(world, 20985)  # the leader's limit fills at 20990
    assert positions(world, "lead") == {"MNQ": (D(2), D(20990))}
    assert positions(world, "f1") == {"MNQ": (D(2), D(20990))}  # its own mirror, once
    assert positions(world, "f2") == {"MNQ": (D(6), D(20985))}  # market copy x ratio
    assert positions(world, "late") == {"MNQ": (D(2), D(20985))}  # market copy


def _leg(world: World, account: str, role: str) -> str:
    found = [o.id for o in world.engine.broker_of(account).view(account).orders if o.role == role]
    assert len(found) == 1
    return found[0]


def test_moving_or_cancelling_a_leader_bracket_leg_is_mirrored() -> None:
    world = ratio3_world()
    buy(world, "lead", 2, stop_loss=D(20950), take_profit=D(21050))
    world.engine.modify_order(_leg(world, "lead", "stop_loss"), D(20960))
    world.engine.cancel_order(_leg(world, "lead", "take_profit"))
    assert orders(world, "lead") == [("MNQ", SELL, STOP, D(2), D(20960), True)]
    assert orders(world, "f1") == [("MNQ", SELL, STOP, D(2), D(20960), True)]
    assert orders(world, "f2") == [("MNQ", SELL, STOP, D(6), D(20960), True)]


def test_brackets_are_copied_at_the_same_prices() -> None:
    world = ratio3_world()
    buy(world, "lead", 2, stop_loss=D(20950), take_profit=D(21050))
    assert orders(world, "f1") == sorted([
        ("MNQ", SELL, LIMIT, D(2), D(21050), True),
        ("MNQ", SELL, STOP, D(2), D(20950), True),
    ], key=repr)
    assert orders(world, "f2") == sorted([
        ("MNQ", SELL, LIMIT, D(6), D(21050), True),
        ("MNQ", SELL, STOP, D(6), D(20950), True),
    ], key=repr)


def test_a_leader_bracket_exit_is_not_copied_to_followers_holding_their_own_bracket() -> None:
    world = ratio3_world()
    buy(world, "lead", 2, stop_loss=D(20950), take_profit=D(21050))
    buy(world, "f1", 3)  # f1: 2 bracketed + 3 of its own
    events = record(world)
    price(world, 21050)
    assert positions(world, "lead") == {}
    assert positions(world, "f2") == {}
    # f1's own take profit closed its 2; the leader's exit is not copied on top of it.
    assert positions(world, "f1") == {"MNQ": (D(3), D(21000))}
    for account, closed in (("f1", D(2)), ("f2", D(6))):
        got = fills(events, account)
        assert [(f.qty, f.price, f.cause) for f in got] == [(closed, D(21050), FillCause.BRACKET)]
    assert orders(world, "lead") == []
    assert orders(world, "f1") == []
    assert orders(world, "f2") == []
    assert failures(world) == []


def test_a_mirrored_working_order_carries_its_brackets_and_its_exit_is_not_copied() -> None:
    world = ratio3_world()
    buy(world, "lead", 1, type=LIMIT, price=D(20990), stop_loss=D(20950), take_profit=D(21050))
    price(world, 20990)
    assert qty(world, "f1") == 1
    assert qty(world, "f2") == 3
    assert orders(world, "f2") == sorted([
        ("MNQ", SELL, LIMIT, D(3), D(21050), True),
        ("MNQ", SELL, STOP, D(3), D(20950), True),
    ], key=repr)
    buy(world, "f2", 2)  # f2: 3 bracketed + 2 of its own
    price(world, 20950)  # the stop losses trigger and fill at 20950
    assert positions(world, "lead") == {}
    assert positions(world, "f1") == {}
    assert qty(world, "f2") == 2


# --- failures -------------------------------------------------------------------------------


def test_insufficient_margin_is_a_failure_and_the_other_followers_still_copy() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "poor", "balance": 150},
        {"id": "f1", "balance": 20000},
    ], groups=[{"name": "G", "leader": "lead", "followers": ["poor", "f1"]}])
    events = record(world)
    buy(world, "lead", 2)  # 2 MNQ need 200 margin; poor has 150
    assert failures(world) == [("G", "poor", "MNQ", RejectReason.INSUFFICIENT_MARGIN)]
    assert positions(world, "poor") == {}
    assert positions(world, "f1") == {"MNQ": (D(2), D(21000))}
    copy_failed = [e.failure for e in events if isinstance(e, CopyFailed)]
    assert [(f.group, f.account, f.symbol, f.reason) for f in copy_failed] == failures(world)


def test_a_mirrored_order_that_cannot_be_afforded_at_its_fill_is_a_failure() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "poor", "balance": 150},
        {"id": "f1", "balance": 20000},
    ], groups=[{"name": "G", "leader": "lead", "followers": ["poor", "f1"]}])
    buy(world, "lead", 2, type=LIMIT, price=D(20990))
    assert orders(world, "poor") == [("MNQ", BUY, LIMIT, D(2), D(20990), False)]
    assert failures(world) == []  # working orders reserve no margin
    price(world, 20990)
    assert failures(world) == [("G", "poor", "MNQ", RejectReason.INSUFFICIENT_MARGIN)]
    assert positions(world, "poor") == {}
    assert orders(world, "poor") == []
    assert qty(world, "f1") == 2


def test_a_breached_follower_gets_account_breached_failures() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000, "risk": {"daily_loss_limit": 50}},
    ], groups=[{"name": "G", "leader": "lead", "followers": ["f2", "f1"]}])
    buy(world, "f2", 1, symbol="MES")  # f2's own trade
    price(world, 5990, "MES")  # -10 x 5 = -50: breached and flattened
    assert world.engine.broker_of("f2").is_breached("f2")
    assert positions(world, "f2") == {}

    buy(world, "lead", 2)
    assert failures(world) == [("G", "f2", "MNQ", RejectReason.ACCOUNT_BREACHED)]
    assert qty(world, "f1") == 2
    assert positions(world, "f2") == {}


# --- group actions ----------------------------------------------------------------------------


def _loaded_world() -> World:
    """lead 2 MNQ, f1 2 MNQ + 1 MES of its own, f2 6 MNQ, a working order mirrored,
    and an outsider holding 1 MNQ; then MNQ moves to 21010."""
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
        {"id": "out", "balance": 20000},
    ])
    world.engine.set_ratio("G", "f2", "MNQ", 3)
    buy(world, "lead", 2)
    buy(world, "lead", 1, type=LIMIT, price=D(20950))
    buy(world, "f1", 1, symbol="MES")
    buy(world, "out", 1)
    price(world, 21010)
    return world


def test_flatten_all_closes_everyone_once_and_cancels_every_order() -> None:
    world = _loaded_world()
    events = record(world)
    world.engine.flatten_all("G")
    for account in ("lead", "f1", "f2"):
        assert positions(world, account) == {}
        assert orders(world, account) == []
    assert balance(world, "lead") == D(50040)
    assert balance(world, "f1") == D(20040)
    assert balance(world, "f2") == D(20120)
    # One closing fill per position: the leader's exit is not copied on top.
    assert [(f.symbol, f.qty) for f in fills(events, "lead")] == [("MNQ", D(2))]
    assert sorted((f.symbol, f.qty) for f in fills(events, "f1")) == [
        ("MES", D(1)), ("MNQ", D(2))]
    assert [(f.symbol, f.qty) for f in fills(events, "f2")] == [("MNQ", D(6))]
    # An account outside the group is untouched.
    assert positions(world, "out") == {"MNQ": (D(1), D(21000))}
    assert fills(events, "out") == []
    assert failures(world) == []


def test_cancel_orders_cancels_every_working_order_and_keeps_positions() -> None:
    world = _loaded_world()
    sell(world, "f2", 1, type=LIMIT, price=D(21100))  # f2's own order
    world.engine.cancel_orders("G")
    for account in ("lead", "f1", "f2"):
        assert orders(world, account) == []
    assert qty(world, "lead") == 2
    assert qty(world, "f1") == 2
    assert qty(world, "f1", "MES") == 1
    assert qty(world, "f2") == 6


def test_flatten_position_on_a_leader_is_a_copied_exit() -> None:
    world = _loaded_world()
    world.engine.flatten_position("lead", "MNQ")
    assert positions(world, "lead") == {}
    assert positions(world, "f1") == {"MES": (D(1), D(6000))}  # MES is another contract
    assert positions(world, "f2") == {}
    assert balance(world, "f1") == D(20040)
    assert balance(world, "f2") == D(20120)
    # The leader's working order in the symbol is cancelled, and so are its mirrors.
    assert orders(world, "lead") == []
    assert orders(world, "f1") == []
    assert orders(world, "f2") == []


def test_flatten_position_on_a_follower_touches_only_that_follower() -> None:
    world = _loaded_world()
    world.engine.flatten_position("f2", "MNQ")
    assert positions(world, "f2") == {}
    assert qty(world, "lead") == 2
    assert qty(world, "f1") == 2


def test_emergency_stop_flattens_every_group_then_pauses_every_group() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "lead2", "balance": 50000},
        {"id": "f2", "balance": 20000},
        {"id": "lead3", "balance": 50000},
        {"id": "f3", "balance": 20000},
    ], groups=[
        {"name": "G", "leader": "lead", "followers": ["f1"]},
        {"name": "H", "leader": "lead2", "followers": ["f2"]},
        {"name": "P", "leader": "lead3", "followers": ["f3"]},
        {"name": "N"},
    ])
    buy(world, "lead", 1)
    buy(world, "lead2", 2)
    buy(world, "lead3", 1)
    buy(world, "lead2", 1, type=LIMIT, price=D(20900))
    world.engine.pause("P")
    buy(world, "f3", 1, symbol="MES")
    events = record(world)
    world.engine.emergency_stop()
    for account in ("lead", "f1", "lead2", "f2", "lead3", "f3"):
        assert positions(world, account) == {}
        assert orders(world, account) == []
    assert world.engine.group("G").status is GroupStatus.PAUSED
    assert world.engine.group("G").reason is PauseReason.EMERGENCY_STOP
    assert world.engine.group("H").reason is PauseReason.EMERGENCY_STOP
    assert world.engine.group("P").status is GroupStatus.PAUSED
    assert world.engine.group("N").status is GroupStatus.NOT_CONFIGURED
    assert [len(fills(events, a)) for a in ("lead", "f1", "lead2", "f2")] == [1, 1, 1, 1]
    buy(world, "lead", 1)  # paused: nothing copied
    assert positions(world, "f1") == {}


def test_a_leader_breach_copies_the_flatten_then_pauses_the_group() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000, "risk": {"daily_loss_limit": 100}},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
    ])
    world.engine.set_ratio("G", "f2", "MNQ", 3)
    buy(world, "lead", 2)
    buy(world, "lead", 1, type=LIMIT, price=D(20900))
    assert orders(world, "f2") == [("MNQ", BUY, LIMIT, D(3), D(20900), False)]
    events = record(world)
    price(world, 20975)  # -25 x 2 x 2 = -100: breach
    assert world.engine.broker_of("lead").is_breached("lead")
    assert positions(world, "lead") == {}
    assert positions(world, "f1") == {}
    assert positions(world, "f2") == {}
    assert balance(world, "lead") == D(49900)
    assert balance(world, "f1") == D(19900)
    assert balance(world, "f2") == D(19700)
    # The breached leader's working order is cancelled, and the cancel is mirrored.
    for account in ("lead", "f1", "f2"):
        assert orders(world, account) == []
    group = world.engine.group("G")
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)
    changed = [e for e in events if isinstance(e, GroupChanged)]
    assert [(e.status, e.reason, e.previous) for e in changed] == [
        (GroupStatus.PAUSED, PauseReason.LEADER_BREACHED, GroupStatus.ACTIVE)]
    with pytest.raises(Refused):
        buy(world, "lead", 1)  # the breached account takes no orders


def test_a_leader_breach_with_a_partial_follower_still_closes_all() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000, "risk": {"max_drawdown": 60}},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
    ])
    buy(world, "lead", 3)
    buy(world, "f1", 2)  # f1 holds 5
    price(world, 20990)  # -10 x 3 x 2 = -60 from the peak: breach
    assert positions(world, "lead") == {}
    assert positions(world, "f1") == {}
    assert positions(world, "f2") == {}


def test_a_leader_liquidation_is_copied_as_an_exit() -> None:
    world = make_world()
    world.engine.place_order("lead", "BTCUSDT", BUY, qty=D("0.1"), leverage=10,
                             margin_mode=MarginMode.ISOLATED)
    assert positions(world, "f1") == {"BTCUSDT": (D("0.1"), D(50000))}
    events = record(world)
    # Isolated 10x long from 50,000 with mmr 0.004 liquidates at or below
    # 50000 x 0.9 / 0.996 = 45180.72...; followers are cross and far from theirs.
    price(world, 45100, "BTCUSDT")
    assert positions(world, "lead") == {}
    assert positions(world, "f1") == {}
    assert positions(world, "f2") == {}
    assert balance(world, "lead") == D(49510)  # (45100 - 50000) x 0.1
    assert balance(world, "f1") == D(19510)
    lead_fills = [(f.cause, f.price) for f in fills(events, "lead")]
    assert lead_fills == [(FillCause.LIQUIDATION, D(45100))]
    copied = [(f.qty, f.price, f.copy, f.group) for f in fills(events, "f1")]
    assert copied == [(D("0.1"), D(45100), True, "G")]


def test_ratio_followers_use_their_own_perp_leverage_and_margin_mode() -> None:
    world = make_world()
    world.engine.set_leverage("f1", "BTCUSDT", 5)
    world.engine.broker_of("f1").set_margin_mode("f1", "BTCUSDT", MarginMode.ISOLATED)
    world.engine.place_order("lead", "BTCUSDT", BUY, qty=D("0.1"), leverage=20,
                             margin_mode=MarginMode.CROSS)

    def perp(account: str) -> tuple[int | None, MarginMode | None, Decimal]:
        (view,) = world.engine.broker_of(account).view(account).positions
        return view.leverage, view.margin_mode, view.margin

    assert perp("lead") == (20, MarginMode.CROSS, D(250))  # 0.1 x 50,000 / 20
    assert perp("f1") == (5, MarginMode.ISOLATED, D(1000))
    assert perp("f2") == (10, MarginMode.CROSS, D(500))


# --- brokers with their own naming ----------------------------------------------------------


MIXED = {"tv": {"naming": "tradovate"}, "px": {"naming": "projectx"}}


def mixed_world() -> World:
    return make_world(brokers=MIXED, accounts=[
        {"id": "lead", "broker": "tv", "balance": 50000},
        {"id": "f1", "broker": "px", "balance": 20000},
        {"id": "f2", "broker": "tv", "balance": 20000},
        {"id": "poor", "broker": "px", "balance": 150},
    ], groups=[{"name": "G", "leader": "lead", "followers": ["f1", "f2", "poor"]}])


def test_a_group_mixing_brokers_copies_in_each_brokers_own_naming() -> None:
    world = mixed_world()
    world.engine.set_ratio("G", "f2", "MNQ", 3)
    buy(world, "lead", 2)
    native = {a: [(p.symbol, p.qty) for p in world.engine.broker_of(a).view(a).positions]
              for a in ("lead", "f1", "f2")}
    assert native == {
        "lead": [("MNQZ6", D(2))],
        "f1": [("CON.F.US.MNQ.Z26", D(2))],
        "f2": [("MNQZ6", D(6))],
    }
    assert failures(world) == [("G", "poor", "MNQ", RejectReason.INSUFFICIENT_MARGIN)]

    sell(world, "lead", 1, type=LIMIT, price=D(21010))
    f1_orders = world.engine.broker_of("f1").view("f1").orders
    assert [(o.symbol, o.side, o.qty, o.price, o.reduce_only) for o in f1_orders] == [
        ("CON.F.US.MNQ.Z26", SELL, D(1), D(21010), True)]
    price(world, 21010)
    assert qty(world, "lead") == 1
    assert qty(world, "f1") == 1
    assert qty(world, "f2") == 3


def test_a_cross_and_a_perp_across_brokers() -> None:
    world = mixed_world()
    world.engine.set_cross("G", "f1", "MES", "ES")
    buy(world, "lead", 1, symbol="MES")
    view = world.engine.broker_of("f1").view("f1")
    assert [(p.symbol, p.qty) for p in view.positions] == [("CON.F.US.ES.Z26", D(1))]
    world.engine.remove_followers("G", ["poor"])

    buy(world, "lead", "0.1", symbol="BTCUSDT")
    assert positions(world, "f1")["BTCUSDT"] == (D("0.1"), D(50000))
    symbols = [p.symbol for p in world.engine.broker_of("f1").view("f1").positions]
    assert "BTC-USDT-SWAP" in symbols


# --- observers ---------------------------------------------------------------------------------


def test_observers_receive_fills_failures_and_group_changes_in_catalog_symbols() -> None:
    world = mixed_world()
    world.engine.set_ratio("G", "f2", "MNQ", 3)
    events = record(world)
    buy(world, "lead", 2)

    filled = [(e.account, e.symbol, e.side, e.qty, e.price, e.group, e.copy)
              for e in events if isinstance(e, AccountFilled)]
    assert sorted(filled, key=repr) == sorted([
        ("lead", "MNQ", BUY, D(2), D(21000), "G", False),
        ("f1", "MNQ", BUY, D(2), D(21000), "G", True),
        ("f2", "MNQ", BUY, D(6), D(21000), "G", True),
    ], key=repr)
    failed = [e.failure for e in events if isinstance(e, CopyFailed)]
    assert [(f.group, f.account, f.symbol, f.reason) for f in failed] == [
        ("G", "poor", "MNQ", RejectReason.INSUFFICIENT_MARGIN)]

    world.engine.pause("G")
    changed = [(e.group, e.status, e.reason, e.previous)
               for e in events if isinstance(e, GroupChanged)]
    assert changed == [("G", GroupStatus.PAUSED, PauseReason.PAUSED, GroupStatus.ACTIVE)]


def test_an_unsubscribed_observer_hears_nothing() -> None:
    world = make_world()
    events: list[EngineEvent] = []
    unsubscribe = world.engine.subscribe(events.append)
    unsubscribe()
    buy(world, "lead", 1)
    assert events == []


# --- restart --------------------------------------------------------------------------------


def test_a_restart_keeps_groups_settings_and_mirrors() -> None:
    world = make_world(accounts=[
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
        {"id": "poor", "balance": 100},
    ], groups=[{"name": "G", "leader": "lead", "followers": ["f1", "f2", "poor"]}])
    engine = world.engine
    engine.set_ratio("G", "f1", "MNQ", 2)
    engine.set_sync("G", "f2", "MNQ", False)
    engine.set_cross("G", "poor", "MNQ", "NQ")
    buy(world, "lead", 2)  # f1 4; f2 synced off; poor cannot afford 2 NQ
    limit_id = buy(world, "lead", 1, type=LIMIT, price=D(20990))
    cancel_id = buy(world, "lead", 1, type=LIMIT, price=D(20900))
    assert failures(world) == [("G", "poor", "NQ", RejectReason.INSUFFICIENT_MARGIN)]
    f1_orders = orders(world, "f1")

    world.restart()
    assert world.engine is not engine
    engine = world.engine
    group = engine.group("G")
    assert (group.leader, group.followers, group.status) == (
        "lead", ["f1", "f2", "poor"], GroupStatus.ACTIVE)
    assert group.setting("f1", "MNQ").ratio == 2
    assert group.setting("f2", "MNQ").sync is False
    assert group.setting("poor", "MNQ").cross == "NQ"
    assert len(failures(world)) == 1
    assert qty(world, "f1") == 4  # nothing copied again by the restart itself
    assert orders(world, "f1") == f1_orders

    engine.cancel_order(cancel_id)  # the cancel still reaches the mirror
    assert orders(world, "f1") == [("MNQ", BUY, LIMIT, D(2), D(20990), False)]

    price(world, 20990)  # leader 3 @ limit; f1's mirror fills once: 6, not 8
    assert qty(world, "lead") == 3
    assert qty(world, "f1") == 6
    assert positions(world, "f2") == {}
    assert engine.broker_of("lead").order(limit_id) is None

    sell(world, "lead", 1)  # 1/3 of the leader: f1 closes 6 x 1/3 = 2
    assert qty(world, "f1") == 4
    buy(world, "lead", 1)  # ratio 2 still applies
    assert qty(world, "f1") == 6
    assert positions(world, "f2") == {}


def test_an_exit_after_a_restart_is_proportional() -> None:
    world = ratio3_world()
    buy(world, "lead", 4)  # f1 4, f2 12
    world.restart()
    price(world, 21005)
    sell(world, "lead", 1)
    assert qty(world, "f1") == 3
    assert qty(world, "f2") == 9
    assert balance(world, "f2") == D(20000) + 3 * 5 * 2
    world.restart()
    sell(world, "lead", 3)
    assert positions(world, "f1") == {}
    assert positions(world, "f2") == {}


def test_copy_links_stay_bounded_and_keep_the_working_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past KEEP_COPY_LINKS the oldest links of copies that no longer work are dropped;
    the link of a mirror still working is kept (a failure at its fill needs it)."""
    import synctui.engine.engine as engine_module

    monkeypatch.setattr(engine_module, "KEEP_COPY_LINKS", 6)
    engine = make_world().engine
    engine.place_order("lead", "MNQ", Side.BUY, qty=Decimal(1), type=LIMIT,
                       price=Decimal(20000))
    working = set(engine.state.copy_group)
    assert working
    for n in range(10):
        engine.place_order("lead", "MNQ", Side.BUY if n % 2 == 0 else Side.SELL,
                           qty=Decimal(1))
    assert len(engine.state.copy_group) <= 6
    assert working <= set(engine.state.copy_group)


def test_client_ids_are_deterministic_bounded_and_ordered_by_leader_fill() -> None:
    """Issue 11: a copy's client order id is made again the same from the same parts
    (a retry, a restart), fits an exchange's limit (36 of [A-Za-z0-9_-]), and sorts
    by the leader event it copies, so a fan-out's keys sit together in the database's
    indexes and a later fan-out's come after an earlier one's."""
    import re
    from itertools import pairwise

    from synctui.brokers.events import Fill
    from synctui.engine.engine import copy_key

    allowed = re.compile(r"[A-Za-z0-9_-]{1,36}")
    for parts in (("tv-f12", "f1", "open"), ("tv-7", "f\u00e9 \u2603/x", "close"),
                  ("resync-3", "f1", "MNQ", "open"), ("open:lead:MNQZ6", "s~copy1", "open"),
                  ("px-f" + "9" * 30, "f" * 500, "open"), ("",)):
        key = copy_key(*parts)
        assert key == copy_key(*parts)
        assert allowed.fullmatch(key), key
    assert copy_key("1", "23") != copy_key("12", "3")
    assert copy_key("tv-f9", "f1", "open") != copy_key("tv-f9", "f1", "close")
    assert copy_key("tv-f9", "f2", "open") < copy_key("tv-f10", "f1", "close")
    assert copy_key("tv-99", "f2", "open") < copy_key("tv-100", "f1", "open")

    world = make_world()
    seen: list[list[str]] = []
    for broker in world.brokers.values():
        broker.subscribe(lambda e: seen[-1].append(e.client_id)
                         if isinstance(e, Fill) and e.client_id else None)
    for n in range(12):
        seen.append([])
        world.engine.place_order("lead", "MNQ", BUY if n % 2 == 0 else SELL, qty=D(1))
    assert all(len(keys) == 2 for keys in seen)
    for earlier, later in pairwise(seen):
        assert max(earlier) < min(later)
    assert all(allowed.fullmatch(key) for keys in seen for key in keys)


def test_what_waits_is_counted_per_account_as_it_comes_and_goes() -> None:
    """`behind` asks, for every follower of every leader fill, whether something waits
    for it: answered from a count kept per account, not by a scan of all that waits."""
    from datetime import UTC, datetime

    from synctui.engine.state import EngineState, Waiting

    at = datetime(2026, 11, 30, tzinfo=UTC)
    state = EngineState()
    items = [Waiting(f"k{n}", "tv", "G", account, "cancel_all", at)
             for n, account in enumerate(["f1", "f2", "f1"])]
    for item in items:
        state.add_waiting(item)
    state.add_waiting(items[0])  # kept again under its key: still one
    assert state.waiting_for == {"f1": 2, "f2": 1}
    state.finish_waiting("k0")
    state.finish_waiting("k0")  # done already: nothing changes
    state.finish_waiting("k1")
    assert state.waiting_for == {"f1": 1}
    state.finish_waiting("k2")
    assert state.waiting_for == {} and state.waiting == {}
