"""Smart Sync mode (SPEC 5 and the Smart Sync bullets of SPEC 8).

Every expected number below is worked out by hand from the SPEC, never read
back from the program. Instruments used (SPEC 1):

- BTCUSDT: perp, step = min = 0.001, tick 0.1, mmr 0.004, max leverage 125.
- ETHUSDT: perp, step = min = 0.001, tick 0.01.
- MNQ: future, multiplier 2, margin 100 per contract, step = min = 1, tick 0.25.
- NQ: future, same family as MNQ, multiplier 20, margin 1000 per contract.

Sizing (SPEC 5): u = leader fill margin / leader equity just before the fill;
m = copy equity x u; perps qty = m x leverage / price, futures qty = m / margin
per contract; floor to the step; below the minimum, the minimum if it is
affordable, else `insufficient_margin`.
"""

from __future__ import annotations

import json
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synctui.brokers.base import AccountView, PositionView
from synctui.brokers.events import Fill
from synctui.brokers.sim import SimBroker
from synctui.domain.copies import Copy, CopyStatus, OnStop
from synctui.domain.errors import Refused, RejectReason
from synctui.domain.groups import GroupStatus, PauseReason
from synctui.domain.orders import MarginMode, OrderType, Side
from synctui.domain.sizing import fund_usage, margin_sync_delta, smart_qty
from synctui.engine.events import CopyChanged, CopyFailed, EngineEvent
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.report import in_use as report_in_use
from synctui.scenario.report import report
from synctui.scenario.runner import Replay, build_world, replay_in_memory, replay_with_store
from tests.conftest import scaled

D = Decimal
BUY = Side.BUY
SELL = Side.SELL
CROSS = MarginMode.CROSS
ISOLATED = MarginMode.ISOLATED
ZERO = D(0)

DEFAULT_PRICES: dict[str, Any] = {"BTCUSDT": 50000, "ETHUSDT": 2000, "MNQ": 21000}


# --- helpers ---------------------------------------------------------------------------------

def make_world(accounts: list[dict[str, Any]] | None = None,
               groups: list[dict[str, Any]] | None = None,
               prices: dict[str, Any] | None = None,
               brokers: dict[str, Any] | None = None,
               instruments: list[dict[str, Any]] | None = None) -> World:
    """By default: lead 10,000 and me 5,000; group G led by lead, no ratio followers."""
    scenario: dict[str, Any] = {
        "prices": prices or DEFAULT_PRICES,
        "accounts": accounts or [{"id": "lead", "balance": 10000},
                                 {"id": "me", "balance": 5000}],
        "groups": groups if groups is not None else [
            {"name": "G", "leader": "lead", "followers": []}],
        "steps": [],
    }
    if brokers is not None:
        scenario["brokers"] = brokers
    if instruments is not None:
        scenario["instruments"] = instruments
    return build_world(parse_scenario(json.dumps(scenario)))


def the_copy(world: World, group: str = "G", account: str = "me") -> Copy:
    return world.engine.state.copies[(group, account)]


def sub_view(world: World, group: str = "G", account: str = "me") -> AccountView:
    sub = the_copy(world, group, account).sub
    return world.engine.broker_of(sub).view(sub)


def _by_symbol(world: World, account: str, view: AccountView) -> dict[str, PositionView]:
    broker = world.engine.broker_of(account)
    return {broker.symbols.catalog(p.symbol): p for p in view.positions}


def copy_positions(world: World, group: str = "G", account: str = "me"
                   ) -> dict[str, PositionView]:
    view = sub_view(world, group, account)
    return _by_symbol(world, account, view)


def own_view(world: World, account: str) -> AccountView:
    return world.engine.broker_of(account).view(account)


def own_positions(world: World, account: str) -> dict[str, PositionView]:
    return _by_symbol(world, account, own_view(world, account))


def copy_qty(world: World, symbol: str, group: str = "G", account: str = "me") -> Decimal:
    pos = copy_positions(world, group, account).get(symbol)
    return pos.qty if pos else ZERO


def in_use(world: World, account: str = "me") -> Decimal:
    return report_in_use(Replay(world), account)


def snapshot(world: World) -> str:
    """Everything the report shows, plus the copies' own records."""
    state = world.engine.state
    copies = {f"{k[0]}/{k[1]}": (c.sub, str(c.investment), c.status.value, c.funds_returned,
                                 sorted(c.pending_leverage.items()))
              for k, c in state.copies.items()}
    return json.dumps({"report": report(Replay(world)), "copies": copies,
                       "groups": {n: sorted(g.copies) for n, g in state.groups.groups.items()},
                       "next": state.next_copy}, sort_keys=True, default=str)


def record(world: World) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    world.engine.subscribe(events.append)
    return events


def failures(world: World) -> list[tuple[str, str, str, RejectReason]]:
    return [(f.group, f.account, f.symbol, f.reason) for f in world.engine.state.failures]


def leader_btc(world: World, margin: int | str, leverage: int, mode: MarginMode = CROSS,
               side: Side = BUY, account: str = "lead") -> None:
    world.engine.place_order(account, "BTCUSDT", side, margin=D(margin), leverage=leverage,
                             margin_mode=mode)


# --- the worked example ------------------------------------------------------------------------

def test_spec_worked_example_through_the_engine() -> None:
    """SPEC 5: leader equity 10,000 opens 1,000 margin at 5x cross long at 50,000 (0.1 BTC);
    a 1,000 copy opens 100 margin: 0.01 BTC at 5x cross long. Then the leader closes half."""
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    assert own_view(world, "me").balance == 4000
    assert in_use(world) == 1000

    leader_btc(world, 1000, 5)
    lead = own_positions(world, "lead")["BTCUSDT"]
    assert (lead.qty, lead.avg_price) == (D("0.1"), D(50000))
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.avg_price, pos.leverage, pos.margin_mode) == (
        D("0.01"), D(50000), 5, CROSS)
    assert pos.margin == 100  # 0.01 x 50,000 / 5

    engine.set_price("BTCUSDT", D(51000))
    engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))
    # f = 0.05 / 0.1 = 1/2 of 0.01 -> 0.005 closed, realized (51,000 - 50,000) x 0.005 = 5
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.avg_price) == (D("0.005"), D(50000))
    view = sub_view(world)
    assert view.realized - view.fees == 5
    assert view.balance == 1005
    assert view.equity == 1010  # 1,000 + 5 + 0.005 x 1,000
    assert own_view(world, "lead").balance == 10050
    assert own_view(world, "me").balance == 4000
    assert own_positions(world, "me") == {}
    assert in_use(world) == 1005
    assert failures(world) == []


WORKED_EXAMPLE = {
    "prices": {"BTCUSDT": 50000},
    "accounts": [{"id": "lead", "balance": 10000}, {"id": "me", "balance": 5000}],
    "groups": [{"name": "Top", "leader": "lead", "followers": []}],
    "steps": [
        {"op": "follow", "group": "Top", "account": "me", "mode": "smart_sync",
         "investment": 1000},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "margin": 1000,
         "leverage": 5, "margin_mode": "cross"},
        {"op": "price", "symbol": "BTCUSDT", "price": 51000},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "sell", "qty": 0.05},
    ],
}


