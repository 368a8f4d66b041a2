"""The order and fill blotter, read from a real SQLite file (issue 12, item 11)."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from synctui.domain.clock import SteppingClock
from synctui.domain.orders import OrderType, Side
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.store.history import CSV_HEADER, HistoryQuery, HistoryRow, Kind
from synctui.store.session import Session
from synctui.store.store import Store

DESK: dict[str, Any] = {
    "prices": {"MNQ": 21000, "ES": 5000},
    "accounts": [
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
        {"id": "lead2", "balance": 50000},
        {"id": "g1", "balance": 20000},
    ],
    "groups": [{"name": "A", "leader": "lead", "followers": ["f1", "f2"]},
               {"name": "B", "leader": "lead2", "followers": ["g1"]}],
    "steps": [],
}


async def start(path: Path, clock: SteppingClock) -> tuple[Store, Session]:
    store = await Store.open(path)

    def build() -> World:
        return build_world(parse_scenario(json.dumps(DESK)), clock)

    return store, await Session.start(store, clock, build)


async def trade(path: Path) -> SteppingClock:
    """Group A's leader buys 2 MNQ, then sells 1; B's leader buys 1 ES; f1 sells its
    own MNQ by hand; A's leader rests a limit order. Each a minute apart."""
    clock = SteppingClock()
    store, session = await start(path, clock)
    engine = session.world.engine
    try:
        for account, symbol, side, qty in (("lead", "MNQ", Side.BUY, 2),
                                           ("lead", "MNQ", Side.SELL, 1),
                                           ("lead2", "ES", Side.BUY, 1),
                                           ("f1", "MNQ", Side.SELL, 1)):
            clock.advance(timedelta(minutes=1))
            engine.place_order(account, symbol, side, qty=Decimal(qty))
            await session.settle()
        clock.advance(timedelta(minutes=1))
        engine.place_order("lead", "MNQ", Side.BUY, qty=Decimal(1), type=OrderType.LIMIT,
                           price=Decimal(20000))
        await session.settle()
    finally:
        await store.close()
    return clock


async def rows_of(path: Path, query: HistoryQuery, limit: int = 500) -> list[Any]:
    clock = SteppingClock()
    store, _session = await start(path, clock)
    try:
        return await store.history.rows(query, limit)
    finally:
        await store.close()


def test_the_blotter_reads_every_order_and_fill_back_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    asyncio.run(trade(path))
    rows = asyncio.run(rows_of(path, HistoryQuery()))
    orders = [r for r in rows if r.kind is Kind.ORDER]
    fills = [r for r in rows if r.kind is Kind.FILL]
    # 4 market orders by hand + 2 x 2 copies of A's two + 1 copy of B's, the limit and
    # its two mirrors
    assert len(orders) == 4 + 4 + 1 + 1 + 2
    assert len(fills) == 4 + 4 + 1  # the limits rest
    # newest first, by time: the limit order is the newest row, the first buy the oldest
    assert rows[0].kind is Kind.ORDER and rows[0].what == "limit working"
    assert rows[0].price == Decimal(20000)
    times = [r.at for r in rows]
    assert times == sorted(times, reverse=True)
    assert rows[-1].account in {"lead", "f1", "f2"} and rows[-1].side == "buy"
    # every row knows its group; a copy's fill carries the copy's group
    assert {r.group for r in rows if r.account in {"lead", "f1", "f2"}} == {"A"}
    assert {r.group for r in rows if r.account in {"lead2", "g1"}} == {"B"}
    fill = next(r for r in fills if r.account == "f2" and r.side == "sell")
    assert fill.qty == Decimal(1) and fill.price is not None and fill.fee is not None
    assert fill.order_id is not None and fill.client_id is not None


@pytest.mark.parametrize(("query", "expected"), [
    (HistoryQuery(group="B"), {("lead2", "order"), ("lead2", "fill"), ("g1", "order"),
                               ("g1", "fill")}),
    (HistoryQuery(account="f1"), {("f1", "order"), ("f1", "fill")}),
    (HistoryQuery(symbol="ES"), {("lead2", "order"), ("lead2", "fill"), ("g1", "order"),
                                 ("g1", "fill")}),
    (HistoryQuery(group="A", kind=Kind.ORDER, text="limit"),
     {("lead", "order"), ("f1", "order"), ("f2", "order")}),
    (HistoryQuery(account="lead", kind=Kind.ORDER, text="working"), {("lead", "order")}),
    (HistoryQuery(text="LEAD2"), {("lead2", "order"), ("lead2", "fill")}),
])
def test_the_blotter_filters_by_group_account_symbol_kind_and_text(
        tmp_path: Path, query: HistoryQuery, expected: set[tuple[str, str]]) -> None:
    path = tmp_path / "desk.db"
    asyncio.run(trade(path))
    rows = asyncio.run(rows_of(path, query))
    assert rows
    assert {(r.account, r.kind.value) for r in rows} == expected


