"""The engine under a burst of leader trading, to be killed with SIGKILL (issue 3, item 5;
issue 9, item 13).

    python tests/crash_worker.py DB SEED [KILL_AT]

Opens (or creates) the database DB, starts a session on it (a restart loads
the open state and reconciles the pending intents and events a kill left
behind), then trades forever: seeded random leader market orders (some with
brackets), working limit and stop orders (some with brackets) that followers
mirror, modifies and cancels of them, and price moves that trigger them, each
followed by `session.settle()` (the outbox loop). A Smart Sync copy follows
the group too. After every settle it prints one progress line and flushes, so
the parent knows the burst is under way. The followers' brokers time out and
fill in pieces now and then (`FAULTS`). It never stops by itself:
`tests/test_crash.py` kills it, unless KILL_AT (> 0) is given: then the
worker SIGKILLs itself right after the KILL_AT-th fan-out's brokers' commit
(`Store.save_venue`), before the engine records the outcomes, so the brokers
hold orders whose intents the database still calls pending.

Protocol on stdout (one line each, flushed):
    start <leader fills> <pending intents> <pending events> <pending held>
        in the database before start-up (intents pending or submitted, not yet
        answered, count as pending); <pending held>: pending intents whose
        client order id a broker already holds (what a KILL_AT kill leaves)
    <n> <timeouts> <reached>
            after the n-th command of this run settled; the timeouts the brokers'
            fault models decided in this run so far, and how many of them had
            reached the broker (evidence that the burst met its faults)

A refused leader command (`Refused`, e.g. margin) is skipped; anything else
propagates and the worker dies with a traceback (exit status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from decimal import Decimal
from pathlib import Path

from synctui.brokers.faults import BrokerTimeout, FaultModel
from synctui.domain.clock import SystemClock
from synctui.domain.errors import Refused
from synctui.domain.orders import OrderType, Side
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.store.session import Session
from synctui.store.store import Store

GROUP = "Crash"
LEADER = "lead"
SYMBOLS = ("MNQ", "BTCUSDT")
BASE_PRICE = {"MNQ": Decimal(21000), "BTCUSDT": Decimal(60000)}
TICK = {"MNQ": Decimal("0.25"), "BTCUSDT": Decimal("0.1")}
# follower -> broker. `tv` names MNQ `MNQZ6`, `px` names it `CON.F.US.MNQ.Z26`
# and BTCUSDT `BTC-USDT-SWAP`: copies go through each broker's naming.
FOLLOWERS = {"f1": "tv", "f2": "px", "f3": "tv", "f4": "px", "f5": "tv", "f6": "px"}
# (follower, symbol) -> ratio; the rest copy 1:1
RATIOS = {("f2", "MNQ"): 2, ("f3", "MNQ"): 3, ("f4", "MNQ"): 4,
          ("f2", "BTCUSDT"): 4, ("f4", "BTCUSDT"): 2, ("f5", "BTCUSDT"): 3}
# (follower, symbol) with sync off from the start: never eligible for a copy
SYNC_OFF = {("f6", "MNQ")}
# A follower too poor for many copies: the broker rejects them (insufficient_margin),
# and a restart must report each such failure with that reason, once.
POOR = "f7"
POOR_BALANCE = 1500
# An account that follows the group in Smart Sync mode (SPEC 5): its copy trades in a
# sub-account, one market order per leader fill.
SMART = "s1"
SMART_INVESTMENT = Decimal(50_000_000)
MAX_WORKING = 8  # leader working entries at once; more and the burst cancels instead

# The followers' brokers fail now and then (SPEC 9), with transient faults only: a
# request times out (having reached the broker or not) and the engine asks again with the
# same client id; a follower's fill arrives in pieces. No rejects, so every copy but the
# poor follower's must still go through, and the invariants stay exact.
FAULTS = {"timeout": "0.2", "timeout_reached": "0.5", "partial": "0.3"}

SPEC = {
    "prices": {symbol: str(price) for symbol, price in BASE_PRICE.items()},
    "brokers": {"tv": {"naming": "tradovate", "faults": {"seed": 11, **FAULTS}},
                "px": {"naming": "projectx", "faults": {"seed": 12, **FAULTS}}},
    "accounts": [{"id": LEADER, "broker": "tv", "balance": 100_000_000}] + [
        {"id": follower, "broker": broker, "balance": 100_000_000}
        for follower, broker in FOLLOWERS.items()] + [
        {"id": POOR, "broker": "tv", "balance": POOR_BALANCE},
        {"id": SMART, "broker": "px", "balance": 100_000_000}],
    "groups": [{"name": GROUP, "leader": LEADER, "followers": [*FOLLOWERS, POOR]}],
}


def build() -> World:
    """The starting world. Ratios, sync and the Smart Sync follow are set here, before
    the first save, which writes the built world whole."""
    world = build_world(parse_scenario(json.dumps(SPEC)), SystemClock())
    for (follower, symbol), ratio in RATIOS.items():
        world.engine.set_ratio(GROUP, follower, symbol, ratio)
    for follower, symbol in SYNC_OFF:
        world.engine.set_sync(GROUP, follower, symbol, False)
    world.engine.follow(GROUP, SMART, "smart_sync", SMART_INVESTMENT)
    return world


def _qty(rng: random.Random, symbol: str) -> Decimal:
    if symbol == "MNQ":
        return Decimal(rng.randint(1, 5))
    return Decimal(rng.randint(1, 50)) * Decimal("0.001")


def _brackets(rng: random.Random, side: Side, symbol: str,
              at: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """Stop loss and take profit some ticks away from the entry, on their sides."""
    if rng.random() < 0.5:
        return None, None
    loss, profit = (rng.randint(4, 40) * TICK[symbol] for _ in range(2))
    if side is Side.BUY:
        return max(at - loss, TICK[symbol]), at + profit
    return at + loss, max(at - profit, TICK[symbol])


def command(world: World, rng: random.Random, first: bool) -> None:
    """One leader action: a market order (always the first of a run), a working order,
    a modify or cancel of one, or a price move."""
    engine = world.engine
    symbol = rng.choice(SYMBOLS)
    broker = engine.broker_of(LEADER)
    native = broker.symbols.native(symbol)
    price = world.prices.get(symbol)
    roll = 0.0 if first else rng.random()
    if roll < 0.35:
        side = rng.choice((Side.BUY, Side.SELL))
        stop_loss, take_profit = _brackets(rng, side, symbol, price)
        engine.place_order(LEADER, symbol, side, qty=_qty(rng, symbol),
                           stop_loss=stop_loss, take_profit=take_profit)
        return
    working = broker.working_orders(LEADER, native)
    entries = [o for o in working if o.parent_id is None]
    if roll < 0.55 and len(entries) < MAX_WORKING:
        # Opening only: a reducing working order is mirrored with a quantity fixed when
        # placed (SPEC 4), so a follower may drift from ratio x the leader by design.
        held = broker.position(LEADER, native)
        side = rng.choice((Side.BUY, Side.SELL)) if held == 0 else (
            Side.BUY if held > 0 else Side.SELL)
        kind = rng.choice((OrderType.LIMIT, OrderType.STOP))
        away = rng.randint(1, 12) * TICK[symbol]
        below = (side is Side.BUY) == (kind is OrderType.LIMIT)  # rests, never marketable
        level = max(price - away, TICK[symbol]) if below else price + away
        stop_loss, take_profit = _brackets(rng, side, symbol, level)
        engine.place_order(LEADER, symbol, side, qty=_qty(rng, symbol), type=kind,
                           price=level, stop_loss=stop_loss, take_profit=take_profit)
        return
    if roll < 0.70 and working:
        order = rng.choice(working)
        assert order.price is not None
        if rng.random() < 0.4 or len(entries) >= MAX_WORKING:
            engine.cancel_order(order.id)
        else:
            moved = order.price + rng.randint(-8, 8) * TICK[symbol]
            engine.modify_order(order.id, max(moved, TICK[symbol]))
        return
    # a small move, pulled back towards the base price so the walk stays bounded
    drift = -1 if price > BASE_PRICE[symbol] else 1
    steps = rng.randint(-20, 20) + drift * rng.randint(0, 5)
    engine.set_price(symbol, max(TICK[symbol], price + steps * TICK[symbol]))


class DyingStore(Store):
    """A store whose process dies right after the `kill_at`-th fan-out reached the
    brokers' commit: the gap where only the client-id lookup prevents a second order."""

    kill_at = 0
    fan_outs = 0

    async def save_venue(self, world: World) -> None:
        await super().save_venue(world)
        self.fan_outs += 1
        if self.fan_outs == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