def test_spec_worked_example_as_a_scenario_report() -> None:
    out = report(replay_in_memory(parse_scenario(json.dumps(WORKED_EXAMPLE))))
    assert out["errors"] == [] and out["failures"] == []
    me = out["accounts"]["me"]
    assert (me["balance"], me["in_use"], me["positions"]) == (4000, 1005, [])
    lead = out["accounts"]["lead"]
    assert lead["balance"] == 10050
    copy = out["copies"]["Top/me"]
    assert copy["status"] == "active"
    assert (copy["investment"], copy["realized_pnl"], copy["equity"]) == (1000, 5, 1010)
    [pos] = copy["positions"]
    assert (pos["symbol"], pos["side"], pos["qty"], pos["avg_price"], pos["leverage"],
            pos["margin_mode"]) == ("BTCUSDT", "long", 0.005, 50000, 5, "cross")


# --- sizing --------------------------------------------------------------------------------------

def test_domain_sizing_formulas() -> None:
    assert fund_usage(D(1000), D(10000)) == D("0.1")
    btc = make_world().catalog.get("BTCUSDT")
    mnq = make_world().catalog.get("MNQ")
    assert smart_qty(D(1000), D("0.1"), btc, D(50000), 5) == D("0.01")
    assert smart_qty(D(12345), D("0.02"), mnq, D(21000), 1) == 2  # 246.9 / 100 -> 2
    assert smart_qty(D(999), D("0.1"), btc, D(50000), 5) == D("0.009")  # 0.00999 floored
    assert margin_sync_delta(D(100), D(500), D(1000)) == 50


def test_futures_sizing_is_margin_over_margin_per_contract_rounded_down() -> None:
    world = make_world(accounts=[{"id": "lead", "balance": 50000},
                                 {"id": "me", "balance": 30000}])
    world.engine.follow("G", "me", "smart_sync", D(12345))
    world.engine.place_order("lead", "MNQ", BUY, qty=D(10))
    # u = 10 x 100 / 50,000 = 0.02; m = 12,345 x 0.02 = 246.9; 246.9 / 100 = 2.469 -> 2
    pos = copy_positions(world)["MNQ"]
    assert (pos.qty, pos.avg_price, pos.leverage, pos.margin_mode) == (D(2), D(21000), None,
                                                                       None)
    assert pos.margin == 200
    assert failures(world) == []


def test_minimum_rule_opens_the_minimum_when_affordable() -> None:
    """1 NQ: u = 1,000 / 50,000 = 0.02; m = 1,000 x 0.02 = 20 -> 0.02 contracts -> 0, below
    the minimum 1; its margin 1,000 <= the copy's available 1,000: open 1."""
    world = make_world(accounts=[{"id": "lead", "balance": 50000},
                                 {"id": "me", "balance": 5000}])
    world.engine.follow("G", "me", "smart_sync", D(1000))
    world.engine.place_order("lead", "NQ", BUY, qty=D(1))
    assert copy_qty(world, "NQ") == 1
    assert failures(world) == []


def test_minimum_rule_perp_takes_the_leaders_leverage() -> None:
    """u = 100 / 10,000 = 0.01; m = 1; qty = 1 x 10 / 50,000 = 0.0002 -> 0 -> min 0.001,
    whose margin 0.001 x 50,000 / 10 = 5 fits in 100."""
    world = make_world(accounts=[{"id": "lead", "balance": 10000},
                                 {"id": "me", "balance": 5000}])
    world.engine.follow("G", "me", "smart_sync", D(100))
    leader_btc(world, 100, 10)
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.leverage, pos.margin) == (D("0.001"), 10, D(5))


def test_minimum_rule_unaffordable_is_an_insufficient_margin_failure() -> None:
    world = make_world(accounts=[{"id": "lead", "balance": 50000},
                                 {"id": "me", "balance": 5000}])
    events = record(world)
    world.engine.follow("G", "me", "smart_sync", D(999))
    world.engine.place_order("lead", "NQ", BUY, qty=D(1))
    # the minimum, 1 NQ, needs 1,000 > 999 available
    assert copy_positions(world) == {}
    assert failures(world) == [("G", "me", "NQ", RejectReason.INSUFFICIENT_MARGIN)]
    assert sub_view(world).balance == 999
    failed = [e for e in events if isinstance(e, CopyFailed)]
    assert [(f.failure.account, f.failure.symbol, f.failure.reason) for f in failed] == [
        ("me", "NQ", RejectReason.INSUFFICIENT_MARGIN)]


def test_computed_quantity_over_copy_available_is_insufficient_margin() -> None:
    """A 100 copy spends its all on the minimum 1 MNQ (u = 0.01 -> 0 -> min 1, margin 100).
    The leader then commits half its equity: u = 5,000 / 10,000 = 0.5, m = 50,
    qty = 50 x 10 / 50,000 = 0.01 (above the minimum), margin 50 > 0 available."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(100))
    world.engine.place_order("lead", "MNQ", BUY, qty=D(1))
    assert copy_qty(world, "MNQ") == 1
    leader_btc(world, 5000, 10)
    assert copy_qty(world, "BTCUSDT") == 0
    assert failures(world) == [("G", "me", "BTCUSDT", RejectReason.INSUFFICIENT_MARGIN)]


def test_leader_side_leverage_and_isolated_mode_are_copied() -> None:
    """Short 20x isolated: leader 0.8 BTC on 2,000 margin (u = 0.2); copy 750 -> m = 150,
    qty = 150 x 20 / 50,000 = 0.06 short, margin 150."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(750))
    leader_btc(world, 2000, 20, ISOLATED, SELL)
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.avg_price, pos.leverage, pos.margin_mode, pos.margin) == (
        D("-0.06"), D(50000), 20, ISOLATED, D(150))
    # the account's own setting for the symbol is untouched by the copy's
    assert world.engine.broker_of("me").leverage_of("me", "BTCUSDT") == (10, CROSS)


def test_usage_uses_leader_equity_before_the_fill_including_unrealized() -> None:
    """After BTC falls to 45,000 the short leader has equity 10,000 + 0.8 x 5,000 = 14,000,
    the copy 750 + 0.06 x 5,000 = 1,050. The leader opens ETH with 1,400 margin at 10x
    (7 ETH): u = 0.1; copy m = 105, qty = 105 x 10 / 2,000 = 0.525 ETH."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(750))
    leader_btc(world, 2000, 20, ISOLATED, SELL)
    world.engine.set_price("BTCUSDT", D(45000))
    world.engine.place_order("lead", "ETHUSDT", BUY, margin=D(1400), leverage=10,
                             margin_mode=CROSS)
    assert own_positions(world, "lead")["ETHUSDT"].qty == 7
    pos = copy_positions(world)["ETHUSDT"]
    assert (pos.qty, pos.leverage, pos.margin_mode) == (D("0.525"), 10, CROSS)


def test_smart_sync_copies_fills_not_working_orders() -> None:
    """A leader limit buy puts nothing on the copy; when it fills at 49,000 the copy buys at
    market: margin 0.1 x 49,000 / 5 = 980, u = 0.098, m = 98, qty = 98 x 5 / 49,000 = 0.01."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(1000))
    world.engine.place_order("lead", "BTCUSDT", BUY, qty=D("0.1"), type=OrderType.LIMIT,
                             price=D(49000), leverage=5)
    assert sub_view(world).orders == ()
    assert copy_positions(world) == {}
    world.engine.set_price("BTCUSDT", D(49000))
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.avg_price, pos.leverage) == (D("0.01"), D(49000), 5)


# --- closing --------------------------------------------------------------------------------------

