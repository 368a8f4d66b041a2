"""The order and fill blotter, read from the database (issue 12).

History lives in the database, not in memory (a broker keeps only its last
orders), so the blotter reads the file: from a read-only connection of its own,
on a thread, so a search through a million orders never holds the writer or the
event loop back. Each query opens and closes its connection: none is left open
when the store closes, so SQLite's last close still removes the WAL.

A row's group is the group its copy was made for: the accepted intent whose
client id and order id are the order's (schema 6), or the `copy_orders` link an
older version wrote; an order that is no copy (a leader's, an account's own)
belongs to the group in which its account now has a role: leader, follower, or
a copy's sub-account.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from synctui.domain.numbers import decimal_or_none

BLOTTER_ROWS = 500  # rows a screen shows; an export writes every match


class Kind(StrEnum):
    ORDER = "order"
    FILL = "fill"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What to show. Every filter is exact; `text` is matched, case-insensitive, in
    the ids (order, fill, client), the account, the symbol and the status or cause."""

    group: str | None = None
    account: str | None = None
    symbol: str | None = None  # the catalog's symbol
    kind: Kind | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class HistoryRow:
    kind: Kind
    at: str | None  # ISO time; None for an order written before schema v5
    group: str | None
    account: str
    broker: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal | None  # an order's limit or stop price; a fill's price
    what: str  # an order's type and status ("limit filled"); a fill's cause ("filled by
    # liquidation")
    realized: Decimal | None  # fills only
    fee: Decimal | None  # fills only
    id: str
    order_id: str | None  # a fill's order
    client_id: str | None


CSV_HEADER = ("kind", "time", "group", "account", "broker", "symbol", "side", "qty", "price",
              "what", "realized", "fee", "id", "order_id", "client_id")

_ROLES = """
    SELECT leader, name FROM groups WHERE leader IS NOT NULL
    UNION ALL SELECT account, grp FROM group_followers
    UNION ALL SELECT sub, grp FROM copies
"""
# a copy's group: its accepted intent's (schema 6), or the link an older version wrote
_GROUP = "coalesce(i.grp, c.grp)"
_ORDERS = """
    SELECT o.rowid, o.at, coalesce(i.grp, c.grp), o.account, o.broker, o.symbol, o.side,
           o.qty, o.price,
           o.type || ' ' || o.status || coalesce(' (' || o.reject_reason || ')', ''),
           NULL, NULL, o.id, NULL, o.client_id
    FROM orders o LEFT JOIN intents i ON i.key = o.client_id AND i.order_id = o.id
    LEFT JOIN copy_orders c ON c.order_id = o.id
"""
_FILLS = """
    SELECT f.rowid, f.at, coalesce(i.grp, c.grp), f.account, f.broker, f.symbol, f.side,
           f.qty, f.price,
           'filled by ' || replace(f.cause, '_', ' '),
           f.realized, f.fee, f.id, f.order_id, f.client_id
    FROM fills f LEFT JOIN intents i ON i.key = f.client_id AND i.order_id = f.order_id
    LEFT JOIN copy_orders c ON c.order_id = f.order_id
"""


def _where(query: HistoryQuery, table: str, roles: dict[str, str]) -> tuple[str, list[Any]]:
    """The filter as SQL over one table's select (`table` is "o" or "f")."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.group is not None:
        members = [account for account, group in roles.items() if group == query.group]
        clauses.append(f"({_GROUP} = ? OR ({_GROUP} IS NULL AND {table}.account IN "  # noqa: S608
                       "(SELECT value FROM json_each(?))))")  # `table` is "o" or "f", no input
        params += [query.group, json.dumps(members)]
    if query.account is not None:
        clauses.append(f"{table}.account = ?")
        params.append(query.account)
    if query.symbol is not None:
        clauses.append(f"{table}.symbol = ?")
        params.append(query.symbol)
    text = query.text.strip()
    if text:
        status = ("o.status || ' ' || o.type" if table == "o"
                  else "f.cause || ' ' || coalesce(f.order_id, '')")
        clauses.append(
            f"instr(lower({table}.id || ' ' || coalesce({table}.client_id, '') || ' ' || "
            f"{table}.account || ' ' || {table}.symbol || ' ' || {table}.side || ' ' || "
            f"{status}), ?) > 0")
        params.append(text.lower())
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _row(kind: Kind, r: tuple[Any, ...], roles: dict[str, str]) -> HistoryRow:
    return HistoryRow(kind, r[1], r[2] or roles.get(r[3]), r[3], r[4], r[5], r[6],
                      Decimal(r[7]), decimal_or_none(r[8]), r[9], decimal_or_none(r[10]),
                      decimal_or_none(r[11]), r[12], r[13], r[14])


def _newest(db: sqlite3.Connection, kind: Kind, query: HistoryQuery, roles: dict[str, str],
            limit: int | None) -> Iterator[tuple[Any, ...]]:
    """The table's matching rows, newest first (rows are appended as they happen, and
    an order's later updates keep its row: the rowid is the order of arrival)."""
    base, table = (_ORDERS, "o") if kind is Kind.ORDER else (_FILLS, "f")
    where, params = _where(query, table, roles)
    sql = base + where + f" ORDER BY {table}.rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    yield from db.execute(sql, params)


