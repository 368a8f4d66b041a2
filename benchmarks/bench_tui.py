"""How responsive the dashboard stays with a 500-follower group while the
market ticks 10 times a second (issue 5). A benchmark, not a test.

    .venv/bin/python benchmarks/bench_tui.py [--followers 500] [--presses 200]

Measures with Pilot, in a headless terminal:
- key press to refreshed table: from `+` (ratio up) being pressed to the first
  paint of the follower table after the engine holds the new ratio (Pilot's
  own waiting, about 60 ms a press even on an empty app, is not counted);
- one tick's refresh: a price update copied through the engine plus the
  dashboard's refresh of every follower row (all 500 uPnL cells change);
while a 10 Hz timer keeps moving the price in the background.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from decimal import Decimal

from textual.geometry import Region
from textual.strip import Strip

from synctui.domain.clock import SteppingClock
from synctui.domain.orders import Side
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.tui.app import make_app
from synctui.tui.widgets.follower_table import FollowerTable


def world(followers: int):  # type: ignore[no-untyped-def]
    spec = {
        "prices": {"MNQ": 21000},
        "brokers": {"tv": {"naming": "tradovate"}, "px": {"naming": "projectx"}},
        "accounts": [{"id": "LEAD", "broker": "tv", "balance": 10_000_000}] + [
            {"id": f"F{i:04d}", "broker": "tv" if i % 2 else "px", "balance": 100_000}
            for i in range(followers)],
        "groups": [{"name": "Big", "leader": "LEAD",
                    "followers": [f"F{i:04d}" for i in range(followers)]}],
    }
    built = build_world(parse_scenario(json.dumps(spec)), SteppingClock())
    built.engine.place_order("LEAD", "MNQ", Side.BUY, qty=Decimal(2))
    return built


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main(followers: int, presses: int) -> None:
    app = make_app(world=world(followers), demo=False)  # no demo: this loop is the market
    price = [Decimal(21000)]

    def market() -> None:
        """One market tick as the app takes it: the engine at once, the repaint
        coalesced (the engine's events post one DeskChanged)."""
        price[0] += Decimal("0.25")
        app.desk.engine.set_price("MNQ", price[0])

    def tick_and_refresh() -> None:
        market()
        app.refresh_dashboard()

    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        app.set_interval(0.1, market)  # the market ticks 10 times a second meanwhile
        table = app.screen.query_one(FollowerTable)
        group = app.desk.engine.group("Big")
        keys: list[float] = []
        painted: list[float] = []
        watch: dict[str, object] = {}
        original = FollowerTable.render_lines

        def spy(widget: FollowerTable, crop: Region) -> list[Strip]:
            # only a paint made once the engine holds the new ratio counts (and none
            # before the first press, when nothing is watched yet)
            if "follower" in watch and group.setting(
                    str(watch["follower"]), "MNQ").ratio != watch["before"]:
                painted.append(time.perf_counter())
            return original(widget, crop)

        FollowerTable.render_lines = spy  # type: ignore[method-assign]
        for n in range(presses):
            table.move_cursor(row=n % followers, column=0)
            await pilot.pause()
            follower = table.current_follower
            assert follower is not None
            before = group.setting(follower, "MNQ").ratio
            key = "plus" if before < 10 else "minus"
            watch.update(follower=follower, before=before)
            painted.clear()
            start = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            assert group.setting(follower, "MNQ").ratio != before
            assert painted, "the table was repainted"
            keys.append((painted[0] - start) * 1000)
        FollowerTable.render_lines = original  # type: ignore[method-assign]
        ticks: list[float] = []
        for _ in range(100):
            start = time.perf_counter()
            tick_and_refresh()
            ticks.append((time.perf_counter() - start) * 1000)
    print(f"followers: {followers}")
    print(f"key press (ratio +) to refreshed table, ms: p50 {statistics.median(keys):.1f} "
          f"p95 {pct(keys, 0.95):.1f} max {max(keys):.1f} (n={len(keys)})")
    print(f"one tick (price update + refresh of every row), ms: p50 "
          f"{statistics.median(ticks):.1f} p95 {pct(ticks, 0.95):.1f} max {max(ticks):.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--followers", type=int, default=500)
    parser.add_argument("--presses", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.followers, args.presses))