def test_closes_by_the_leaders_fraction_rounded_half_up_then_all_when_flat() -> None:
    """Leader 0.3 BTC at 5x (u = 0.3); copy 350 -> m = 105, qty = 0.0105 -> 0.010.
    Leader closes 0.2 of 0.3: 0.010 x 2/3 = 0.00667 -> 0.007, leaving 0.003; then the
    leader closes the rest, and so does the copy."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(350))
    leader_btc(world, 3000, 5)
    assert copy_qty(world, "BTCUSDT") == D("0.010")
    world.engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.2"))
    assert copy_qty(world, "BTCUSDT") == D("0.003")
    world.engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.1"))
    assert copy_positions(world) == {}


def test_leader_flatten_position_is_copied_as_an_exit() -> None:
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5)
    world.engine.set_price("BTCUSDT", D(50500))
    world.engine.flatten_position("lead", "BTCUSDT")
    assert copy_positions(world) == {}
    assert sub_view(world).balance == 1005  # 0.01 x 500


def test_leader_breach_flatten_is_copied_to_copies() -> None:
    """The leader's daily loss limit of 100 is hit at 49,000 (0.1 x -1,000); its flatten
    is an exit like any other: the copy closes its 0.01 at 49,000 (realized -10)."""
    world = make_world(accounts=[{"id": "lead", "balance": 10000,
                                  "risk": {"daily_loss_limit": 100}},
                                 {"id": "me", "balance": 5000}])
    world.engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5)
    world.engine.set_price("BTCUSDT", D(49000))
    assert own_view(world, "lead").breached is not None
    assert copy_positions(world) == {}
    assert sub_view(world).balance == 990
    group = world.engine.group("G")
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)


def test_reversal_closes_all_then_opens_with_usage_of_the_remainder() -> None:
    """At 52,000 the leader (long 0.1, equity 10,200) sells 0.3: closes 0.1, opens 0.2 short
    whose margin at 5x is 0.2 x 52,000 / 5 = 2,080; u = 2,080 / 10,200. The copy closes its
    0.01 (realized 20), equity 1,020: m = 1,020 x 2,080 / 10,200 = 208,
    qty = 208 x 5 / 52,000 = 0.02 short."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5)
    world.engine.set_price("BTCUSDT", D(52000))
    world.engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.3"))
    lead = own_positions(world, "lead")["BTCUSDT"]
    assert (lead.qty, lead.avg_price) == (D("-0.2"), D(52000))
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.avg_price, pos.leverage) == (D("-0.02"), D(52000), 5)
    assert sub_view(world).balance == 1020
    assert failures(world) == []


def test_reversal_sizes_the_open_on_copy_equity_after_the_close_and_its_fee() -> None:
    """Fee 1 per contract. Leader 50,000 buys 10 MNQ (fee 10): u = 0.02; copy 10,000 ->
    m = 200 -> 2 MNQ (fee 2). Leader sells 30: equity before 49,990; remainder 20 needs
    2,000; u = 2,000 / 49,990. The copy first closes 2 (fee 2): equity 9,996, so
    m = 9,996 x 2,000 / 49,990 = 399.92 -> 3 MNQ short (sized before the close's fee, it
    would be 9,998 x 2,000 / 49,990 = 400 -> 4)."""
    world = make_world(accounts=[{"id": "lead", "balance": 50000},
                                 {"id": "me", "balance": 20000}],
                       brokers={"sim": {"fee_per_contract": 1}})
    world.engine.follow("G", "me", "smart_sync", D(10000))
    world.engine.place_order("lead", "MNQ", BUY, qty=D(10))
    assert copy_qty(world, "MNQ") == 2
    world.engine.place_order("lead", "MNQ", SELL, qty=D(30))
    assert own_positions(world, "lead")["MNQ"].qty == -20
    assert copy_qty(world, "MNQ") == -3


# --- copy_open_positions --------------------------------------------------------------------------

def test_copy_open_positions_on_copies_each_leader_position_at_the_current_price() -> None:
    """Leader: 0.1 BTC at 5x cross (50,000) and 10 MNQ; BTC now 52,000, equity 10,200.
    BTC margin 0.1 x 52,000 / 5 = 1,040: copy 1,020 -> m = 104, qty = 104 x 5 / 52,000 =
    0.01 at 52,000. MNQ margin 1,000: m = 100 -> 1 MNQ."""
    world = make_world()
    leader_btc(world, 1000, 5)
    world.engine.place_order("lead", "MNQ", BUY, qty=D(10))
    world.engine.set_price("BTCUSDT", D(52000))
    world.engine.follow("G", "me", "smart_sync", D(1020), copy_open_positions=True)
    positions = copy_positions(world)
    btc, mnq = positions["BTCUSDT"], positions["MNQ"]
    assert (btc.qty, btc.avg_price, btc.leverage, btc.margin_mode) == (D("0.01"), D(52000), 5,
                                                                       CROSS)
    assert (mnq.qty, mnq.avg_price) == (D(1), D(21000))
    world.engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))
    assert copy_qty(world, "BTCUSDT") == D("0.005")


def test_copy_open_positions_off_ignores_existing_positions_and_their_reductions() -> None:
    """Off: the copy starts flat and the leader's reduce of its older position does nothing.
    A later reversal still opens the remainder: 0.2 short at 5x = 2,000 margin, u = 0.2,
    m = 200, qty = 0.02."""
    world = make_world()
    leader_btc(world, 1000, 5)
    world.engine.follow("G", "me", "smart_sync", D(1000))
    assert copy_positions(world) == {}
    world.engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))
    assert copy_positions(world) == {}
    world.engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.25"))
    assert copy_qty(world, "BTCUSDT") == D("-0.02")
    assert failures(world) == []


# --- groups, pause, lifecycle ---------------------------------------------------------------------

def test_a_paused_group_copies_nothing_to_its_copies() -> None:
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    engine.pause("G")
    leader_btc(world, 1000, 5)
    engine.set_leverage("lead", "BTCUSDT", 2)
    assert copy_positions(world) == {}
    engine.activate("G")
    engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))  # a reduce: nothing to close
    assert copy_positions(world) == {}
    assert failures(world) == []
    assert sub_view(world).balance == 1000


def test_follow_and_unfollow_drive_the_group_status() -> None:
    world = make_world()
    engine = world.engine
    assert engine.group("G").status is GroupStatus.ACTIVE
    engine.follow("G", "me", "smart_sync", D(1000))
    engine.unfollow("G", "me")
    group = engine.group("G")
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.NO_FOLLOWERS)
    engine.follow("G", "me", "smart_sync", D(1000))
    assert engine.group("G").status is GroupStatus.ACTIVE


def test_a_new_follow_reactivates_a_paused_group_unless_its_leader_is_breached() -> None:
    world = make_world(accounts=[{"id": "lead", "balance": 10000,
                                  "risk": {"daily_loss_limit": 100}},
                                 {"id": "me", "balance": 5000}, {"id": "you", "balance": 5000}])
    engine = world.engine
    engine.pause("G")
    engine.follow("G", "me", "smart_sync", D(1000))
    assert engine.group("G").status is GroupStatus.ACTIVE
    leader_btc(world, 1000, 5)
    engine.set_price("BTCUSDT", D(49000))  # the leader's loss reaches 100: breached
    group = engine.group("G")
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)
    engine.follow("G", "you", "smart_sync", D(1000))
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)


# --- funds bookkeeping ----------------------------------------------------------------------------