def _merged(db: sqlite3.Connection, query: HistoryQuery,
            limit: int | None) -> Iterator[HistoryRow]:
    """Orders and fills, newest first, by time; a fill after its order at one time.
    Each table is read newest first, so merging takes only what is shown."""
    roles = {account: group for account, group in db.execute(_ROLES)}
    kinds = [query.kind] if query.kind is not None else [Kind.ORDER, Kind.FILL]
    streams = [(kind, _newest(db, kind, query, roles, limit)) for kind in kinds]
    heads: list[tuple[Kind, tuple[Any, ...], Iterator[tuple[Any, ...]]]] = []
    for kind, rows in streams:
        first = next(rows, None)
        if first is not None:
            heads.append((kind, first, rows))
    shown = 0
    while heads and (limit is None or shown < limit):
        # the newest head: by time (an old order with none sorts last), a fill first
        index = max(range(len(heads)),
                    key=lambda i: (heads[i][1][1] or "", heads[i][0] is Kind.FILL))
        kind, row, rows = heads[index]
        yield _row(kind, row, roles)
        shown += 1
        following = next(rows, None)
        if following is None:
            heads.pop(index)
        else:
            heads[index] = (kind, following, rows)


class History:
    """Reads of one database file's history, beside its store's writer."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self._running: set[asyncio.Future[Any]] = set()
        # Counts the store's commits that wrote orders or fills: a reader that saw this
        # version has nothing new to read (a price tick changes no history).
        self.version = 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"{self.database.as_uri()}?mode=ro", uri=True,
                             check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _rows(self, query: HistoryQuery, limit: int | None) -> list[HistoryRow]:
        with contextlib.closing(self._connect()) as db:
            return list(_merged(db, query, limit))

    def _export(self, query: HistoryQuery, path: Path) -> int:
        count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as db, path.open(
                "x", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(CSV_HEADER)
            for row in _merged(db, query, None):
                writer.writerow(csv_cells(row))
                count += 1
        return count

    async def _in_thread(self, call: Any, *args: Any) -> Any:
        future = asyncio.ensure_future(asyncio.to_thread(call, *args))
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return await asyncio.shield(future)

    async def rows(self, query: HistoryQuery, limit: int = BLOTTER_ROWS) -> list[HistoryRow]:
        """The newest `limit` matching rows."""
        result: list[HistoryRow] = await self._in_thread(self._rows, query, limit)
        return result

    async def export(self, query: HistoryQuery, path: Path) -> int:
        """Every matching row to a new CSV file at `path` (an existing file is never
        overwritten); the number of rows written."""
        count: int = await self._in_thread(self._export, query, path)
        return count

    async def finish(self) -> None:
        """Wait for the reads under way: the store closes its writer only after them,
        so the last connection to close is the writer's and the WAL goes with it."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def csv_cells(row: HistoryRow) -> tuple[str, ...]:
    """A row as CSV text: decimals exactly as stored, nothing rounded."""

    def text(value: Decimal | str | None) -> str:
        return "" if value is None else str(value)

    return (row.kind.value, text(row.at), text(row.group), row.account, row.broker, row.symbol,
            row.side, text(row.qty), text(row.price), row.what, text(row.realized),
            text(row.fee), row.id, text(row.order_id), text(row.client_id))
