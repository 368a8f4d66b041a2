"""The demo's leaders: a seeded, pure trading strategy.

It looks at a snapshot of each leader (what it holds, what it has working,
the price) and answers with plain actions; `synctui.scenario.demo` carries
them out through the engine. Nothing here touches an engine or a broker, so
the same seed and the same snapshots always give the same actions.

The behaviour is a caricature of a discretionary futures trader: flat for a
few seconds, then an entry (at market, or a resting limit a few ticks better,
now and then a breakout stop) with a bracket whose stop loss and take profit
sit a sensible distance away on the correct sides; while in a trade it may add
a unit, take part off, move the stop to breakeven, and it leaves after a while
if neither bracket leg has filled first. Distances scale with the market's
typical move, so an index future, gold, crude and bitcoin all get brackets of
similar weight.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from synctui.domain.orders import OrderType, Side

# Distances are multiples of the market's typical move per update (`LeaderSnapshot.move`),
# then whole ticks. A random walk covers k typical moves in about k squared updates, so a
# stop 6 to 14 moves away is reached in tens of seconds at four updates a second.
STOP_MOVES = (6.0, 14.0)
# Take profit distance, as a multiple of the stop distance.
REWARD_RATIO = (1.2, 2.2)
# How far a resting limit (or breakout stop) entry sits from the price.
ENTRY_MOVES = (1.0, 4.0)
MIN_STOP_TICKS = 4
MIN_ENTRY_TICKS = 2
# In decisions (one a second in the demo): how long a trade lasts at most, and how long
# the leader sits flat after one.
HOLD = (15, 60)
REST = (3, 12)


@dataclass(frozen=True, slots=True)
class LeaderSnapshot:
    """What the strategy may know about one leader trading one contract."""

    account: str
    symbol: str  # catalog symbol
    position: Decimal  # signed: > 0 long, < 0 short
    avg_price: Decimal  # of the position (0 when flat)
    entry_orders: int  # working orders that would open (not bracket legs, not reduce-only)
    working_orders: int  # every working order in the symbol, bracket legs included
    price: Decimal  # current price, on the tick grid
    move: Decimal  # the market's typical move per update, in price (> 0)
    tick: Decimal
    qty_step: Decimal
    unit: Decimal  # the size of one entry, already a multiple of qty_step
    max_qty: Decimal  # never hold more than this


@dataclass(frozen=True, slots=True)
class Enter:
    """Open or add: a market order, or a limit/stop entry at `price`, with a bracket."""

    account: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    price: Decimal | None
    stop_loss: Decimal
    take_profit: Decimal


@dataclass(frozen=True, slots=True)
class ScaleOut:
    """Take part of the position off at market."""

    account: str
    symbol: str
    side: Side
    qty: Decimal


@dataclass(frozen=True, slots=True)
class Exit:
    """Close the whole position at market (and cancel its working orders)."""

    account: str
    symbol: str


@dataclass(frozen=True, slots=True)
class CancelEntries:
    """Give up on working entry orders in the symbol (bracket legs stay)."""

    account: str
    symbol: str


@dataclass(frozen=True, slots=True)
class ChaseEntry:
    """Move working entry orders in the symbol to `price`."""

    account: str
    symbol: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class MoveStop:
    """Move the stop loss legs of the position to `price` (breakeven)."""

    account: str
    symbol: str
    price: Decimal


Action = Enter | ScaleOut | Exit | CancelEntries | ChaseEntry | MoveStop


@dataclass(slots=True)
class _Plan:
    """Per (leader, contract) memory between decisions."""

    wait: int = 0  # decisions to sit out before the next entry
    held_for: int = 0  # decisions in the current trade
    hold: int = 0  # decisions to stay in it at most
    pending_for: int = 0  # decisions an entry order has been working
    side: Side | None = None  # side of the current trade or pending entry
    entry: Decimal | None = None  # price of the pending limit/stop entry
    stop_loss: Decimal | None = None  # bracket of the pending entry
    take_profit: Decimal | None = None
    at_breakeven: bool = False
    chased: bool = False


class DemoStrategy:
    """Deterministic for a seed: the same snapshots in the same order give the same actions."""

    def __init__(self, seed: int, *, enter_chance: float = 0.25) -> None:
        self._rng = random.Random(f"synctui-demo-strategy-{seed}")
        self._plans: dict[tuple[str, str], _Plan] = {}
        self.enter_chance = enter_chance

    def decide(self, snapshots: Sequence[LeaderSnapshot]) -> list[Action]:
        actions: list[Action] = []
        for snap in snapshots:
            plan = self._plans.setdefault((snap.account, snap.symbol), _Plan(
                wait=self._rng.randint(0, REST[0])))
            actions.extend(self._decide_one(snap, plan))
        return actions

    # --- one leader, one contract --------------------------------------------------------

    def _decide_one(self, snap: LeaderSnapshot, plan: _Plan) -> list[Action]:
        if snap.position != 0:
            return self._in_trade(snap, plan)
        if plan.held_for:
            # The trade just ended (a bracket leg, or the exit asked for): rest a while.
            plan.held_for = 0
            plan.wait = max(plan.wait, self._rng.randint(*REST))
        plan.at_breakeven = False
        if snap.entry_orders:
            return self._pending(snap, plan)
        plan.pending_for = 0
        plan.chased = False
        if plan.wait > 0:
            plan.wait -= 1
            return []
        if self._rng.random() >= self.enter_chance:
            return []
        return [self._entry(snap, plan)]

    def _entry(self, snap: LeaderSnapshot, plan: _Plan) -> Enter:
        rng = self._rng
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        units = rng.choice((1, 1, 1, 2, 2, 3))
        qty = min(snap.unit * units, snap.max_qty)
        qty = max(_floor(qty, snap.qty_step), snap.unit)
        roll = rng.random()
        if roll < 0.55:
            kind, price = OrderType.MARKET, None
            entry = snap.price
        else:
            away = self._ticks(snap, ENTRY_MOVES, minimum=MIN_ENTRY_TICKS) * snap.tick
            # A limit rests on the better side; a breakout stop on the worse side.
            kind = OrderType.LIMIT if roll < 0.85 else OrderType.STOP
            better = kind is OrderType.LIMIT
            toward = -1 if (side is Side.BUY) == better else 1
            entry = snap.price + toward * away
            if entry <= 0:
                kind, entry = OrderType.MARKET, snap.price
            price = None if kind is OrderType.MARKET else entry
        stop_loss, take_profit = self._bracket(snap, side, entry)
        plan.side = side
        plan.stop_loss, plan.take_profit = stop_loss, take_profit
        plan.entry = price
        plan.hold = rng.randint(*HOLD)
        plan.pending_for = 0
        plan.chased = False
        return Enter(snap.account, snap.symbol, side, qty, kind, price, stop_loss, take_profit)

    def _bracket(self, snap: LeaderSnapshot, side: Side,
                 entry: Decimal) -> tuple[Decimal, Decimal]:
        """Stop loss below a buy's entry and take profit above it (mirrored for a sell),
        both on the tick grid and above zero."""
        stop_ticks = self._ticks(snap, STOP_MOVES, minimum=MIN_STOP_TICKS)
        reward = self._rng.uniform(*REWARD_RATIO)
        profit_ticks = max(int(stop_ticks * reward), stop_ticks + 1)
        # Never let a bracket leg reach zero or below.
        room = int(entry / snap.tick) - 1
        stop_ticks = max(1, min(stop_ticks, room))
        profit_ticks = max(1, min(profit_ticks, room))
        sign = side.sign
        return (entry - sign * stop_ticks * snap.tick, entry + sign * profit_ticks * snap.tick)

    def _ticks(self, snap: LeaderSnapshot, moves: tuple[float, float], minimum: int) -> int:
        """A distance of so many typical moves, in whole ticks."""
        ticks_per_move = float(snap.move / snap.tick)
        return max(minimum, int(ticks_per_move * self._rng.uniform(*moves)))

    def _pending(self, snap: LeaderSnapshot, plan: _Plan) -> list[Action]:
        """An entry order is working: wait a little, maybe chase it once, then give up."""
        plan.pending_for += 1
        if plan.pending_for < self._rng.randint(3, 6):
            return []
        if not plan.chased and plan.entry is not None and self._rng.random() < 0.5:
            plan.chased = True
            plan.pending_for = 0
            # Halfway to the price, on the grid, still strictly inside the bracket.
            ticks = (int(plan.entry / snap.tick) + int(snap.price / snap.tick)) // 2
            new = ticks * snap.tick
            inside = (plan.stop_loss is not None and plan.take_profit is not None
                      and min(plan.stop_loss, plan.take_profit) < new
                      < max(plan.stop_loss, plan.take_profit))
            if inside and new > 0 and new != plan.entry:
                plan.entry = new
                return [ChaseEntry(snap.account, snap.symbol, new)]
        plan.wait = self._rng.randint(*REST)
        plan.entry = None
        return [CancelEntries(snap.account, snap.symbol)]

    def _in_trade(self, snap: LeaderSnapshot, plan: _Plan) -> list[Action]:
        rng = self._rng
        side = Side.BUY if snap.position > 0 else Side.SELL
        if plan.side is not side:
            # A trade the strategy did not plan this way (a reversal, a restart): its own clock.
            plan.side = side
            plan.hold = rng.randint(*HOLD)
            plan.held_for = 0
            plan.at_breakeven = False
        plan.held_for += 1
        plan.pending_for = 0
        plan.entry = None
        held = abs(snap.position)
        if plan.held_for >= plan.hold:
            return [Exit(snap.account, snap.symbol)]
        roll = rng.random()
        if roll < 0.07 and held + snap.unit <= snap.max_qty and not snap.entry_orders:
            stop_loss, take_profit = self._bracket(snap, side, snap.price)
            return [Enter(snap.account, snap.symbol, side, snap.unit, OrderType.MARKET, None,
                          stop_loss, take_profit)]
        if roll < 0.14 and held > snap.unit:
            part = max(_floor(held / 2, snap.qty_step), snap.qty_step)
            if part < held:
                return [ScaleOut(snap.account, snap.symbol, side.opposite, part)]
        if roll < 0.30 and not plan.at_breakeven and snap.avg_price > 0:
            # Breakeven once the trade is a stop distance's half in profit.
            breakeven = _breakeven(snap.avg_price, snap.tick, side)
            cushion = self._ticks(snap, STOP_MOVES, minimum=MIN_STOP_TICKS) // 2 * snap.tick
            in_profit = (snap.price - breakeven) * side.sign
            if in_profit > cushion:
                plan.at_breakeven = True
                return [MoveStop(snap.account, snap.symbol, breakeven)]
        return []


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def _breakeven(avg_price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """The tick at or just past the average price in the trade's favour: at or above
    it for a long's stop, at or below it for a short's, so the stop locks the entry."""
    down = _floor(avg_price, tick)
    if side is Side.SELL or down == avg_price:
        return down
    return down + tick
