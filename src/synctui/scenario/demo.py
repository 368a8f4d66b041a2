"""The live demo: a seeded market and seeded leaders trading a world.

`DemoDriver.tick()` moves the market one step and, every few ticks, lets the
demo strategy (`synctui.market.strategy`) act for each leader through the
engine API, like a trader at the keyboard would. The copies then happen the
way they always do: the engine mirrors the leaders. Nothing here is async and
nothing here settles a store; the caller does that after each tick.
"""

from __future__ import annotations

import random
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from synctui.brokers.base import Broker
from synctui.brokers.sim import SimBroker
from synctui.domain.errors import Refused
from synctui.domain.instruments import Instrument
from synctui.domain.orders import Side
from synctui.engine.engine import Engine
from synctui.engine.world import World
from synctui.market.simulator import MarketSimulator
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
from synctui.scenario.model import Scenario, ScenarioError, load_scenario

DEFAULT_DEMO = Path(__file__).parents[3] / "sample_data" / "demo.json"

# The leaders think once a second at the app's four ticks a second.
DECIDE_EVERY = 4
# Typical move per tick as a fraction of price: half a basis point a quarter second is a
# lively session (about 0.2% in eight minutes), calmer than the simulator's default.
DEMO_VOLATILITY = Decimal("0.00005")
# Perp sizing: one entry commits this share of the leader's equity as margin.
PERP_MARGIN_SHARE = Decimal("0.03")
PERP_MAX_UNITS = 3
# Futures sizing: at most this share of equity in margin, and 1 to 3 contracts.
FUTURES_MARGIN_SHARE = Decimal("0.04")
FUTURES_MAX_CONTRACTS = 3
# The flaky broker's connection drops now and then, so the demo shows the copier
# recovering (SPEC 9): the first drop after 30 to 60 s, then every 1.5 to 2.5 min, each
# for 3 to 7 s (in ticks of the app's quarter second).
FIRST_DROP = (120, 240)
DROP_EVERY = (360, 600)
DROP_FOR = (12, 28)
# Two seconds after a reconnect, a follower of the flaky broker still out of sync is
# resynced, as the trader would with `r`: fills its broker made while away (its own
# brackets) can leave it off ratio x the leader (SPEC 9 reconciliation).
RESYNC_AFTER = 8


def load_demo(path: Path = DEFAULT_DEMO) -> Scenario:
    """The demo desk's scenario. A missing file is a ScenarioError that says where
    the demo was looked for, not a bare traceback."""
    if not path.is_file():
        raise ScenarioError(
            f"the demo scenario {path} is missing: run from a checkout that has "
            "sample_data/demo.json, or pass --scenario FILE")
    return load_scenario(path)


def default_leaders(world: World) -> list[tuple[str, str]]:
    """Each group's leader with the contracts its followers' settings name; failing
    that, the contracts it holds; failing that, a priced contract no other leader
    trades yet (the smallest of its family). Only contracts of the markets the
    leader's broker trades (SPEC 9)."""
    engine = world.engine
    leaders: list[tuple[str, str]] = []
    taken: set[str] = set()
    pending: list[str] = []
    for group in engine.state.groups.groups.values():
        if group.leader is None:
            continue
        symbols = [s for s in sorted({symbol for (_follower, symbol) in group.settings})
                   if _trades(world, group.leader, s)]
        if not symbols:
            symbols = _held_symbols(engine, group.leader)
        if not symbols:
            pending.append(group.leader)
            continue
        for symbol in symbols:
            leaders.append((group.leader, symbol))
            taken.add(world.catalog.get(symbol).family)
    families = sorted(world.prices.families())
    for index, leader in enumerate(pending):
        mine = [f for f in families if _trades(world, leader, _smallest(world, f).symbol)]
        spare = [f for f in mine if f not in taken] or mine
        if spare:
            leaders.append((leader, _smallest(world, spare[index % len(spare)]).symbol))
    return leaders


def flaky_broker(world: World) -> str | None:
    """The broker whose connection the demo drops: the first one with seeded faults
    (SPEC 9 `faults`) on which no group leader trades, so the leaders keep trading
    while its followers wait and catch up. None when there is none: a desk without
    faults never loses a connection."""
    engine = world.engine
    leaders = {engine.broker_of(g.leader).name
               for g in engine.state.groups.groups.values() if g.leader is not None}
    used = {engine.broker_of(a).name for a in engine.state.accounts}
    for name, broker in engine.brokers.items():
        if name in used and name not in leaders and isinstance(broker, SimBroker) \
                and broker.faults.settings.any:
            return name
    return None


def _trades(world: World, account: str, symbol: str) -> bool:
    broker = world.engine.broker_of(account)
    return broker.trades(broker.symbols.native(symbol))


def _held_symbols(engine: Engine, account: str) -> list[str]:
    try:
        broker = engine.broker_of(account)
        return sorted(broker.symbols.catalog(p.symbol) for p in broker.view(account).positions)
    except Refused:
        return []


def _smallest(world: World, family: str) -> Instrument:
    members = world.catalog.family(family)
    return min(members, key=lambda i: (i.margin_per_contract, i.multiplier, i.symbol))


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