def test_in_use_and_balance_bookkeeping_conserve_the_account_total() -> None:
    world = make_world()
    engine = world.engine

    def total() -> Decimal:
        return own_view(world, "me").balance + in_use(world)

    engine.follow("G", "me", "smart_sync", D(1000))
    assert (own_view(world, "me").balance, in_use(world), total()) == (D(4000), D(1000), D(5000))
    assert own_view(world, "me").available == 4000
    engine.set_investment("G", "me", D(1500))
    assert (own_view(world, "me").balance, in_use(world)) == (D(3500), D(1500))
    engine.set_investment("G", "me", D(1200))
    assert (own_view(world, "me").balance, in_use(world)) == (D(3800), D(1200))
    assert the_copy(world).investment == 1200

    leader_btc(world, 1000, 5)  # u = 0.1: m = 120, qty = 120 x 5 / 50,000 = 0.012
    assert copy_qty(world, "BTCUSDT") == D("0.012")
    engine.set_price("BTCUSDT", D(51000))
    engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))  # copy closes 0.006: +6
    assert copy_qty(world, "BTCUSDT") == D("0.006")
    assert in_use(world) == 1206
    assert total() == 5006  # conserved except the copy's PnL

    engine.unfollow("G", "me")  # closes 0.006 at 51,000: +6, funds 1,212 come back
    assert the_copy(world).status is CopyStatus.ENDED
    assert copy_positions(world) == {}
    assert (own_view(world, "me").balance, in_use(world)) == (D(5012), D(0))
    out = report(Replay(world))["copies"]["G/me"]
    assert (out["status"], out["realized_pnl"], out["equity"]) == ("ended", 12, 1212)


def test_investment_comes_from_available_funds_not_balance() -> None:
    """me holds 30 MNQ of its own (margin 3,000): available 2,000 of a 5,000 balance."""
    world = make_world()
    world.engine.place_order("me", "MNQ", BUY, qty=D(30))
    before = snapshot(world)
    with pytest.raises(Refused):
        world.engine.follow("G", "me", "smart_sync", D("2000.01"))
    assert snapshot(world) == before
    world.engine.follow("G", "me", "smart_sync", D(2000))
    assert (own_view(world, "me").balance, in_use(world)) == (D(3000), D(2000))
    before = snapshot(world)
    with pytest.raises(Refused):
        world.engine.set_investment("G", "me", D("2000.01"))  # a raise of 0.01 > 0 available
    assert snapshot(world) == before


def test_lowering_the_investment_must_fit_the_copys_available_and_used_margin() -> None:
    """u = 8,000 / 10,000 = 0.8: copy 1,000 uses 800 margin (0.16 BTC at 10x), 200 free."""
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 8000, 10)
    assert copy_qty(world, "BTCUSDT") == D("0.16")
    for refused in ("799", "700", "99"):
        before = snapshot(world)
        with pytest.raises(Refused):
            engine.set_investment("G", "me", D(refused))
        assert snapshot(world) == before
    engine.set_investment("G", "me", D(800))  # gives back exactly the 200 available
    assert (own_view(world, "me").balance, in_use(world)) == (D(4200), D(800))
    assert sub_view(world).available == 0


def test_one_account_copies_two_leaders_and_keeps_its_own_position() -> None:
    """me: own 0.02 BTC long at 10x cross; copies of A (2,000) and B (3,000).
    A: 1,000 of 10,000 at 5x long (u 0.1): copy 200 margin, 0.02 BTC long.
    B: 4,000 of 20,000 at 10x isolated short (u 0.2): copy 600 margin, 0.12 BTC short.
    At 50,500 A closes all (copy +10), B buys back half (copy closes 0.06: -30)."""
    world = make_world(
        accounts=[{"id": "leadA", "balance": 10000}, {"id": "leadB", "balance": 20000},
                  {"id": "me", "balance": 10000}],
        groups=[{"name": "A", "leader": "leadA"}, {"name": "B", "leader": "leadB"}])
    engine = world.engine
    engine.place_order("me", "BTCUSDT", BUY, qty=D("0.02"))
    engine.follow("A", "me", "smart_sync", D(2000))
    engine.follow("B", "me", "smart_sync", D(3000))
    assert (own_view(world, "me").balance, in_use(world)) == (D(5000), D(5000))
    leader_btc(world, 1000, 5, account="leadA")
    leader_btc(world, 4000, 10, ISOLATED, SELL, account="leadB")
    a, b = copy_positions(world, "A")["BTCUSDT"], copy_positions(world, "B")["BTCUSDT"]
    assert (a.qty, a.leverage, a.margin_mode) == (D("0.02"), 5, CROSS)
    assert (b.qty, b.leverage, b.margin_mode, b.margin) == (D("-0.12"), 10, ISOLATED, D(600))

    engine.set_price("BTCUSDT", D(50500))
    engine.place_order("leadA", "BTCUSDT", SELL, qty=D("0.1"))
    engine.place_order("leadB", "BTCUSDT", BUY, qty=D("0.4"))
    assert copy_positions(world, "A") == {}
    assert copy_qty(world, "BTCUSDT", "B") == D("-0.06")
    assert sub_view(world, "A").balance == 2010
    assert sub_view(world, "B").balance == 2970
    own = own_positions(world, "me")
    assert list(own) == ["BTCUSDT"]
    assert (own["BTCUSDT"].qty, own["BTCUSDT"].avg_price, own["BTCUSDT"].leverage,
            own["BTCUSDT"].margin_mode) == (D("0.02"), D(50000), 10, CROSS)
    assert own_view(world, "me").balance == 5000
    assert in_use(world) == 4980


def test_a_breach_of_the_account_leaves_its_copies_alone() -> None:
    """Funding a copy is no loss for the daily limit; me's own 1 MNQ loses 100 at 20,950:
    me is breached and flattened, its copy keeps its 0.01 BTC and goes on copying."""
    world = make_world(accounts=[{"id": "lead", "balance": 10000},
                                 {"id": "me", "balance": 5000,
                                  "risk": {"daily_loss_limit": 100}}])
    engine = world.engine
    engine.place_order("me", "MNQ", BUY, qty=D(1))
    engine.follow("G", "me", "smart_sync", D(1000))
    engine.set_price("MNQ", D(20975))  # -50: the 1,000 moved out is not a loss
    assert own_view(world, "me").breached is None
    leader_btc(world, 1000, 5)
    engine.set_price("MNQ", D(20950))  # -100: breached
    assert own_view(world, "me").breached is not None
    assert own_positions(world, "me") == {}
    assert copy_qty(world, "BTCUSDT") == D("0.01")
    assert the_copy(world).status is CopyStatus.ACTIVE
    engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))
    assert copy_qty(world, "BTCUSDT") == D("0.005")


# --- refusals -------------------------------------------------------------------------------------

def refusal_world() -> World:
    """lead leads G with ratio follower f1; me copies G with 1,000; other is free."""
    world = make_world(accounts=[{"id": "lead", "balance": 10000},
                                 {"id": "f1", "balance": 5000},
                                 {"id": "me", "balance": 5000},
                                 {"id": "other", "balance": 5000}],
                       groups=[{"name": "G", "leader": "lead", "followers": ["f1"]}])
    world.engine.follow("G", "me", "smart_sync", D(1000))
    return world


