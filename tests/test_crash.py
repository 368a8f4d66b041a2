"""Crash safety (issue 3, item 5): the engine is SIGKILLed mid-burst, over and over.

`tests/crash_worker.py` runs the engine with a store in a subprocess and
trades without pause: leader market orders for a group of six followers on
two brokers with different contract naming, and price moves. The test kills it
with SIGKILL at a random moment, 55 times (`SYNCTUI_LONG=1`: 500), on the same
database (the first kill comes as soon as the new database holds its world, still
all in the WAL); every third run kills itself in the gap between the brokers'
commit and the engine's. Every start reloads the open state and reconciles what
the kill left pending. The followers' brokers fail on the way (issue 10, item 7):
requests time out, half of them having reached the broker, and fills arrive in
pieces. Then the database must show, for every leader fill, exactly one order per
eligible follower and leg by client id (never two, never none), the fills of
each copy adding up to its quantity, and every synced follower must hold ratio x
the leader's position.

On a failure the database is left under pytest's `tmp_path` for inspection;
its path is in the message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from synctui.domain.clock import SystemClock
from synctui.domain.errors import RejectReason
from synctui.domain.groups import GroupStatus
from synctui.domain.orders import Side
from synctui.domain.position import split_fill
from synctui.engine.engine import copy_key
from synctui.engine.events import Failure
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.runner import build_world
from synctui.store.session import Session
from synctui.store.store import Store
from tests.conftest import scaled
from tests.crash_worker import (
    FOLLOWERS,
    GROUP,
    LEADER,
    POOR,
    RATIOS,
    SMART,
    SYMBOLS,
    SYNC_OFF,
    build,
)

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = scaled(55, 500)
SEED = 20260105
DELAY = (0.05, 0.6)  # seconds from a worker's first settled command to its SIGKILL
STARTUP_TIMEOUT = 30.0  # a worker silent this long after its start is stuck


@dataclass(frozen=True)
class Progress:
    """A worker's progress line: commands settled, timeouts met (and reached) so far."""

    settled: int
    timeouts: int
    reached: int

    @classmethod
    def parse(cls, line: str) -> Progress:
        settled, timeouts, reached = (int(n) for n in line.split())
        return cls(settled, timeouts, reached)


