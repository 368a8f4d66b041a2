"""Runs every measure of `synctui bench` and prints a table, or JSON."""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synctui.bench.fanout import burst, fan_out, floor
from synctui.bench.memory import memory
from synctui.bench.startup import startup
from synctui.bench.tui_tick import tui_tick


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    fills: int  # leader fills per size (200: the p99 is the 198th of them, not the max)
    smart_sizes: tuple[int, ...]
    burst: int
    startup_orders: int
    memory_fills: int
    memory_warmup: int  # past the broker's kept done orders, so what stays is what grows
    tui_followers: int


FULL = Plan((1, 5, 20, 100, 1000), 200, (1, 20, 100), 50, 1_000_000, 1000, 500, 500)
QUICK = Plan((1, 5), 10, (1,), 5, 200, 10, 5, 20)


def _progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


async def measure(quick: bool) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    result: dict[str, Any] = {"machine": {"python": platform.python_version(),
                                          "cpus": _cpus(), "platform": platform.platform()},
                              "fan_out": [], "plan": asdict(plan)}
    with tempfile.TemporaryDirectory(prefix="synctui-bench-") as scratch:
        folder = Path(scratch)
        for smart, sizes in ((False, plan.sizes), (True, plan.smart_sizes)):
            for followers in sizes:
                # as many at every size: a p99 of 20 samples was their largest
                fills = plan.fills
                _progress(f"fan-out, {followers} {'copies' if smart else 'followers'}, "
                          f"{fills} leader fills")
                run = await fan_out(folder, followers, fills, smart)
                row = run.summary()
                if not smart:
                    row["floor_ms"] = round(floor(followers, min(fills, 50)) * 1000, 3)
                    row["x_floor"] = round(row["p50_ms"] / row["floor_ms"], 1) \
                        if row["floor_ms"] else None
                result["fan_out"].append(row)
        followers = 100 if not quick else 5
        _progress(f"burst of {plan.burst} leader fills to {followers} followers")
        result["burst_follower_orders_per_s"] = round(await burst(folder, followers,
                                                                  plan.burst))
        _progress(f"burst of {plan.burst} leader fills to {followers} Smart Sync copies")
        result["burst_smart_sync_orders_per_s"] = round(await burst(
            folder, followers, plan.burst, smart=True))
        _progress(f"start-up with {plan.startup_orders} historical orders")
        started = await startup(folder, plan.startup_orders)
        result["startup_s"] = round(started.clean_s, 4)
        result["startup_checked_s"] = round(started.checked_s, 4)
        _progress(f"memory over {plan.memory_fills} fills to {followers} followers")
        mem = await memory(folder, followers, plan.memory_fills, plan.memory_warmup)
        result["memory"] = {"follower_orders": mem.follower_orders,
                            "rss_growth_bytes": mem.rss_growth_bytes,
                            "bytes_per_follower_order": round(mem.bytes_per_follower_order, 1),
                            "max_gc_pause_ms": round(mem.max_gc_pause_ms, 2),
                            "drift": round(mem.drift, 2)}
    _progress(f"dashboard tick with {plan.tui_followers} followers")
    p50, p95 = await tui_tick(plan.tui_followers, 20 if quick else 100)
    result["tui_tick_ms"] = {"followers": plan.tui_followers, "p50": round(p50, 2),
                             "p95": round(p95, 2)}
    return result


def _cpus() -> int:
    import os
    return len(os.sched_getaffinity(0))


def table(result: dict[str, Any]) -> str:
    lines = ["fan-out (leader fill -> follower orders -> store), ms",
             f"{'mode':<11}{'followers':>10}{'fills':>7}{'p50':>10}{'p99':>10}{'max':>10}"
             f"{'orders/s':>11}{'commits':>9}{'gc ms':>8}{'floor':>9}{'x floor':>9}"]
    for row in result["fan_out"]:
        lines.append(f"{row['mode']:<11}{row['followers']:>10}{row['fills']:>7}"
                     f"{row['p50_ms']:>10.3f}"
                     f"{row['p99_ms']:>10.3f}{row['max_ms']:>10.3f}"
                     f"{row['follower_orders_per_s']:>11}{row['commits_per_fill']:>9}"
                     f"{row['max_gc_ms']:>8}"
                     f"{row.get('floor_ms', ''):>9}{row.get('x_floor') or '':>9}")
    mem = result["memory"]
    lines += [
        f"burst: {result['burst_follower_orders_per_s']} follower orders/s, "
        f"{result['burst_smart_sync_orders_per_s']} Smart Sync copy orders/s",
        f"start-up with {result['plan']['startup_orders']} historical orders: "
        f"{result['startup_s']} s after a clean close, "
        f"{result['startup_checked_s']} s with the whole-file check",
        f"memory: {mem['bytes_per_follower_order']} bytes per follower order kept "
        f"({mem['follower_orders']} orders), longest GC pause {mem['max_gc_pause_ms']} ms, "
        f"fan-out drift x{mem['drift']} (last tenth's median over the first's)",
        f"dashboard tick at {result['tui_tick_ms']['followers']} followers: "
        f"p50 {result['tui_tick_ms']['p50']} ms, p95 {result['tui_tick_ms']['p95']} ms",
    ]
    return "\n".join(lines) + "\n"


def main(quick: bool, as_json: bool) -> int:
    result = asyncio.run(measure(quick))
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(result))
    return 0
