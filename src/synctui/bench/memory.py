"""Memory per follower order after warm-up, and the longest garbage-collector pause."""

from __future__ import annotations

import gc
import os
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


async def memory(folder: Path, followers: int, fills: int, warmup: int = 20) -> Memory:
    store, session = await _session(folder, followers, False)
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
        for n in range(fills):
            engine.place_order(LEADER, "MNQ", Side.BUY if n % 2 == 0 else Side.SELL,
                               qty=Decimal(1))
            await session.settle()
        pauses.stop()
        gc.collect()
        growth = rss_bytes() - before
    finally:
        await store.close()
    orders = followers * fills
    return Memory(orders, growth, growth / orders, pauses.longest)
