"""The repository: saves a world's changes and loads a world back.

`save` writes everything that changed since the last save in ONE
transaction: the simulated brokers' rows (accounts, positions, settings,
orders, fills), the engine's journal (groups, mirrors, failures, intents and
their outcomes), the broker events not handled yet, and the event log. A
crash at any moment leaves the database at the last save, where every
pending intent and event is still on record, so a restart completes them:
nothing is lost and, since a retried intent reuses its client order id,
nothing is sent twice.

`load` reads open state only (working orders, positions, groups, pending
intents), so start-up does not grow with history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite

from synctui.brokers.base import Broker
from synctui.brokers.events import (
    BrokerEvent,
    Fill,
    OrderCancelled,
    OrderFailed,
    OrderModified,
    OrderPlaced,
)
from synctui.brokers.faults import FaultModel, FaultSettings
from synctui.brokers.naming import NamingScheme
from synctui.brokers.sim import BrokerSettings, SimAccount, SimBroker, SimOrder, SimPosition
from synctui.domain.clock import Clock
from synctui.domain.copies import Copy, CopyStatus, OnStop
from synctui.domain.errors import RejectReason
from synctui.domain.groups import ContractSetting, Group, GroupBook, GroupStatus, PauseReason
from synctui.domain.instruments import Catalog, Instrument, Kind, Market
from synctui.domain.numbers import decimal_or_none
from synctui.domain.orders import MarginMode, OrderStatus, OrderType, Side
from synctui.domain.prices import PriceBook
from synctui.domain.risk import RiskLimits, RiskState
from synctui.engine.engine import Engine
from synctui.engine.events import (
    AccountBreachedEvent,
    CopyFailed,
    EngineEvent,
    Failure,
    GroupChanged,
)
from synctui.engine.state import EngineState, Intent
from synctui.engine.world import World
from synctui.store.codec import (
    dump_event,
    dump_intent,
    dump_waiting,
    iso_time,
    load_event,
    load_intent,
    load_waiting,
)
from synctui.store.database import (
    BUSY_MS,
    Lock,
    StoreError,
    close_quietly,
    explain,
    open_database,
    rollback,
)
from synctui.store.history import History

Rows = list[tuple[Any, ...]]
SUB_MARK = "~copy"  # every copy's sub-account id has it; an account id never may


def _d(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# Python's sqlite3 binds None through its adapter lookup (a key tuple built, the
# registry and two attribute lookups tried: about 0.3 µs a value, more than a whole
# short string costs), while an int binds at once. A fan-out's order row has eight
# columns that are mostly NULL, so the hot statements bind the int 0 for a NULL TEXT
# value and `nullif(?, 0)` turns it back into NULL inside SQLite. Safe because those
# columns only ever get a str, and SQLite never calls a text equal to an integer.
NUL = 0


def _t(value: Decimal | None) -> str | int:
    """A nullable Decimal for a `nullif(?, 0)` parameter: its exact text, or `NUL`."""
    return NUL if value is None else str(value)


@dataclass
class _Batch:
    """Statements of one transaction, in order, each with its rows."""

    steps: list[tuple[str, Rows]] = field(default_factory=list)
    history: bool = False  # it writes orders or fills: the blotter has news

    def add(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows for `sql`; joined to the step before when it is the same statement, so
        a fan-out's thousand journal rows are one `executemany`, in the same order."""
        rows = list(rows)
        if not rows:
            return
        if self.steps and self.steps[-1][0] == sql:
            self.steps[-1][1].extend(rows)
        else:
            self.steps.append((sql, rows))


_JOURNAL_ORDER = {
    "mirror": "INSERT INTO mirrors VALUES (?, ?, ?)",
    "bracketed": "INSERT INTO bracketed VALUES (?, ?, ?)",
    "failure": "INSERT INTO failures (grp, account, symbol, reason, message, at) "
               "VALUES (?, ?, ?, ?, ?, ?)",
    "intent": "INSERT OR IGNORE INTO intents VALUES (?, ?, ?, 'pending', NULL, ?)",
    "intent_submitted": "UPDATE intents SET status = 'submitted' WHERE key = ?",
    "intent_done": "UPDATE intents SET status = ?, order_id = ? WHERE key = ?",
}


CHECKPOINT_ROWS = 5_000  # about SQLite's own mark of 1,000 pages (4 MB) of WAL
BUSY_CHECKPOINT_ROWS = 4 * CHECKPOINT_ROWS  # a long settle does not wait for its end
WAL_FRAMES = 16_000  # 64 MB of WAL: past it, a checkpoint makes the WAL start over