class DemoDriver:
    """Market plus leaders for a world. `world` may be replaced (after a restart):
    the market and the leaders' plans carry on."""

    def __init__(self, world: World, seed: int,
                 leaders: list[tuple[str, str]] | None = None,
                 decide_every: int = DECIDE_EVERY,
                 volatility: Decimal = DEMO_VOLATILITY) -> None:
        self._given = list(leaders) if leaders is not None else None
        self._world = world
        self.leaders: list[tuple[str, str]] = []
        self.seed = seed
        self.decide_every = max(1, decide_every)
        self.ticks = 0
        self.volatility = volatility
        self._families: set[str] = set()
        self.market = self._new_market(world, seed)
        self.strategy = DemoStrategy(seed)
        self._breached: set[str] = set()
        self._pick_leaders()
        # Seeded apart from the market and the strategy: the drops never change what
        # the leaders do, only when their copies reach the flaky broker's followers.
        self._drops = random.Random(seed * 1_000_003 + 17)  # noqa: S311 - a simulation
        self.flaky = flaky_broker(world)
        self._next_drop = self.ticks + self._drops.randint(*FIRST_DROP)
        self._back_at: int | None = None  # the tick the dropped broker reconnects
        self._resync_at: int | None = None  # the tick its followers are checked

    @property
    def world(self) -> World:
        return self._world

    @world.setter
    def world(self, world: World) -> None:
        """A restarted world has the same families at the prices the market left them:
        the market walks on. A world with other families gets a market of its own."""
        if set(world.prices.families()) != self._families:
            self.market = self._new_market(world, self.seed + self.ticks)
        self._world = world
        self._pick_leaders()
        self.flaky = flaky_broker(world) if self._back_at is None else self.flaky

    def _new_market(self, world: World, seed: int) -> MarketSimulator:
        prices = self._start_prices(world)
        self._families = set(world.prices.families())
        return MarketSimulator(world.catalog, prices, seed, self.volatility)

    def _pick_leaders(self) -> None:
        self.leaders = self._given if self._given is not None else default_leaders(self._world)

    @staticmethod
    def _start_prices(world: World) -> dict[str, Decimal]:
        prices: dict[str, Decimal] = {}
        for family, price in sorted(world.prices.families().items()):
            try:
                symbol = world.prices.symbol_of(family)
            except KeyError:
                symbol = _smallest(world, family).symbol
            prices[symbol] = price
        return prices

    # --- one tick ---------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Move the market once; every `decide_every` ticks let the leaders act.
        Returns one line per thing done (or refused), for a log. Never raises Refused."""
        self.ticks += 1
        lines: list[str] = []
        engine = self._world.engine
        engine.poll()  # a broker that answers late (the demo's Bybit) answers what is due
        for symbol, price in self.market.step():
            try:
                engine.set_price(symbol, price)
            except Refused as refused:
                lines.append(f"market: {symbol} {price} refused: {refused.message}")
        lines.extend(self._connection(engine))
        if (self.ticks - 1) % self.decide_every == 0:
            snapshots = self._snapshots(lines)
            for action in self.strategy.decide(snapshots):
                lines.extend(self._apply(action))
        return lines

    def _connection(self, engine: Engine) -> list[str]:
        """Drop the flaky broker's connection on schedule and bring it back."""
        if self.flaky is None:
            return []
        if self._resync_at is not None and self.ticks >= self._resync_at:
            self._resync_at = None
            return self._resync(engine, self.flaky)
        if self._back_at is not None:
            if self.ticks < self._back_at:
                return []
            self._back_at = None
            self._next_drop = self.ticks + self._drops.randint(*DROP_EVERY)
            self._resync_at = self.ticks + RESYNC_AFTER
            engine.reconnect(self.flaky)
            return [f"broker {self.flaky} reconnected: its followers catch up"]
        if self.ticks < self._next_drop:
            return []
        self._back_at = self.ticks + self._drops.randint(*DROP_FOR)
        engine.disconnect(self.flaky)
        return [f"broker {self.flaky} disconnected: its followers' copies wait"]

    @staticmethod
    def _resync(engine: Engine, broker: str) -> list[str]:
        lines = []
        for drift in engine.out_of_sync():
            if engine.broker_of(drift.account).name != broker:
                continue
            try:
                engine.resync(drift.group, drift.account, drift.symbol)
            except Refused as refused:
                lines.append(f"resync {drift.account} {drift.symbol} refused: "
                             f"{refused.message}")
                continue
            lines.append(f"resync {drift.account} {drift.symbol}: held {drift.actual:f}, "
                         f"should hold {drift.expected:f}")
        return lines

    def _snapshots(self, lines: list[str]) -> list[LeaderSnapshot]:
        snapshots = []
        for account, symbol in self.leaders:
            try:
                snap = self._snapshot(account, symbol)
            except Refused as refused:
                lines.append(f"{account}: cannot trade {symbol}: {refused.message}")
                continue
            if snap is None:
                if account not in self._breached:
                    self._breached.add(account)
                    lines.append(f"{account} has breached a risk limit: it stops trading")
                continue
            self._breached.discard(account)
            snapshots.append(snap)
        return snapshots

    def _snapshot(self, account: str, symbol: str) -> LeaderSnapshot | None:
        """The leader's state in one contract; None while the leader is breached."""
        engine = self._world.engine
        broker = engine.broker_of(account)
        if broker.is_breached(account):
            return None
        inst = self._world.catalog.get(symbol)
        native = broker.symbols.native(symbol)
        price = self._world.prices.get(symbol)
        position = broker.position(account, native)
        detail = broker.position_detail(account, native) if position else None
        working = broker.working_orders(account, native)
        entries = sum(1 for o in working if o.parent_id is None and not o.reduce_only)
        unit, max_qty = self._size(broker, account, native, inst, price)
        return LeaderSnapshot(
            account=account, symbol=symbol, position=position,
            avg_price=detail.avg_price if detail else Decimal(0),
            entry_orders=entries, working_orders=len(working), price=price,
            move=max(price * self.volatility, inst.tick), tick=inst.tick,
            qty_step=inst.qty_step, unit=unit, max_qty=max_qty)

    @staticmethod
    def _size(broker: Broker, account: str, native: str, inst: Instrument,
              price: Decimal) -> tuple[Decimal, Decimal]:
        """One entry's size and the most the leader will hold: futures 1 to 3 contracts
        within a share of equity; perps a share of equity as margin per unit."""
        equity = max(broker.equity(account), Decimal(0))
        if inst.is_future:
            fits = _floor(equity * FUTURES_MARGIN_SHARE / inst.margin_per_contract, inst.qty_step)
            most = max(min(fits, Decimal(FUTURES_MAX_CONTRACTS)), inst.min_qty)
            return inst.min_qty, most
        leverage = broker.leverage_of(account, native)[0]
        unit = _floor(equity * PERP_MARGIN_SHARE * leverage / price, inst.qty_step)
        unit = max(unit, inst.min_qty)
        return unit, unit * PERP_MAX_UNITS

    # --- carrying out the strategy's actions -----------------------------------------

    def _apply(self, action: Action) -> list[str]:
        try:
            return self._carry_out(action)
        except Refused as refused:
            return [f"{action.account}: {_verb(action)} {action.symbol} refused: "
                    f"{refused.message}"]

    def _carry_out(self, action: Action) -> list[str]:
        engine = self._world.engine
        inst = self._world.catalog.get(action.symbol)

        def money(price: Decimal) -> str:
            return f"{price.quantize(inst.tick):f}"

        if isinstance(action, Enter):
            engine.place_order(action.account, action.symbol, action.side, qty=action.qty,
                               type=action.type, price=action.price,
                               stop_loss=action.stop_loss, take_profit=action.take_profit)
            where = "at market" if action.price is None else (
                f"{action.type} {money(action.price)}")
            return [f"{action.account} {_side_word(action.side)} {_qty(action.qty)} "
                    f"{action.symbol} {where} (SL {money(action.stop_loss)}, "
                    f"TP {money(action.take_profit)})"]
        if isinstance(action, ScaleOut):
            engine.place_order(action.account, action.symbol, action.side, qty=action.qty)
            return [f"{action.account} scales out {_qty(action.qty)} {action.symbol}"]
        if isinstance(action, Exit):
            engine.flatten_position(action.account, action.symbol)
            return [f"{action.account} exits {action.symbol} at market"]
        broker = engine.broker_of(action.account)
        native = broker.symbols.native(action.symbol)
        working = broker.working_orders(action.account, native)
        if isinstance(action, CancelEntries):
            ids = [o.id for o in working if o.parent_id is None and not o.reduce_only]
            for order_id in ids:
                engine.cancel_order(order_id)
            return [f"{action.account} cancels its {action.symbol} entry"] if ids else []
        if isinstance(action, ChaseEntry):
            ids = [o.id for o in working if o.parent_id is None and not o.reduce_only]
            for order_id in ids:
                engine.modify_order(order_id, action.price)
            return ([f"{action.account} moves its {action.symbol} entry to "
                     f"{money(action.price)}"] if ids else [])
        # Only tighten: a stop already past breakeven (a later add's) stays where it is.
        ids = [o.id for o in working if o.role == "stop_loss" and o.price is not None
               and (o.price < action.price if o.side is Side.SELL else o.price > action.price)]
        for order_id in ids:
            engine.modify_order(order_id, action.price)
        return ([f"{action.account} moves its {action.symbol} stop to breakeven "
                 f"{money(action.price)}"] if ids else [])


def _verb(action: Action) -> str:
    names: dict[type, str] = {Enter: "entry", ScaleOut: "scale out", Exit: "exit",
                              CancelEntries: "cancel", ChaseEntry: "modify",
                              MoveStop: "stop move"}
    return names[type(action)]


def _side_word(side: Side) -> str:
    return "buys" if side is Side.BUY else "sells"


def _qty(qty: Decimal) -> str:
    return f"{qty.normalize():f}"

