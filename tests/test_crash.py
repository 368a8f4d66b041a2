"""Crash safety (issue 3, item 5): the engine is SIGKILLed mid-burst, over and over.

`tests/crash_worker.py` runs the engine with a store in a subprocess and
trades without pause: leader market orders for a group of six followers on
two brokers with different contract naming, and price moves. The test kills it
with SIGKILL at a random moment, 55 times, on the same database (the first kill
comes as soon as the new database holds its world, still all in the WAL); every
start reloads the open state and reconciles what the kill left pending.
Then the database must show, for every leader fill, exactly one copy per
eligible follower (never two, never none), and every synced follower must hold
ratio x the leader's position.

On a failure the database is left under pytest's `tmp_path` for inspection;
its path is in the message.
"""

from __future__ import annotations

import asyncio
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
from tests.crash_worker import FOLLOWERS, GROUP, LEADER, RATIOS, SYMBOLS, SYNC_OFF, build

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 55
SEED = 20260105
DELAY = (0.05, 0.6)  # seconds from a worker's first settled command to its SIGKILL
STARTUP_TIMEOUT = 30.0  # a worker silent this long after its start is stuck


class Worker:
    """One run of the crash worker, its stdout read line by line on a thread."""

    def __init__(self, db: Path, seed: int, stderr: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(db), str(seed)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
        self.stderr = stderr
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
            raise AssertionError(
                f"the worker printed nothing for {STARTUP_TIMEOUT} s") from None
        if line is None:
            raise AssertionError(self._died())
        return line

    def kill(self) -> int:
        """SIGKILL while it works; the number of commands it had settled by then."""
        if self.proc.poll() is not None:
            raise AssertionError(self._died())
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=STARTUP_TIMEOUT) == -signal.SIGKILL
        self._reader.join(timeout=STARTUP_TIMEOUT)
        settled = 1  # the caller read the first progress line
        while (line := self.lines.get_nowait()) is not None:
            settled = int(line)
        return settled

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Run:
    leader_fills: int  # in the database when this run started (the previous run's work)
    pending_intents: int  # left by the previous kill, reconciled by this start
    pending_events: int
    settled: int = 0  # commands settled (committed) before the kill


def crash_repeatedly(db: Path, log: Path) -> list[Run]:
    rng = random.Random(SEED)
    runs: list[Run] = []
    with log.open("w", encoding="utf-8") as stderr:
        for index in range(KILLS):
            worker = Worker(db, SEED + index, stderr)
            try:
                start = worker.next_line().split()
                assert start[0] == "start", start
                run = Run(*(int(n) for n in start[1:]))
                assert worker.next_line() == "1"  # its first leader order is committed
                # The kill's moment, not a synchronisation. The first kill comes as soon as
                # the new database holds its world: all of it still in the WAL, the main
                # file not yet checkpointed. The others land anywhere in the burst.
                delay = rng.uniform(*DELAY)
                time.sleep(delay if index else 0)
                run.settled = worker.kill()
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
    mismatches: list[str]