class Store:
    def __init__(self, db: aiosqlite.Connection, lock: Lock, path: Path, fresh: bool) -> None:
        self.db = db
        self.path = path
        self.fresh = fresh
        self._lock = lock
        self._writer = asyncio.Lock()  # ONE writer: statements never interleave a transaction
        self._log: list[tuple[str, str, str, str]] = []
        # pending events: the engine's numbers [first, written) are in the table; None
        # until the first save of an attached world, which replaces whatever is there
        self._pending: tuple[int, int] | None = None
        self._links: dict[str, tuple[bool, int, int]] = {}  # per broker, as last written
        # account id -> its UPDATE row as this store last wrote it (`_accounts`)
        self._written_accounts: dict[str, tuple[str | int, ...]] = {}
        self._waiting_seq = 0
        self._intent_seq = 0
        self._now = ""  # the world's time at the save being built (ISO)
        self._world: World | None = None
        self._unsubscribe: list[Any] = []
        self.commits = 0
        self.checkpoints = 0
        self._unchecked_rows = 0  # written since the last checkpoint
        # One thread of its own, started at once by `submit` (a task would wait for the
        # loop, which a long settle never gives back while it commits on it).
        self._checkpointing: ThreadPoolExecutor | None = None
        self._checkpoint: Future[None] | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._wal_frames = 0  # the WAL's length at the last checkpoint
        self.failed: StoreError | None = None  # a save failed: memory and file differ now
        self.history = History(lock.database)  # the blotter's reads, beside the writer

    @classmethod
    async def open(cls, path: Path) -> Store:
        db, lock, fresh = await open_database(path)
        store = cls(db, lock, path, fresh)
        try:
            # intents are never deleted and each takes the next seq, so the newest row
            # holds the largest: found at the end of the rowid tree, not by a scan
            async with db.execute(
                    "SELECT seq FROM intents ORDER BY rowid DESC LIMIT 1") as cursor:
                row = await cursor.fetchone()
        except BaseException as error:
            await store.close()
            if isinstance(error, Exception):
                raise explain(error, path) from None
            raise
        store._intent_seq = int(row[0]) if row else 0
        return store

    async def close(self) -> None:
        """Always ends the connection's thread and releases the lock, even after a
        failed save: a connection left open would keep the process alive."""
        self.detach()
        try:
            await self.history.finish()
            await self._end_checkpoints()
            await close_quietly(self.db)
            if self.failed is None:
                self._lock.mark_clean()
        finally:
            self._lock.release()

    # --- following a world ----------------------------------------------------------

    def attach(self, world: World, *, new: bool = False) -> None:
        """Track every change of `world` from now on; the engine defers sends to us.
        A `new` world counts as changed whole, so its first save writes all of it."""
        self.detach()
        self._world = world
        self._pending = None  # its events have numbers of their own
        for broker in world.brokers.values():
            if isinstance(broker, SimBroker):
                if new:
                    broker.mark_all()
                elif broker.changes is None:
                    broker.track_changes()
        if world.engine.state.journal is None:
            world.engine.state.journal = []
        if new:  # built before anyone listened: groups and copies are written whole
            world.engine.state.journal.extend([("groups", None), ("copies", None)])
        world.engine.deferred = True
        # what the event log records; never a fill (the fills table has them)
        self._unsubscribe = [world.engine.subscribe(
            self._observe, wants=(GroupChanged, CopyFailed, AccountBreachedEvent))]

    def detach(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def note(self, actor: str, kind: str, detail: str) -> None:
        """An entry in the event log (who did what, when), written with the next save."""
        at = self._world.clock.now().isoformat() if self._world else ""
        self._log.append((at, actor, kind, detail))

    def _observe(self, event: EngineEvent) -> None:
        if isinstance(event, GroupChanged):
            reason = f" ({event.reason})" if event.reason else ""
            self.note("engine", "group_status", f"{event.group}: {event.status}{reason}")
        elif isinstance(event, CopyFailed):
            f = event.failure
            self.note("engine", "copy_failed",
                      f"{f.group}/{f.account} {f.symbol}: {f.reason} ({f.message})")
        elif isinstance(event, AccountBreachedEvent):
            self.note("broker", "breach", f"{event.account}: {event.rule}")

    # --- saving ---------------------------------------------------------------------------

    async def save(self, world: World, *, initial: bool = False) -> None:
        """Write every change since the last save in one transaction. After a failed
        save the store refuses every later one: the failed changes are no longer
        tracked, so a later save would write a world the engine never had."""
        if self.failed is not None:
            raise self.failed
        batch = _Batch()
        self._now = world.clock.now().isoformat()
        if initial:
            self._initial(world, batch)
        self._prices(world, batch, everything=initial)
        for name, broker in world.brokers.items():
            if isinstance(broker, SimBroker):
                self._broker(world, name, broker, batch)
        self._journal(world, batch)
        self._pending_events(world, batch)
        batch.add("INSERT INTO event_log (at, actor, kind, detail) VALUES (?, ?, ?, ?)",
                  self._log)
        self._log = []
        await self._commit(batch)
        self.checkpoint_soon(pause=world.engine.idle)

    async def save_venue(self, world: World) -> None:
        """Commit the brokers' side of a fan-out alone, before the engine's journal.

        The brokers stand for remote systems: once `dispatch` has sent orders, they
        exist whatever the engine records next. So their changes (orders, fills,
        accounts, positions, settings, id counters) are written at once, with the
        broker events not handled yet. That queue is what the last `save` wrote plus
        the events the fan-out caused, so it matches the brokers' rows. The engine's
        journal (intent outcomes, links, failures) waits in memory for the next
        `save`; a crash in between leaves intents pending whose orders the brokers
        hold, and a restart resolves them by client order id (SPEC 6, STYLE
        "Exactly-once"), neither sending them again nor calling them failed.
        """
        batch = _Batch()
        self._now = world.clock.now().isoformat()
        for name, broker in world.brokers.items():
            if isinstance(broker, SimBroker):
                self._broker(world, name, broker, batch)
        if batch.steps:
            self._pending_events(world, batch)
        await self._commit(batch)

    async def _commit(self, batch: _Batch) -> None:
        """One transaction, from the one writer, run on the event loop's own thread.

        Not on aiosqlite's worker: a hop there and back costs 80 µs to a millisecond
        (the worker sleeps between commits and wakes on the other core), three times
        per fan-out, which is most of a small group's latency; the loop only waits
        for it meanwhile. The statements themselves are C: a fan-out to 1,000
        followers holds the loop about as long as the engine's own Python does.
        Reads (`_rows`, at start-up) still go through the worker, under the same
        lock, so the connection is never used by two threads at once."""
        if not batch.steps:
            return
        async with self._writer:
            count = sum(len(rows) for _sql, rows in batch.steps)
            try:
                _write(self.db, batch.steps)
            except BaseException as error:
                # The original error, never the `cannot rollback` of a transaction SQLite
                # already undid itself (a full disk at COMMIT does that).
                await rollback(self.db)
                if not isinstance(error, Exception):
                    raise
                self.failed = explain(error, self.path)
                raise self.failed from None
            self.commits += 1
            self._unchecked_rows += count
            if batch.history:
                self.history.version += 1
        self.checkpoint_soon(pause=False)

    def checkpoint_soon(self, *, pause: bool = True) -> None:
        """Copy the WAL back into the database file once enough was written, from a
        connection and a thread of its own. In WAL mode a checkpoint runs beside the
        writer: commits go on appending meanwhile, and the next transaction after a
        complete one starts the WAL from its beginning again. So no fan-out waits
        for a checkpoint (SQLite's own runs inside whichever commit crosses its mark)
        and the WAL stays short (a long one makes every commit slower).

        It starts at a `pause`: the save that finds the engine idle, the end of a
        settle. One started inside a fan-out copies the WAL up to that commit only;
        the fan-out's next commits land behind it, the WAL is not caught up when the
        next transaction begins, and so it does not start over: it grew by every
        fan-out whenever the mark was crossed mid-way (a 1,000-follower fan-out
        crosses it at every fill), up to the RESTART below. Inside a long settle
        (a burst) one starts anyway once BUSY_CHECKPOINT_ROWS were written."""
        mark = CHECKPOINT_ROWS if pause else BUSY_CHECKPOINT_ROWS
        if self._unchecked_rows < mark or self.failed is not None or (
                self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._unchecked_rows = 0
        if self._checkpointing is None:
            self._checkpointing = ThreadPoolExecutor(1, thread_name_prefix="synctui-checkpoint")
        self._checkpoint = self._checkpointing.submit(self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        # A failure here loses nothing (the WAL still holds every commit); the next
        # checkpoint tries again, and a real fault shows at the next commit.
        with contextlib.suppress(sqlite3.Error):
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    self._lock.database, isolation_level=None, check_same_thread=False)
                self._checkpointer.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            # PASSIVE never waits for the writer: what it could not copy, the next one
            # does, and the WAL starts over at the first commit after one that caught up
            # (a pause between leader fills is enough). A burst with no pause at all
            # would grow the WAL for as long as it lasts, so past WAL_FRAMES the next
            # checkpoint is a RESTART: it holds the writer back once, for one pass.
            mode = "RESTART" if self._wal_frames > WAL_FRAMES else "PASSIVE"
            row = self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            self._wal_frames = 0 if mode == "RESTART" and row and not row[0] else (
                row[1] if row else 0)
            self.checkpoints += 1

    async def _end_checkpoints(self) -> None:
        """Before the last connection closes (SQLite's clean close checkpoints and
        removes the WAL only when it is the last)."""
        if self._checkpointing is None:
            return
        pool, self._checkpointing = self._checkpointing, None
        await asyncio.wrap_future(pool.submit(self._close_checkpointer))  # after the last
        pool.shutdown(wait=False)

    def _close_checkpointer(self) -> None:
        if self._checkpointer is not None:
            with contextlib.suppress(sqlite3.Error):
                self._checkpointer.close()
            self._checkpointer = None

    def _initial(self, world: World, batch: _Batch) -> None:
        batch.add(
            "INSERT INTO instruments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i.symbol, i.family, i.kind.value, str(i.multiplier), str(i.tick),
              str(i.qty_step), str(i.min_qty), str(i.margin_per_contract), i.max_leverage,
              str(i.mmr), i.name)
             for i in (world.catalog.get(s) for s in world.custom)])
        rows = []
        for name, broker in world.brokers.items():
            if not isinstance(broker, SimBroker):
                raise StoreError(f"broker {name!r} cannot be stored")
            settings = broker.settings
            rows.append((name, str(settings.fee_per_contract), str(settings.slippage_ticks),
                         settings.naming.value, *broker.counters(),
                         ",".join(sorted(settings.markets)), _faults(settings.faults),
                         broker.faults.draws, int(broker.connected),
                         str(settings.ack_delay)))
        batch.add("INSERT INTO brokers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _prices(self, world: World, batch: _Batch, everything: bool) -> None:
        families = world.prices.families() if everything else world.prices.take_changed()
        if everything:
            world.prices.take_changed()
        batch.add(
            "INSERT INTO prices VALUES (?, ?, ?) ON CONFLICT (family) DO UPDATE SET "
            "symbol = excluded.symbol, price = excluded.price",
            [(family, world.prices.symbol_of(family), str(price))
             for family, price in families.items()])

    def _link(self, name: str, broker: SimBroker, batch: _Batch) -> None:
        """The broker's connection, its fault draws and what it holds back while
        disconnected (SPEC 9): written when they changed."""
        now = (broker.connected, broker.faults.draws, len(broker.held))
        if self._links.get(name) == now:
            return
        before = self._links.get(name)
        self._links[name] = now
        batch.add("UPDATE brokers SET connected = ?, fault_draws = ? WHERE name = ?",
                  [(int(broker.connected), broker.faults.draws, name)])
        if before is not None and before[2] == 0 and not broker.held:
            return
        batch.add("DELETE FROM held_events WHERE broker = ?", [(name,)])
        batch.add("INSERT INTO held_events (broker, body) VALUES (?, ?)",
                  [(name, dump_event(e)) for e in broker.held])

    def _broker(self, world: World, name: str, broker: SimBroker, batch: _Batch) -> None:
        self._link(name, broker, batch)
        changes = broker.take_changes()
        if not changes:
            return
        self._accounts(world, name, broker, changes.accounts, batch)
        # Sorted: SQLite's seeks in key order through the WITHOUT ROWID table save about
        # what sorting a fan-out's thousand keys costs (0.1-0.2 ms each way), and the
        # file's pages do not depend on the hash seed.
        state_of = broker.account_state
        upserts, deletes = [], []
        for account, symbol in sorted(changes.positions):
            pos = state_of(account).positions.get(symbol)
            if pos is None:
                deletes.append((account, symbol))
            else:
                upserts.append((account, symbol, str(pos.qty), str(pos.avg), str(pos.margin),
                                pos.seq))
        batch.add("DELETE FROM positions WHERE account = ? AND symbol = ?", deletes)
        batch.add("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?)", upserts)
        settings = []
        for account, symbol in sorted(changes.settings):
            stored = state_of(account).settings.get(symbol)
            if stored is not None:
                settings.append((account, symbol, stored[0], stored[1].value))
        batch.add("INSERT OR REPLACE INTO account_settings VALUES (?, ?, ?, ?)", settings)
        # Rows built inline (a fan-out writes a thousand orders and fills per save): the
        # enums' `_value_` is their value without the descriptor `.value` goes through,
        # and the catalog symbol is looked up once per native symbol, not per fill.
        reject_of, status_of = broker.reject_reason, broker.status_of
        catalog = broker.symbols.catalog
        symbols = {native: catalog(native) for native in {f.symbol for f in changes.fills}}
        fills = [(f.id, name, f.account, symbols[f.symbol], f.side._value_, str(f.qty),
                  str(f.price), str(f.fee), str(f.realized), f.cause._value_, f.order_id,
                  f.client_id, str(f.position_before), str(f.position_after), iso_time(f.at))
                 for f in changes.fills]
        # When an order was placed: its first fill's time when it filled at once (the
        # save comes a moment later), else the save's.
        placed = {fill[10]: fill[14] for fill in reversed(fills)}  # the first one stays
        now = self._now
        orders = []
        for o in changes.orders.values():
            reject = reject_of(o.id)
            price, stop, take = o.price, o.stop_loss, o.take_profit
            orders.append((
                o.id, name, o.account, o.symbol, o.side._value_, o.type._value_, str(o.qty),
                NUL if price is None else str(price), int(o.reduce_only),
                NUL if stop is None else str(stop), NUL if take is None else str(take),
                o.client_id, NUL if o.parent_id is None else o.parent_id,
                NUL if o.role is None else o.role, NUL if o.oco_id is None else o.oco_id,
                (status_of(o.id) or OrderStatus.WORKING)._value_,
                reject[0]._value_ if reject else NUL, reject[1] if reject else NUL,
                placed.get(o.id, now)))
        # An order's first row keeps its time: a later update leaves `at` alone.
        batch.add(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, nullif(?, 0), ?, nullif(?, 0), "
            "nullif(?, 0), ?, nullif(?, 0), nullif(?, 0), nullif(?, 0), ?, nullif(?, 0), "
            "nullif(?, 0), ?) "
            "ON CONFLICT (id) DO UPDATE SET qty = excluded.qty, price = excluded.price, "
            "status = excluded.status, reject_reason = excluded.reject_reason, "
            "reject_message = excluded.reject_message", orders)
        batch.add(
            "INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            fills)
        batch.history = batch.history or bool(orders or fills)
        batch.add("UPDATE brokers SET next_order = ?, next_fill = ? WHERE name = ?",
                  [(*broker.counters(), name)])

    def _accounts(self, world: World, name: str, broker: SimBroker, changed: Iterable[str],
                  batch: _Batch) -> None:
        """The changed accounts' rows. An account this store wrote before gets an UPDATE
        of the columns a fill or a price moves (one primary-key seek, six values bound,
        not eleven), and none at all when they are what was written last: an account
        "changed" by a fill that moved no money (an opening fill without fees) keeps
        its row. Any other goes through the upsert (new, or written before a restart);
        only then is the engine's account order (`seq`) needed. Updates go in the set's
        own order (no row depends on another's); new rows are sorted by id, so their
        rowids do not vary with the hash seed."""
        written = self._written_accounts
        state_of = broker.account_state
        new: Rows = []
        updates: Rows = []
        seq: dict[str, int] | None = None
        for account in changed:
            a = state_of(account)
            risk = a.risk_state
            row = (str(a.balance), str(a.realized), str(a.fees), str(risk.day_start),
                   str(risk.peak), NUL if a.breached is None else a.breached, account)
            last = written.get(account)
            if row == last:
                continue
            written[account] = row
            if last is not None:
                updates.append(row)
                continue
            if seq is None:
                seq = {id_: index for index, id_ in enumerate(world.engine.state.accounts)}
            new.append((account, name, seq.get(account, len(seq)), row[0], row[1], row[2],
                        _t(a.risk.daily_loss_limit), _t(a.risk.max_drawdown), row[3], row[4],
                        row[5]))
        new.sort()
        batch.add(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, nullif(?, 0), nullif(?, 0), ?, ?, "
            "nullif(?, 0)) "
            "ON CONFLICT (id) DO UPDATE SET balance = excluded.balance, "
            "realized = excluded.realized, fees = excluded.fees, day_start = "
            "excluded.day_start, peak = excluded.peak, breached = excluded.breached", new)
        batch.add(
            "UPDATE accounts SET balance = ?, realized = ?, fees = ?, day_start = ?, peak = ?, "
            "breached = nullif(?, 0) WHERE id = ?", updates)

    def _journal(self, world: World, batch: _Batch) -> None:
        journal = world.engine.state.take_journal()
        kinds = {kind for kind, _ in journal}
        if "groups" in kinds:
            self._groups(world.engine.state.groups, batch)
        if "copies" in kinds:
            self._copies(world.engine.state, batch)
        if "resync" in kinds:
            batch.add("INSERT OR REPLACE INTO meta VALUES ('resyncs', ?)",
                      [(str(world.engine.state.resyncs),)])
        done = {data[0] for kind, data in journal if kind == "intent_done"}
        # One `executemany` per statement: the journal interleaves a fan-out's kinds
        # (link, outcome, link, ...), so rows are grouped by kind first. Only the
        # intents' rows depend on each other (insert, then submitted, then done) and
        # the waiting rows (kept in their own order); the rest are independent inserts.
        rows: dict[str, Rows] = {kind: [] for kind in _JOURNAL_ORDER}
        waiting = _Batch()
        for kind, data in journal:
            if kind in ("mirror", "bracketed"):
                rows[kind].append(data)
            elif kind == "failure":
                f: Failure = data
                rows[kind].append((f.group, f.account, f.symbol, f.reason.value, f.message,
                                   f.at.isoformat()))
            elif kind == "intent":
                intent: Intent = data
                self._intent_seq += 1
                rows[kind].append((intent.key, self._intent_seq, dump_intent(intent),
                                   intent.group))
            elif kind == "waiting":
                self._waiting_seq += 1
                waiting.add("INSERT OR REPLACE INTO waiting VALUES (?, ?, ?)",
                            [(data.key, self._waiting_seq, dump_waiting(data))])
            elif kind == "waiting_done":
                waiting.add("DELETE FROM waiting WHERE key = ?", [(data,)])
            elif kind == "intent_submitted":
                if data not in done:  # answered within this batch: one update will do
                    rows[kind].append((data,))
            elif kind == "intent_done":
                key, order_id = data
                rows[kind].append(("sent" if order_id else "failed", order_id, key))
        for kind, sql in _JOURNAL_ORDER.items():
            batch.add(sql, rows[kind])
        batch.steps.extend(waiting.steps)

    def _groups(self, book: GroupBook, batch: _Batch) -> None:
        """Groups are few: rewritten whole when any changed."""
        batch.steps.append(("DELETE FROM groups", [()]))
        batch.steps.append(("DELETE FROM group_followers", [()]))
        batch.steps.append(("DELETE FROM follower_settings", [()]))
        groups = list(book.groups.values())
        batch.add("INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?)",
                  [(g.name, i, g.leader, g.status.value, g.reason.value if g.reason else None,
                    _d(g.signal_expiry)) for i, g in enumerate(groups)])
        batch.add("INSERT INTO group_followers VALUES (?, ?, ?)",
                  [(g.name, f, i) for g in groups for i, f in enumerate(g.followers)])
        batch.add("INSERT INTO follower_settings VALUES (?, ?, ?, ?, ?, ?)",
                  [(g.name, f, s, v.ratio, int(v.sync), v.cross)
                   for g in groups for (f, s), v in g.settings.items()])

    def _copies(self, state: EngineState, batch: _Batch) -> None:
        batch.add(
            "INSERT OR REPLACE INTO copies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(c.group, c.account, c.sub, str(c.investment), int(c.copy_open_positions),
              _d(c.stop_loss), c.on_stop.value, c.status.value, int(c.funds_returned),
              json.dumps(c.pending_leverage)) for c in state.copies.values()])
        batch.add("UPDATE meta SET value = ? WHERE key = 'next_copy'", [(str(state.next_copy),)])

    def _pending_events(self, world: World, batch: _Batch) -> None:
        """The table holds the engine's events not handled yet, by their numbers: the
        handled ones are deleted, the new ones appended, each written once (a burst
        queues thousands, and rewriting them all at every save was quadratic)."""
        engine = world.engine
        first, end = engine.pending_span
        if self._pending is None:  # what a crash (or the world before) left, replaced
            batch.steps.append(("DELETE FROM pending_events", [()]))
            start = first
        else:
            was_first, written = self._pending
            if first > was_first:
                batch.add("DELETE FROM pending_events WHERE seq < ?", [(first,)])
            start = max(first, written)
        if end > start:
            batch.add("INSERT INTO pending_events VALUES (?, ?)",
                      [(n, dump_event(e)) for n, e in enumerate(engine.pending_from(start),
                                                                start)])
        self._pending = (first, end)

    # --- loading -----------------------------------------------------------------------------

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._writer, self.db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def load(self, clock: Clock) -> World:
        """Rebuild a world from open state: what a restart (or a crash) comes back to."""
        catalog = Catalog()
        for r in await self._rows("SELECT * FROM instruments"):
            catalog.add(Instrument(
                symbol=r[0], family=r[1], kind=Kind(r[2]), multiplier=Decimal(r[3]),
                tick=Decimal(r[4]), qty_step=Decimal(r[5]), min_qty=Decimal(r[6]),
                margin_per_contract=Decimal(r[7]), max_leverage=int(r[8]), mmr=Decimal(r[9]),
                name=r[10]))
        prices = PriceBook(catalog)
        for _family, symbol, price in await self._rows("SELECT * FROM prices"):
            prices.set(symbol, Decimal(price))
        prices.take_changed()
        brokers: dict[str, Broker] = {}
        sims: dict[str, SimBroker] = {}
        counters: dict[str, tuple[int, int]] = {}
        for (name, fee, slip, naming, next_order, next_fill, markets, faults, draws,
             connected, ack_delay) in await self._rows("SELECT * FROM brokers"):
            sims[name] = SimBroker(name, catalog, prices, BrokerSettings(
                Decimal(fee), Decimal(slip), NamingScheme(naming),
                frozenset(Market(m) for m in markets.split(",")), _load_faults(faults),
                Decimal(ack_delay)), clock)
            sims[name].faults = FaultModel(sims[name].settings.faults, int(draws))
            sims[name].connected = bool(connected)
            brokers[name] = sims[name]
            counters[name] = (int(next_order), int(next_fill))
        state = EngineState()
        for r in await self._rows("SELECT * FROM copies"):
            state.put_copy(Copy(
                group=r[0], account=r[1], sub=r[2], investment=Decimal(r[3]),
                copy_open_positions=bool(r[4]), stop_loss=decimal_or_none(r[5]),
                on_stop=OnStop(r[6]),
                status=CopyStatus(r[7]), funds_returned=bool(r[8]),
                pending_leverage={k: int(v) for k, v in json.loads(r[9]).items()}))
        for (value,) in await self._rows("SELECT value FROM meta WHERE key = 'next_copy'"):
            state.next_copy = int(value)
        for (value,) in await self._rows("SELECT value FROM meta WHERE key = 'resyncs'"):
            state.resyncs = int(value)
        accounts: dict[str, SimAccount] = {}
        by_broker: dict[str, list[SimAccount]] = {name: [] for name in sims}
        for r in await self._rows("SELECT * FROM accounts ORDER BY seq, id"):
            acct = SimAccount(
                id=r[0], balance=Decimal(r[3]), realized=Decimal(r[4]), fees=Decimal(r[5]),
                risk=RiskLimits(decimal_or_none(r[6]), decimal_or_none(r[7])),
                risk_state=RiskState(Decimal(r[8]), Decimal(r[9])), breached=r[10])
            accounts[acct.id] = acct
            by_broker[r[1]].append(acct)
            if acct.id not in state.subs and SUB_MARK not in acct.id:
                state.accounts[acct.id] = r[1]  # an ended copy's old sub-account is none
        for account, symbol, qty, avg, margin, seq in await self._rows(
                "SELECT * FROM positions ORDER BY seq, account, symbol"):
            accounts[account].positions[symbol] = SimPosition(
                symbol, Decimal(qty), Decimal(avg), Decimal(margin), int(seq))
        for account, symbol, leverage, mode in await self._rows(
                "SELECT * FROM account_settings"):
            accounts[account].settings[symbol] = (int(leverage), MarginMode(mode))
        working: dict[str, list[SimOrder]] = {name: [] for name in sims}
        for r in await self._rows("SELECT * FROM orders WHERE status = 'working' ORDER BY rowid"):
            working[r[1]].append(self._order(r))
        # engine state: groups, failures, and links still needed by open orders
        self._load_groups(state, await self._rows("SELECT * FROM groups ORDER BY seq"),
                          await self._rows("SELECT * FROM group_followers ORDER BY grp, seq"),
                          await self._rows("SELECT * FROM follower_settings"))
        for _id, grp, account, symbol, reason, message, at in await self._rows(
                "SELECT * FROM failures ORDER BY id"):
            state.failures.append(Failure(grp, account, symbol, RejectReason(reason), message,
                                          _time(at)))
        # Broker events not handled yet may be about orders that are no longer working
        # (a leader fill of a mirrored order, a bracket leg's fill, a mirror's failure):
        # their links are loaded too, or handling them after a restart would copy a
        # fill that each follower's own order already made (SPEC 8).
        pending = [load_event(body) for (body,) in await self._rows(
            "SELECT body FROM pending_events ORDER BY seq")]
        about = json.dumps(sorted(_orders_named(pending)))
        for _rowid, leader_order, follower, order_id in await self._rows(
                "SELECT m.rowid, m.* FROM orders o JOIN mirrors m ON m.leader_order = o.id "
                "WHERE o.status = 'working' UNION "
                "SELECT rowid, * FROM mirrors WHERE leader_order IN "
                "(SELECT value FROM json_each(?)) ORDER BY 1", (about,)):
            ids = state.mirrors.setdefault(leader_order, {}).setdefault(follower, [])
            if order_id is not None:
                ids.append(order_id)
        # a bracketed entry still working, or whose exits still work (a failed copy of it
        # has no order id: it is remembered so that the exits are not copied to it)
        for leader_order, follower, order_id in await self._rows(
                "SELECT * FROM bracketed WHERE leader_order IN (SELECT coalesce(parent_id, id) "
                "FROM orders WHERE status = 'working') "  # an entry still working, or its legs
                "OR leader_order IN (SELECT value FROM json_each(?)) ORDER BY rowid", (about,)):
            ids = state.bracketed.setdefault(leader_order, {}).setdefault(follower, [])
            if order_id is not None:
                ids.append(order_id)
        # The copy links of those orders: an accepted intent (schema 6) is its order's
        # link (same client id, its order id recorded), found through the order; a link
        # written before schema 6 is a `copy_orders` row. Lookups per branch, not one
        # OR: with OR, SQLite walks every link in history.
        for order_id, grp in await self._rows(
                "SELECT o.id, i.grp FROM orders o JOIN intents i ON i.key = o.client_id "
                "WHERE o.status = 'working' AND i.order_id = o.id AND i.grp IS NOT NULL "
                "UNION SELECT o.id, i.grp FROM orders o JOIN intents i ON i.key = o.client_id "
                "WHERE o.id IN (SELECT value FROM json_each(?)) AND i.order_id = o.id "
                "AND i.grp IS NOT NULL "
                "UNION SELECT c.* FROM orders o JOIN copy_orders c ON c.order_id = o.id "
                "WHERE o.status = 'working' UNION "
                "SELECT * FROM copy_orders WHERE order_id IN (SELECT value FROM json_each(?))",
                (about, about)):
            state.copy_group[order_id] = grp
        for key, _seq, body in await self._rows(
                "SELECT key, seq, body FROM intents WHERE status IN ('pending', 'submitted') "
                "ORDER BY seq"):
            state.intents[key] = load_intent(key, body)
        for _key, _seq, body in await self._rows("SELECT * FROM waiting ORDER BY seq"):
            state.add_waiting(load_waiting(body))  # the journal is off: nothing is logged
        for _seq, name, body in await self._rows("SELECT * FROM held_events ORDER BY seq"):
            sims[name].held.append(load_event(body))
        # orders a retry or a mirror check may ask the broker about
        mirror_ids = {i for links in state.mirrors.values() for ids in links.values()
                      for i in ids}
        known: dict[str, list[tuple[SimOrder, OrderStatus]]] = {name: [] for name in sims}
        rejects: dict[str, dict[str, tuple[RejectReason, str]]] = {name: {} for name in sims}
        wanted = json.dumps(list(state.intents))
        for r in await self._rows(
                "SELECT * FROM orders WHERE client_id IN (SELECT value FROM json_each(?))",
                (wanted,)):
            known[r[1]].append((self._order(r), OrderStatus(r[15])))
            if r[16] is not None:
                rejects[r[1]][r[0]] = (RejectReason(r[16]), str(r[17]))
        for r in await self._rows(
                "SELECT * FROM orders WHERE status != 'working' AND id IN "
                "(SELECT value FROM json_each(?))", (json.dumps(sorted(mirror_ids)),)):
            known[r[1]].append((self._order(r), OrderStatus(r[15])))
        for name, sim in sims.items():
            sim.restore(by_broker[name], working[name], counters[name], known[name],
                        rejects[name])
        engine = Engine(brokers, prices, catalog, clock, state=state)
        engine.requeue(pending)
        custom = [str(r[0]) for r in await self._rows("SELECT symbol FROM instruments")]
        world = World(catalog, prices, brokers, engine, clock, custom=custom)
        self._had_pending_events = True
        return world

    @staticmethod
    def _order(r: aiosqlite.Row) -> SimOrder:
        return SimOrder(
            id=r[0], account=r[2], symbol=r[3], side=Side(r[4]), type=OrderType(r[5]),
            qty=Decimal(r[6]), price=decimal_or_none(r[7]), reduce_only=bool(r[8]),
            stop_loss=decimal_or_none(r[9]), take_profit=decimal_or_none(r[10]),
            client_id=r[11], parent_id=r[12], role=r[13], oco_id=r[14])

    @staticmethod
    def _load_groups(state: EngineState, groups: list[aiosqlite.Row],
                     followers: list[aiosqlite.Row], settings: list[aiosqlite.Row]) -> None:
        for name, _seq, leader, status, reason, expiry in groups:
            state.groups.groups[name] = Group(
                name=name, leader=leader, status=GroupStatus(status),
                reason=PauseReason(reason) if reason else None,
                signal_expiry=decimal_or_none(expiry))
        for grp, account, _seq in followers:
            state.groups.groups[grp].followers.append(account)
        for copy in state.copies.values():
            if copy.status is not CopyStatus.ENDED:
                state.groups.groups[copy.group].copies.add(copy.account)
        for grp, follower, symbol, ratio, sync, cross in settings:
            state.groups.groups[grp].settings[(follower, symbol)] = ContractSetting(
                int(ratio), bool(sync), cross)