class Worker:
    """One run of the crash worker, its stdout read line by line on a thread."""

    def __init__(self, db: Path, seed: int, stderr: IO[str], kill_at: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(db), str(seed), str(kill_at)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
        self.stderr = stderr
        self.last = Progress(0, 0, 0)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _died(self) -> str:
        code = self.proc.wait(timeout=STARTUP_TIMEOUT)
        self.stderr.flush()
        return f"the worker exited by itself with status {code}:\n{self._stderr_text()}"

    def _stderr_text(self) -> str:
        return Path(self.stderr.name).read_text(encoding="utf-8")[-4000:]

    def next_line(self) -> str:
        try:
            line = self.lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            self.stderr.flush()
            raise AssertionError(f"the worker printed nothing for {STARTUP_TIMEOUT} s; its "
                                 f"stderr:\n{self._stderr_text()}") from None
        if line is None:
            raise AssertionError(self._died())
        return line

    def kill(self) -> Progress:
        """SIGKILL while it works; its last progress by then."""
        if self.proc.poll() is not None:
            raise AssertionError(self._died())
        self.proc.send_signal(signal.SIGKILL)
        return self._killed()

    def killed_itself(self) -> Progress:
        """Wait for the worker's own SIGKILL (its KILL_AT point); its last progress."""
        try:
            code = self.proc.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the worker never reached its kill point") from None
        if code != -signal.SIGKILL:
            raise AssertionError(self._died())
        return self._killed()

    def _killed(self) -> Progress:
        assert self.proc.wait(timeout=STARTUP_TIMEOUT) == -signal.SIGKILL
        self._reader.join(timeout=STARTUP_TIMEOUT)
        last = self.last
        while (line := self.lines.get_nowait()) is not None:
            last = Progress.parse(line)
        return last

    def progress(self) -> Progress:
        self.last = Progress.parse(self.next_line())
        return self.last

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Run:
    leader_fills: int  # in the database when this run started (the previous run's work)
    pending_intents: int  # left by the previous kill, reconciled by this start
    pending_events: int
    pending_held: int  # pending intents whose orders the brokers already hold
    kill_at: int = 0  # the fan-out after whose brokers' commit this run killed itself
    settled: int = 0  # commands settled (committed) before the kill
    timeouts: int = 0  # requests that timed out in this run (as far as it reported) ...
    reached: int = 0  # ... and of them, those that had reached the broker

    def ran(self, progress: Progress) -> None:
        self.settled, self.timeouts, self.reached = (
            progress.settled, progress.timeouts, progress.reached)


def crash_repeatedly(db: Path, log: Path) -> list[Run]:
    """KILLS runs on one database: every third one kills itself in the gap between
    the brokers' commit and the engine's (its KILL_AT point), the others are killed
    from here at a random moment."""
    rng = random.Random(SEED)
    runs: list[Run] = []
    with log.open("w", encoding="utf-8") as stderr:
        for index in range(KILLS):
            kill_at = rng.randint(1, 40) if index % 3 == 1 else 0
            worker = Worker(db, SEED + index, stderr, kill_at)
            try:
                start = worker.next_line().split()
                assert start[0] == "start", start
                run = Run(*(int(n) for n in start[1:]), kill_at=kill_at)
                if kill_at:
                    run.ran(worker.killed_itself())
                    runs.append(run)
                    continue
                assert worker.progress().settled == 1
                # The kill's moment, not a synchronisation. The first kill comes as soon as
                # the new database holds its world: all of it still in the WAL, the main
                # file not yet checkpointed. The others land anywhere in the burst.
                delay = rng.uniform(*DELAY)
                time.sleep(delay if index else 0)
                run.ran(worker.kill())
            except AssertionError as error:
                wal = db.with_name(db.name + "-wal")
                raise AssertionError(
                    f"start {index + 1} of {KILLS} (after {index} kills) failed; the database "
                    f"is left as the failed start left it: {db} ({db.stat().st_size} bytes, -wal "
                    f"{wal.stat().st_size if wal.exists() else 'absent'}); earlier starts: "
                    f"{runs[-3:]}\n{error}") from None
            finally:
                worker.stop()
            runs.append(run)
    return runs


@dataclass
class Outcome:
    pending_after_start: int
    leader_fills: int
    intents: int
    statuses: Counter[str]
    failures: Counter[tuple[str, str]]  # (account, reason)
    mismatches: list[str]
    split: int  # filled copies whose fill arrived in pieces (several fill rows)


Rows = list[tuple[Any, ...]]


async def inspect(db: Path) -> Outcome:
    """Start once more in-process (load and reconcile), then check every copy.

    Per SPEC 4 and 8: a leader market fill is copied once per synced follower and
    leg; a fill of a leader working order, or of a bracket leg, is not copied again
    to a follower holding its mirror or bracketed copy: that follower's own order
    filled at its own broker. Every mirror has the leader order's status, price and
    qty x ratio. The Smart Sync copy gets at most one market order per leader fill
    and leg, and exactly one per opening leg (SPEC 5). Only the poor follower's
    copies may fail, and only for margin; it and the copy are sized on their own, so
    the ratio x leader check covers the other followers.
    """
    store = await Store.open(db)
    try:
        session = await Session.start(store, SystemClock(), build)
        engine = session.world.engine

        async def rows(sql: str, *params: object) -> Rows:
            async with store.db.execute(sql, params) as cursor:
                return [tuple(r) for r in await cursor.fetchall()]

        mismatches: list[str] = []
        group = engine.group(GROUP)
        if group.status is not GroupStatus.ACTIVE:
            mismatches.append(f"group {GROUP} is {group.status} ({group.reason})")
        pending = len(engine.state.intents) + len(engine.pending_events)
        pending += int(str((await rows(
            "SELECT count(*) FROM intents WHERE status IN ('pending', 'submitted')"))[0][0]))
        (sub,), = await rows("SELECT sub FROM copies WHERE account = ?", SMART)
        sub = str(sub)

        intents = {str(k): (str(s), o) for k, s, o in await rows(
            "SELECT key, status, order_id FROM intents")}
        orders: dict[str, list[tuple[Any, ...]]] = {}
        for client_id, order_id, account, status, price, qty in await rows(
                "SELECT client_id, id, account, status, price, qty FROM orders "
                "WHERE client_id IS NOT NULL"):
            orders.setdefault(str(client_id), []).append(
                (order_id, account, status, price, qty))
        # A copy's fill may arrive in pieces (SPEC 9: partial): one row per piece.
        copy_fills: Counter[str] = Counter()
        copy_qty: dict[str, Decimal] = {}
        for client_id, qty in await rows(
                "SELECT client_id, qty FROM fills WHERE account != ? AND client_id IS NOT NULL",
                LEADER):
            copy_fills[str(client_id)] += 1
            copy_qty[str(client_id)] = copy_qty.get(str(client_id), Decimal(0)) + Decimal(
                str(qty))
        for client_id, count in await rows(
                "SELECT client_id, count(*) FROM orders WHERE client_id IS NOT NULL "
                "GROUP BY client_id HAVING count(*) > 1"):
            mismatches.append(f"{count} orders with the client id {client_id}")

        def filled_once(key: str, status: str, qty: object) -> str | None:
            """What is wrong with a copy's fills: none unless filled, and then pieces
            that add up to its quantity."""
            got = copy_qty.get(key, Decimal(0))
            if status != "filled":
                return f"{copy_fills[key]} fills of the {status} copy" if got else None
            if got != Decimal(str(qty)):
                return f"the filled copy of {qty} has fills of {got} ({copy_fills[key]} rows)"
            return None
        failures = Counter((str(a), str(r)) for a, r in await rows(
            "SELECT account, reason FROM failures"))
        bracketed: dict[tuple[str, str], set[str]] = {}
        for leader_order, follower, order_id in await rows("SELECT * FROM bracketed"):
            bracketed.setdefault((str(leader_order), str(follower)), set()).add(str(order_id))
        legs: dict[tuple[str, str], list[str]] = {}
        for parent, role, status in await rows(
                "SELECT parent_id, role, status FROM orders WHERE parent_id IS NOT NULL"):
            legs.setdefault((str(parent), str(role)), []).append(str(status))

        def check_sent(key: str, where: str, account: str) -> None:
            """One order for the intent's client id, its own, filled once (when filled)."""
            status, order_id = intents[key]
            sent = orders.get(key, [])
            if status == "sent":
                if [o[0] for o in sent] != [order_id]:
                    mismatches.append(f"{where}: intent sent as {order_id}, orders "
                                      f"with its client id: {sent}")
                elif sent[0][1] != account:
                    mismatches.append(f"{where}: order {order_id} is {sent[0][1]}'s")
                elif (wrong := filled_once(key, sent[0][2], sent[0][4])) is not None:
                    mismatches.append(f"{where}: {wrong}")
            elif status == "failed":
                if account != POOR:
                    mismatches.append(f"{where}: failed")
                elif len(sent) > 1 or (sent and sent[0][2] != "rejected"):
                    mismatches.append(f"{where}: failed, yet the broker has {sent}")
            else:
                mismatches.append(f"{where}: intent still {status}")

        leader_fills = await rows(
            "SELECT f.id, f.symbol, f.side, f.qty, f.position_before, f.order_id, o.type, "
            "o.parent_id, o.role FROM fills f LEFT JOIN orders o ON o.id = f.order_id "
            "WHERE f.account = ? AND f.cause != 'group_flatten' ORDER BY f.rowid", LEADER)
        expected: set[str] = set()
        for fill_id, symbol, side, qty, before, _order, kind, parent, role in leader_fills:
            signed = Decimal(str(qty)) if side == "buy" else -Decimal(str(qty))
            closed, opened = split_fill(Decimal(str(before)), signed)
            fill_legs = [leg for leg, size in (("close", closed), ("open", opened)) if size]
            on_own = parent is not None or kind in ("limit", "stop")  # mirrored or a bracket
            what = f"leader fill {fill_id} ({side} {qty} {symbol} {kind or 'flatten'})"
            for follower in [*FOLLOWERS, POOR, sub]:
                eligible = follower == sub or group.setting(follower, str(symbol)).sync
                for leg in ("close", "open"):
                    key = copy_key(str(fill_id), follower, leg)
                    where = f"{what}, {follower} {leg}"
                    if follower == POOR or (follower == sub and leg == "close"):
                        # sized on their own position: a close may be nothing to do
                        if key in intents:
                            expected.add(key)
                            check_sent(key, where, follower)
                        continue
                    wanted = eligible and leg in fill_legs and (follower == sub or not on_own)
                    if not wanted:
                        if key in intents:
                            mismatches.append(f"{where}: a copy that should not exist")
                        continue
                    expected.add(key)
                    if key not in intents:
                        mismatches.append(f"{where}: no copy (lost)")
                        continue
                    check_sent(key, where, follower)
                if follower in FOLLOWERS and eligible and parent is not None:
                    # a bracket exit fires at the follower's own broker (SPEC 4)
                    own = [status for copy in bracketed.get((str(parent), follower), ())
                           for status in legs.get((copy, str(role)), [])]
                    if own != ["filled"]:
                        mismatches.append(f"{what}: {follower}'s own {role} legs are {own}")

        # mirrors of the leader's working orders, placed when they rested (SPEC 4, 8)
        for order_id, symbol, status, price, qty in await rows(
                "SELECT id, symbol, status, price, qty FROM orders WHERE account = ? "
                "AND type != 'market' AND parent_id IS NULL", LEADER):
            catalog = str(symbol)  # orders hold catalog symbols
            for follower in [*FOLLOWERS, POOR]:
                key = copy_key(str(order_id), follower, "open")
                where = f"leader {status} order {order_id} ({qty} {catalog} @ {price}), " \
                        f"{follower}'s mirror"
                if not group.setting(follower, catalog).sync:
                    if key in intents or key in orders:
                        mismatches.append(f"{where}: exists, but sync is off")
                    continue
                if key not in intents:
                    mismatches.append(f"{where}: never placed")
                    continue
                expected.add(key)
                if follower == POOR:
                    check_sent(key, where, follower)
                    continue
                mirror = orders.get(key, [])
                ratio = group.setting(follower, catalog).ratio
                want = [(follower, status, price, str(Decimal(str(qty)) * ratio))]
                got = [(m[1], m[2], m[3], str(Decimal(str(m[4])))) for m in mirror]
                if got != want or intents[key][0] != "sent":
                    mismatches.append(f"{where}: {got} ({intents[key][0]}), want {want}")
                elif (wrong := filled_once(key, status, mirror[0][4])) is not None:
                    mismatches.append(f"{where}: {wrong}")

        stray = sorted(set(intents) - expected)
        if stray:
            mismatches.append(f"{len(stray)} intents belong to no leader fill or order, "
                              f"e.g. {stray[0]}")
        unknown = sorted(set(orders) - expected)
        if unknown:
            mismatches.append(f"{len(unknown)} follower orders belong to no leader fill, "
                              f"e.g. client id {unknown[0]}: {orders[unknown[0]]}")
        unknown = sorted(set(copy_fills) - expected)
        if unknown:
            mismatches.append(f"{len(unknown)} follower fills belong to no leader fill, "
                              f"e.g. client id {unknown[0]}")

        lead_broker = engine.broker_of(LEADER)
        for symbol in SYMBOLS:
            lead = lead_broker.position(LEADER, lead_broker.symbols.native(symbol))
            for follower in FOLLOWERS:
                broker = engine.broker_of(follower)
                held = broker.position(follower, broker.symbols.native(symbol))
                ratio = group.setting(follower, symbol).ratio
                assert ratio == RATIOS.get((follower, symbol), 1)
                want = Decimal(0) if (follower, symbol) in SYNC_OFF else ratio * lead
                if held != want:
                    mismatches.append(f"{follower} holds {held} {symbol}, expected {want} "
                                      f"(leader {lead}, ratio {ratio})")
            broker = engine.broker_of(sub)
            copied = broker.position(sub, broker.symbols.native(symbol))
            if (copied > 0) - (copied < 0) not in (0, (lead > 0) - (lead < 0)) or (
                    lead == 0 and copied != 0):
                mismatches.append(f"the Smart Sync copy holds {copied} {symbol}, "
                                  f"the leader {lead}")
        return Outcome(pending, len(leader_fills), len(intents),
                       Counter(s for s, _ in intents.values()), failures, mismatches,
                       sum(1 for n in copy_fills.values() if n > 1))
    finally:
        await store.close()


def test_sigkill_mid_burst_with_faulty_brokers_leaves_exactly_one_copy_per_follower(
        tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    began = time.monotonic()
    runs = crash_repeatedly(db, tmp_path / "worker-stderr.log")
    outcome = asyncio.run(inspect(db))
    elapsed = time.monotonic() - began
    where = f"(database left at {db}, worker stderr in {tmp_path / 'worker-stderr.log'})"

    # the random kills landed mid-work: each such run committed new leader fills ...
    after = [run.leader_fills for run in runs[1:]] + [outcome.leader_fills]
    assert runs[0].leader_fills == 0
    grew = [b > a for a, b in zip([0, *after], after, strict=False)]
    assert all(g for g, run in zip(grew, runs, strict=True) if not run.kill_at), (after, where)
    # ... and some fell inside a fan-out, leaving work that a restart completed
    interrupted = [i for i, run in enumerate(runs)
                   if run.pending_intents or run.pending_events]
    assert interrupted, f"no kill left pending work: {runs} {where}"
    # Every kill at a KILL_AT point fell between the brokers' commit and the engine's:
    # the next start found intents still pending whose orders the brokers held, and
    # resolved them by client order id (checked below: one order each, no failure).
    gaps = [(run, nxt) for run, nxt in itertools.pairwise(runs) if run.kill_at]
    assert gaps and all(nxt.pending_held for _run, nxt in gaps), (gaps, where)

    # the followers' brokers did fail on the way: timeouts of both kinds, fills in pieces
    timeouts, reached = sum(r.timeouts for r in runs), sum(r.reached for r in runs)
    assert 0 < reached < timeouts, (timeouts, reached, where)
    assert outcome.split, f"no copy filled in pieces {where}"

    assert outcome.pending_after_start == 0, where
    assert outcome.statuses.keys() <= {"sent", "failed"}, (outcome.statuses, where)
    # No copy failed but the poor follower's, for margin, with the broker's own reason:
    # a re-sent intent would fail as "duplicate client order id" (reason `rejected`).
    assert set(outcome.failures) <= {(POOR, "insufficient_margin")}, (outcome.failures, where)
    assert not outcome.mismatches, (
        f"{len(outcome.mismatches)} mismatches over {outcome.leader_fills} leader fills and "
        f"{outcome.intents} copies {dict(outcome.statuses)} {where}; first ones:\n"
        + "\n".join(outcome.mismatches[:10]))
    print(f"\n{KILLS} kills ({len(gaps)} in the gap) in {elapsed:.1f} s: "
          f"{outcome.leader_fills} leader fills, {outcome.intents} copies "
          f"{dict(outcome.statuses)}, failures {dict(outcome.failures)}, {timeouts} "
          f"timeouts ({reached} reached the broker), {outcome.split} copies filled in "
          f"pieces, "
          f"{len(interrupted)} restarts reconciled pending work "
          f"({sum(r.pending_intents for r in runs)} intents, "
          f"{sum(r.pending_held for r in runs)} of them held by a broker, "
          f"{sum(r.pending_events for r in runs)} events)")


# --- the gap between the brokers' commit and the engine's, in-process ------------------

GAP_SPEC = {
    "prices": {"MNQ": "21000"},
    "accounts": [{"id": "lead", "balance": 1_000_000}, {"id": "rich", "balance": 1_000_000},
                 {"id": "poor", "balance": 50}],  # MNQ takes 100 margin per contract
    "groups": [{"name": "G", "leader": "lead", "followers": ["rich", "poor"]}],
}


def _gap_world() -> World:
    return build_world(parse_scenario(json.dumps(GAP_SPEC)), SystemClock())


async def _fan_out_then_die(db: Path) -> list[Failure]:
    """A leader order's fan-out reaches the brokers, whose side is committed; then the
    process dies before the engine records the outcomes. Returns the failures the
    uninterrupted run recorded (in memory), to compare with what a restart records."""
    store = await Store.open(db)
    session = await Session.start(store, SystemClock(), _gap_world)
    world = session.world
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=Decimal(2))
    await store.save(world)  # the leader fill and its two intents
    world.engine.dispatch()  # rich's copy fills; poor's is rejected (margin)
    await store.save_venue(world)
    failures = list(world.engine.state.failures)
    await store.close()  # the "kill": the journal of the fan-out never reaches the file
    return failures


async def _restart_after_gap(db: Path) -> tuple[list[tuple[Any, ...]], Session, Store]:
    store = await Store.open(db)
    async with store.db.execute(
            "SELECT i.status, o.account, o.status, o.reject_reason FROM intents i "
            "LEFT JOIN orders o ON o.client_id = i.key ORDER BY i.seq") as cursor:
        before = [tuple(r) for r in await cursor.fetchall()]
    session = await Session.start(store, SystemClock(), _gap_world)
    return before, session, store


def test_a_restart_in_the_gap_resolves_intents_by_client_id_and_keeps_reject_reasons(
        tmp_path: Path) -> None:
    """Killed after the brokers' commit and before the engine's: both intents are still
    pending while the brokers hold their orders (rich's filled, poor's rejected for
    margin). The restart must neither send them again nor call rich's copy failed, and
    must report poor's failure with the broker's own reason and message."""
    db = tmp_path / "gap.db"

    async def run() -> None:
        lost = await _fan_out_then_die(db)
        assert [(f.account, f.reason) for f in lost] == [
            ("poor", RejectReason.INSUFFICIENT_MARGIN)]
        before, session, store = await _restart_after_gap(db)
        try:
            assert sorted(before) == [("pending", "poor", "rejected", "insufficient_margin"),
                                      ("pending", "rich", "filled", None)]
            engine = session.world.engine
            assert [(f.account, f.reason, f.message) for f in engine.state.failures] == [
                (f.account, f.reason, f.message) for f in lost]
            async with store.db.execute(
                    "SELECT i.status, count(o.id) FROM intents i "
                    "LEFT JOIN orders o ON o.client_id = i.key GROUP BY i.key") as cursor:
                outcomes = sorted(tuple(r) for r in await cursor.fetchall())
            assert outcomes == [("failed", 1), ("sent", 1)]  # one order each, no second
            async with store.db.execute(
                    "SELECT account, reason FROM failures") as cursor:
                assert [tuple(r) for r in await cursor.fetchall()] == [
                    ("poor", "insufficient_margin")]
            rich = engine.broker_of("rich")
            assert rich.position("rich", "MNQ") == Decimal(2)
        finally:
            await store.close()

    asyncio.run(run())
