"""The SQLite store (SPEC 6, 7): files that are not ours are refused and left
byte-identical, one synctui per database, versioned migrations, a world that
comes back exactly from the database, the outbox (one transaction per fan-out,
exactly one outcome per follower, start-up reconciliation that never sends a
copy twice), `replay --db`, and the event log.

Every database here is a real file under `tmp_path`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from synctui.brokers.base import AccountView, OrderRequest
from synctui.brokers.sim import SimBroker
from synctui.cli import main
from synctui.domain.clock import SteppingClock
from synctui.domain.errors import RejectReason
from synctui.domain.groups import ContractSetting, GroupStatus, PauseReason
from synctui.domain.orders import MarginMode, OrderType, Side
from synctui.engine.events import Failure
from synctui.engine.world import World
from synctui.scenario.model import parse_scenario
from synctui.scenario.report import report
from synctui.scenario.runner import build_world, replay_in_memory, replay_with_store
from synctui.store.database import Lock, StoreError, real_path
from synctui.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from synctui.store.session import Session
from synctui.store.store import Store

D = Decimal


# --- helpers -------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sidecars(path: Path) -> set[str]:
    """The SQLite files that may sit beside a database (journal, WAL, shared memory)."""
    return {p.name for p in path.parent.iterdir()
            if p.name in {f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"}}


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read a closed database with plain sqlite3 (the test's own eyes)."""
    with closing(sqlite3.connect(path)) as db:
        return list(db.execute(sql, params).fetchall())


def exact(rows: list[tuple[Any, ...]], *columns: int) -> list[tuple[Any, ...]]:
    """Rows with the given columns (stored as TEXT) read back as Decimals."""
    return [tuple(D(v) if i in columns else v for i, v in enumerate(row)) for row in rows]


def never_build() -> World:
    raise AssertionError("an existing database must be loaded, not built anew")


def world_of(scenario: dict[str, Any] | str, clock: SteppingClock) -> World:
    text = scenario if isinstance(scenario, str) else json.dumps(scenario)
    return build_world(parse_scenario(text), clock)


async def start(path: Path, clock: SteppingClock,
                build: Callable[[], World] = never_build) -> tuple[Store, Session]:
    store = await Store.open(path)
    session = await Session.start(store, clock, build)
    return store, session


def views(world: World) -> dict[str, AccountView]:
    return {a: world.engine.broker_of(a).view(a) for a in world.engine.state.accounts}


def native(world: World, account: str, symbol: str) -> str:
    return world.engine.broker_of(account).symbols.native(symbol)


def qty(world: World, account: str, symbol: str) -> Decimal:
    """Signed position of `account` in the catalog `symbol`."""
    return world.engine.broker_of(account).position(account, native(world, account, symbol))


def sim(world: World, account: str) -> SimBroker:
    broker = world.engine.broker_of(account)
    assert isinstance(broker, SimBroker)
    return broker


SMALL: dict[str, Any] = {
    "prices": {"MNQ": 21000},
    "accounts": [
        {"id": "lead", "balance": 50000},
        {"id": "f1", "balance": 20000},
        {"id": "f2", "balance": 20000},
    ],
    "groups": [{"name": "G", "leader": "lead", "followers": ["f1", "f2"]}],
    "steps": [
        {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 2},
    ],
}


async def make_database(path: Path) -> None:
    """A real synctui database holding a small desk with one fill copied."""
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    try:
        session.world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(2))
        await session.settle()
    finally:
        await store.close()


# --- files that are not ours ------------------------------------------------------------


def text_file(path: Path) -> None:
    path.write_text("accounts:\n  - lead\n  - f1\nthis is somebody's notes, not a database\n")