def _orders_named(events: Iterable[BrokerEvent]) -> set[str]:
    """The order ids (and their parents) that broker events speak of."""
    ids: set[str | None] = set()
    for event in events:
        if isinstance(event, Fill):
            ids.update((event.order_id, event.parent_id))
        elif isinstance(event, OrderPlaced | OrderModified | OrderCancelled | OrderFailed):
            ids.update((event.order.id, event.order.parent_id))
    return {i for i in ids if i is not None}


def _faults(settings: FaultSettings) -> str:
    return json.dumps({"seed": settings.seed, "reject": str(settings.reject),
                       "timeout": str(settings.timeout),
                       "timeout_reached": str(settings.timeout_reached),
                       "partial": str(settings.partial)})


def _load_faults(text: str) -> FaultSettings:
    data = json.loads(text)
    return FaultSettings(int(data.get("seed", 0)), *(Decimal(data.get(k, "0")) for k in (
        "reject", "timeout", "timeout_reached", "partial")))


def _write(db: aiosqlite.Connection, steps: list[tuple[str, Rows]]) -> None:
    """A whole transaction on the connection's sqlite3 object (opened with
    `check_same_thread=False`; `Store._writer` keeps it to one thread at a time)."""
    conn: sqlite3.Connection = db._conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in steps:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