REFUSALS: dict[str, Any] = {
    "following twice": lambda e: e.follow("G", "me", "smart_sync", D(1000)),
    "following the group it leads": lambda e: e.follow("G", "lead", "smart_sync", D(1000)),
    "following a group it follows in ratio mode":
        lambda e: e.follow("G", "f1", "smart_sync", D(1000)),
    "a mode other than smart_sync": lambda e: e.follow("G", "other", "ratio", D(1000)),
    "below the minimum": lambda e: e.follow("G", "other", "smart_sync", D("99.99")),
    "more than available": lambda e: e.follow("G", "other", "smart_sync", D("5000.01")),
    "a zero stop loss": lambda e: e.follow("G", "other", "smart_sync", D(1000),
                                          stop_loss=D(0)),
    "a negative stop loss": lambda e: e.follow("G", "other", "smart_sync", D(1000),
                                              stop_loss=D(-5)),
    "an unknown group": lambda e: e.follow("X", "other", "smart_sync", D(1000)),
    "switching to ratio mode while copying": lambda e: e.add_followers("G", ["me"]),
    "lowering below 100": lambda e: e.set_investment("G", "me", D(99)),
    "raising beyond available": lambda e: e.set_investment("G", "me", D("5000.01")),
    "the investment of no copy": lambda e: e.set_investment("G", "other", D(500)),
    "unfollowing what it does not copy": lambda e: e.unfollow("G", "other"),
    "a copy leading the group it copies": lambda e: e.set_leader("G", "me"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusals_change_nothing(name: str) -> None:
    world = refusal_world()
    before = snapshot(world)
    with pytest.raises(Refused):
        REFUSALS[name](world.engine)
    assert snapshot(world) == before


def test_the_minimum_investment_itself_is_accepted() -> None:
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(100))
    assert (own_view(world, "me").balance, in_use(world)) == (D(4900), D(100))


def test_unfollowing_twice_is_refused_and_changes_nothing() -> None:
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(1000))
    world.engine.unfollow("G", "me")
    before = snapshot(world)
    with pytest.raises(Refused):
        world.engine.unfollow("G", "me")
    with pytest.raises(Refused):
        world.engine.set_investment("G", "me", D(500))
    assert snapshot(world) == before


def test_a_leader_of_another_group_may_copy_this_one() -> None:
    """SPEC 4: one role in one group, except Smart Sync copies."""
    world = make_world(accounts=[{"id": "lead", "balance": 10000},
                                 {"id": "me", "balance": 5000}],
                       groups=[{"name": "G", "leader": "lead"}, {"name": "Mine", "leader": "me"}])
    world.engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5)
    assert copy_qty(world, "BTCUSDT") == D("0.01")


def test_following_again_after_unfollowing_replaces_the_ended_copy() -> None:
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    first = the_copy(world).sub
    engine.unfollow("G", "me")
    engine.follow("G", "me", "smart_sync", D(2000))
    copy = the_copy(world)
    assert (copy.status, copy.investment) == (CopyStatus.ACTIVE, D(2000))
    assert copy.sub != first
    assert (own_view(world, "me").balance, in_use(world)) == (D(3000), D(2000))
    out = report(Replay(world))["copies"]
    assert list(out) == ["G/me"]
    assert (out["G/me"]["status"], out["G/me"]["investment"]) == ("active", 2000)
    leader_btc(world, 1000, 5)  # u = 0.1: m = 200 -> 0.02
    assert copy_qty(world, "BTCUSDT") == D("0.02")


# --- total stop loss ------------------------------------------------------------------------------

def test_stop_loss_close_at_the_update_price_then_mirrors_nothing() -> None:
    """The follower's broker slips 10 ticks (1.0): the copy's 0.01 (sized at 50,000) fills at
    50,001. Stop loss 50: at 45,001.1 PnL is -49.999 (kept); at 45,001 it is -50: stopped and
    closed at 45,001 itself, no slippage. Funds 950 return to me's balance."""
    world = make_world(
        accounts=[{"id": "lead", "broker": "lb", "balance": 10000},
                  {"id": "me", "broker": "fb", "balance": 5000}],
        brokers={"lb": {}, "fb": {"slippage_ticks": 10}})
    engine = world.engine
    events = record(world)
    engine.follow("G", "me", "smart_sync", D(1000), stop_loss=D(50))
    leader_btc(world, 1000, 5)
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.avg_price) == (D("0.01"), D(50001))
    engine.set_price("BTCUSDT", D("45001.1"))
    assert the_copy(world).status is CopyStatus.ACTIVE
    engine.set_price("BTCUSDT", D(45001))
    assert the_copy(world).status is CopyStatus.STOPPED
    assert copy_positions(world) == {}
    assert (own_view(world, "me").balance, in_use(world)) == (D(4950), D(0))
    out = report(Replay(world))["copies"]["G/me"]
    assert (out["status"], out["realized_pnl"], out["equity"]) == ("stopped", -50, 950)
    assert CopyChanged("G", "me", CopyStatus.STOPPED, "stopped") in events

    before = snapshot(world)
    with pytest.raises(Refused):
        engine.set_investment("G", "me", D(2000))
    assert snapshot(world) == before
    engine.place_order("lead", "BTCUSDT", BUY, qty=D("0.1"))
    engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.05"))
    assert copy_positions(world) == {}
    assert failures(world) == []
    assert engine.group("G").status is GroupStatus.ACTIVE  # a stopped copy still follows


def test_stop_loss_keep_holds_positions_and_funds_until_unfollow() -> None:
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000), stop_loss=D(50), on_stop=OnStop.KEEP)
    leader_btc(world, 1000, 5)
    engine.set_price("BTCUSDT", D(45000))  # 0.01 x -5,000 = -50
    assert the_copy(world).status is CopyStatus.STOPPED
    assert copy_qty(world, "BTCUSDT") == D("0.01")
    assert (own_view(world, "me").balance, in_use(world)) == (D(4000), D(1000))
    engine.set_price("BTCUSDT", D(46000))
    engine.set_leverage("lead", "BTCUSDT", 2)  # no leverage sync either
    engine.place_order("lead", "BTCUSDT", SELL, qty=D("0.1"))  # exits are not mirrored either
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.qty, pos.leverage) == (D("0.01"), 5)
    engine.unfollow("G", "me")  # at market, 46,000: -40
    assert copy_positions(world) == {}
    assert the_copy(world).status is CopyStatus.ENDED
    assert (own_view(world, "me").balance, in_use(world)) == (D(4960), D(0))


def test_stop_loss_is_checked_on_a_fill() -> None:
    """Fee 2.5 per contract. Leader 50,000 buys 10 MNQ: u = 0.02; copy 10,000 -> 2 MNQ,
    fee 5: PnL -5 <= -5, stopped at that fill with no price update; closing 2 costs 5 more,
    so 9,990 returns."""
    world = make_world(accounts=[{"id": "lead", "balance": 50000},
                                 {"id": "me", "balance": 20000}],
                       brokers={"sim": {"fee_per_contract": "2.5"}})
    world.engine.follow("G", "me", "smart_sync", D(10000), stop_loss=D(5))
    world.engine.place_order("lead", "MNQ", BUY, qty=D(10))
    assert the_copy(world).status is CopyStatus.STOPPED
    assert copy_positions(world) == {}
    assert own_view(world, "me").balance == 19990
    assert in_use(world) == 0
    assert report(Replay(world))["copies"]["G/me"]["realized_pnl"] == -10


# --- group actions --------------------------------------------------------------------------------

def test_flatten_all_closes_copies_too() -> None:
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5)
    engine.set_price("BTCUSDT", D(51000))
    engine.flatten_all("G")
    assert own_positions(world, "lead") == {}
    assert copy_positions(world) == {}
    assert sub_view(world).balance == 1010  # 0.01 x 1,000
    assert in_use(world) == 1010
    assert own_view(world, "lead").balance == 10100


def test_emergency_stop_closes_copies_and_pauses() -> None:
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5, ISOLATED, SELL)
    engine.set_price("BTCUSDT", D(49000))
    engine.emergency_stop()
    assert own_positions(world, "lead") == {}
    assert copy_positions(world) == {}
    assert sub_view(world).balance == 1010  # short 0.01 from 50,000 to 49,000
    group = engine.group("G")
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.EMERGENCY_STOP)


# --- leverage sync --------------------------------------------------------------------------------

