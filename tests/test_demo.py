"""The demo desk (sample_data/demo.json), the demo leaders' strategy and the driver
that lets them trade a world."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from synctui.cli import main
from synctui.domain.clock import SteppingClock
from synctui.domain.groups import GroupStatus, PauseReason
from synctui.domain.orders import FillCause, OrderType, Side
from synctui.engine.events import AccountFilled, EngineEvent
from synctui.engine.world import World
from synctui.market.strategy import (
    Action,
    CancelEntries,
    ChaseEntry,
    DemoStrategy,
    Enter,
    Exit,
    LeaderSnapshot,
    MoveStop,
    ScaleOut,
)
from synctui.scenario.demo import DEFAULT_DEMO, DemoDriver, default_leaders, load_demo
from synctui.scenario.model import ScenarioError, parse_scenario
from synctui.scenario.report import report
from synctui.scenario.runner import Replay, build_world, replay_in_memory
from synctui.store.session import Session
from synctui.store.store import Store

NQ_FOLLOWERS = ["APEX-4472", "APEX-4480", "TRADOVATE-88213",
                "TOPSTEP-1032", "TOPSTEP-1047", "TOPSTEP-1051"]
GOLD_FOLLOWERS = ["APEX-6133", "TOPSTEP-1099"]
CRUDE_FOLLOWERS = ["TOPSTEP-3302", "APEX-7718"]


def demo_world() -> World:
    run = replay_in_memory(load_demo())
    assert run.errors == []
    return run.world


# --- the scenario file ------------------------------------------------------------------


def test_the_default_demo_path_is_the_repo_sample() -> None:
    assert Path(__file__).parents[1] / "sample_data" / "demo.json" == DEFAULT_DEMO
    assert DEFAULT_DEMO.is_file()


def test_demo_replays_through_the_cli_with_no_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(DEFAULT_DEMO), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result: dict[str, Any] = json.loads(captured.out)
    assert result["errors"] == []
    assert result["failures"] == []
    groups = result["groups"]
    assert groups["NQ Momentum"]["status"] == "active"
    assert groups["Gold Desk"]["status"] == "paused"
    assert groups["Gold Desk"]["reason"] == "paused"
    assert groups["Crude Swing"]["status"] == "not_configured"
    assert groups["BTC Perps"]["status"] == "active"
    accounts = result["accounts"]
    assert 12 <= len(accounts) <= 16
    # Setup only: nobody holds anything yet.
    assert all(not a["positions"] and not a["orders"] for a in accounts.values())
    copies = result["copies"]
    assert {c["status"] for c in copies.values()} == {"active"}
    assert accounts["BYBIT-SUB-12"]["in_use"] == 2000


def test_demo_desk_shape() -> None:
    world = demo_world()
    engine = world.engine
    nq = engine.group("NQ Momentum")
    assert nq.followers == NQ_FOLLOWERS
    assert {engine.state.accounts[f] for f in nq.followers} == {"tradovate", "topstep"}
    assert nq.setting("TRADOVATE-88213", "MNQ").cross == "NQ"
    assert nq.setting("TRADOVATE-88213", "MES").cross == "ES"
    assert nq.setting("APEX-4480", "MNQ").ratio == 2
    assert nq.setting("TOPSTEP-1047", "MNQ").ratio == 3
    assert nq.setting("TOPSTEP-1032", "MES").sync is False
    gold = engine.group("Gold Desk")
    assert (gold.status, gold.reason) == (GroupStatus.PAUSED, PauseReason.PAUSED)
    assert gold.setting("TOPSTEP-1099", "MGC").cross == "GC"
    crude = engine.group("Crude Swing")
    assert crude.leader is None and crude.status is GroupStatus.NOT_CONFIGURED
    btc = engine.group("BTC Perps")
    assert btc.copies == {"BYBIT-SUB-12", "BYBIT-SUB-19"}
    # Brokers name contracts their own way.
    assert world.brokers["tradovate"].symbols.native("MNQ") == "MNQZ6"
    assert world.brokers["topstep"].symbols.native("MNQ") == "CON.F.US.MNQ.Z26"
    # Some accounts carry prop risk limits.
    limited = [a for a in engine.state.accounts
               if world.brokers[engine.state.accounts[a]].view(a).risk.daily_loss_limit
               or world.brokers[engine.state.accounts[a]].view(a).risk.max_drawdown]
    assert len(limited) >= 6


def test_default_leaders_come_from_the_groups() -> None:
    assert default_leaders(demo_world()) == [
        ("APEX-4471", "MES"), ("APEX-4471", "MNQ"), ("APEX-6120", "MGC"),
        ("BYBIT-MAIN-01", "BTCUSDT"), ("BYBIT-MAIN-01", "ETHUSDT"),
    ]


def test_a_leader_without_settings_gets_a_spare_contract() -> None:
    world = replay_in_memory(parse_scenario(json.dumps({
        "prices": {"MNQ": 21000, "MGC": 2650, "BTCUSDT": 50000},
        "accounts": [{"id": "a", "balance": 50000}, {"id": "b", "balance": 50000},
                     {"id": "c", "balance": 50000}],
        "groups": [{"name": "G", "leader": "a", "followers": ["b"]},
                   {"name": "H", "leader": "c"}],
        "steps": [{"op": "ratio", "group": "G", "follower": "b", "symbol": "MNQ", "ratio": 2}],
    }))).world
    # c trades the first priced family nobody else does, in its smallest contract.
    assert default_leaders(world) == [("a", "MNQ"), ("c", "BTCUSDT")]


def test_a_missing_demo_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "demo.json"
    with pytest.raises(ScenarioError, match=r"demo scenario .*nowhere.*missing"):
        load_demo(missing)


# --- the strategy -----------------------------------------------------------------------


def snapshot(position: Decimal = Decimal(0), *, price: str = "21000.25", avg: str = "0",
             entries: int = 0, symbol: str = "MNQ", tick: str = "0.25",
             step: str = "1", unit: str = "1", max_qty: str = "3",
             move: str = "1.00") -> LeaderSnapshot:
    return LeaderSnapshot(
        account="lead", symbol=symbol, position=position, avg_price=Decimal(avg),
        entry_orders=entries, working_orders=entries, price=Decimal(price),
        move=Decimal(move), tick=Decimal(tick), qty_step=Decimal(step), unit=Decimal(unit),
        max_qty=Decimal(max_qty))


def scripted_snapshots(seed: int, count: int) -> list[list[LeaderSnapshot]]:
    """A fixed, varied sequence of states: flat, pending entries, long and short in
    profit or not, on a future and a perp."""
    rng = random.Random(seed)
    rounds = []
    price = 2100000  # in MNQ ticks
    btc = 500000  # in BTC ticks
    state, size = "flat", 1
    for _ in range(count):
        price += rng.randint(-20, 20)
        btc += rng.randint(-50, 50)
        if rng.random() < 0.08:  # states last a while, as trades do
            state = rng.choice(("flat", "flat", "pending", "long", "short"))
            size = rng.randint(1, 3)
        pos = {"flat": 0, "pending": 0, "long": size, "short": -size}
        avg = (price + rng.randint(-60, 60)) * Decimal("0.25")
        rounds.append([
            snapshot(Decimal(pos[state]), price=str(price * Decimal("0.25")),
                     avg=str(avg if pos[state] else 0), entries=int(state == "pending")),
            snapshot(Decimal(pos[state]) * Decimal("0.05"), price=str(btc * Decimal("0.1")),
                     avg=str((btc + rng.randint(-300, 300)) * Decimal("0.1")
                             if pos[state] else 0),
                     entries=int(state == "pending"), symbol="BTCUSDT", tick="0.1",
                     step="0.001", unit="0.05", max_qty="0.15", move="2.5"),
        ])
    return rounds


def run_strategy(seed: int, rounds: list[list[LeaderSnapshot]]) -> list[list[Action]]:
    strategy = DemoStrategy(seed)
    return [strategy.decide(snaps) for snaps in rounds]


def test_strategy_is_deterministic_for_a_seed() -> None:
    rounds = scripted_snapshots(1, 400)
    first = run_strategy(5, rounds)
    assert first == run_strategy(5, rounds)
    assert first != run_strategy(6, rounds)
    kinds = Counter(type(a) for actions in first for a in actions)
    # It does every kind of thing over a long enough stretch.
    for kind in (Enter, Exit, ScaleOut, MoveStop, CancelEntries, ChaseEntry):
        assert kinds[kind] > 0, kind


def entries_from_flat(seed: int, count: int) -> list[tuple[LeaderSnapshot, Enter]]:
    """Every strategy asked a few times about a flat leader with nothing working."""
    found = []
    for index in range(count):
        strategy = DemoStrategy(seed * 1000 + index, enter_chance=1.0)
        future = snapshot(price=str(Decimal("21000.25") + index * Decimal("0.25")))
        perp = snapshot(price="50000.3", symbol="BTCUSDT", tick="0.1", step="0.001",
                        unit="0.05", max_qty="0.15", move="2.5")
        for _ in range(5):
            for action in strategy.decide([future, perp]):
                assert isinstance(action, Enter)
                found.append((future if action.symbol == "MNQ" else perp, action))
    return found


def test_entries_carry_brackets_on_the_correct_sides() -> None:
    found = entries_from_flat(3, 300)
    assert len(found) > 500
    types = Counter(enter.type for _snap, enter in found)
    assert types[OrderType.MARKET] and types[OrderType.LIMIT] and types[OrderType.STOP]
    assert Counter(enter.side for _snap, enter in found)[Side.SELL] > 50
    for snap, enter in found:
        ref = snap.price if enter.price is None else enter.price
        if enter.side is Side.BUY:
            assert enter.stop_loss < ref < enter.take_profit
        else:
            assert enter.take_profit < ref < enter.stop_loss
        for level in (ref, enter.stop_loss, enter.take_profit):
            assert level > 0 and level % snap.tick == 0
        # Sensible distances: at least a few ticks, and the target beyond the stop.
        risk, reward = abs(ref - enter.stop_loss), abs(enter.take_profit - ref)
        assert risk >= 4 * snap.tick
        assert reward > risk
        assert (enter.price is None) == (enter.type is OrderType.MARKET)
        if enter.type is not OrderType.MARKET:
            # A limit rests on the better side of the price; a breakout stop on the worse.
            better = (ref < snap.price) == (enter.side is Side.BUY)
            assert better == (enter.type is OrderType.LIMIT)
        assert enter.qty >= snap.unit and enter.qty <= snap.max_qty
        assert enter.qty % snap.qty_step == 0


def test_breakeven_stops_lock_the_entry_and_sit_behind_the_price() -> None:
    moves = 0
    for seed in range(40):
        strategy = DemoStrategy(seed)
        for _ in range(30):
            for snap in (snapshot(Decimal(2), price="21050.00", avg="21010.10"),
                         snapshot(Decimal(-2), price="20950.00", avg="20990.10")):
                for action in strategy.decide([snap]):
                    if isinstance(action, MoveStop):
                        moves += 1
                        assert action.price % snap.tick == 0
                        if snap.position > 0:
                            assert snap.avg_price <= action.price < snap.price
                        else:
                            assert snap.price < action.price <= snap.avg_price
                    if isinstance(action, ScaleOut):
                        assert action.side is (Side.SELL if snap.position > 0 else Side.BUY)
                        assert 0 < action.qty < abs(snap.position)
    assert moves > 10


def test_a_position_is_left_after_a_while() -> None:
    strategy = DemoStrategy(9)
    long = snapshot(Decimal(1), avg="21000.00")
    for second in range(200):
        if any(isinstance(a, Exit) for a in strategy.decide([long])):
            assert second >= 10
            return
    pytest.fail("the strategy never left its position")


# --- the driver on the demo world ---------------------------------------------------------


def drive(seed: int, ticks: int, world: World | None = None) -> tuple[DemoDriver, list[str],
                                                                       list[AccountFilled]]:
    world = world or demo_world()
    fills: list[AccountFilled] = []

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, AccountFilled):
            fills.append(event)

    world.engine.subscribe(on_event)
    driver = DemoDriver(world, seed=seed)
    lines: list[str] = []
    for _ in range(ticks):
        out = driver.tick()
        assert all(isinstance(line, str) and line for line in out)
        lines.extend(out)
        for family, price in world.prices.families().items():
            for inst in world.catalog.family(family):
                assert price > 0 and price % inst.tick == 0, (inst.symbol, price)
    return driver, lines, fills


def positions(world: World, account: str) -> dict[str, Decimal]:
    broker = world.engine.broker_of(account)
    return {broker.symbols.catalog(p.symbol): p.qty for p in broker.view(account).positions}


def test_driver_trades_the_demo_and_followers_copy() -> None:
    world = demo_world()
    gold_before = {a: world.engine.broker_of(a).view(a).balance for a in GOLD_FOLLOWERS}
    seen: dict[str, set[tuple[tuple[str, Decimal], ...]]] = {a: set() for a in NQ_FOLLOWERS}
    crossed: set[str] = set()
    subs = {copy.sub for copy in world.engine.state.copies.values()}
    copy_held: set[str] = set()
    fills: list[AccountFilled] = []
    world.engine.subscribe(lambda e: fills.append(e) if isinstance(e, AccountFilled) else None)
    driver = DemoDriver(world, seed=1)
    lines: list[str] = []
    nq, btc = world.engine.group("NQ Momentum"), world.engine.group("BTC Perps")
    waited: set[str] = set()
    clock = world.clock
    assert isinstance(clock, SteppingClock)
    late = 0  # ticks where a Bybit copy was still in flight (its broker answers late)
    for _ in range(2000):
        lines.extend(driver.tick())
        clock.advance(timedelta(seconds=0.25))  # the app's tick
        for account in NQ_FOLLOWERS:
            held = positions(world, account)
            seen[account].add(tuple(sorted(held.items())))
            crossed.update(held)
        # After every tick each ratio follower that can still trade holds exactly the
        # leader's position times its ratio, in the contract it trades.
        for group in (nq, btc):
            assert group.leader is not None
            lead = positions(world, group.leader)
            for account in group.followers:
                if world.engine.broker_of(account).is_breached(account):
                    continue
                # The demo drops topstep now and then: its followers' copies wait, and
                # they hold what they should again from the tick it reconnects.
                if not world.engine.connected(account):
                    waited.add(account)
                    continue
                if driver._resync_at is not None and account in waited:
                    continue  # back, and resynced RESYNC_AFTER ticks later if still off
                if any(i.follower == account for i in world.engine.state.inflight.values()):
                    late += 1
                    continue  # Bybit answers 0.2 s later: the copy lands next tick
                want = {}
                for symbol, qty in lead.items():
                    setting = group.setting(account, symbol)
                    if setting.sync:
                        want[setting.cross or symbol] = qty * setting.ratio
                assert positions(world, account) == want, (account, driver.ticks)
        copy_held.update(sub for sub in subs if positions(world, sub))
    leaders = {"APEX-4471", "APEX-6120", "BYBIT-MAIN-01"}
    leader_fills = [f for f in fills if f.account in leaders]
    copies = [f for f in fills if f.copy]
    assert len(leader_fills) > 100
    assert len(copies) > 300
    assert {f.cause for f in leader_fills} >= {FillCause.ORDER, FillCause.FLATTEN}
    # Every NQ follower's holdings changed many times over.
    for account in NQ_FOLLOWERS:
        assert len(seen[account]) > 5, account
    # The personal account trades the full-size contracts it crosses to.
    assert {"NQ", "ES"} <= crossed
    # The copy happens at each follower's own broker, under its own naming.
    topstep = [f for f in copies if f.account.startswith("TOPSTEP-")]
    assert topstep and all(f.symbol in {"MNQ", "MES", "NQ", "ES"} for f in topstep)
    # The paused group copies nothing while its leader trades; Crude Swing has no leader.
    assert any(f.account == "APEX-6120" for f in leader_fills)
    for account in GOLD_FOLLOWERS + CRUDE_FOLLOWERS:
        assert not [f for f in fills if f.account == account], account
    for account in GOLD_FOLLOWERS:
        assert world.engine.broker_of(account).view(account).balance == gold_before[account]
    # The Smart Sync copies traded in their own sub-accounts.
    assert copy_held == subs
    # The log says what the leaders did, in words.
    text = "\n".join(lines)
    for words in ("buys", "sells", "exits", "scales out", "stop to breakeven"):
        assert words in text, words
    # The copier recovers from dropped connections (SPEC 9), seeded: topstep only.
    drops = [line for line in lines if line.startswith("broker topstep disconnected")]
    assert len(drops) >= 3
    assert len([line for line in lines if line.startswith("broker topstep reconnected")]) \
        >= len(drops) - 1
    assert waited == {"TOPSTEP-1032", "TOPSTEP-1047", "TOPSTEP-1051"}
    # Bybit answers late (ack_delay 0.2 s): its copies were in flight for a tick, then held.
    assert late > 10
    # A follower its own brackets left off ratio x the leader is resynced (SPEC 9).
    assert any(line.startswith("resync TOPSTEP-") for line in lines)


def final_state(seed: int, ticks: int) -> dict[str, Any]:
    driver, lines, _fills = drive(seed, ticks)
    state = report(Replay(driver.world))
    state["log"] = lines
    return state


def test_same_seed_same_final_state() -> None:
    first = final_state(4, 1200)
    assert first == final_state(4, 1200)
    assert first["accounts"] != final_state(5, 1200)["accounts"]
    assert first["log"]


def test_driver_uses_given_leaders_only() -> None:
    world = demo_world()
    driver = DemoDriver(world, seed=2, leaders=[("APEX-6120", "MGC")])
    for _ in range(800):
        driver.tick()
    assert positions(world, "APEX-4471") == {}
    assert not world.engine.broker_of("APEX-4471").view("APEX-4471").fees
    assert world.engine.broker_of("APEX-6120").view("APEX-6120").fees > 0


def test_refusals_come_back_as_lines_not_exceptions() -> None:
    world = demo_world()
    driver = DemoDriver(world, seed=3, leaders=[("NO-SUCH-ACCOUNT", "MNQ"), ("APEX-4471", "SPX")])
    lines = [line for _ in range(8) for line in driver.tick()]
    assert any("NO-SUCH-ACCOUNT" in line and "no account" in line for line in lines)
    assert any("APEX-4471" in line and "SPX" in line for line in lines)


def test_a_breached_leader_is_left_alone() -> None:
    world = build_world(parse_scenario(json.dumps({
        "prices": {"MNQ": 21000},
        "brokers": {"tv": {"naming": "tradovate", "fee_per_contract": 0.52}},
        "accounts": [{"id": "lead", "broker": "tv", "balance": 50000,
                      "risk": {"daily_loss_limit": 20}},
                     {"id": "f", "broker": "tv", "balance": 50000}],
        "groups": [{"name": "G", "leader": "lead", "followers": ["f"]}],
        "steps": [],
    })))
    driver = DemoDriver(world, seed=1, leaders=[("lead", "MNQ")])
    lines = [line for _ in range(2000) for line in driver.tick()]
    said = [i for i, line in enumerate(lines) if line == "lead has breached a risk limit: "
            "it stops trading"]
    assert len(said) == 1
    # Nothing more from the leader once it breached, and the group paused.
    assert not [line for line in lines[said[0] + 1:] if line.startswith("lead")]
    group = world.engine.group("G")
    assert (group.status, group.reason) == (GroupStatus.PAUSED, PauseReason.LEADER_BREACHED)


def test_a_different_world_gets_its_own_market_and_leaders() -> None:
    driver = DemoDriver(demo_world(), seed=2)
    for _ in range(50):
        driver.tick()
    other = replay_in_memory(parse_scenario(json.dumps({
        "prices": {"M2K": 2250.5},
        "accounts": [{"id": "a", "balance": 50000}, {"id": "b", "balance": 50000}],
        "groups": [{"name": "G", "leader": "a", "followers": ["b"]}],
        "steps": [{"op": "ratio", "group": "G", "follower": "b", "symbol": "M2K", "ratio": 2}],
    }))).world
    driver.world = other
    assert driver.leaders == [("a", "M2K")]
    lines = [line for _ in range(600) for line in driver.tick()]
    assert not [line for line in lines if "refused" in line or "cannot" in line]
    assert other.prices.get("M2K") != Decimal("2250.5")
    assert positions(other, "a") or other.engine.broker_of("a").view("a").fees


async def test_driver_on_a_store_survives_a_restart(tmp_path: Path) -> None:
    """As the app runs it: settle after each tick, and replace the world after a restart."""
    clock = SteppingClock()
    scenario = load_demo()

    def build() -> World:
        return replay_in_memory(scenario, clock).world

    store = await Store.open(tmp_path / "demo.db")
    try:
        session = await Session.start(store, clock, build)
        driver = DemoDriver(session.world, seed=7)
        leaders = list(driver.leaders)
        for _ in range(300):
            driver.tick()
            await session.settle()
        before = {a: positions(session.world, a) for a in NQ_FOLLOWERS}
        await session.restart()
        driver.world = session.world
        assert driver.leaders == leaders
        assert {a: positions(session.world, a) for a in NQ_FOLLOWERS} == before
        fills: list[AccountFilled] = []
        session.world.engine.subscribe(
            lambda e: fills.append(e) if isinstance(e, AccountFilled) else None)
        for _ in range(300):
            driver.tick()
            await session.settle()
        assert [f for f in fills if f.copy]
        assert not session.world.engine.outbox
    finally:
        await store.close()
