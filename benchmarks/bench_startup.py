"""Start-up time with a long history (issue 3): a benchmark, not a test.

    .venv/bin/python benchmarks/bench_startup.py [--orders 100000] [--runs 7] [--db PATH]

Builds a database in two steps:

1. the open state, made through the engine and the store like the app does:
   three groups on three brokers (Tradovate and ProjectX naming, plain),
   21 ratio followers and two Smart Sync copies, open positions, working
   leader limit orders mirrored on every follower (some with brackets);
2. history, bulk-inserted straight into the store's schema with `executemany`:
   `--orders` orders that are done (filled, or cancelled with their mirrors),
   a fill for every filled order, the engine journal that goes with them
   (an intent per copy, copy links, mirror links), some copy failures and the
   event log. Ids continue the brokers' counters, so the rows are the ones the
   app would have written.

Then it times what a start does, `Store.open` (lock, read-only inspection,
WAL, migrations) plus `Session.start` (load the open state, reconcile), over
`--runs` runs, and prints each phase's min and median, first with the open
state alone and again with the history added: start-up should not grow with
history, since only open state is loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from synctui.brokers.base import OrderRequest
from synctui.domain.clock import SteppingClock
from synctui.domain.orders import OrderType, Side
from synctui.engine.engine import copy_key
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.store.codec import dump_request
from synctui.store.session import Session
from synctui.store.store import Store

D = Decimal

# group -> (leader, broker of the leader, followers with their brokers, symbols traded)
GROUPS: dict[str, tuple[str, str, dict[str, str], tuple[str, ...]]] = {
    "Apex": ("apex_lead", "tv",
             {f"apex_{i}": "tv" if i % 2 else "px" for i in range(1, 11)}, ("MNQ", "NQ")),
    "Topstep": ("top_lead", "px",
                {f"top_{i}": "px" if i % 3 else "tv" for i in range(1, 7)}, ("ES", "MES")),
    "Crypto": ("btc_lead", "bx",
               {f"btc_{i}": "bx" for i in range(1, 6)}, ("BTCUSDT", "ETHUSDT")),
}
PRICES = {"MNQ": D(21000), "NQ": D(21000), "ES": D(6000), "MES": D(6000),
          "BTCUSDT": D(60000), "ETHUSDT": D(3000)}
QTY = {"MNQ": ("1", "6"), "NQ": ("1", "2"), "ES": ("1", "2"), "MES": ("1", "5"),
       "BTCUSDT": ("0.001", "0.2"), "ETHUSDT": ("0.01", "2")}


def spec() -> dict[str, Any]:
    accounts: list[dict[str, Any]] = []
    for leader, broker, followers, _symbols in GROUPS.values():
        accounts.append({"id": leader, "broker": broker, "balance": 1_000_000})
        accounts += [{"id": f, "broker": b, "balance": 250_000} for f, b in followers.items()]
    accounts += [{"id": "copier_1", "broker": "bx", "balance": 50_000},
                 {"id": "copier_2", "broker": "bx", "balance": 20_000}]
    return {
        "prices": {s: str(p) for s, p in PRICES.items()},
        "brokers": {"tv": {"naming": "tradovate", "fee_per_contract": "0.52"},
                    "px": {"naming": "projectx", "fee_per_contract": "0.37"},
                    "bx": {"naming": "plain"}},
        "accounts": accounts,
        "groups": [{"name": g, "leader": leader, "followers": list(followers)}
                   for g, (leader, _b, followers, _s) in GROUPS.items()],
    }


def build(clock: SteppingClock) -> World:
    world = build_world(parse_scenario(json.dumps(spec())), clock)
    engine = world.engine
    for group, (_leader, _broker, followers, symbols) in GROUPS.items():
        for n, follower in enumerate(followers):
            engine.set_ratio(group, follower, symbols[0], 1 + n % 3)
    engine.set_sync("Apex", "apex_10", "NQ", False)
    return world


async def make_open_state(path: Path) -> None:
    """Positions and working orders, through the engine and the store."""
    clock = SteppingClock(step=timedelta(milliseconds=5))
    store = await Store.open(path)
    try:
        session = await Session.start(store, clock, lambda: build(clock))
        engine = session.world.engine
        engine.follow("Crypto", "copier_1", "smart_sync", D(10_000))
        engine.follow("Crypto", "copier_2", "smart_sync", D(5_000), stop_loss=D(1_000))
        await session.settle()
        for _group, (leader, _broker, _followers, symbols) in GROUPS.items():
            main, other = symbols
            step = D(QTY[main][0])
            engine.place_order(leader, main, Side.BUY, qty=step * 3)
            await session.settle()
            engine.place_order(leader, other, Side.SELL, qty=D(QTY[other][0]))
            await session.settle()
            price = PRICES[main]
            engine.place_order(leader, main, Side.BUY, qty=step, type=OrderType.LIMIT,
                               price=price * D("0.99"))
            await session.settle()
            engine.place_order(leader, main, Side.BUY, qty=step * 2, type=OrderType.LIMIT,
                               price=price * D("0.98"), stop_loss=price * D("0.97"),
                               take_profit=price * D("1.01"))
            await session.settle()
            engine.place_order(leader, other, Side.BUY, qty=D(QTY[other][0]),
                               type=OrderType.LIMIT, price=PRICES[other] * D("0.95"))
            await session.settle()
    finally:
        await store.close()


@dataclass
class History:
    orders: int = 0
    fills: int = 0
    intents: int = 0
    failures: int = 0


class Ids:
    """The brokers' order and fill counters, continued."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.counters = {name: [int(o), int(f)] for name, o, f in db.execute(
            "SELECT name, next_order, next_fill FROM brokers")}

    def order(self, broker: str) -> str:
        n = self.counters[broker][0]
        self.counters[broker][0] += 1
        return f"{broker}-{n}"

    def fill(self, broker: str) -> str:
        n = self.counters[broker][1]
        self.counters[broker][1] += 1
        return f"{broker}-f{n}"


