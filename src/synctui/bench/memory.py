"""Memory per follower order after warm-up, the longest garbage-collector pause, and
whether a fan-out slows down as history grows (its drift)."""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from synctui.bench.fanout import LEADER, GcPauses, _session
from synctui.domain.orders import Side


def rss_bytes() -> int:
    """Resident memory now (Linux: /proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Memory:
    follower_orders: int
    rss_growth_bytes: int
    bytes_per_follower_order: float
    max_gc_pause_ms: float
    # median fan-out of the last tenth of the fills over that of the first tenth: a
    # store whose writes slow down as its tables grow shows here (an index of fills by
    # account made a 1,000-follower fan-out's inserts six times slower over 400 fills)
    drift: float


async def memory(folder: Path, followers: int, fills: int, warmup: int = 20) -> Memory:
    store, session = await _session(folder, followers, False, f"memory-{followers}")
    engine = session.world.engine
    pauses = GcPauses()
    try:
        for n in range(warmup):
            engine.place_order(LEADER, "MNQ", Side.BUY if n % 2 == 0 else Side.SELL,
                               qty=Decimal(1))
            await session.settle()
        gc.collect()
        before = rss_bytes()
        pauses.start()
        took: list[float] = []
        for n in range(fills):
            start = time.perf_counter()
            engine.place_order(LEADER, "MNQ", Side.BUY if n % 2 == 0 else Side.SELL,
                               qty=Decimal(1))
            await session.settle()
            took.append(time.perf_counter() - start)
        pauses.stop()
        gc.collect()
        growth = rss_bytes() - before
    finally:
        await store.close()
    orders = followers * fills
    tenth = max(1, fills // 10)
    drift = statistics.median(took[-tenth:]) / statistics.median(took[:tenth]) if took else 1.0
    return Memory(orders, growth, growth / orders, pauses.longest, drift)
