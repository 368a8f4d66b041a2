"""Build a world from a scenario, play its steps through the engine API, report.

The runner is one more client of the engine, like the TUI and the tests: it
holds no rule of its own, only the scenario's order refs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from synctui.brokers.base import Broker
from synctui.brokers.faults import FaultSettings
from synctui.brokers.naming import NamingScheme
from synctui.brokers.sim import BrokerSettings, SimBroker
from synctui.domain.clock import Clock, SteppingClock
from synctui.domain.copies import OnStop
from synctui.domain.errors import Refused
from synctui.domain.instruments import ONE, Catalog, Instrument, Kind, Market
from synctui.domain.orders import MarginMode, OrderType, Side
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits
from synctui.engine.engine import Engine
from synctui.engine.world import World
from synctui.scenario import model as m
from synctui.scenario.model import Scenario, ScenarioError, parse_step
from synctui.store.database import StoreError
from synctui.store.session import Session
from synctui.store.store import Store


@dataclass
class Replay:
    """A world being replayed: the scenario's order refs and refused steps."""

    world: World
    refs: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        return self.world.engine


def _instrument(spec: m.InstrumentSpec, index: int) -> Instrument:
    where = f"instruments[{index}]"
    kind = spec.kind
    if kind is None and spec.market is not None:
        kind = "future" if spec.market == "futures" else "perp"
    if kind is None:
        kind = "future" if spec.margin_per_contract is not None else "perp"
    if kind == "future":
        if spec.margin_per_contract is None:
            raise ScenarioError(f"{where}.margin_per_contract: is required for a future")
        step = spec.qty_step or ONE
        return Instrument(
            symbol=spec.symbol, family=spec.family, kind=Kind.FUTURE,
            multiplier=spec.multiplier, tick=spec.tick, qty_step=step,
            min_qty=spec.min_qty or step, margin_per_contract=spec.margin_per_contract,
            name=spec.name,
        )
    if spec.max_leverage is None:
        raise ScenarioError(f"{where}.max_leverage: is required for a perp")
    step = spec.qty_step or Decimal("0.001")
    return Instrument(
        symbol=spec.symbol, family=spec.family, kind=Kind.PERP, multiplier=spec.multiplier,
        tick=spec.tick, qty_step=step, min_qty=spec.min_qty or step,
        max_leverage=spec.max_leverage, mmr=spec.maintenance_margin_rate or Decimal(0),
        name=spec.name,
    )


def build_world(scenario: Scenario, clock: Clock | None = None) -> World:
    """The starting world. Anything wrong in it makes the file invalid (ScenarioError)."""
    clock = clock or SteppingClock()
    catalog = Catalog()
    for index, spec in enumerate(scenario.instruments):
        catalog.add(_instrument(spec, index))
    prices = PriceBook(catalog)
    for symbol, price in scenario.prices.items():
        try:
            prices.set(symbol, price)
        except Refused as refused:
            raise ScenarioError(f"prices.{symbol}: {refused.message}") from None
    brokers: dict[str, Broker] = {
        name: SimBroker(
            name, catalog, prices,
            BrokerSettings(spec.fee_per_contract, spec.slippage_ticks, NamingScheme(spec.naming),
                           frozenset(Market(m) for m in spec.markets), FaultSettings(
                               spec.faults.seed, spec.faults.reject, spec.faults.timeout,
                               spec.faults.timeout_reached, spec.faults.partial),
                           spec.ack_delay),
            clock,
        )
        for name, spec in scenario.brokers.items()
    }
    engine = Engine(brokers, prices, catalog, clock)
    for index, account in enumerate(scenario.accounts):
        risk = account.risk or m.RiskSpec()
        try:
            engine.add_account(account.id, account.broker, account.balance,
                               RiskLimits(risk.daily_loss_limit, risk.max_drawdown))
        except Refused as refused:
            raise ScenarioError(f"accounts[{index}]: {refused.message}") from None
    for index, group in enumerate(scenario.groups):
        try:
            engine.create_group(group.name, group.leader, group.followers,
                                signal_expiry=group.signal_expiry)
        except Refused as refused:
            raise ScenarioError(f"groups[{index}]: {refused.message}") from None
    return World(catalog, prices, brokers, engine, clock,
                 custom=[spec.symbol for spec in scenario.instruments])


def run_step(replay: Replay, index: int, raw: dict[str, Any]) -> m.Step | None:
    """Apply one step; a refusal is recorded in `replay.errors` and the replay goes on.
    A `restart` step is returned for the caller to carry out (it owns the store)."""
    try:
        step = parse_step(raw)
        if isinstance(step, m.BareStep) and step.op == "restart":
            return step
        apply_step(replay, step)
    except ValueError as error:
        replay.errors.append({"step": index, "message": str(error)})
    except Refused as refused:
        replay.errors.append({"step": index, "message": refused.message})
    except ArithmeticError:
        replay.errors.append({"step": index, "message": "a number in this step is out of range"})
    return None