def test_leverage_sync_sets_isolated_margin_to_qty_avg_over_new_leverage() -> None:
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 5, ISOLATED)
    assert copy_positions(world)["BTCUSDT"].margin == 100
    engine.set_leverage("lead", "BTCUSDT", 2)
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.leverage, pos.margin) == (2, D(250))  # 0.01 x 50,000 / 2
    engine.set_leverage("lead", "BTCUSDT", 10)
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.leverage, pos.margin) == (10, D(50))
    assert failures(world) == []


def _starved_copy(investment: int) -> World:
    """Leader 10,000 opens 0.2 BTC isolated 10x (u 0.1) and then 1 MNQ (u 0.01). The copy
    gets qty = investment x 0.1 x 10 / 50,000 BTC, and the minimum 1 MNQ (margin 100)."""
    world = make_world()
    world.engine.follow("G", "me", "smart_sync", D(investment))
    leader_btc(world, 1000, 10, ISOLATED)
    world.engine.place_order("lead", "MNQ", BUY, qty=D(1))
    return world


def test_leverage_sync_failure_then_retry_when_the_investment_is_raised() -> None:
    """Copy 150: 0.003 BTC (margin 15) + 1 MNQ: 35 available. Leader to 2x: the copy needs
    0.003 x 50,000 / 2 = 75, 60 more than 15 > 35: leverage_sync_failed. Raising to 174
    leaves 59 (< 60): still 10x. Raising to 175 leaves 60: the retry goes through."""
    world = _starved_copy(150)
    engine = world.engine
    events = record(world)
    assert copy_qty(world, "BTCUSDT") == D("0.003")
    assert copy_qty(world, "MNQ") == 1
    assert sub_view(world).available == 35
    engine.set_leverage("lead", "BTCUSDT", 2)
    assert own_positions(world, "lead")["BTCUSDT"].margin == 5000
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.leverage, pos.margin) == (10, D(15))
    assert failures(world) == [("G", "me", "BTCUSDT", RejectReason.LEVERAGE_SYNC_FAILED)]
    assert [e.failure.reason for e in events if isinstance(e, CopyFailed)] == [
        RejectReason.LEVERAGE_SYNC_FAILED]

    engine.set_investment("G", "me", D(174))
    assert copy_positions(world)["BTCUSDT"].leverage == 10
    engine.set_investment("G", "me", D(175))
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.leverage, pos.margin) == (2, D(75))
    assert sub_view(world).available == 0  # 175 - 75 - 100


def test_leverage_sync_with_an_increase_equal_to_available_succeeds() -> None:
    """Copy 200: 0.004 BTC (margin 20) + 1 MNQ: 80 available; 2x needs 100, 80 more: fits."""
    world = _starved_copy(200)
    assert sub_view(world).available == 80
    world.engine.set_leverage("lead", "BTCUSDT", 2)
    pos = copy_positions(world)["BTCUSDT"]
    assert (pos.leverage, pos.margin) == (2, D(100))
    assert failures(world) == []


# --- margin sync ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("price", "copy_margin"), [
    ("50000", "100"),    # level (100 + 0) / 4 = 25 > 10: skipped
    ("46875.1", "100"),  # level (100 - 62.498) / 3.750008 just above 10: skipped
    ("46875", "150"),    # level (100 - 62.5) / 3.75 = 10, not above: 100 x 500 / 1,000 = 50
])
def test_margin_add_is_skipped_above_margin_level_ten(price: str, copy_margin: str) -> None:
    """Leader 0.2 BTC isolated 10x (margin 1,000); copy 1,000 -> 0.02 (margin 100)."""
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 10, ISOLATED)
    engine.set_price("BTCUSDT", D(price))
    engine.adjust_margin("lead", "BTCUSDT", D(500))
    assert own_positions(world, "lead")["BTCUSDT"].margin == 1500
    assert copy_positions(world)["BTCUSDT"].margin == D(copy_margin)
    assert failures(world) == []


def test_margin_add_the_copy_cannot_afford_is_margin_sync_failed() -> None:
    """Copy 150: 0.003 BTC (margin 15) + 1 MNQ. At 46,875 its BTC level is
    (15 - 9.375) / 0.5625 = 10 and it has 150 - 9.375 - 115 = 25.625 available.
    The leader adds 2,000 to 1,000: the copy's share 15 x 2 = 30 > 25.625."""
    world = _starved_copy(150)
    events = record(world)
    world.engine.set_price("BTCUSDT", D(46875))
    assert sub_view(world).available == D("25.625")
    world.engine.adjust_margin("lead", "BTCUSDT", D(2000))
    assert own_positions(world, "lead")["BTCUSDT"].margin == 3000
    assert copy_positions(world)["BTCUSDT"].margin == 15
    assert failures(world) == [("G", "me", "BTCUSDT", RejectReason.MARGIN_SYNC_FAILED)]
    assert [e.failure.reason for e in events if isinstance(e, CopyFailed)] == [
        RejectReason.MARGIN_SYNC_FAILED]


def test_margin_removal_is_proportional_and_capped_at_the_floor() -> None:
    """Copy 0.02 BTC at 10x, floor 0.02 x 50,000 / 10 = 100.
    At 46,875 (level 10) the leader adds 1,000 to 1,000: copy +100 -> 200.
    At 50,000 (level 50) the leader adds 2,000 to 2,000: skipped, copy stays 200.
    The leader removes 1,000 of 4,000: copy 200 x -1,000 / 4,000 = -50 -> 150.
    The leader removes 2,000 of 3,000: copy 150 x -2/3 = -100, capped at the floor: 100."""
    world = make_world()
    engine = world.engine
    engine.follow("G", "me", "smart_sync", D(1000))
    leader_btc(world, 1000, 10, ISOLATED)
    engine.set_price("BTCUSDT", D(46875))
    engine.adjust_margin("lead", "BTCUSDT", D(1000))
    assert copy_positions(world)["BTCUSDT"].margin == 200
    engine.set_price("BTCUSDT", D(50000))
    engine.adjust_margin("lead", "BTCUSDT", D(2000))
    assert copy_positions(world)["BTCUSDT"].margin == 200
    engine.adjust_margin("lead", "BTCUSDT", D(-1000))
    assert copy_positions(world)["BTCUSDT"].margin == 150
    engine.adjust_margin("lead", "BTCUSDT", D(-2000))
    assert own_positions(world, "lead")["BTCUSDT"].margin == 1000
    assert copy_positions(world)["BTCUSDT"].margin == 100
    assert failures(world) == []


# --- events --------------------------------------------------------------------------------------

def test_observers_get_copy_changed_events_through_the_lifecycle() -> None:
    world = make_world()
    engine = world.engine
    events = record(world)
    engine.follow("G", "me", "smart_sync", D(1000))
    engine.set_investment("G", "me", D(1100))
    engine.unfollow("G", "me")
    changes = [e for e in events if isinstance(e, CopyChanged)]
    assert changes == [
        CopyChanged("G", "me", CopyStatus.ACTIVE, "followed"),
        CopyChanged("G", "me", CopyStatus.ACTIVE, "investment"),
        CopyChanged("G", "me", CopyStatus.ENDED, "unfollowed"),
    ]


# --- restarts through the store ------------------------------------------------------------------

