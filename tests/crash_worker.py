"""The engine under a burst of leader orders, to be killed with SIGKILL (issue 3, item 5).

    python tests/crash_worker.py DB SEED

Opens (or creates) the database DB, starts a session on it (a restart loads
the open state and reconciles the pending intents and events a kill left
behind), then trades forever: seeded random leader market orders and price
moves, each followed by `session.settle()` (the outbox loop). After every
settle it prints one progress line and flushes, so the parent knows the burst
is under way. It never stops by itself: `tests/test_crash.py` kills it.

Protocol on stdout (one line each, flushed):
    start <leader fills> <pending intents> <pending events>   in the database before start-up
    <n>                                         after the n-th command of this run settled

A refused leader command (`Refused`, e.g. margin) is skipped; anything else
propagates and the worker dies with a traceback (exit status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from decimal import Decimal
from pathlib import Path

from synctui.domain.clock import SystemClock
from synctui.domain.errors import Refused
from synctui.domain.orders import Side
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

SPEC = {
    "prices": {symbol: str(price) for symbol, price in BASE_PRICE.items()},
    "brokers": {"tv": {"naming": "tradovate"}, "px": {"naming": "projectx"}},
    "accounts": [{"id": LEADER, "broker": "tv", "balance": 100_000_000}] + [
        {"id": follower, "broker": broker, "balance": 100_000_000}
        for follower, broker in FOLLOWERS.items()],
    "groups": [{"name": GROUP, "leader": LEADER, "followers": list(FOLLOWERS)}],
}


def build() -> World:
    """The starting world. Ratios and sync are set here, before the first save,
    which writes the built world whole."""
    world = build_world(parse_scenario(json.dumps(SPEC)), SystemClock())
    for (follower, symbol), ratio in RATIOS.items():
        world.engine.set_ratio(GROUP, follower, symbol, ratio)
    for follower, symbol in SYNC_OFF:
        world.engine.set_sync(GROUP, follower, symbol, False)
    return world


def command(world: World, rng: random.Random, first: bool) -> None:
    """One leader order (about 3 in 4, and always the first of a run) or a price move."""
    engine = world.engine
    symbol = rng.choice(SYMBOLS)
    if first or rng.random() < 0.75:
        side = rng.choice((Side.BUY, Side.SELL))
        if symbol == "MNQ":
            qty = Decimal(rng.randint(1, 5))
        else:
            qty = Decimal(rng.randint(1, 50)) * Decimal("0.001")
        engine.place_order(LEADER, symbol, side, qty=qty)
        return
    # a small move, pulled back towards the base price so the walk stays bounded
    price = world.prices.get(symbol)
    drift = -1 if price > BASE_PRICE[symbol] else 1
    steps = rng.randint(-20, 20) + drift * rng.randint(0, 5)
    engine.set_price(symbol, max(TICK[symbol], price + steps * TICK[symbol]))


async def main(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = await Store.open(path)
    found = (0, 0, 0)
    if not store.fresh:
        async with store.db.execute(
                "SELECT (SELECT count(*) FROM fills WHERE account = ?), "
                "(SELECT count(*) FROM intents WHERE status = 'pending'), "
                "(SELECT count(*) FROM pending_events)", (LEADER,)) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        found = (int(row[0]), int(row[1]), int(row[2]))
    print("start", *found, flush=True)
    session = await Session.start(store, SystemClock(), build)
    done = 0
    while True:
        with contextlib.suppress(Refused):  # e.g. not enough margin: the burst goes on
            command(session.world, rng, first=done == 0)
        await session.settle()
        done += 1
        print(done, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/crash_worker.py DB SEED")
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