def random_binary(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def other_application(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE recipes (name TEXT PRIMARY KEY, minutes INTEGER)")
        db.execute("INSERT INTO recipes VALUES ('soup', 40)")
        db.commit()


def bump_version(path: Path, version: int) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()


def newer_synctui(path: Path) -> None:
    asyncio.run(make_database(path))
    bump_version(path, SCHEMA_VERSION + 1)


def corrupt_synctui(path: Path) -> None:
    asyncio.run(make_database(path))
    size = path.stat().st_size
    page = 4096
    assert size >= 12 * page  # a real database with pages in the middle to damage
    with path.open("r+b") as handle:
        handle.seek(4 * page)
        handle.write(bytes(range(256)) * (6 * page // 256))


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "text": (text_file, "not a synctui database"),
    "binary": (random_binary, "not a synctui database"),
    "other_sqlite": (other_application, "not a synctui database"),
    "newer": (newer_synctui, "newer synctui"),
    "corrupt": (corrupt_synctui, "corrupt"),
}


@pytest.fixture(params=sorted(BAD_FILES))
def bad_file(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    make, words = BAD_FILES[request.param]
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "desk.db"
    make(path)
    assert sidecars(path) == set()  # what we made is closed and checkpointed
    yield path, words


def assert_untouched(path: Path, digest: str, size: int, before: set[str]) -> None:
    assert sha256(path) == digest
    assert path.stat().st_size == size
    assert sidecars(path) == set(), f"the refusal left {sorted(sidecars(path))} beside it"
    after = {p.name for p in path.parent.iterdir()}
    assert after - before <= {f"{path.name}.lock"}


async def test_a_file_that_is_not_a_usable_database_is_refused_and_left_untouched(
        bad_file: tuple[Path, str]) -> None:
    path, words = bad_file
    digest, size = sha256(path), path.stat().st_size
    before = {p.name for p in path.parent.iterdir()}
    with pytest.raises(StoreError) as refused:
        await Store.open(path)
    message = str(refused.value)
    assert words in message
    assert str(path) in message
    assert_untouched(path, digest, size, before)
    # refusing twice is the same refusal: nothing was half-done the first time
    with pytest.raises(StoreError, match=words):
        await Store.open(path)
    assert_untouched(path, digest, size, before)


def test_the_cli_refuses_a_bad_database_with_exit_2_and_one_line(
        bad_file: tuple[Path, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, words = bad_file
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SMALL))
    digest, size = sha256(path), path.stat().st_size
    before = {p.name for p in path.parent.iterdir()}
    code = main(["replay", str(scenario), "--json", "--db", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("synctui: ")
    assert words in lines[0]
    assert "Traceback" not in captured.err
    assert_untouched(path, digest, size, before)


def test_the_refused_files_really_are_what_they_claim(tmp_path: Path) -> None:
    """The fixtures' other SQLite file and the newer database are valid SQLite: the
    refusal is about whose and which version they are, not about damage."""
    other = tmp_path / "other.db"
    other_application(other)
    assert query(other, "SELECT name, minutes FROM recipes") == [("soup", 40)]
    newer = tmp_path / "newer.db"
    newer_synctui(newer)
    assert query(newer, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert query(newer, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert query(newer, "PRAGMA quick_check") == [("ok",)]


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "desk.db"
    folder.mkdir()
    with pytest.raises(StoreError, match="directory"):
        await Store.open(folder)
    assert list(folder.iterdir()) == []


# --- a new database ------------------------------------------------------------------------


async def test_a_new_database_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "nested" / "synctui.db"
    store = await Store.open(path)
    try:
        assert store.fresh
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        async with store.db.execute("PRAGMA journal_mode") as cursor:
            assert await cursor.fetchone() == ("wal",)
    finally:
        await store.close()
    # still WAL (a persistent setting) and still private once written to and closed
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_the_files_beside_a_database_written_by_a_session_are_private(
        tmp_path: Path) -> None:
    path = tmp_path / "desk" / "synctui.db"
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    try:
        session.world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
        await session.settle()
        for sibling in path.parent.iterdir():
            assert stat.S_IMODE(sibling.stat().st_mode) & 0o077 == 0, sibling.name
    finally:
        await store.close()


async def test_migrations_bring_a_new_database_to_the_current_version_once(
        tmp_path: Path) -> None:
    path = tmp_path / "synctui.db"
    store = await Store.open(path)
    await store.close()
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    tables = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"accounts", "groups", "follower_settings", "orders", "fills", "positions",
            "failures", "intents", "event_log", "brokers", "copies"} <= tables
    assert query(path, "SELECT key, value FROM meta") == [("next_copy", "1")]
    # a mark the migrations would wipe or duplicate if they ran again
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE meta SET value = '41' WHERE key = 'next_copy'")
        db.commit()
    schema = query(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    store = await Store.open(path)
    assert store.fresh  # no world was saved yet
    await store.close()
    assert query(path, "SELECT key, value FROM meta") == [("next_copy", "41")]
    assert query(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_an_older_database_is_migrated_forward_keeping_its_data(tmp_path: Path) -> None:
    assert SCHEMA_VERSION >= 2
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(MIGRATIONS[0])
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO event_log (at, actor, kind, detail) "
                   "VALUES ('2026-01-05T14:30:00+00:00', 'app', 'start', 'from version 1')")
        db.commit()
    store = await Store.open(path)
    await store.close()
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert query(path, "SELECT count(*) FROM copies") == [(0,)]
    assert query(path, "SELECT value FROM meta WHERE key = 'next_copy'") == [("1",)]
    assert query(path, "SELECT actor, kind, detail FROM event_log") == [
        ("app", "start", "from version 1")]


async def test_schema_6_gives_the_open_intents_of_an_older_database_their_group(
        tmp_path: Path) -> None:
    """Schema 6 reads a copy's group from its intent. An open intent of an older
    database may still be accepted after the upgrade, so the migration gives it its
    group from its body: the object of the first versions, or the array
    `[2, group, ...]` of later ones. A done intent keeps none: its link is in
    `copy_orders`."""
    from synctui.store.codec import dump_request

    path = tmp_path / "old.db"
    request = OrderRequest(symbol="MNQZ6", side=Side.BUY, qty=D(1), client_id="k1")
    with closing(sqlite3.connect(path)) as db:
        for script in MIGRATIONS[:5]:
            db.executescript(script)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 5")
        db.executemany("INSERT INTO intents VALUES (?, ?, ?, ?, ?)", [
            ("k1", 1, json.dumps({"group": "Gr\u00fcppe \u2603", "follower": "f1",
                                  "symbol": "MNQ", "request": dump_request(request),
                                  "mirror_of": None, "bracket_of": None, "at": None,
                                  "since": None}), "pending", None),
            ("k2", 2, json.dumps([2, "B", "f2", "MNQ", "MNQZ6", "buy", "1", "market", None,
                                  False, None, None, None, None, None, None]),
             "submitted", None),
            ("k3", 3, json.dumps({"group": "C"}), "sent", "px-1"),
            ("k4", 4, json.dumps([2, "D"]), "failed", None)])
        db.commit()
    store = await Store.open(path)
    await store.close()
    assert query(path, "SELECT key, grp FROM intents ORDER BY seq") == [
        ("k1", "Gr\u00fcppe \u2603"), ("k2", "B"), ("k3", None), ("k4", None)]


# --- one synctui per database ---------------------------------------------------------


async def test_a_second_synctui_on_the_same_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "synctui.db"
    first = await Store.open(path)
    try:
        with pytest.raises(StoreError, match="another synctui") as refused:
            await Store.open(path)
        assert str(path) in str(refused.value)
        # the first one is unharmed by the refusal and still writes
        async with first.db.execute("PRAGMA user_version") as cursor:
            assert await cursor.fetchone() == (SCHEMA_VERSION,)
    finally:
        await first.close()
    second = await Store.open(path)
    await second.close()
    third = await Store.open(path)
    await third.close()


async def test_a_second_synctui_is_refused_through_the_cli_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "synctui.db"
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SMALL))
    first = await Store.open(path)
    try:
        code = await asyncio.to_thread(
            main, ["replay", str(scenario), "--json", "--db", str(path)])
    finally:
        await first.close()
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "another synctui" in lines[0]
    assert "Traceback" not in captured.err


async def test_the_lock_is_released_when_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "synctui.db"
    await make_database(path)
    bump_version(path, SCHEMA_VERSION + 1)
    for _ in range(2):
        with pytest.raises(StoreError, match="newer synctui"):
            await Store.open(path)
    # a refusal holds nothing: the file, put back, opens at once
    bump_version(path, SCHEMA_VERSION)
    store = await Store.open(path)
    assert not store.fresh
    await store.close()


# --- the round trip -----------------------------------------------------------------------

DESK = """
{
  "prices": {"MNQ": 21000, "ES": 6000, "BTCUSDT": 50000, "ETHUSDT": 3000},
  "brokers": {
    "tv": {"naming": "tradovate", "fee_per_contract": 0.5},
    "px": {"naming": "projectx", "fee_per_contract": 0.25, "slippage_ticks": 1}
  },
  "accounts": [
    {"id": "lead", "broker": "tv", "balance": 100000},
    {"id": "f1", "broker": "px", "balance": 50000},
    {"id": "f2", "broker": "tv", "balance": 50000},
    {"id": "poor", "broker": "px", "balance": 150},
    {"id": "boss", "broker": "px", "balance": 10000, "risk": {"daily_loss_limit": 50}},
    {"id": "bf", "broker": "tv", "balance": 10000}
  ],
  "groups": [
    {"name": "G", "leader": "lead", "followers": ["f1", "f2", "poor"]},
    {"name": "B", "leader": "boss", "followers": ["bf"]}
  ]
}
"""


async def build_desk(path: Path, clock: SteppingClock) -> tuple[Store, Session, dict[str, str]]:
    """Two brokers with different naming, perps (isolated, leveraged) and futures, ratios,
    crosses and sync settings, working orders with brackets mirrored to followers, a
    failure, a breached leader and fees, all driven through a session on `path`."""
    store, session = await start(path, clock, lambda: world_of(DESK, clock))
    world = session.world
    engine = world.engine
    ids: dict[str, str] = {}
    engine.set_ratio("G", "f1", "MNQ", 3)
    engine.set_cross("G", "f2", "MNQ", "NQ")
    engine.set_cross("G", "f2", "ES", "MES")
    engine.set_sync("G", "poor", "BTCUSDT", False)
    sim(world, "f1").set_margin_mode("f1", native(world, "f1", "BTCUSDT"), MarginMode.ISOLATED)
    engine.set_leverage("f1", "BTCUSDT", 20)
    await session.settle()
    # f1 +6 MNQ, f2 +2 NQ; poor cannot afford 2 MNQ (200 margin on 150): a failure
    engine.place_order("lead", "MNQ", Side.BUY, qty=D(2))
    await session.settle()
    # an isolated 5x perp entry with brackets, copied with its brackets (not to poor)
    ids["btc"] = engine.place_order(
        "lead", "BTCUSDT", Side.BUY, qty=D("0.1"), leverage=5,
        margin_mode=MarginMode.ISOLATED, stop_loss=D(49000), take_profit=D(52000))
    await session.settle()
    engine.adjust_margin("lead", "BTCUSDT", D(100))
    await session.settle()
    # a working entry with brackets, mirrored (f2 trades MES for ES)
    ids["es"] = engine.place_order("lead", "ES", Side.BUY, qty=D(1), type=OrderType.LIMIT,
                                   price=D(5990), stop_loss=D(5980), take_profit=D(6010))
    await session.settle()
    # a working add and a working reduce, mirrored with ratio / proportionally
    ids["add"] = engine.place_order("lead", "MNQ", Side.BUY, qty=D(1), type=OrderType.LIMIT,
                                    price=D(20990))
    await session.settle()
    ids["reduce"] = engine.place_order("lead", "MNQ", Side.SELL, qty=D(1),
                                       type=OrderType.LIMIT, price=D(21100))
    await session.settle()
    # group B: its leader breaches its daily loss limit; the flatten is copied; B pauses
    engine.place_order("boss", "ETHUSDT", Side.BUY, qty=D(1))
    await session.settle()
    engine.set_price("ETHUSDT", D(2940))
    await session.settle()
    return store, session, ids


def test_the_desk_is_what_build_desk_says(tmp_path: Path) -> None:
    """Guards the round trip's premises: each feature really is in the desk."""

    async def check() -> None:
        clock = SteppingClock()
        store, session, ids = await build_desk(tmp_path / "desk.db", clock)
        try:
            world = session.world
            v = views(world)
            assert qty(world, "lead", "MNQ") == D(2)
            assert qty(world, "f1", "MNQ") == D(6)
            assert qty(world, "f2", "NQ") == D(2)
            assert qty(world, "poor", "MNQ") == D(0)
            assert qty(world, "f1", "BTCUSDT") == D("0.1")
            assert qty(world, "f2", "BTCUSDT") == D("0.1")
            assert qty(world, "poor", "BTCUSDT") == D(0)
            lead_btc = next(p for p in v["lead"].positions if p.symbol == "BTCUSDT")
            assert (lead_btc.leverage, lead_btc.margin_mode) == (5, MarginMode.ISOLATED)
            assert lead_btc.margin == D(1100)  # 0.1 x 50000 / 5 + 100 added
            f1_btc = next(p for p in v["f1"].positions if p.symbol == "BTC-USDT-SWAP")
            # px slips one tick: 50000.1; isolated 20x
            assert f1_btc.avg_price == D("50000.1")
            assert (f1_btc.leverage, f1_btc.margin_mode) == (20, MarginMode.ISOLATED)
            assert f1_btc.margin == D("0.1") * D("50000.1") / 20
            assert [p.symbol for p in v["f1"].positions] == ["CON.F.US.MNQ.Z26",
                                                              "BTC-USDT-SWAP"]
            assert v["lead"].fees == D("1.05")  # 2 MNQ + 0.1 BTC at 0.5
            assert v["f1"].fees == D("1.525")  # 6 MNQ + 0.1 BTC at 0.25
            # working orders mirrored, brackets on the entries
            f1_orders = {(o.symbol, o.side, o.type, o.qty, o.price, o.reduce_only)
                         for o in v["f1"].orders}
            assert ("CON.F.US.ES.Z26", Side.BUY, OrderType.LIMIT, D(1), D(5990),
                    False) in f1_orders
            assert ("CON.F.US.MNQ.Z26", Side.BUY, OrderType.LIMIT, D(3), D(20990),
                    False) in f1_orders
            assert ("CON.F.US.MNQ.Z26", Side.SELL, OrderType.LIMIT, D(3), D(21100),
                    True) in f1_orders
            assert ("BTC-USDT-SWAP", Side.SELL, OrderType.STOP, D("0.1"), D(49000),
                    True) in f1_orders
            assert ("BTC-USDT-SWAP", Side.SELL, OrderType.LIMIT, D("0.1"), D(52000),
                    True) in f1_orders
            f2_es = [o for o in v["f2"].orders if o.symbol == "MESZ6"]
            assert [(o.qty, o.price, o.stop_loss, o.take_profit) for o in f2_es] == [
                (D(1), D(5990), D(5980), D(6010))]
            assert [(f.group, f.account, f.symbol, f.reason)
                    for f in world.engine.state.failures] == [
                ("G", "poor", "MNQ", RejectReason.INSUFFICIENT_MARGIN)]
            assert v["boss"].breached == "daily_loss_limit"
            assert v["boss"].positions == ()
            assert qty(world, "bf", "ETHUSDT") == D(0)
            assert sim(world, "bf").account_state("bf").realized == D(-60)
            group_b = world.engine.group("B")
            assert (group_b.status, group_b.reason) == (GroupStatus.PAUSED,
                                                        PauseReason.LEADER_BREACHED)
            assert sim(world, "lead").order(ids["es"]) is not None
            assert sim(world, "lead").order(ids["add"]) is not None
            assert sim(world, "lead").order(ids["reduce"]) is not None
        finally:
            await store.close()

    asyncio.run(check())


async def test_a_reloaded_world_equals_the_one_that_was_saved(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    clock = SteppingClock()
    store, session, _ids = await build_desk(path, clock)
    world = session.world
    before_views = views(world)
    before_groups = copy.deepcopy(world.engine.state.groups.groups)
    before_failures = list(world.engine.state.failures)
    before_accounts = dict(world.engine.state.accounts)
    before_prices = {s: world.prices.get(s) for s in ("MNQ", "NQ", "ES", "BTCUSDT", "ETHUSDT")}
    await store.close()

    store = await Store.open(path)
    try:
        assert not store.fresh
        loaded = await store.load(clock)
    finally:
        await store.close()
    assert dict(loaded.engine.state.accounts) == before_accounts
    assert {s: loaded.prices.get(s) for s in before_prices} == before_prices
    assert loaded.engine.state.groups.groups == before_groups
    assert loaded.engine.group("G").settings == {
        ("f1", "MNQ"): ContractSetting(3, True, None),
        ("f2", "MNQ"): ContractSetting(1, True, "NQ"),
        ("f2", "ES"): ContractSetting(1, True, "MES"),
        ("poor", "BTCUSDT"): ContractSetting(1, False, None),
    }
    assert loaded.engine.state.failures == before_failures
    assert set(loaded.brokers) == {"tv", "px"}
    for name in ("tv", "px"):
        broker, original = loaded.brokers[name], world.brokers[name]
        assert isinstance(broker, SimBroker) and isinstance(original, SimBroker)
        assert broker.settings == original.settings
        assert broker.counters() == original.counters()
    after_views = views(loaded)
    for account, view in before_views.items():
        assert after_views[account] == view, account


async def test_a_null_is_stored_as_null(tmp_path: Path) -> None:
    """The hot statements bind the integer 0 for a NULL and let `nullif(?, 0)` turn it
    back (Python's sqlite3 binds None slowly); a column that lost its `nullif` would
    keep '0' (TEXT affinity). A market order's missing price, brackets and links, and
    an account's missing risk limits and breach, are NULL in the file, as before."""
    path = tmp_path / "desk.db"
    clock = SteppingClock()
    store, _session, _ids = await build_desk(path, clock)
    await store.close()
    with closing(sqlite3.connect(path)) as db:
        market = db.execute(
            "SELECT price, stop_loss, take_profit, parent_id, role, oco_id, reject_reason, "
            "reject_message FROM orders WHERE type = 'market' AND account = 'f1' "
            "AND symbol LIKE '%MNQ%'").fetchall()
        assert market and all(value is None for row in market for value in row)
        assert db.execute("SELECT count(*) FROM orders WHERE stop_loss IS NOT NULL "
                          "AND parent_id IS NULL").fetchone()[0] > 0
        assert db.execute("SELECT count(*) FROM orders WHERE role IS NOT NULL").fetchone()[0]
        assert db.execute("SELECT daily_loss_limit, max_drawdown, breached FROM accounts "
                          "WHERE id IN ('f1', 'boss') ORDER BY id").fetchall() == [
            ("50", None, "daily_loss_limit"), (None, None, None)]


async def test_a_reloaded_world_holds_the_same_positions_and_orders(tmp_path: Path) -> None:
    """The same comparison as above with the order of positions and orders left out, so
    that a difference in content is told apart from a difference in order."""
    path = tmp_path / "desk.db"
    clock = SteppingClock()
    store, session, _ids = await build_desk(path, clock)
    before = views(session.world)
    await store.close()
    store = await Store.open(path)
    try:
        loaded = views(await store.load(clock))
    finally:
        await store.close()
    for account, view in before.items():
        after = loaded[account]
        assert sorted(after.positions, key=repr) == sorted(view.positions, key=repr), account
        assert sorted(after.orders, key=repr) == sorted(view.orders, key=repr), account
        assert (after.balance, after.equity, after.available, after.used_margin,
                after.realized, after.fees, after.breached, after.risk) == (
            view.balance, view.equity, view.available, view.used_margin, view.realized,
            view.fees, view.breached, view.risk), account


async def test_after_a_restart_exits_are_proportional_and_mirrors_fill_once(
        tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    clock = SteppingClock()
    store, session, ids = await build_desk(path, clock)
    await store.close()

    store, session = await start(path, clock)
    try:
        world = session.world
        engine = world.engine
        # the leader's modify still reaches the mirrors, across the restart
        engine.modify_order(ids["es"], D(5985))
        await session.settle()
        es_prices = {a: [o.price for o in sim(world, a).working_orders(a)
                         if engine.broker_of(a).symbols.catalog(o.symbol) in ("ES", "MES")
                         and o.parent_id is None]
                     for a in ("f1", "f2", "poor")}
        assert es_prices == {"f1": [D(5985)], "f2": [D(5985)], "poor": [D(5985)]}

        # the working add fills everywhere: each follower's own mirror, not a second copy
        engine.set_price("MNQ", D(20990))
        await session.settle()
        assert qty(world, "lead", "MNQ") == D(3)
        assert qty(world, "f1", "MNQ") == D(9)
        assert qty(world, "f2", "NQ") == D(3)
        assert qty(world, "poor", "MNQ") == D(1)

        # a leader exit is copied proportionally: 1 of 3
        engine.place_order("lead", "MNQ", Side.SELL, qty=D(1))
        await session.settle()
        assert qty(world, "lead", "MNQ") == D(2)
        assert qty(world, "f1", "MNQ") == D(6)
        assert qty(world, "f2", "NQ") == D(2)
        assert qty(world, "poor", "MNQ") == D(1)  # 1 x 1/3 rounds to 0
        engine.place_order("lead", "BTCUSDT", Side.SELL, qty=D("0.04"))
        await session.settle()
        assert qty(world, "lead", "BTCUSDT") == D("0.06")
        assert qty(world, "f1", "BTCUSDT") == D("0.06")
        assert qty(world, "f2", "BTCUSDT") == D("0.06")
        # the isolated position released margin in proportion: 0.06 of 0.1
        f1_btc = sim(world, "f1").position_detail("f1", native(world, "f1", "BTCUSDT"))
        assert f1_btc is not None
        assert f1_btc.margin == D("0.1") * D("50000.1") / 20 * D("0.06") / D("0.1")

        # the working reduce fills: its mirrors, fixed at 3 and 1, fill at their brokers;
        # poor, who held no mirror of it, gets the exit as a market copy (1 x 1/2 -> 1)
        engine.set_price("MNQ", D(21100))
        await session.settle()
        assert qty(world, "lead", "MNQ") == D(1)
        assert qty(world, "f1", "MNQ") == D(3)
        assert qty(world, "f2", "NQ") == D(1)
        assert qty(world, "poor", "MNQ") == D(0)

        # the ES entry fills: one ES each, poor cannot afford its mirror (a failure in G)
        engine.set_price("ES", D(5985))
        await session.settle()
        assert qty(world, "lead", "ES") == D(1)
        assert qty(world, "f1", "ES") == D(1)
        assert qty(world, "f2", "MES") == D(1)
        assert qty(world, "poor", "ES") == D(0)
        last = engine.state.failures[-1]
        assert (last.group, last.account, last.symbol, last.reason) == (
            "G", "poor", "ES", RejectReason.INSUFFICIENT_MARGIN)
        # its bracket exit fills at each broker once, not copied on top
        engine.set_price("ES", D(6010))
        await session.settle()
        assert qty(world, "lead", "ES") == D(0)
        assert qty(world, "f1", "ES") == D(0)
        assert qty(world, "f2", "MES") == D(0)
    finally:
        await store.close()

    # exactly once, in the database too: f1's fills since the desk was built
    f1_fills = [(symbol, side, D(q), cause) for symbol, side, q, cause in query(
        path, "SELECT symbol, side, qty, cause FROM fills WHERE account = 'f1' ORDER BY rowid")]
    assert f1_fills == [
        ("MNQ", "buy", D(6), "order"),
        ("BTCUSDT", "buy", D("0.1"), "order"),
        ("MNQ", "buy", D(3), "order"),
        ("MNQ", "sell", D(3), "order"),
        ("BTCUSDT", "sell", D("0.04"), "order"),
        ("MNQ", "sell", D(3), "order"),
        ("ES", "buy", D(1), "order"),
        ("ES", "sell", D(1), "bracket"),
    ]
    keys = query(path, "SELECT key, count(*) FROM intents GROUP BY key HAVING count(*) > 1")
    assert keys == []
    assert query(path, "SELECT count(*) FROM intents WHERE status = 'pending'") == [(0,)]


# --- exactly once: the outbox -------------------------------------------------------------


def fan_out_desk(followers: int) -> dict[str, Any]:
    accounts = [{"id": "lead", "balance": 100000}, {"id": "poor", "balance": 50}]
    accounts += [{"id": f"f{i:02d}", "balance": 20000} for i in range(followers)]
    return {
        "prices": {"MNQ": 21000},
        "accounts": accounts,
        "groups": [{"name": "G", "leader": "lead",
                    "followers": [f"f{i:02d}" for i in range(followers)] + ["poor"]}],
    }


async def fan_out_cost(path: Path, followers: int) -> int:
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(fan_out_desk(followers), clock))
    try:
        before = store.commits
        session.world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
        await session.settle()
        for i in range(followers):
            assert qty(session.world, f"f{i:02d}", "MNQ") == D(1)
        assert qty(session.world, "poor", "MNQ") == D(0)
        return store.commits - before
    finally:
        await store.close()


async def test_a_fan_out_costs_the_same_commits_for_2_or_20_followers(tmp_path: Path) -> None:
    two = await fan_out_cost(tmp_path / "two.db", 2)
    twenty = await fan_out_cost(tmp_path / "twenty.db", 20)
    assert 1 <= two <= 3
    assert twenty == two


async def test_every_copy_has_one_intent_with_a_distinct_key_and_an_outcome(
        tmp_path: Path) -> None:
    path = tmp_path / "fan.db"
    await fan_out_cost(path, 5)
    rows = query(path, "SELECT key, status, order_id, body FROM intents ORDER BY seq")
    assert len(rows) == 6
    assert len({key for key, *_ in rows}) == 6
    by_follower = {json.loads(body)[2]: (status, order_id)  # [version, group, follower, ...]
                   for _key, status, order_id, body in rows}
    assert set(by_follower) == {"f00", "f01", "f02", "f03", "f04", "poor"}
    assert by_follower["poor"] == ("failed", None)
    orders = dict(query(path, "SELECT id, account FROM orders"))
    for i in range(5):
        status, order_id = by_follower[f"f{i:02d}"]
        assert status == "sent"
        assert orders[order_id] == f"f{i:02d}"
    # the order carries the intent's key as its client id
    keyed = query(path, "SELECT i.key FROM intents i JOIN orders o ON o.id = i.order_id "
                        "WHERE o.client_id = i.key")
    assert len(keyed) == 5
    assert query(path, "SELECT account, reason FROM failures") == [
        ("poor", "insufficient_margin")]


async def test_intents_are_committed_with_the_leader_fill_before_anything_is_sent(
        tmp_path: Path) -> None:
    """The outbox: when the first commit of a fan-out lands, the leader's fill and every
    intent are in it, pending, and no follower order has been sent yet."""
    path = tmp_path / "outbox.db"
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(fan_out_desk(3), clock))
    try:
        engine = session.world.engine
        assert engine.deferred
        engine.place_order("lead", "MNQ", Side.BUY, qty=D(2))
        assert len(engine.outbox) == 4
        assert all(qty(session.world, f"f{i:02d}", "MNQ") == D(0) for i in range(3))
        await store.save(session.world)
        # read with another connection: committed, all pending, no follower order
        assert query(path, "SELECT status, count(*) FROM intents GROUP BY status") == [
            ("pending", 4)]
        assert exact(query(path, "SELECT account, qty FROM fills"), 1) == [("lead", D(2))]
        assert query(path, "SELECT count(*) FROM orders WHERE account != 'lead'") == [(0,)]
        await session.settle()
        assert query(path, "SELECT status, count(*) FROM intents GROUP BY status") == [
            ("failed", 1), ("sent", 3)]
    finally:
        await store.close()


# --- reconciliation on start ------------------------------------------------------------


async def crash_before_dispatch(path: Path, clock: SteppingClock) -> None:
    """The intents are committed, then the app dies before sending them."""
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    world = session.world
    world.engine.deferred = True
    world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(2))
    assert len(world.engine.outbox) == 2
    await store.save(world)
    await store.close()  # no dispatch: the followers have nothing yet


async def test_intents_committed_before_a_crash_are_sent_once_on_start(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    clock = SteppingClock()
    await crash_before_dispatch(path, clock)
    assert query(path, "SELECT status, count(*) FROM intents GROUP BY status") == [
        ("pending", 2)]
    assert query(path, "SELECT account FROM fills") == [("lead",)]

    store, session = await start(path, clock)
    try:
        world = session.world
        assert qty(world, "lead", "MNQ") == D(2)
        assert qty(world, "f1", "MNQ") == D(2)
        assert qty(world, "f2", "MNQ") == D(2)
        assert world.engine.outbox == []
    finally:
        await store.close()
    assert exact(query(path, "SELECT account, qty FROM fills ORDER BY account"), 1) == [
        ("f1", D(2)), ("f2", D(2)), ("lead", D(2))]
    assert query(path, "SELECT status, count(*) FROM intents GROUP BY status") == [
        ("sent", 2)]

    # and a further restart sends nothing more
    store, session = await start(path, clock)
    try:
        assert qty(session.world, "f1", "MNQ") == D(2)
        assert qty(session.world, "f2", "MNQ") == D(2)
    finally:
        await store.close()
    assert query(path, "SELECT count(*) FROM fills") == [(3,)]
    assert query(path, "SELECT count(*) FROM orders WHERE account != 'lead'") == [(2,)]


async def test_an_intent_the_broker_already_holds_is_completed_not_sent_again(
        tmp_path: Path) -> None:
    """The broker took the orders, the engine died before recording the outcome: on start
    the pending intents are matched to the broker's orders by client id."""
    path = tmp_path / "half.db"
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    world = session.world
    engine = world.engine
    engine.place_order("lead", "MNQ", Side.BUY, qty=D(2))
    await store.save(world)  # the outbox: intents pending
    engine.dispatch()  # the broker fills the copies...
    assert qty(world, "f1", "MNQ") == D(2)
    journal = engine.state.journal or []
    outcomes = [e for e in journal if e[0] == "intent_done"]
    assert len(outcomes) == 2
    engine.state.journal = [e for e in journal
                            if e[0] not in ("intent_done", "intent_submitted")]
    await store.save(world)  # ...and its rows land, but not the engine's outcomes
    await store.close()
    assert query(path, "SELECT status, count(*) FROM intents GROUP BY status") == [
        ("pending", 2)]
    assert exact(query(path, "SELECT account, qty FROM fills ORDER BY account"), 1) == [
        ("f1", D(2)), ("f2", D(2)), ("lead", D(2))]

    store, session = await start(path, clock)
    try:
        world = session.world
        assert qty(world, "f1", "MNQ") == D(2)
        assert qty(world, "f2", "MNQ") == D(2)
        assert world.engine.outbox == []
    finally:
        await store.close()
    assert exact(query(path, "SELECT account, qty FROM fills ORDER BY account"), 1) == [
        ("f1", D(2)), ("f2", D(2)), ("lead", D(2))]
    rows = query(path, "SELECT i.status, o.account, o.client_id = i.key FROM intents i "
                       "LEFT JOIN orders o ON o.id = i.order_id ORDER BY o.account")
    assert rows == [("sent", "f1", 1), ("sent", "f2", 1)]
    assert query(path, "SELECT count(*) FROM failures") == [(0,)]


async def test_a_pending_intent_for_a_filled_order_is_completed_from_the_broker(
        tmp_path: Path) -> None:
    """The same, built from a finished fan-out whose outcome is wound back to pending: the
    order is long filled (not working), yet its client id must still be recognised."""
    path = tmp_path / "rewound.db"
    await make_database(path)
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE intents SET status = 'pending', order_id = NULL")
        db.commit()
    clock = SteppingClock()
    store, session = await start(path, clock)
    try:
        world = session.world
        assert qty(world, "f1", "MNQ") == D(2)
        assert qty(world, "f2", "MNQ") == D(2)
    finally:
        await store.close()
    assert query(path, "SELECT account, count(*) FROM fills GROUP BY account") == [
        ("f1", 1), ("f2", 1), ("lead", 1)]
    assert query(path, "SELECT status, count(*) FROM intents GROUP BY status") == [
        ("sent", 2)]
    assert query(path, "SELECT count(*) FROM failures") == [(0,)]


async def test_broker_events_not_handled_before_a_crash_are_handled_on_start(
        tmp_path: Path) -> None:
    """A leader fill committed with the broker's rows but not yet handled by the engine
    (pending_events) is copied on start, once."""
    path = tmp_path / "events.db"
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    world = session.world
    engine = world.engine
    # the broker fills the leader directly; the engine has not looked at it yet
    broker = sim(world, "lead")
    broker.place_order("lead", OrderRequest(symbol=native(world, "lead", "MNQ"),
                                            side=Side.BUY, qty=D(1)))
    assert len(engine.pending_events) == 1
    await store.save(world)
    await store.close()
    assert query(path, "SELECT count(*) FROM pending_events") == [(1,)]

    store, session = await start(path, clock)
    try:
        assert qty(session.world, "f1", "MNQ") == D(1)
        assert qty(session.world, "f2", "MNQ") == D(1)
    finally:
        await store.close()
    assert query(path, "SELECT count(*) FROM pending_events") == [(0,)]
    store, session = await start(path, clock)
    try:
        assert qty(session.world, "f1", "MNQ") == D(1)
    finally:
        await store.close()


# --- replay through the CLI -------------------------------------------------------------


def scenario_file(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    return path


def test_replay_with_db_keeps_the_database(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    scenario = scenario_file(tmp_path, SMALL)
    db = tmp_path / "kept" / "replay.db"
    code = main(["replay", str(scenario), "--json", "--db", str(db)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    out = json.loads(captured.out)
    assert out["accounts"]["f1"]["positions"][0]["qty"] == 2
    assert db.is_file()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert exact(query(db, "SELECT account, symbol, side, qty, price FROM fills "
                           "ORDER BY account"), 3, 4) == [
        ("f1", "MNQ", "buy", D(2), D(21000)), ("f2", "MNQ", "buy", D(2), D(21000)),
        ("lead", "MNQ", "buy", D(2), D(21000))]
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]

    # a second replay into the same, non-empty database is refused and changes nothing
    digest = sha256(db)
    code = main(["replay", str(scenario), "--json", "--db", str(db)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert str(db) in lines[0]
    assert "Traceback" not in captured.err
    assert sha256(db) == digest
    assert query(db, "SELECT count(*) FROM fills") == [(3,)]


def test_replay_without_db_leaves_no_database_behind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = scenario_file(tmp_path, SMALL)
    work = tmp_path / "cwd"
    work.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    data_home = tmp_path / "xdg-data"
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code = main(["replay", str(scenario), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["accounts"]["f2"]["positions"][0]["qty"] == 2
    assert list(work.iterdir()) == []
    assert list(scratch.iterdir()) == []  # the temporary database is gone
    assert not data_home.exists()  # and the user's own database was not touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "scenario.json", "tmp"]


def test_a_replay_with_restart_through_the_database_matches_one_in_memory(
        tmp_path: Path) -> None:
    scenario = parse_scenario((Path(__file__).parent / "scenarios" / "06_restart.json")
                              .read_text())
    assert any(step["op"] == "restart" for step in scenario.steps)
    db = tmp_path / "restart.db"
    stored = asyncio.run(replay_with_store(scenario, db, SteppingClock()))
    memory = replay_in_memory(scenario, SteppingClock())
    assert report(stored) == report(memory)
    assert report(stored)["accounts"]["f1"]["positions"][0]["qty"] == 2
    assert query(db, "SELECT detail FROM event_log WHERE kind = 'restart'") == [
        ("rebuilt from the database",)]
    # two copies (the open, the proportional close), no duplicate across the restart
    assert exact(query(db, "SELECT side, qty FROM fills WHERE account = 'f1' "
                           "ORDER BY rowid"), 1) == [("buy", D(4)), ("sell", D(2))]


def replay_both(scenario: dict[str, Any], db: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report of a replay through `db` and of the same replay in memory."""
    parsed = parse_scenario(json.dumps(scenario))
    stored = report(asyncio.run(replay_with_store(parsed, db, SteppingClock())))
    return stored, report(replay_in_memory(parsed, SteppingClock()))


def test_a_restart_keeps_the_order_of_positions(tmp_path: Path) -> None:
    """`replay --json` lists positions in the same order whether or not the desk was
    rebuilt from the database in between (here MNQ was opened before BTCUSDT)."""
    stored, memory = replay_both({
        "prices": {"MNQ": 21000, "BTCUSDT": 50000},
        "accounts": [{"id": "a", "balance": 50000}],
        "steps": [
            {"op": "order", "account": "a", "symbol": "MNQ", "side": "buy", "qty": 1},
            {"op": "order", "account": "a", "symbol": "BTCUSDT", "side": "buy", "qty": 0.01},
            {"op": "restart"},
        ],
    }, tmp_path / "r.db")
    assert [p["symbol"] for p in memory["accounts"]["a"]["positions"]] == ["MNQ", "BTCUSDT"]
    assert [p["symbol"] for p in stored["accounts"]["a"]["positions"]] == ["MNQ", "BTCUSDT"]
    assert stored == memory


def test_a_restart_keeps_the_priority_of_a_modified_working_order(tmp_path: Path) -> None:
    """Two working orders reached by one price update fill in the order they were placed,
    and a modify does not change that. The account can afford only one of them, so which
    fills first decides the outcome: a restart in between must not change it."""
    stored, memory = replay_both({
        "prices": {"MNQ": 21000},
        "accounts": [{"id": "a", "balance": 1050}],
        "steps": [
            {"op": "order", "account": "a", "symbol": "MNQ", "side": "buy", "qty": 1,
             "type": "limit", "price": 20980, "ref": "small"},
            {"op": "order", "account": "a", "symbol": "NQ", "side": "buy", "qty": 1,
             "type": "limit", "price": 20990, "ref": "big"},
            {"op": "modify", "ref": "small", "price": 20990},
            {"op": "restart"},
            {"op": "price", "symbol": "MNQ", "price": 20990},
        ],
    }, tmp_path / "r.db")
    # in memory: MNQ (placed first) fills, margin 100; NQ then needs 1000 of 950: refused
    assert [(p["symbol"], p["qty"]) for p in memory["accounts"]["a"]["positions"]] == [
        ("MNQ", 1)]
    assert [(p["symbol"], p["qty"]) for p in stored["accounts"]["a"]["positions"]] == [
        ("MNQ", 1)]
    assert stored["accounts"]["a"]["available"] == 950


async def test_working_orders_keep_their_order_across_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    clock = SteppingClock()
    store, session, ids = await build_desk(path, clock)
    session.world.engine.modify_order(ids["es"], D(5985))
    await session.settle()
    before = {a: [o.id for o in v.orders] for a, v in views(session.world).items()}
    await store.close()
    store = await Store.open(path)
    try:
        loaded = await store.load(clock)
    finally:
        await store.close()
    after = {a: [o.id for o in v.orders] for a, v in views(loaded).items()}
    assert after == before


def test_a_restart_step_rebuilds_from_the_database_alone(tmp_path: Path) -> None:
    """After each `restart` step the engine comes back from the database: the working
    mirror is still linked (a modify reaches it, its fill is not copied again) and a
    later exit still closes the follower."""
    scenario = parse_scenario(json.dumps({
        "prices": {"MNQ": 21000},
        "accounts": [{"id": "lead", "balance": 50000}, {"id": "f1", "balance": 20000}],
        "groups": [{"name": "G", "leader": "lead", "followers": ["f1"]}],
        "steps": [
            {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 2},
            {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1,
             "type": "limit", "price": 20990, "ref": "entry"},
            {"op": "restart"},
            {"op": "modify", "ref": "entry", "price": 20995},
            {"op": "price", "symbol": "MNQ", "price": 20995},
            {"op": "restart"},
            {"op": "order", "account": "lead", "symbol": "MNQ", "side": "sell", "qty": 1},
        ],
    }))
    db = tmp_path / "r.db"
    run = asyncio.run(replay_with_store(scenario, db, SteppingClock()))
    assert run.errors == []
    out = report(run)
    assert out["accounts"]["f1"]["positions"] == []
    assert out["accounts"]["lead"]["positions"] == []
    assert exact(query(db, "SELECT side, qty, price FROM fills WHERE account = 'f1' "
                           "ORDER BY rowid"), 1, 2) == [
        ("buy", D(2), D(20995)), ("sell", D(2), D(20995))]
    assert query(db, "SELECT count(*) FROM event_log WHERE kind = 'restart'") == [(2,)]


# --- the event log --------------------------------------------------------------------------


def test_the_event_log_records_status_changes_failures_and_steps(tmp_path: Path) -> None:
    scenario = parse_scenario(json.dumps({
        "prices": {"MNQ": 21000},
        "accounts": [
            {"id": "lead", "balance": 50000, "risk": {"daily_loss_limit": 100}},
            {"id": "f1", "balance": 20000},
            {"id": "poor", "balance": 50},
        ],
        "groups": [{"name": "G", "leader": "lead", "followers": ["f1", "poor"]}],
        "steps": [
            {"op": "pause", "group": "G"},
            {"op": "activate", "group": "G"},
            {"op": "order", "account": "lead", "symbol": "MNQ", "side": "buy", "qty": 1},
            {"op": "price", "symbol": "MNQ", "price": 20940},
            {"op": "ratio", "group": "G", "follower": "f1", "symbol": "MNQ", "ratio": 11},
        ],
    }))
    db = tmp_path / "log.db"
    run = asyncio.run(replay_with_store(scenario, db, SteppingClock()))
    assert [e["step"] for e in run.errors] == [4]
    log = query(db, "SELECT actor, kind, detail FROM event_log ORDER BY id")
    steps = [detail for actor, kind, detail in log if (actor, kind) == ("scenario", "step")]
    assert steps == ["0: pause", "1: activate", "2: order", "3: price", "4: ratio"]
    statuses = [detail for _actor, kind, detail in log if kind == "group_status"]
    assert statuses == ["G: paused (paused)", "G: active", "G: paused (leader_breached)"]
    failures = [detail for _actor, kind, detail in log if kind == "copy_failed"]
    assert len(failures) == 1
    assert failures[0].startswith("G/poor MNQ: insufficient_margin (")
    assert ("broker", "breach", "lead: daily_loss_limit") in log
    # in order: a command's own changes, its step, then what sending its copies caused
    order = [(kind, detail) for _actor, kind, detail in log]
    assert order.index(("group_status", "G: paused (paused)")) < order.index(
        ("step", "0: pause"))
    assert order.index(("step", "2: order")) < order.index(("copy_failed", failures[0]))
    assert order.index(("copy_failed", failures[0])) < order.index(("step", "3: price"))
    stamps = query(db, "SELECT at FROM event_log WHERE actor = 'engine'")
    assert all(at.startswith("2026-01-05T14:30:00") for (at,) in stamps)


async def test_the_event_log_survives_a_restart_and_grows(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    await make_database(path)
    first = query(path, "SELECT id, actor, kind, detail FROM event_log ORDER BY id")
    clock = SteppingClock()
    store, session = await start(path, clock)
    try:
        session.world.engine.pause("G")
        await session.settle()
    finally:
        await store.close()
    log = query(path, "SELECT id, actor, kind, detail FROM event_log ORDER BY id")
    assert log[:len(first)] == first
    assert [(a, k, d) for _id, a, k, d in log[len(first):]] == [
        ("app", "start", "loaded from the database"),
        ("engine", "group_status", "G: paused (paused)"),
    ]


def test_failures_in_the_database_match_the_engine(tmp_path: Path) -> None:
    """The failure log is stored with its reason code and message as the engine had them."""

    async def check() -> list[Failure]:
        clock = SteppingClock()
        store, session, _ids = await build_desk(tmp_path / "desk.db", clock)
        try:
            return list(session.world.engine.state.failures)
        finally:
            await store.close()

    failures = asyncio.run(check())
    rows = query(tmp_path / "desk.db",
                 "SELECT grp, account, symbol, reason, message, at FROM failures ORDER BY id")
    assert rows == [(f.group, f.account, f.symbol, f.reason.value, f.message, f.at.isoformat())
                    for f in failures]
    assert len(rows) == 1


async def test_a_database_whose_commits_are_still_in_its_wal_is_opened_not_reset(
        tmp_path: Path) -> None:
    """After a SIGKILL the newest commits live in the -wal file only (the crash test
    found the inspection ignoring it and taking a live database for a new one)."""
    import shutil
    import sqlite3 as sqlite

    from synctui.store.schema import SCHEMA_VERSION as VERSION

    live = tmp_path / "live.db"
    store = await Store.open(live)
    keeper = sqlite.connect(live)  # holds the WAL open: no checkpoint on close
    keeper.execute("PRAGMA wal_autocheckpoint=0")
    world = _world_for_wal()
    store.attach(world, new=True)
    await store.save(world, initial=True)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(f"{live}{suffix}", crashed / f"live.db{suffix}")
    keeper.close()
    await store.close()
    assert (crashed / "live.db-wal").stat().st_size > 0
    reopened = await Store.open(crashed / "live.db")
    try:
        assert not reopened.fresh
        async with reopened.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        assert row is not None and row[0] == VERSION
        async with reopened.db.execute("SELECT count(*) FROM accounts") as cursor:
            row = await cursor.fetchone()
        assert row is not None and row[0] == 1
    finally:
        await reopened.close()


def _world_for_wal() -> World:
    import json as _json

    from synctui.scenario.model import parse_scenario as _parse
    from synctui.scenario.runner import build_world as _build

    return _build(_parse(_json.dumps({"prices": {"MNQ": 21000},
                                      "accounts": [{"id": "a", "balance": 1000}]})))


def test_an_order_request_written_by_hand_reads_back_as_written() -> None:
    """The hot path's hand-written codec keeps the reflective one's shape."""
    from synctui.store.codec import _out, dump_request, load_request

    for request in (OrderRequest(symbol="MNQZ6", side=Side.BUY, qty=D("3"), client_id="k"),
                    OrderRequest(symbol="BTC-USDT-SWAP", side=Side.SELL, qty=D("0.012"),
                                 type=OrderType.LIMIT, price=D("50000.1"), reduce_only=True,
                                 stop_loss=D("51000"), take_profit=D("49000.5"),
                                 client_id="c")):
        assert dump_request(request) == _out(request)
        assert load_request(json.loads(json.dumps(dump_request(request)))) == request


def test_an_intent_body_written_by_hand_is_the_text_json_dumps_gives() -> None:
    """The hot path writes an intent's body directly (version 2, a list): it must stay
    byte for byte what `json.dumps` makes of that list, and read back whole. A body
    written before version 2 (an object, client id inside) reads back the same."""
    from datetime import UTC, datetime

    from synctui.engine.state import Intent
    from synctui.store.codec import dump_intent, dump_request, load_intent

    at = datetime(2026, 1, 5, 14, 30, 0, 123456, tzinfo=UTC)
    since = datetime(2026, 1, 5, 14, 29, 59, tzinfo=UTC)
    plain = OrderRequest(symbol="MNQZ6", side=Side.BUY, qty=D("3"), client_id="k-1")
    odd = OrderRequest(symbol='BTC-"USDT"\\-SWAP\u00e9', side=Side.SELL, qty=D("1.2E+3"),
                       type=OrderType.LIMIT, price=D("-50000.10"), reduce_only=True,
                       stop_loss=D("51000"), take_profit=D("0.000001"), client_id="x")
    for intent in (Intent("k-1", "G", "F1", "MNQ", plain),
                   Intent("x", "Gr\u00fcppe \u2603", 'f"\n\t', "BTCUSDT", odd, "L-7", "L-8",
                          at, since),
                   Intent("k-1", "", "", "", plain, None, "b", None, at)):
        r = intent.request
        expected = json.dumps([
            2, intent.group, intent.follower, intent.symbol, r.symbol, r.side.value,
            str(r.qty), r.type.value, None if r.price is None else str(r.price),
            r.reduce_only, None if r.stop_loss is None else str(r.stop_loss),
            None if r.take_profit is None else str(r.take_profit), intent.mirror_of,
            intent.bracket_of, intent.at.isoformat() if intent.at else None,
            intent.since.isoformat() if intent.since else None])
        assert dump_intent(intent) == expected
        assert load_intent(intent.key, expected) == intent
        before_v2 = json.dumps({
            "group": intent.group, "follower": intent.follower, "symbol": intent.symbol,
            "request": dump_request(intent.request), "mirror_of": intent.mirror_of,
            "bracket_of": intent.bracket_of,
            "at": intent.at.isoformat() if intent.at else None,
            "since": intent.since.isoformat() if intent.since else None})
        assert load_intent(intent.key, before_v2) == intent
    with pytest.raises(ValueError, match="version"):
        load_intent("k", json.dumps([3] + [None] * 15))


HISTORY = ("orders", "fills", "intents", "copy_orders", "mirrors", "bracketed", "event_log")


async def test_start_up_reads_no_table_of_history_whole(tmp_path: Path) -> None:
    """Issue 11: start-up stays under a second with a million orders of history because
    every query of a restart finds its rows through an index (the working orders, the
    open intents, the links they name); none walks a history table."""
    path = tmp_path / "desk.db"
    await make_database(path)
    store = await Store.open(path)
    statements: list[str] = []
    try:
        # on the connection's own thread: sqlite3 refuses calls from another
        await store.db._execute(  # type: ignore[no-untyped-call]
            lambda: store.db._conn.set_trace_callback(statements.append))
        await Session.start(store, SteppingClock(), never_build)
    finally:
        await store.close()
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads
    walks = []
    with closing(sqlite3.connect(path)) as db:
        for sql in reads:
            for *_ids, detail in db.execute(f"EXPLAIN QUERY PLAN {sql}"):
                words = detail.split()
                if words[0] == "SCAN" and "USING" not in words:
                    table = words[1]
                    aliases = {"o": "orders", "c": "copy_orders", "m": "mirrors",
                               "i": "intents"}
                    if aliases.get(table, table) in HISTORY:
                        walks.append((detail, sql))
    assert walks == []


async def _wal_after_fills(path: Path, fills: int, paced: bool) -> tuple[int, Store]:
    """The WAL's size after `fills` leader fills, and the store. `paced`: each fill
    waits for a checkpoint still running (a pause between a trader's fills is that
    long); else they come back to back, a burst."""
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    try:
        for n in range(fills):
            session.world.engine.place_order("lead", "MNQ", Side.BUY if n % 2 else Side.SELL,
                                             qty=D(1))
            await session.settle()
            if paced and store._checkpoint is not None:
                await asyncio.wrap_future(store._checkpoint)
        return os.stat(f"{path}-wal").st_size, store
    finally:
        await store.close()


async def test_a_checkpoint_waits_for_the_pause_so_the_wal_starts_over_at_every_fill(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mark crossed inside a fan-out (here at its first commit, as 1,000 followers
    cross the real one) starts no checkpoint there: one would copy the WAL up to that
    commit, the fan-out's next commits would land behind it, and the WAL, never caught
    up when a transaction begins, would never start over. Started at the pause (the
    save that ends the settle), it is caught up before the next fill: the WAL holds
    about one fill, however many fills there were."""
    import synctui.store.store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 10**9)
    monkeypatch.setattr(store_module, "BUSY_CHECKPOINT_ROWS", 10**9)
    unchecked, _never = await _wal_after_fills(tmp_path / "never.db", 60, paced=False)
    monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 1)
    paced, store = await _wal_after_fills(tmp_path / "desk.db", 60, paced=True)
    assert store.checkpoints >= 50
    assert paced < unchecked / 10


async def test_no_checkpoint_starts_inside_a_fan_out_only_at_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule behind the test above, step by step: past the mark, the intents' commit
    and the brokers' commit start no checkpoint (more commits of the fan-out follow);
    the save that ends the settle does. Past the busy mark, a commit inside one does
    (a burst of fan-outs in one settle must not grow the WAL to its end)."""
    import synctui.store.store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 1)
    clock = SteppingClock()
    store, session = await start(tmp_path / "desk.db", clock, lambda: world_of(SMALL, clock))
    try:
        world, engine = session.world, session.world.engine
        if store._checkpoint is not None:
            await asyncio.wrap_future(store._checkpoint)
        before = store._checkpoint
        engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
        await store.save(world)  # the leader's fill and the intents it made
        assert engine.ready_to_send and store._checkpoint is before
        engine.dispatch()
        await store.save_venue(world)
        assert store._checkpoint is before
        await session.settle()  # the outcomes, then nothing left: the pause
        assert store._checkpoint is not before
        assert store._checkpoint is not None
        await asyncio.wrap_future(store._checkpoint)
        before = store._checkpoint
        monkeypatch.setattr(store_module, "BUSY_CHECKPOINT_ROWS", 1)
        engine.place_order("lead", "MNQ", Side.SELL, qty=D(1))
        await store.save(world)
        assert engine.ready_to_send and store._checkpoint is not before
        await session.settle()
    finally:
        await store.close()


async def test_checkpoints_run_beside_the_writer_and_keep_the_wal_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: SQLite's own checkpoint is off (it ran inside whichever commit crossed
    its mark); the store's runs from its own connection once enough rows were written.
    Without it the WAL grows with every commit; with it, it starts over after a pause,
    and a burst without pauses makes it start over past a length (a RESTART). A clean
    close still removes it and marks the file clean."""
    import synctui.store.store as store_module

    monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 10**9)
    unchecked, never = await _wal_after_fills(tmp_path / "never.db", 150, paced=False)
    assert never.checkpoints == 0
    monkeypatch.setattr(store_module, "CHECKPOINT_ROWS", 50)
    path = tmp_path / "desk.db"
    paced, store = await _wal_after_fills(path, 150, paced=True)
    assert store.checkpoints >= 5
    assert paced < unchecked / 3
    assert not os.path.exists(f"{path}-wal")  # noqa: ASYNC240
    with open(Lock(real_path(path)).path, encoding="utf-8") as mark:  # noqa: ASYNC230
        assert mark.read().startswith("clean ")
    monkeypatch.setattr(store_module, "WAL_FRAMES", 200)
    burst, _store = await _wal_after_fills(tmp_path / "burst.db", 150, paced=False)
    # how far a burst's WAL gets depends on how busy the machine is; it stays shorter
    # than with no checkpoint at all (a RESTART, when one was needed, made it start over)
    assert burst < unchecked


def test_a_fill_event_written_by_hand_is_the_text_json_dumps_gives() -> None:
    """Queued fills are written directly (a Smart Sync fan-out queues one per copy): the
    text must stay byte for byte what the reflective dump gives, and read back whole."""
    from dataclasses import asdict, replace
    from datetime import UTC, datetime

    from synctui.brokers.events import Fill
    from synctui.domain.orders import FillCause, MarginMode
    from synctui.store import codec

    at = datetime(2026, 1, 5, 14, 30, 0, 123456, tzinfo=UTC)
    plain = Fill("px-f1", "px", "F1", "MNQZ6", Side.BUY, D("2"), D("21000.25"), D("0"),
                 D("-12.50"), FillCause.ORDER, D("0"), D("2"), D("0"), None, None, "px-1",
                 "k-1", None, None, None, None, at)
    perp = replace(plain, symbol='BTC-"USDT"\\-SWAP\u00e9', account="Gr\u00fcn \u2603",
                   leverage=20, margin_mode=MarginMode.ISOLATED, order_id=None,
                   client_id=None, parent_id="px-0", role="stop_loss",
                   stop_loss=D("1E+3"), take_profit=D("0.000001"),
                   cause=FillCause.LIQUIDATION, qty=D("-0.001"))
    for fill in (plain, perp):
        reflective = json.dumps({"type": "Fill", "data": codec._out(fill)})
        assert codec.dump_event(fill) == reflective
        assert asdict(codec.load_event(reflective)) == asdict(fill)


async def test_a_burst_writes_each_pending_event_once_and_the_table_holds_the_queue(
        tmp_path: Path) -> None:
    """Broker events not handled yet are kept by their numbers: the handled ones are
    deleted and the new ones appended, each written once. (Rewriting the whole queue at
    every save made a Smart Sync burst quadratic: 100 leader fills to 100 copies took
    7 s.) A trigger on the store's own connection counts the rows written."""
    from synctui.bench.fanout import LEADER, _session
    from synctui.store.codec import dump_event

    store, session = await _session(tmp_path, 4, True, "burst", freeze=False)
    conn = store.db._conn
    conn.execute("CREATE TEMP TABLE written (n INTEGER)")
    conn.execute("INSERT INTO written VALUES (0)")
    conn.execute("CREATE TEMP TRIGGER counting AFTER INSERT ON main.pending_events "
                 "BEGIN UPDATE written SET n = n + 1; END")
    engine = session.world.engine
    queued_before = engine.pending_span[1]
    for n in range(12):
        engine.place_order(LEADER, "BTCUSDT", Side.BUY if n % 2 == 0 else Side.SELL,
                           qty=Decimal("0.01"))
    # mid-burst: what is queued is in the table, as the engine holds it
    await store.save(session.world)
    first, end = engine.pending_span
    assert end - first >= 11
    rows = await store._rows("SELECT seq, body FROM pending_events ORDER BY seq")
    assert [r[0] for r in rows] == list(range(first, end))
    assert [r[1] for r in rows] == [dump_event(e) for e in engine.pending_events]
    await session.settle()
    queued = engine.pending_span[1] - queued_before
    assert queued > 12 * 4  # the leader's fills and every copy's
    # at most once each (an event queued and handled between two saves needs no row)
    assert queued - 2 <= conn.execute("SELECT n FROM written").fetchone()[0] <= queued
    assert await store._rows("SELECT count(*) FROM pending_events") == [(0,)]
    await store.close()


async def test_what_waits_is_counted_again_after_a_restart(tmp_path: Path) -> None:
    """A restart loads what waits for each follower with its count (`Engine.behind`
    answers from it): a follower whose copy waits is behind, one whose copy went is not."""
    from synctui.bench.fanout import LEADER, _session

    store, session = await _session(tmp_path, 4, False, "waits", freeze=False)
    session.world.engine.disconnect("px")  # F00000 and F00002 are at px
    session.world.engine.place_order(LEADER, "MNQ", Side.BUY, qty=Decimal(1))
    await session.settle()
    await session.restart()
    engine = session.world.engine
    assert engine.state.waiting_for == {"F00000": 1, "F00002": 1}
    assert engine.behind("F00000") and not engine.behind("F00001")
    engine.reconnect("px")
    await session.settle()
    assert engine.state.waiting_for == {} and not engine.behind("F00000")
    await store.close()


async def test_a_reconnect_sends_what_waited_a_pass_per_leader_event_not_per_copy(
        tmp_path: Path) -> None:
    """On reconnect the first waiting copy of every follower goes in one pass (one
    commit of its intents, one dispatch), the next ones in the next pass: followers
    are apart, and each follower's copies stay in order, each sized after the one
    before. One copy per pass made a reconnect's commits grow with followers x fills."""
    from synctui.bench.fanout import LEADER, _session

    store, session = await _session(tmp_path, 20, False, "reconnect", freeze=False)
    engine = session.world.engine
    engine.disconnect("px")  # the ten even-numbered followers are at px
    for n in range(5):
        engine.place_order(LEADER, "MNQ", Side.BUY, qty=Decimal(n + 1))
        await session.settle()
    assert len(engine.state.waiting) == 50
    commits = store.commits
    engine.reconnect("px")
    await session.settle()
    assert store.commits - commits <= 3 * 5 + 3  # a pass per leader fill, not per copy
    for name in [LEADER] + [f"F{i:05d}" for i in range(20)]:
        held = [p.qty for p in engine.broker_of(name).view(name).positions]
        assert held == [15], (name, held)
    assert engine.state.waiting == {} and not engine.state.failures
    await store.close()