async def inspect(db: Path) -> Outcome:
    """Start once more in-process (load and reconcile), then check every copy."""
    store = await Store.open(db)
    try:
        session = await Session.start(store, SystemClock(), build)
        engine = session.world.engine

        async def rows(sql: str, *params: object) -> list[tuple[object, ...]]:
            async with store.db.execute(sql, params) as cursor:
                return [tuple(r) for r in await cursor.fetchall()]

        mismatches: list[str] = []
        group = engine.group(GROUP)
        if group.status is not GroupStatus.ACTIVE:
            mismatches.append(f"group {GROUP} is {group.status} ({group.reason})")
        pending = len(engine.state.intents) + len(engine.pending_events)
        pending += int(str((await rows(
            "SELECT count(*) FROM intents WHERE status = 'pending'"))[0][0]))

        intents = {str(k): (str(s), o) for k, s, o in await rows(
            "SELECT key, status, order_id FROM intents")}
        orders: dict[str, list[tuple[object, ...]]] = {}
        for client_id, order_id, account, status in await rows(
                "SELECT client_id, id, account, status FROM orders WHERE client_id IS NOT NULL"):
            orders.setdefault(str(client_id), []).append((order_id, account, status))
        copy_fills = Counter(str(c) for (c,) in await rows(
            "SELECT client_id FROM fills WHERE account != ? AND client_id IS NOT NULL", LEADER))

        leader_fills = await rows(
            "SELECT id, symbol, side, qty, position_before FROM fills "
            "WHERE account = ? AND cause != 'group_flatten' ORDER BY rowid", LEADER)
        expected: set[str] = set()
        for fill_id, symbol, side, qty, before in leader_fills:
            signed = Decimal(str(qty)) if side == "buy" else -Decimal(str(qty))
            closed, opened = split_fill(Decimal(str(before)), signed)
            legs = [leg for leg, size in (("close", closed), ("open", opened)) if size]
            for follower in FOLLOWERS:
                eligible = group.setting(follower, str(symbol)).sync
                for leg in ("close", "open"):
                    key = copy_key(str(fill_id), follower, leg)
                    where = f"leader fill {fill_id} ({side} {qty} {symbol}), {follower} {leg}"
                    if not (eligible and leg in legs):
                        if key in intents:
                            mismatches.append(f"{where}: a copy that should not exist")
                        continue
                    expected.add(key)
                    if key not in intents:
                        mismatches.append(f"{where}: no copy (lost)")
                        continue
                    status, order_id = intents[key]
                    sent = orders.get(key, [])
                    if status == "sent":
                        if [o[0] for o in sent] != [order_id]:
                            mismatches.append(f"{where}: intent sent as {order_id}, orders "
                                              f"with its client id: {sent}")
                        elif sent[0][1] != follower:
                            mismatches.append(f"{where}: order {order_id} is {sent[0][1]}'s")
                        elif copy_fills[key] != 1:
                            mismatches.append(f"{where}: {copy_fills[key]} fills of the copy")
                    elif status == "failed":
                        if sent and sent[0][2] != "rejected":
                            mismatches.append(f"{where}: failed, yet the broker has {sent}")
                    else:
                        mismatches.append(f"{where}: intent still {status}")
        stray = sorted(set(intents) - expected)
        if stray:
            mismatches.append(f"{len(stray)} intents belong to no leader fill, e.g. {stray[0]}")
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
        return Outcome(pending, len(leader_fills), len(intents),
                       Counter(s for s, _ in intents.values()), mismatches)
    finally:
        await store.close()


def test_sigkill_mid_burst_55_times_leaves_exactly_one_copy_per_follower(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    began = time.monotonic()
    runs = crash_repeatedly(db, tmp_path / "worker-stderr.log")
    outcome = asyncio.run(inspect(db))
    elapsed = time.monotonic() - began
    where = f"(database left at {db}, worker stderr in {tmp_path / 'worker-stderr.log'})"

    # the kills landed mid-work: every run committed new leader fills before its kill ...
    fills = [run.leader_fills for run in runs[1:]] + [outcome.leader_fills]
    assert runs[0].leader_fills == 0
    assert all(b > a for a, b in zip([0, *fills], fills, strict=False)), (fills, where)
    # ... and some kills fell inside a fan-out, leaving work that a restart completed
    interrupted = [i for i, run in enumerate(runs)
                   if run.pending_intents or run.pending_events]
    assert interrupted, f"no kill left pending work: {runs} {where}"

    assert outcome.pending_after_start == 0, where
    assert outcome.statuses.keys() <= {"sent", "failed"}, (outcome.statuses, where)
    assert not outcome.mismatches, (
        f"{len(outcome.mismatches)} mismatches over {outcome.leader_fills} leader fills and "
        f"{outcome.intents} copies {dict(outcome.statuses)} {where}; first ones:\n"
        + "\n".join(outcome.mismatches[:10]))
    print(f"\n{KILLS} kills in {elapsed:.1f} s: {outcome.leader_fills} leader fills, "
          f"{outcome.intents} copies {dict(outcome.statuses)}, {len(interrupted)} restarts "
          f"reconciled pending work "
          f"({sum(r.pending_intents for r in runs)} intents, "
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