def add_history(path: Path, orders: int, seed: int = 7) -> History:
    """Done orders, their fills and the engine's journal, inserted in one transaction."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data, not security
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in (
        "orders", "fills", "intents", "copy_orders", "mirrors", "failures", "event_log")}
    counts = History()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        ids = Ids(db)
        seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM intents").fetchone()[0])
        start = datetime(2025, 1, 6, 14, 30, tzinfo=UTC)
        groups = list(GROUPS.items())
        trade = 0
        while counts.orders < orders:
            trade += 1
            at = (start + timedelta(minutes=trade)).isoformat()
            group, (leader, lead_broker, followers, symbols) = groups[trade % len(groups)]
            symbol = symbols[0] if rng.random() < 0.8 else symbols[1]
            low, high = (D(q) for q in QTY[symbol])
            step = low
            qty = step * rng.randint(1, int(high / step))
            side = rng.choice(("buy", "sell"))
            price = PRICES[symbol] * (1 + D(rng.randint(-300, 300)) / 10_000)
            price = price.quantize(step if symbol in ("MNQ", "NQ", "ES", "MES") else D("0.1"))
            cancelled = rng.random() < 0.1  # a limit order pulled before it filled
            lead_id = ids.order(lead_broker)
            kind = "limit" if cancelled else "market"
            rows["orders"].append((lead_id, lead_broker, leader, symbol, side, kind, str(qty),
                                   str(price) if cancelled else None, 0, None, None, None,
                                   None, None, None, "cancelled" if cancelled else "filled"))
            counts.orders += 1
            if not cancelled:
                lead_fill = ids.fill(lead_broker)
                rows["fills"].append(_fill(lead_fill, lead_broker, leader, symbol, side, qty,
                                           price, lead_id, None, at))
            for ratio, (follower, broker) in enumerate(followers.items(), start=1):
                if counts.orders >= orders:
                    break
                key = copy_key(lead_id if cancelled else lead_fill, follower, "open")
                fqty = qty * (1 + ratio % 3)
                seq += 1
                request = OrderRequest(symbol=symbol, side=Side(side), qty=fqty,
                                       type=OrderType.LIMIT if cancelled else OrderType.MARKET,
                                       price=price if cancelled else None, client_id=key)
                body = json.dumps({"group": group, "follower": follower, "symbol": symbol,
                                   "request": dump_request(request),
                                   "mirror_of": lead_id if cancelled else None,
                                   "bracket_of": None})
                if not cancelled and rng.random() < 0.01:
                    rows["intents"].append((key, seq, body, "failed", None))
                    rows["failures"].append((group, follower, symbol, "insufficient_margin",
                                             "not enough available margin", at))
                    rows["event_log"].append((at, "engine", "copy_failed",
                                              f"{group}/{follower} {symbol}: margin"))
                    counts.intents += 1
                    counts.failures += 1
                    continue
                copy_id = ids.order(broker)
                rows["orders"].append((copy_id, broker, follower, symbol, side, kind, str(fqty),
                                       str(price) if cancelled else None, 0, None, None, key,
                                       None, None, None,
                                       "cancelled" if cancelled else "filled"))
                rows["intents"].append((key, seq, body, "sent", copy_id))
                rows["copy_orders"].append((copy_id, group))
                if cancelled:
                    rows["mirrors"].append((lead_id, follower, copy_id))
                else:
                    rows["fills"].append(_fill(ids.fill(broker), broker, follower, symbol, side,
                                               fqty, price, copy_id, key, at))
                counts.orders += 1
                counts.intents += 1
        counts.fills = len(rows["fills"])
        db.execute("BEGIN IMMEDIATE")
        for table, values in rows.items():
            if values:
                db.executemany(_INSERT[table], values)
        db.executemany("UPDATE brokers SET next_order = ?, next_fill = ? WHERE name = ?",
                       [(o, f, name) for name, (o, f) in ids.counters.items()])
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts


_INSERT = {
    "orders": "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "fills": "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "intents": "INSERT INTO intents VALUES (?, ?, ?, ?, ?)",
    "copy_orders": "INSERT INTO copy_orders VALUES (?, ?)",
    "mirrors": "INSERT INTO mirrors VALUES (?, ?, ?)",
    "failures": "INSERT INTO failures (grp, account, symbol, reason, message, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
    "event_log": "INSERT INTO event_log (at, actor, kind, detail) VALUES (?, ?, ?, ?)",
}


def _fill(fill_id: str, broker: str, account: str, symbol: str, side: str, qty: Decimal,
          price: Decimal, order_id: str, client_id: str | None, at: str) -> tuple[Any, ...]:
    return (fill_id, broker, account, symbol, side, str(qty), str(price), "0", "0", "order",
            order_id, client_id, "0", str(qty if side == "buy" else -qty), at)


def _no_build() -> World:
    raise AssertionError("the database holds a world: start-up must load it")


async def start_once(path: Path) -> tuple[float, float, int]:
    """Seconds for Store.open and Session.start; the working orders loaded."""
    began = time.perf_counter()
    store = await Store.open(path)
    opened = time.perf_counter()
    try:
        session = await Session.start(store, SteppingClock(), _no_build)
        started = time.perf_counter()
        engine = session.world.engine
        working = sum(len(engine.broker_of(a).working_orders(a)) for a in engine.state.accounts)
    finally:
        await store.close()
    return opened - began, started - opened, working


def measure(path: Path, runs: int) -> Iterator[str]:
    results = [asyncio.run(start_once(path)) for _ in range(runs)]
    opens = [r[0] * 1000 for r in results]
    starts = [r[1] * 1000 for r in results]
    totals = [a + b for a, b in zip(opens, starts, strict=True)]
    for name, values in (("Store.open", opens), ("Session.start", starts), ("total", totals)):
        yield (f"  {name:<14} min {min(values):7.1f} ms   median "
               f"{statistics.median(values):7.1f} ms   max {max(values):7.1f} ms")
    checks = [quick_check(path) * 1000 for _ in range(runs)]
    yield (f"  of Store.open, PRAGMA quick_check alone: min {min(checks):.1f} ms, median "
           f"{statistics.median(checks):.1f} ms (it reads the whole file)")
    yield f"  ({results[0][2]} working orders loaded, {runs} runs)"


def quick_check(path: Path) -> float:
    """Seconds of the integrity check `Store.open` runs before it writes anything."""
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        began = time.perf_counter()
        db.execute("PRAGMA quick_check").fetchone()
        return time.perf_counter() - began


def table_counts(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        parts = [f"{t} {db.execute('SELECT count(*) FROM ' + t).fetchone()[0]}"  # noqa: S608 - fixed names
                 for t in ("orders", "fills", "intents", "positions", "mirrors", "failures")]
        working = db.execute("SELECT count(*) FROM orders WHERE status = 'working'").fetchone()
    return ", ".join(parts) + f" (working orders {working[0]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="historical orders")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=Path, help="keep the database here (must not exist)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synctui-bench-") as scratch:
        path: Path = args.db or Path(scratch) / "bench.db"
        if path.exists():
            parser.error(f"{path} exists: give a new path")
        began = time.perf_counter()
        asyncio.run(make_open_state(path))
        print(f"open state built in {time.perf_counter() - began:.2f} s: {table_counts(path)}")
        print("start-up, open state only:")
        for line in measure(path, args.runs):
            print(line)
        began = time.perf_counter()
        history = add_history(path, args.orders)
        size = path.stat().st_size / 1e6
        print(f"history added in {time.perf_counter() - began:.2f} s: {history.orders} orders, "
              f"{history.fills} fills, {history.intents} intents, {history.failures} failures "
              f"({size:.1f} MB): {table_counts(path)}")
        print(f"start-up with {history.orders} historical orders:")
        for line in measure(path, args.runs):
            print(line)


if __name__ == "__main__":
    main()