def apply_step(world: Replay, step: m.Step) -> None:
    engine = world.engine
    if isinstance(step, m.PriceStep):
        engine.set_price(step.symbol, step.price)
    elif isinstance(step, m.OrderStep):
        if step.ref is not None and step.ref in world.refs:
            raise Refused(f"ref {step.ref!r} is already used by another order")
        order_id = engine.place_order(
            step.account, step.symbol, Side(step.side), qty=step.qty, margin=step.margin,
            type=OrderType(step.type), price=step.price, stop_loss=step.stop_loss,
            take_profit=step.take_profit, leverage=step.leverage,
            margin_mode=MarginMode(step.margin_mode) if step.margin_mode else None)
        if step.ref is not None:
            world.refs[step.ref] = order_id
    elif isinstance(step, m.ModifyStep):
        engine.modify_order(_ref(world, step.ref), step.price)
    elif isinstance(step, m.CancelStep):
        engine.cancel_order(_ref(world, step.ref))
    elif isinstance(step, m.SetLeverageStep):
        engine.set_leverage(step.account, step.symbol, step.leverage)
    elif isinstance(step, m.AdjustMarginStep):
        engine.adjust_margin(step.account, step.symbol, step.amount)
    elif isinstance(step, m.CreateGroupStep):
        engine.create_group(step.name, step.leader, step.followers,
                            signal_expiry=step.signal_expiry)
    elif isinstance(step, m.SetLeaderStep):
        engine.set_leader(step.group, step.account)
    elif isinstance(step, m.RemoveLeaderStep):
        if step.account is not None and engine.group(step.group).leader != step.account:
            raise Refused(f"account {step.account!r} does not lead group {step.group!r}")
        engine.remove_leader(step.group)
    elif isinstance(step, m.FollowersStep):
        if step.op == "add_followers":
            engine.add_followers(step.group, step.accounts)
        else:
            engine.remove_followers(step.group, step.accounts)
    elif isinstance(step, m.GroupStep):
        action = {"activate": engine.activate, "pause": engine.pause,
                  "flatten_all": engine.flatten_all, "cancel_orders": engine.cancel_orders}
        action[step.op](step.group)
    elif isinstance(step, m.RatioStep):
        engine.set_ratio(step.group, step.follower, step.symbol, step.ratio)
    elif isinstance(step, m.SyncStep):
        engine.set_sync(step.group, step.follower, step.symbol, step.on)
    elif isinstance(step, m.CrossStep):
        engine.set_cross(step.group, step.follower, step.symbol, step.to)
    elif isinstance(step, m.FlattenPositionStep):
        engine.flatten_position(step.account, step.symbol)
    elif isinstance(step, m.ResetBreachStep):
        engine.reset_breach(step.account)
    elif isinstance(step, m.FollowStep):
        engine.follow(step.group, step.account, step.mode, step.investment,
                      copy_open_positions=step.copy_open_positions, stop_loss=step.stop_loss,
                      on_stop=OnStop(step.on_stop))
    elif isinstance(step, m.SetInvestmentStep):
        engine.set_investment(step.group, step.account, step.investment)
    elif isinstance(step, m.UnfollowStep):
        engine.unfollow(step.group, step.account)
    elif isinstance(step, m.BrokerStep):
        if step.op == "disconnect":
            engine.disconnect(step.broker)
        else:
            engine.reconnect(step.broker)
    elif isinstance(step, m.WaitStep):
        clock = world.world.clock
        if not isinstance(clock, SteppingClock):
            raise Refused("wait is for replays: their clock stands still otherwise")
        clock.advance(timedelta(microseconds=int(step.seconds * 1_000_000)))
        engine.poll()  # a late broker answers what came due
    elif isinstance(step, m.ResyncStep):
        engine.resync(step.group, step.follower, step.symbol)
    elif isinstance(step, m.BareStep) and step.op == "emergency_stop":
        engine.emergency_stop()
    else:  # pragma: no cover - every op is handled above
        raise Refused(f"{step.op} is not supported")


def _ref(world: Replay, ref: str) -> str:
    try:
        return world.refs[ref]
    except KeyError:
        raise Refused(f"no order was placed with ref {ref!r}") from None


def replay_in_memory(scenario: Scenario, clock: Clock | None = None) -> Replay:
    """Replay without a store: `restart` rebuilds the engine from a copy of its state."""
    run = Replay(build_world(scenario, clock))
    for index, raw in enumerate(scenario.steps):
        if run_step(run, index, raw) is not None:
            run.world.restart()
    return run


async def play_steps(session: Session, steps: list[dict[str, Any]]) -> Replay:
    """Play `steps` on a session's world, settling the store after each: every change
    a step makes goes through the one journal, whoever plays it (replay, the TUI's
    first start). Refused steps are listed in the result's `errors`, and noted in the
    event log so that a later look at the database can tell what was refused."""
    run = Replay(session.world)
    store = session.store
    for index, raw in enumerate(steps):
        errors = len(run.errors)
        restart = run_step(run, index, raw)
        store.note("scenario", "step", f"{index}: {raw.get('op')}")
        for error in run.errors[errors:]:
            store.note("scenario", "refused", f"step {index}: {error['message']}")
        if restart is not None:
            await session.restart()
            run.world = session.world
        else:
            await session.settle()
    return run


async def replay_with_store(scenario: Scenario, db: Path | None = None,
                            clock: Clock | None = None) -> Replay:
    """Replay through a store: a temporary database unless `db` is given, and a
    `restart` step rebuilds everything from the database."""
    clock = clock or SteppingClock()
    with tempfile.TemporaryDirectory(prefix="synctui-replay-") as scratch:
        store = await Store.open(db or Path(scratch) / "replay.db")
        try:
            if not store.fresh:
                raise StoreError(f"{store.path} already holds a desk: replay needs a new "
                                 "database (or none, for a temporary one)")
            session = await Session.start(store, clock, lambda: build_world(scenario, clock))
            return await play_steps(session, scenario.steps)
        finally:
            await store.close()
