"""Start-up with a long history: open state made through the engine, then history
bulk-inserted into the store's schema (done orders, their fills, and the accepted
intents that are their copy links), then `Store.open` + `Session.start` timed, with
and without the whole-file check."""

from __future__ import annotations

import sqlite3
import statistics
import time
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from synctui.bench.fanout import LEADER, _session
from synctui.domain.clock import SystemClock
from synctui.domain.orders import OrderType, Side
from synctui.engine.world import World
from synctui.store.session import Session
from synctui.store.store import Store


async def _open_state(path: Path) -> None:
    store, session = await _session(path.parent, 20, False, path.stem)
    engine = session.world.engine
    try:
        for n in range(10):
            engine.place_order(LEADER, "MNQ", Side.BUY if n % 3 else Side.SELL, qty=Decimal(1))
            await session.settle()
        engine.place_order(LEADER, "MNQ", Side.BUY, qty=Decimal(1), type=OrderType.LIMIT,
                           price=Decimal(20000))
        await session.settle()
    finally:
        await store.close()


def _history(path: Path, orders: int, chunk: int = 100_000) -> None:
    """Done orders with a fill each and an accepted intent per follower order (its copy
    link since schema 6: same client id, its order id and group), inserted a chunk at
    a time (a million rows at once would hold a gigabyte)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        columns = len(db.execute("SELECT * FROM orders LIMIT 0").description or [])
        seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM intents").fetchone()[0])
        at = "2026-01-05T14:30:00+00:00"
        marks = ", ".join("?" * columns)  # the schema's own column count, no outside input
        db.execute("BEGIN")
        for first in range(0, orders, chunk):
            order_rows, fill_rows, intent_rows = [], [], []
            for n in range(first, min(first + chunk, orders)):
                oid = f"hist-{n}"
                row = [oid, "px", f"F{n % 20:05d}", "MNQ", "buy", "market", "1", None, 0,
                       None, None, f"h{n:010d}", None, None, None, "filled"]
                order_rows.append(tuple(row + [None] * (columns - len(row))))
                fill_rows.append((f"hf-{n}", "px", row[2], "MNQ", "buy", "1", "21000", "0",
                                  "0", "order", oid, row[11], "0", "1", at))
                seq += 1
                intent_rows.append((row[11], seq, "{}", "sent", oid, "Bench"))
            db.executemany(f"INSERT INTO orders VALUES ({marks})", order_rows)  # noqa: S608
            db.executemany(
                "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                fill_rows)
            db.executemany("INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?)", intent_rows)
        db.execute("COMMIT")


def _never() -> World:
    raise AssertionError("the database holds a desk: it is loaded, never built")


@dataclass(frozen=True)
class StartUp:
    checked_s: float  # the first start: the file was written by another program
    clean_s: float  # the median of the starts after synctui's own clean close


async def startup(folder: Path, orders: int, runs: int = 3) -> StartUp:
    """`Store.open` + `Session.start` with `orders` historical orders: once after the
    history was written from outside (the whole file is checked), then `runs` times
    after a clean close of synctui's own (it is not)."""
    path = folder / f"startup-{orders}.db"
    await _open_state(path)
    _history(path, orders)
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        store = await Store.open(path)
        try:
            await Session.start(store, SystemClock(), _never)
            times.append(time.perf_counter() - start)
        finally:
            await store.close()
    return StartUp(times[0], statistics.median(times[1:]))
