"""The dashboard's cost of one market tick with a large group: the price update
through the engine, then the refresh of every follower row (Pilot, headless)."""

from __future__ import annotations

import json
import statistics
import time
from decimal import Decimal

from synctui.bench.fanout import LEADER, desk
from synctui.domain.clock import SteppingClock
from synctui.domain.orders import Side
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.tui.app import make_app


async def tui_tick(followers: int, ticks: int = 100) -> tuple[float, float]:
    """(p50, p95) milliseconds of one tick and refresh, in memory (no store)."""
    world = build_world(parse_scenario(json.dumps(desk(followers, False))), SteppingClock())
    world.engine.place_order(LEADER, "MNQ", Side.BUY, qty=Decimal(2))
    app = make_app(world=world, demo=False, tick_seconds=None)
    price = Decimal(21000)
    spent: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        for _ in range(ticks):
            price += Decimal("0.25")
            start = time.perf_counter()
            app.desk.engine.set_price("MNQ", price)
            app.refresh_dashboard()
            spent.append((time.perf_counter() - start) * 1000)
    ordered = sorted(spent)
    return statistics.median(spent), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