RESTART_STEPS: list[dict[str, Any]] = [
    {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync", "investment": 1000,
     "stop_loss": 500, "on_stop": "keep"},
    {"op": "follow", "group": "G", "account": "you", "mode": "smart_sync", "investment": 150},
    {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "margin": 1000,
     "leverage": 10, "margin_mode": "isolated"},
    {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
    {"op": "set_leverage", "account": "lead", "symbol": "BTCUSDT", "leverage": 2},
    {"op": "restart"},
    {"op": "set_investment", "group": "G", "account": "you", "investment": 175},
    {"op": "price", "symbol": "BTCUSDT", "price": 51000},
    {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "sell", "qty": 0.1},
    {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1},
]


def restart_scenario(steps: list[dict[str, Any]]) -> str:
    return json.dumps({
        "prices": {"BTCUSDT": 50000, "MNQ": 21000},
        "accounts": [{"id": "lead", "balance": 10000}, {"id": "me", "balance": 5000},
                     {"id": "you", "balance": 5000}],
        "groups": [{"name": "G", "leader": "lead", "followers": []}],
        "steps": steps,
    })


def _no_restart(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in steps if s["op"] != "restart"]


async def test_a_restart_through_the_store_keeps_copies_exactly() -> None:
    """Before the restart: me 0.02 BTC (2x after sync, margin 500) + 1 MNQ; you 0.003 BTC
    still at 10x (its sync failed, pending) + 1 MNQ. After: you's raise to 175 retries the
    2x (margin 75); at 51,000 the leader sells half: me closes 0.01 (+10, margin 250), you
    0.0015 -> 0.002 (+2, margin 75 x 1/3 = 25); the leader's MNQ exit closes both."""
    stored = await replay_with_store(parse_scenario(restart_scenario(RESTART_STEPS)))
    memory = replay_in_memory(parse_scenario(restart_scenario(_no_restart(RESTART_STEPS))))
    out = report(stored)
    assert out == report(memory)
    assert out["errors"] == []
    assert [(f["account"], f["symbol"], f["reason"]) for f in out["failures"]] == [
        ("you", "BTCUSDT", "leverage_sync_failed")]
    me, you = out["copies"]["G/me"], out["copies"]["G/you"]
    assert (me["status"], me["investment"], me["realized_pnl"], me["stop_loss"],
            me["on_stop"]) == ("active", 1000, 10, 500, "keep")
    [pos] = me["positions"]
    assert (pos["symbol"], pos["qty"], pos["leverage"], pos["margin_mode"], pos["margin"]) == (
        "BTCUSDT", 0.01, 2, "isolated", 250)
    assert (you["status"], you["investment"], you["realized_pnl"]) == ("active", 175, 2)
    [pos] = you["positions"]
    assert (pos["symbol"], pos["qty"], pos["leverage"], pos["margin"]) == (
        "BTCUSDT", 0.001, 2, 25)
    assert (out["accounts"]["me"]["balance"], out["accounts"]["me"]["in_use"]) == (4000, 1010)
    assert (out["accounts"]["you"]["balance"], out["accounts"]["you"]["in_use"]) == (4825, 177)
    assert set(out["accounts"]) == {"lead", "me", "you"}


async def test_a_restart_right_after_the_copies_changes_nothing() -> None:
    steps = [*RESTART_STEPS[:5], {"op": "restart"}]
    stored = await replay_with_store(parse_scenario(restart_scenario(steps)))
    memory = replay_in_memory(parse_scenario(restart_scenario(steps[:5])))
    assert report(stored) == report(memory)
    copies = stored.engine.state.copies
    assert copies[("G", "you")].pending_leverage == {"BTCUSDT": 2}
    assert copies[("G", "me")].stop_loss == 500
    assert copies[("G", "me")].on_stop is OnStop.KEEP
    assert copies[("G", "me")].sub != copies[("G", "you")].sub
    assert stored.engine.group("G").copies == {"me", "you"}


async def test_a_restart_after_following_again_keeps_one_copy_and_no_stray_account() -> None:
    """Follow, unfollow, follow again (the ended copy is replaced), then restart: the
    desk still has two accounts and one copy, and the new copy goes on copying."""
    steps: list[dict[str, Any]] = [
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 1000},
        {"op": "unfollow", "group": "G", "account": "me"},
        {"op": "follow", "group": "G", "account": "me", "mode": "smart_sync",
         "investment": 2000},
        {"op": "restart"},
        {"op": "order", "account": "lead", "symbol": "BTCUSDT", "side": "buy", "margin": 1000,
         "leverage": 5},
    ]
    stored = await replay_with_store(parse_scenario(restart_scenario(steps)))
    out = report(stored)
    assert set(out["accounts"]) == {"lead", "me", "you"}
    assert list(out["copies"]) == ["G/me"]
    assert (out["accounts"]["me"]["balance"], out["accounts"]["me"]["in_use"]) == (3000, 2000)
    [pos] = out["copies"]["G/me"]["positions"]
    assert pos["qty"] == 0.02  # u = 0.1 of 2,000 at 5x


# --- properties ----------------------------------------------------------------------------------

STEP = {"BTCUSDT": D("0.001"), "MNQ": D(1)}
TICK = {"BTCUSDT": D("0.1"), "MNQ": D("0.25")}
LEADERS = ("A", "B")

symbols = st.sampled_from(["BTCUSDT", "MNQ"])
leaders = st.sampled_from(LEADERS)
opens = st.tuples(st.just("open"), leaders, symbols, st.sampled_from([BUY, SELL]),
                  st.integers(1, 40), st.integers(1, 20), st.sampled_from([CROSS, ISOLATED]))
reduces = st.tuples(st.just("reduce"), leaders, symbols, st.integers(1, 10))
ops = st.one_of(
    opens,
    reduces,
    reduces,
    st.tuples(st.just("reverse"), leaders, symbols, st.integers(1, 5)),
    st.tuples(st.just("price"), symbols, st.integers(-40, 40)),
    st.tuples(st.just("invest"), leaders, st.integers(100, 6000)),
    st.tuples(st.just("lev"), leaders, st.integers(1, 20)),
    st.tuples(st.just("margin"), leaders, st.integers(-900, 900)),
)


def _own(world: World) -> list[tuple[str, Decimal, Decimal, int | None, Any]]:
    return sorted((s, p.qty, p.avg_price, p.leverage, p.margin_mode)
                  for s, p in own_positions(world, "me").items())


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


OpTally = dict[str, dict[str, int]]  # op kind -> {"done" | "refused" | "skipped": times}
OPS: OpTally = {}  # over one run of the property test


def _apply(world: World, op: tuple[Any, ...]) -> None:
    """Apply one generated operation and tally whether it took effect."""
    outcome = _attempt(world, op)
    counts = OPS.setdefault(op[0], {})
    counts[outcome] = counts.get(outcome, 0) + 1