def test_f1_s_own_sell_belongs_to_its_group_and_is_no_copy(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    asyncio.run(trade(path))
    rows = asyncio.run(rows_of(path, HistoryQuery(account="f1", kind=Kind.ORDER)))
    own = [r for r in rows if r.client_id is None]
    assert len(own) == 1 and own[0].side == "sell" and own[0].group == "A"


def test_the_blotter_shows_the_newest_rows_up_to_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    asyncio.run(trade(path))
    everything = asyncio.run(rows_of(path, HistoryQuery()))
    newest = asyncio.run(rows_of(path, HistoryQuery(), limit=3))
    assert newest == everything[:3]


def test_csv_export_writes_every_match_exactly_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    asyncio.run(trade(path))
    out = tmp_path / "exports" / "a.csv"

    async def export() -> int:
        store, _session = await start(path, SteppingClock())
        try:
            count = await store.history.export(HistoryQuery(group="A"), out)
            with pytest.raises(FileExistsError):
                await store.history.export(HistoryQuery(group="A"), out)
            return count
        finally:
            await store.close()

    count = asyncio.run(export())
    with out.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    assert lines[0] == list(CSV_HEADER)
    assert len(lines) - 1 == count == len(asyncio.run(rows_of(path, HistoryQuery(group="A"))))
    assert {line[2] for line in lines[1:]} == {"A"}
    prices = {Decimal(line[8]) for line in lines[1:] if line[0] == "fill"}
    assert Decimal(21000) in prices  # exact decimal text, no float formatting


def test_an_order_written_before_order_times_were_kept_is_listed_oldest(
        tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    path = tmp_path / "desk.db"
    asyncio.run(trade(path))
    with closing(sqlite3.connect(path)) as db:
        oldest = db.execute("SELECT id FROM orders ORDER BY rowid LIMIT 1").fetchone()[0]
        db.execute("UPDATE orders SET at = NULL WHERE id = ?", (oldest,))
        db.commit()
    rows = asyncio.run(rows_of(path, HistoryQuery(kind=Kind.ORDER)))
    assert rows[-1].id == oldest and rows[-1].at is None


# --- a database written before schema 6 (copy links in `copy_orders`) -----------------


async def _copies_of_every_age(path: Path) -> list[str]:
    """`trade`'s desk, then f2 leaves group A (its copies' group is known from their
    links alone), and A's leader rests a limit whose mirror's intent was committed and
    not sent yet when the store closed, as a crash there leaves it. Its key."""
    clock = await trade(path)
    store, session = await start(path, clock)
    try:
        engine = session.world.engine
        engine.remove_followers("A", ["f2"])
        await session.settle()
        clock.advance(timedelta(minutes=1))
        engine.place_order("lead", "MNQ", Side.BUY, qty=Decimal(1), type=OrderType.LIMIT,
                           price=Decimal(20500))
        await store.save(session.world)
        engine.settle()  # the leader's order is handled: it stops at the mirror's intent
        await store.save(session.world)  # committed, not sent
        assert engine.ready_to_send
        return list(engine.state.intents)
    finally:
        await store.close()


def _as_written_by_version_5(path: Path) -> None:
    """The file as schema 5 held it: an accepted intent's copy link in `copy_orders`,
    no group on any intent."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("INSERT INTO copy_orders SELECT order_id, grp FROM intents "
                   "WHERE order_id IS NOT NULL")
        db.execute("ALTER TABLE intents DROP COLUMN grp")
        db.execute("PRAGMA user_version = 5")
        db.commit()


async def _reopened(path: Path) -> tuple[dict[str, str], list[HistoryRow], list[HistoryRow]]:
    """Start on the file (the pending intent is sent), close, load it again: the copy
    links a restart rebuilds, and the blotter's rows, all and group A's."""
    clock = SteppingClock(datetime(2026, 1, 6, tzinfo=UTC))
    store, _session = await start(path, clock)
    await store.close()
    store = await Store.open(path)
    try:
        world = await store.load(clock)
        everything = await store.history.rows(HistoryQuery(), 10_000)
        group_a = await store.history.rows(HistoryQuery(group="A"), 10_000)
        return dict(world.engine.state.copy_group), everything, group_a
    finally:
        await store.close()


def test_a_version_5_database_reads_as_the_same_links_and_blotter(tmp_path: Path) -> None:
    """Schema 6 keeps a copy's link in its intent (no `copy_orders` row). A database
    written before keeps its links in `copy_orders`, and its open intents have no
    group yet: migrated, it must rebuild the same links at a restart (the working
    copies, the copy pending across the upgrade) and show the same blotter as the
    same desk written by this version."""
    current, old = tmp_path / "current.db", tmp_path / "old.db"
    pending = asyncio.run(_copies_of_every_age(current))
    shutil.copyfile(current, old)
    _as_written_by_version_5(old)
    with closing(sqlite3.connect(old)) as db:
        assert db.execute("SELECT count(*) FROM copy_orders").fetchone()[0] >= 5
    links, rows, group_a = asyncio.run(_reopened(current))
    assert asyncio.run(_reopened(old)) == (links, rows, group_a)
    with closing(sqlite3.connect(old)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 6
        sent = [oid for (oid,) in db.execute(
            "SELECT id FROM orders WHERE client_id IN (SELECT value FROM json_each(?))",
            (json.dumps(pending),))]
    # the premises: links of copies made before and after the upgrade, and copies whose
    # group only their links tell
    assert len(pending) == len(sent) == 1 and links[sent[0]] == "A"
    assert len(links) >= 3 and set(links.values()) == {"A"}
    f2_copies = [r for r in rows if r.account == "f2" and r.client_id is not None]
    assert f2_copies and {r.group for r in f2_copies} == {"A"}
    assert {r.id for r in f2_copies} <= {r.id for r in group_a}