class Timeouts:
    """The timeouts decided in this process so far (every broker's fault model)."""

    decided = 0
    reached = 0


def count_timeouts() -> None:
    """Wrap the fault model's decision to count timeouts; it decides exactly as before."""
    decide = FaultModel.times_out

    def times_out(self: FaultModel) -> BrokerTimeout | None:
        timeout = decide(self)
        if timeout is not None:
            Timeouts.decided += 1
            Timeouts.reached += timeout.reached
        return timeout

    FaultModel.times_out = times_out  # type: ignore[method-assign]


async def main(path: Path, seed: int, kill_at: int) -> None:
    count_timeouts()
    rng = random.Random(seed)
    store = await DyingStore.open(path)
    store.kill_at = kill_at
    found = (0, 0, 0, 0)
    if not store.fresh:
        async with store.db.execute(
                "SELECT (SELECT count(*) FROM fills WHERE account = ?), "
                "(SELECT count(*) FROM intents WHERE status IN ('pending', 'submitted')), "
                "(SELECT count(*) FROM pending_events), "
                "(SELECT count(*) FROM intents i JOIN orders o ON o.client_id = i.key "
                " WHERE i.status IN ('pending', 'submitted'))", (LEADER,)) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        found = (int(row[0]), int(row[1]), int(row[2]), int(row[3]))
    print("start", *found, flush=True)
    session = await Session.start(store, SystemClock(), build)
    done = 0
    while True:
        with contextlib.suppress(Refused):  # e.g. not enough margin: the burst goes on
            command(session.world, rng, first=done == 0)
        await session.settle()
        done += 1
        # one write: with PYTHONUNBUFFERED, print() writes each piece on its own and a
        # kill between them would leave half a line
        sys.stdout.write(f"{done} {Timeouts.decided} {Timeouts.reached}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python tests/crash_worker.py DB SEED [KILL_AT]")
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]),
                     int(sys.argv[3]) if len(sys.argv) == 4 else 0))