def _attempt(world: World, op: tuple[Any, ...]) -> str:
    engine = world.engine
    kind = op[0]
    try:
        if kind == "open":
            _, lead, symbol, side, units, lev, mode = op
            if symbol == "MNQ":
                engine.place_order(f"lead{lead}", symbol, side, margin=D(units * 100))
            else:
                engine.place_order(f"lead{lead}", symbol, side, margin=D(units * 100),
                                   leverage=lev, margin_mode=mode)
        elif kind in ("reduce", "reverse"):
            _, lead, symbol, amount = op
            held = engine.broker_of(f"lead{lead}").position(f"lead{lead}", symbol)
            if held == 0:
                return "skipped"
            side = SELL if held > 0 else BUY
            if kind == "reduce":
                qty = (abs(held) * amount / 10 / STEP[symbol]).to_integral_value(
                    rounding=ROUND_FLOOR) * STEP[symbol]
            else:
                qty = abs(held) + amount * STEP[symbol] * (10 if symbol == "BTCUSDT" else 1)
            if qty <= 0:
                return "skipped"
            engine.place_order(f"lead{lead}", symbol, side, qty=qty)
        elif kind == "price":
            _, symbol, permille = op
            now = world.prices.get(symbol)
            new = (now * (1000 + permille) / 1000 / TICK[symbol]).to_integral_value(
                rounding=ROUND_HALF_UP) * TICK[symbol]
            engine.set_price(symbol, max(new, TICK[symbol]))
        elif kind == "invest":
            _, lead, amount = op
            engine.set_investment(lead, "me", D(amount))
        elif kind == "lev":
            _, lead, lev = op
            engine.set_leverage(f"lead{lead}", "BTCUSDT", lev)
        elif kind == "margin":
            # Only on an isolated position the leader holds, within what it can add
            # (its available funds) or remove (down to qty x avg / leverage): a
            # permille of that room, so that the change mostly takes effect.
            _, lead, permille = op
            account = f"lead{lead}"
            broker = engine.broker_of(account)
            if (broker.position(account, "BTCUSDT") == 0
                    or broker.leverage_of(account, "BTCUSDT")[1] is not ISOLATED):
                return "skipped"
            room = (broker.available(account) if permille > 0 else
                    broker.position_margin(account, "BTCUSDT")
                    - broker.isolated_floor(account, "BTCUSDT"))
            amount = (room * permille / 1000).quantize(D("0.01"), rounding=ROUND_FLOOR)
            if amount == 0:
                return "skipped"
            engine.adjust_margin(account, "BTCUSDT", amount)
    except Refused:
        return "refused"
    return "done"


@settings(max_examples=scaled(200, 2000), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(invest_a=st.integers(100, 6000), invest_b=st.integers(100, 6000),
       fee=st.sampled_from([ZERO, D("0.5")]), first=st.lists(opens, min_size=2, max_size=4),
       steps=st.lists(st.tuples(opens, ops), min_size=2, max_size=12))
def _properties_of_smart_sync_copies(invest_a: int, invest_b: int, fee: Decimal,
                                         first: list[tuple[Any, ...]],
                                         steps: list[tuple[tuple[Any, ...], tuple[Any, ...]]]
                                         ) -> None:
    """me (own 0.05 BTC long and 2 MNQ short) copies two leaders. After every step:
    - its own positions and settings never change;
    - each copy's funds are investment + the sum of (realized - fee) over its fills, and
      me's balance + in_use moves only by those;
    - each copy is flat or on its leader's side;
    - when a copy opens (no fees), its used margin is at most its equity;
    - after a leader reduce, the copy closed f = q / Q of its position within one qty
      step (all of it when the leader is flat).
    """
    world = make_world(
        accounts=[{"id": "leadA", "balance": 20000}, {"id": "leadB", "balance": 20000},
                  {"id": "me", "balance": 20000}],
        groups=[{"name": "A", "leader": "leadA"}, {"name": "B", "leader": "leadB"}],
        brokers={"sim": {"fee_per_contract": str(fee)}})
    engine = world.engine
    engine.place_order("me", "BTCUSDT", BUY, qty=D("0.05"))
    engine.place_order("me", "MNQ", SELL, qty=D(2))
    engine.follow("A", "me", "smart_sync", D(invest_a))
    engine.follow("B", "me", "smart_sync", D(invest_b))
    own = _own(world)
    settings_before = {s: engine.broker_of("me").leverage_of("me", s) for s in STEP}
    subs = {lead: the_copy(world, lead).sub for lead in LEADERS}
    net = dict.fromkeys(subs.values(), ZERO)
    broker = world.brokers["sim"]
    assert isinstance(broker, SimBroker)

    def on_event(event: object) -> None:
        if isinstance(event, Fill) and event.account in net:
            net[event.account] += event.realized - event.fee

    broker.subscribe(on_event)
    base_total = own_view(world, "me").balance + in_use(world)

    def held(account: str, symbol: str) -> Decimal:
        return engine.broker_of(account).position(account, symbol)

    for op in [*first, *(op for pair in steps for op in pair)]:
        before = {(lead, s): (held(f"lead{lead}", s), held(subs[lead], s))
                  for lead in LEADERS for s in STEP}
        leader_qty_before = {k: v[0] for k, v in before.items()}
        _apply(world, op)

        assert _own(world) == own
        assert {s: engine.broker_of("me").leverage_of("me", s) for s in STEP} == settings_before
        for lead in LEADERS:
            view = sub_view(world, lead)
            assert view.balance == the_copy(world, lead).investment + net[subs[lead]]
            assert view.realized - view.fees == net[subs[lead]]
        assert own_view(world, "me").balance + in_use(world) == base_total + sum(net.values())

        for (lead, symbol), (leader_before, copy_before) in before.items():
            leader_now = held(f"lead{lead}", symbol)
            copy_now = held(subs[lead], symbol)
            assert _sign(copy_now) in (0, _sign(leader_now))
            opened = copy_now != 0 and (_sign(copy_now) != _sign(copy_before)
                                        or abs(copy_now) > abs(copy_before))
            if fee == 0 and opened:
                view = sub_view(world, lead)
                assert view.used_margin <= view.equity
            if op[0] == "reduce" and op[1] == lead and op[2] == symbol:
                q = abs(leader_qty_before[(lead, symbol)]) - abs(leader_now)
                if q <= 0:
                    continue
                if copy_before == 0:
                    assert copy_now == 0  # a leader exit never opens a copy
                elif leader_now == 0:
                    assert copy_now == 0
                else:
                    closed = abs(copy_before) - abs(copy_now)
                    wanted = abs(copy_before) * q / abs(leader_before)
                    assert abs(closed - wanted) <= STEP[symbol]


# Share of each operation kind's attempts (not counting skips, where the
# generated operation had nothing to act on) that must take effect over a run.
# Floors sit well below the measured rates (margin ~0.9 over only ~40 tries,
# reduce ~0.95): hypothesis draws new cases each run, and a floor at the mean
# fails one run in three. They still catch the old generator (margin ~0.4).
MIN_OP_EFFECT = {"open": 0.6, "reduce": 0.75, "reverse": 0.6, "price": 0.9, "invest": 0.4,
                 "lev": 0.5, "margin": 0.65}


def test_properties_of_smart_sync_copies() -> None:
    """The properties above, and a check that the operations mostly took effect."""
    OPS.clear()
    _properties_of_smart_sync_copies()
    rates = {}
    for kind, floor in MIN_OP_EFFECT.items():
        counts = OPS.get(kind, {})
        tried = counts.get("done", 0) + counts.get("refused", 0)
        assert tried >= 10, (kind, OPS)
        rates[kind] = counts.get("done", 0) / tried
        assert rates[kind] >= floor, (kind, rates[kind], OPS)
    print(f"\nSmart Sync operations' effect rates {rates}")


def test_a_copy_fill_is_published_to_observers_as_its_owner_s() -> None:
    """The UI's activity log shows Smart Sync copies being made."""
    from synctui.engine.events import AccountFilled
    from synctui.scenario.model import parse_scenario as _parse
    from synctui.scenario.runner import build_world as _build

    world = _build(_parse(json.dumps({
        "prices": {"BTCUSDT": 50000},
        "accounts": [{"id": "lead", "balance": 10000}, {"id": "me", "balance": 5000}],
        "groups": [{"name": "Top", "leader": "lead"}],
    })))
    events: list[EngineEvent] = []
    world.engine.follow("Top", "me", "smart_sync", Decimal(1000))
    world.engine.subscribe(events.append)
    world.engine.place_order("lead", "BTCUSDT", Side.BUY, margin=Decimal(1000), leverage=5)
    copies = [e for e in events if isinstance(e, AccountFilled) and e.smart]
    assert [(e.account, e.group, e.qty, e.copy) for e in copies] == [
        ("me", "Top", Decimal("0.01"), True)]
