"""Fan-out latency and throughput: one leader fill to N followers, through the store."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from synctui.domain.clock import SystemClock
from synctui.domain.orders import Side
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.store.session import Session, freeze_start_up
from synctui.store.store import Store

LEADER = "LEAD"
GROUP = "Bench"


def desk(followers: int, smart: bool) -> dict[str, Any]:
    """A leader at a Tradovate-named broker; followers split between it and a
    ProjectX-named one (ratio mode), or as many Smart Sync copies."""
    names = [f"F{i:05d}" for i in range(followers)]
    return {
        "prices": {"MNQ": 21000, "BTCUSDT": 60000},
        "brokers": {"tv": {"naming": "tradovate"}, "px": {"naming": "projectx"}},
        "accounts": [{"id": LEADER, "broker": "tv", "balance": 100_000_000}] + [
            {"id": n, "broker": "tv" if i % 2 else "px", "balance": 10_000_000}
            for i, n in enumerate(names)],
        "groups": [{"name": GROUP, "leader": LEADER,
                    "followers": [] if smart else names}],
        "steps": [{"op": "follow", "group": GROUP, "account": n, "mode": "smart_sync",
                   "investment": 100_000} for n in names] if smart else [],
    }


class GcPauses:
    """The garbage collector's pauses between `start` and `stop`, in ms (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started: list[float] = []

    def _timer(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started.append(time.perf_counter())
        elif self._started:
            self.pauses.append((time.perf_counter() - self._started.pop()) * 1000)

    def start(self) -> None:
        gc.callbacks.append(self._timer)

    def stop(self) -> None:
        if self._timer in gc.callbacks:
            gc.callbacks.remove(self._timer)

    @property
    def longest(self) -> float:
        return max(self.pauses, default=0.0)


@dataclass
class FanOut:
    followers: int
    smart: bool
    latencies_ms: list[float] = field(default_factory=list)
    follower_orders: int = 0
    seconds: float = 0.0
    commits: int = 0
    max_gc_ms: float = 0.0  # the longest garbage-collector pause in the measured fills

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def summary(self) -> dict[str, Any]:
        return {"followers": self.followers, "mode": "smart_sync" if self.smart else "ratio",
                "fills": len(self.latencies_ms),
                "p50_ms": round(self.percentile(0.5), 3),
                "p99_ms": round(self.percentile(0.99), 3),
                "max_ms": round(max(self.latencies_ms, default=0.0), 3),
                "follower_orders_per_s": round(self.follower_orders / self.seconds)
                if self.seconds else 0,
                "commits_per_fill": round(self.commits / max(len(self.latencies_ms), 1), 2),
                "max_gc_ms": round(self.max_gc_ms, 2)}


async def _session(folder: Path, followers: int, smart: bool, name: str,
                   freeze: bool = True) -> tuple[Store, Session]:
    """A new store `name`.db in `folder` with the bench desk started on it. Every
    measure has a file of its own: one reusing another's would load that desk and its
    history (and a Smart Sync desk's copies would follow twice)."""
    store = await Store.open(folder / f"{name}.db")
    try:
        if not store.fresh:
            raise RuntimeError(f"{name}.db exists in {folder}: each measure starts anew")
        spec = desk(followers, smart)
        clock = SystemClock()
        world_spec = dict(spec, steps=[])
        session = await Session.start(
            store, clock, lambda: build_world(parse_scenario(json.dumps(world_spec)), clock))
        engine = session.world.engine
        for step in spec["steps"]:
            engine.follow(GROUP, step["account"], "smart_sync", Decimal(step["investment"]))
        await session.settle()
    except BaseException:
        await store.close()  # its connection's thread would keep the process from exiting
        raise
    if freeze:  # as the app does once its desk is open (a test runs many: it does not)
        freeze_start_up()
    return store, session


PAUSE_S = 0.005  # between leader fills in the latency run


def _leader_order(smart: bool) -> tuple[str, Decimal]:
    """The leader's symbol and quantity: a perp for Smart Sync, a future for ratio."""
    return ("BTCUSDT", Decimal("0.01")) if smart else ("MNQ", Decimal(1))


async def fan_out(folder: Path, followers: int, fills: int, smart: bool = False,
                  warmup: int = 5, pause: float = PAUSE_S) -> FanOut:
    """`fills` leader market orders (buy and sell in turn), each settled before the
    next, `pause` seconds apart: the latency of one fan-out, end to end. The pause
    is the quiet a trader's fills leave between them, where the store's checkpoint
    catches up (burst() measures fills with no pause at all)."""
    store, session = await _session(folder, followers, smart,
                                    f"fan-out-{followers}-{'smart' if smart else 'ratio'}")
    engine = session.world.engine
    result = FanOut(followers, smart)
    symbol, qty = _leader_order(smart)
    pauses = GcPauses()
    try:
        for n in range(warmup + fills):
            side = Side.BUY if n % 2 == 0 else Side.SELL
            commits = store.commits
            if n == warmup:
                pauses.start()
            start = time.perf_counter()
            engine.place_order(LEADER, symbol, side, qty=qty)
            await session.settle()
            spent = time.perf_counter() - start
            if n >= warmup:
                result.latencies_ms.append(spent * 1000)
                result.seconds += spent
                result.follower_orders += followers
                result.commits += store.commits - commits
            await asyncio.sleep(pause)
    finally:
        pauses.stop()
        await store.close()
    result.max_gc_ms = pauses.longest
    return result


async def burst(folder: Path, followers: int, leader_fills: int, smart: bool = False) -> float:
    """`leader_fills` leader orders before the store settles them all: follower orders
    (or Smart Sync copy orders) per second through the burst."""
    store, session = await _session(folder, followers, smart,
                                    f"burst-{followers}-{'smart' if smart else 'ratio'}")
    engine = session.world.engine
    symbol, qty = _leader_order(smart)
    try:
        start = time.perf_counter()
        for n in range(leader_fills):
            engine.place_order(LEADER, symbol, Side.BUY if n % 2 == 0 else Side.SELL, qty=qty)
        await session.settle()
        spent = time.perf_counter() - start
    finally:
        await store.close()
    return followers * leader_fills / spent


def floor(followers: int, fills: int) -> float:
    """Seconds per fan-out of the least a copy needs: its quantity (Decimal, ratio,
    rounded to the step) and one row per follower order, written with one
    `executemany` in one transaction, on a real file in WAL mode."""
    with tempfile.TemporaryDirectory(prefix="synctui-floor-") as scratch:
        db = sqlite3.connect(Path(scratch) / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE copies (client_id TEXT PRIMARY KEY, follower TEXT, "
                   "symbol TEXT, side TEXT, qty TEXT, price TEXT)")
        names = [f"F{i:05d}" for i in range(followers)]
        step = Decimal(1)
        gc.collect()
        start = time.perf_counter()
        for n in range(fills):
            leader_qty = Decimal(1)
            rows = []
            for i, name in enumerate(names):
                qty = (leader_qty * (1 + i % 3) / step).to_integral_value(ROUND_FLOOR) * step
                rows.append((f"{n:08d}{i:06d}", name, "MNQ", "buy", str(qty), "21000"))
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO copies VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        spent = time.perf_counter() - start
        db.close()
    return spent / fills
