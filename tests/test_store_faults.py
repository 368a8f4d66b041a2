"""Database faults (issue 9, items 2, 3, 4 and 10): every one ends with ONE line that
names the file and says what to do, exit 2, the file left as it was, and no
process left hanging on aiosqlite's worker thread.

Every database is a real file under `tmp_path`; where a second program is
involved it is a real second process. The faults are real, not mocked:

- read-only: `chmod` for an ordinary user; as root (who ignores permissions)
  a read-only bind mount in a private mount namespace (`unshare -m`), else skipped;
- locked: a plain `sqlite3` connection in another process holding a write
  transaction, in rollback-journal mode and in WAL mode;
- full disk: `RLIMIT_FSIZE` on the synctui process (its files cannot grow past
  the limit: the kernel refuses the write, as on a full disk; SQLite reports
  SQLITE_FULL or a write I/O error) and `PRAGMA max_page_count` on the store's
  own connection (SQLite's own SQLITE_FULL, inside a statement);
- damage: index bytes edited in place, found through the index's rootpage.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from synctui.cli import main
from synctui.domain.clock import SteppingClock
from synctui.domain.orders import Side
from synctui.store.database import StoreError
from synctui.store.schema import APPLICATION_ID, SCHEMA_VERSION
from synctui.store.store import Store
from tests.test_store import SMALL, D, make_database, start, world_of

TIMEOUT = 60.0  # a synctui that has not exited by then is hanging
HEADLESS = {"TERM": "xterm-256color",
            "TEXTUAL_DRIVER": "textual.drivers.headless_driver:HeadlessDriver"}
# Runs the real CLI, optionally with a file-size limit (argv[1], bytes; 0: none).
BOOT = ("import resource, sys\n"
        "limit = int(sys.argv[1])\n"
        "if limit:\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))\n"
        "from synctui.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n")


def run_for(seconds: int) -> tuple[str, ...]:
    """A prefix that interrupts a dashboard that started fine after `seconds`."""
    return ("timeout", "-k", "5", "-s", "INT", str(seconds))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> dict[str, str]:
    """Every file of a folder with its digest: 'untouched' means all of them."""
    return {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def synctui(*args: str, cwd: Path, fsize: int = 0,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`synctui ARGS` in a child process without a terminal; it must end by itself."""
    env = {**os.environ, **HEADLESS}
    command = [*prefix, sys.executable, "-c", BOOT, str(fsize), *args]
    try:
        return subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as hung:
        raise AssertionError(f"synctui {' '.join(args)} did not exit within {TIMEOUT}s "
                             f"(stderr: {hung.stderr!r})") from None


def one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 and exactly one line on stderr, `synctui: ...`, with `words` in it."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("synctui: "), lines[0]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def scenario_file(folder: Path) -> Path:
    path = folder / "scenario.json"
    path.write_text(json.dumps(SMALL))
    return path


def new_store_file(path: Path) -> None:
    """A synctui database that holds no desk yet (what `replay --db` accepts)."""

    async def make() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(make())


def desk_file(path: Path) -> None:
    asyncio.run(make_database(path))


# --- item 2: a relative --db path ----------------------------------------------------


async def test_a_relative_db_path_opens_again_on_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    clock = SteppingClock()
    store, _session = await start(Path("desk.db"), clock, lambda: world_of(SMALL, clock))
    await store.close()
    for given in (Path("desk.db"), Path("./desk.db"), Path("sub/../desk.db")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        store = await Store.open(given)
        try:
            assert not store.fresh
        finally:
            await store.close()


def test_replay_and_the_dashboard_accept_a_relative_db_twice(tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path)
    first = synctui("replay", str(scenario), "--json", "--db", "kept.db", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # the second replay is refused for the right reason: the file already holds a desk
    one_line(synctui("replay", str(scenario), "--json", "--db", "kept.db", cwd=tmp_path),
             "already holds a desk", "kept.db")
    # the dashboard on the same relative path starts (it fails only if it cannot open)
    desk = tmp_path / "desk.db"
    desk_file(desk)
    again = synctui("--db", "desk.db", cwd=tmp_path, prefix=run_for(8))
    assert "relative path" not in again.stderr
    assert again.returncode not in (1, 2), again.stderr[-3000:]


# --- item 3: one synctui per real file -------------------------------------------------


async def test_a_second_synctui_through_a_symlink_or_a_dot_path_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "data" / "desk.db"
    real.parent.mkdir()
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "linked-dir").symlink_to(real.parent, target_is_directory=True)
    monkeypatch.chdir(real.parent)
    first = await Store.open(Path("desk.db"))
    try:
        for other in (Path("./desk.db"), real, tmp_path / "link.db",
                      tmp_path / "linked-dir" / "desk.db", Path("../data/desk.db")):
            with pytest.raises(StoreError, match="another synctui") as refused:
                await Store.open(other)
            assert str(other) in str(refused.value)
            assert "\n" not in str(refused.value)
    finally:
        await first.close()
    second = await Store.open(tmp_path / "link.db")  # released: any path opens it now
    await second.close()


def test_a_second_synctui_process_through_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "desk.db"
    new_store_file(real)
    (tmp_path / "alias.db").symlink_to(real)
    holder = subprocess.Popen(
        [sys.executable, "-c", BOOT, "0", "--db", str(real)], cwd=tmp_path,
        env={**os.environ, **HEADLESS}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lock_held = False
        for _ in range(200):  # the holder builds the demo desk, then holds the file
            probe = subprocess.run(
                [sys.executable, "-c", "import sqlite3, sys\n"
                 "db = sqlite3.connect(sys.argv[1])\n"
                 "print(db.execute('SELECT count(*) FROM brokers').fetchone()[0])",
                 str(real)], capture_output=True, text=True, check=False)
            if probe.stdout.strip() not in ("", "0"):
                lock_held = True
                break
            time.sleep(0.1)
        assert lock_held, "the first synctui never started"
        scenario = scenario_file(tmp_path)
        one_line(synctui("replay", str(scenario), "--db", "alias.db", cwd=tmp_path),
                 "another synctui", "alias.db")
        one_line(synctui("--db", "./desk.db", cwd=tmp_path), "another synctui", "desk.db")
    finally:
        holder.send_signal(signal.SIGINT)
        try:
            holder.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


# --- item 4: damage found after an unclean shutdown -------------------------------------

KILL_AFTER_A_COMMIT = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("INSERT INTO event_log (at, actor, kind, detail) VALUES ('t', 'app', 'x', 'y')")
os.kill(os.getpid(), signal.SIGKILL)  # no close: the commit stays in the WAL
"""


def damage_an_index(path: Path) -> None:
    """Edit one key of the accounts' primary-key index in place ('lead' -> 'leae'): the
    b-tree stays well formed and sorted, so quick_check passes; the index no longer
    matches its table, which integrity_check sees."""
    with closing(sqlite3.connect(path)) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master "
                             "WHERE name = 'sqlite_autoindex_accounts_1'").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    data = bytearray(path.read_bytes())
    page = data[(root - 1) * size:root * size]
    assert page.count(b"lead") == 1
    data[(root - 1) * size + page.find(b"lead") + 3] = ord("e")
    path.write_bytes(bytes(data))


def checks(path: Path) -> tuple[str, str]:
    uri = f"{path.as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return (db.execute("PRAGMA quick_check").fetchone()[0],
                db.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.fixture
def damaged_unclean(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "desk.db"
    path.parent.mkdir()
    desk_file(path)
    damage_an_index(path)
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_A_COMMIT, str(path)],
                            check=False)
    assert killed.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 0  # the shutdown was not clean
    quick, integrity = checks(path)
    assert quick == "ok"  # the premise: the cheap check does not see this damage
    assert "missing from index" in integrity
    return path


async def test_a_damaged_index_after_an_unclean_shutdown_is_refused_untouched(
        damaged_unclean: Path) -> None:
    path = damaged_unclean
    before = listing(path.parent)
    with pytest.raises(StoreError, match="corrupt") as refused:
        await Store.open(path)
    assert str(path) in str(refused.value)
    assert "\n" not in str(refused.value)
    after = listing(path.parent)
    after.pop("desk.db-shm", None)  # SQLite's shared-memory index of the WAL, not data
    before.pop("desk.db-shm", None)
    assert after == before


def test_a_damaged_index_is_refused_by_replay_and_the_dashboard(
        damaged_unclean: Path, tmp_path: Path) -> None:
    path = damaged_unclean
    digest, wal = sha256(path), sha256(Path(f"{path}-wal"))
    scenario = scenario_file(tmp_path)
    one_line(synctui("replay", str(scenario), "--db", str(path), cwd=tmp_path),
             "corrupt", str(path))
    one_line(synctui("--db", str(path), cwd=tmp_path), "corrupt", str(path))
    assert (sha256(path), sha256(Path(f"{path}-wal"))) == (digest, wal)


def test_a_clean_close_leaves_no_wal_so_the_next_start_knows_it_was_clean(
        tmp_path: Path) -> None:
    """The cheap start-up check relies on this: SQLite removes the WAL on a clean close."""
    path = tmp_path / "desk.db"
    desk_file(path)
    assert not Path(f"{path}-wal").exists()


@pytest.fixture
def checks_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the start-up inspection runs (it opens its own sqlite3 connection)."""
    import synctui.store.database as database

    seen: list[str] = []
    connect = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        db = connect(*args, **kwargs)  # type: ignore[call-overload]
        db.set_trace_callback(seen.append)
        return db  # type: ignore[no-any-return]

    monkeypatch.setattr(database.sqlite3, "connect", traced)
    return seen


def whole_file_checks(seen: list[str]) -> list[str]:
    return [s for s in seen if "quick_check" in s or "integrity_check" in s]


def open_and_close(path: Path) -> None:
    async def run() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(run())


def test_a_start_after_a_clean_close_does_not_read_the_whole_file_again(
        tmp_path: Path, checks_run: list[str]) -> None:
    """Issue 11: a million orders of history would cost a second at every start."""
    path = tmp_path / "desk.db"
    desk_file(path)
    checks_run.clear()
    open_and_close(path)
    assert whole_file_checks(checks_run) == []
    open_and_close(path)  # and again: each clean close marks the file anew
    assert whole_file_checks(checks_run) == []


def test_a_file_changed_after_a_clean_close_is_checked_whole(
        tmp_path: Path, checks_run: list[str]) -> None:
    """Same size, same bytes, only written again (a restore, a copy over it): the mark of
    the clean close no longer vouches for it."""
    path = tmp_path / "desk.db"
    desk_file(path)
    path.write_bytes(path.read_bytes())
    checks_run.clear()
    open_and_close(path)
    assert whole_file_checks(checks_run) == ["PRAGMA quick_check"]


KILL_WHILE_OPEN = """
import asyncio, os, signal, sys
from pathlib import Path
from synctui.store.store import Store
async def main():
    await Store.open(Path(sys.argv[1]))
    os.kill(os.getpid(), signal.SIGKILL)  # never closed
asyncio.run(main())
"""


def test_a_start_after_a_crash_is_checked_whole_even_without_a_wal(
        tmp_path: Path, checks_run: list[str]) -> None:
    """The clean mark vouches for one start: a run that was killed (here before it wrote
    anything, so it leaves no WAL) does not leave it behind for the next."""
    path = tmp_path / "desk.db"
    desk_file(path)
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_OPEN, str(path)], check=False)
    assert killed.returncode == -signal.SIGKILL
    checks_run.clear()
    open_and_close(path)
    assert whole_file_checks(checks_run) == ["PRAGMA quick_check"]


# --- item 10: read-only -----------------------------------------------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            'mount --bind -o ro "$0" "$0"', "/tmp"],
                           capture_output=True, check=False)
    return probe.returncode == 0


@contextmanager
def read_only(target: Path) -> Iterator[tuple[str, ...]]:
    """Makes `target` (a folder or a file) read-only for a synctui run with the
    returned command prefix."""
    if os.geteuid() != 0:
        mode = target.stat().st_mode
        target.chmod(0o555 if target.is_dir() else 0o444)
        try:
            yield ()
        finally:
            target.chmod(mode)
    elif _unshare_works():
        yield ("unshare", "-m", "sh", "-c",
               'mount --bind -o ro "$0" "$0" && exec "$@"', str(target))
    else:
        pytest.skip("root ignores file modes and no mount namespace is available")


@pytest.mark.parametrize("what", ["folder", "file"])
@pytest.mark.parametrize("mode", ["replay", "dashboard"])
def test_a_read_only_database_is_refused_untouched(
        tmp_path: Path, what: str, mode: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "desk.db"
    (new_store_file if mode == "replay" else desk_file)(path)
    for leftover in folder.glob("desk.db.lock"):
        leftover.unlink()
    before = listing(folder)
    scenario = scenario_file(tmp_path)
    args = (("replay", str(scenario), "--db", str(path)) if mode == "replay"
            else ("--db", str(path)))
    with read_only(folder if what == "folder" else path) as prefix:
        line = one_line(synctui(*args, cwd=tmp_path, prefix=prefix), str(path), "read-only")
    after = listing(folder)
    after.pop("desk.db.lock", None)
    assert after == before, line


def test_a_new_database_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "new.db"
    with read_only(folder) as prefix:
        one_line(synctui("--db", str(path), cwd=tmp_path, prefix=prefix), "read-only")
    assert list(folder.iterdir()) == []


# --- item 10: locked by another program --------------------------------------------------

HOLD_A_WRITE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "rollback":
    db.execute("PRAGMA journal_mode=DELETE")
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO event_log (at, actor, kind, detail) VALUES ('t', 'other', 'x', 'y')")
print("holding", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
db.close()
"""


@contextmanager
def held_by_another_program(path: Path, journal: str) -> Iterator[None]:
    other = subprocess.Popen([sys.executable, "-c", HOLD_A_WRITE, str(path), journal],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        yield
    finally:
        assert other.stdin is not None
        other.stdin.write("\n")
        other.stdin.close()
        other.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("journal", ["rollback", "wal"])
@pytest.mark.parametrize("mode", ["replay", "dashboard"])
def test_a_database_locked_by_another_program_is_refused_untouched(
        tmp_path: Path, journal: str, mode: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "desk.db"
    (new_store_file if mode == "replay" else desk_file)(path)
    scenario = scenario_file(tmp_path)
    args = (("replay", str(scenario), "--db", str(path)) if mode == "replay"
            else ("--db", str(path)))
    with held_by_another_program(path, journal):
        before = listing(folder)
        before.pop("desk.db-shm", None)
        one_line(synctui(*args, cwd=tmp_path), str(path), "locked by another program")
        after = listing(folder)
        after.pop("desk.db-shm", None)
        after.pop("desk.db.lock", None)
        before.pop("desk.db.lock", None)
        assert after == before
    # once the other program is gone, the database opens as before
    assert synctui(*args, cwd=tmp_path, prefix=run_for(8)).returncode \
        in ((0,) if mode == "replay" else (0, 124, -signal.SIGINT, 130))


# --- item 10: a full disk ------------------------------------------------------------------


async def test_a_save_that_fills_the_disk_says_so_and_keeps_the_last_commit(
        tmp_path: Path) -> None:
    """SQLite's own SQLITE_FULL, inside a statement (max_page_count on the store's
    connection): the original error is kept, never `cannot rollback`."""
    path = tmp_path / "desk.db"
    clock = SteppingClock()
    store, session = await start(path, clock, lambda: world_of(SMALL, clock))
    try:
        async with store.db.execute("PRAGMA page_count") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        await store.db.execute(f"PRAGMA max_page_count={row[0]}")
        commits = store.commits
        with pytest.raises(StoreError) as full:
            for _ in range(200):
                session.world.engine.place_order("lead", "MNQ", Side.BUY, qty=D(1))
                store.note("test", "filler", "x" * 4000)
                await session.settle()
        message = str(full.value)
        assert "full" in message and str(path) in message and "\n" not in message
        assert "cannot rollback" not in message
        assert store.commits > commits  # some saves went through before the disk filled
        # the session is over: a later save does not write half a world
        with pytest.raises(StoreError):
            await session.settle()
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("limit", [16 * 1024, 64 * 1024])
def test_replay_on_a_full_disk_says_so_in_one_line(tmp_path: Path, limit: int) -> None:
    """RLIMIT_FSIZE: the kernel refuses to grow the files past `limit`, at the
    migrations' COMMIT (16 KiB) or at the first save of the world (64 KiB)."""
    scenario = scenario_file(tmp_path)
    path = tmp_path / "new.db"
    line = one_line(synctui("replay", str(scenario), "--db", str(path), cwd=tmp_path,
                            fsize=limit), str(path))
    assert "disk" in line
    assert "cannot rollback" not in line


def test_the_dashboard_exits_in_one_line_when_the_disk_fills_at_start(tmp_path: Path) -> None:
    """The connection is open when the first save fails: the process must still end."""
    path = tmp_path / "new.db"
    line = one_line(synctui("--db", str(path), cwd=tmp_path, fsize=64 * 1024), str(path))
    assert "disk" in line


def test_the_dashboard_exits_in_one_line_when_the_disk_fills_during_the_demo(
        tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    first = synctui("--db", str(path), cwd=tmp_path, prefix=run_for(4))
    assert first.returncode != 2, first.stderr[-3000:]
    size = max(path.stat().st_size, 64 * 1024)
    logged = event_log_rows(path)
    # the demo writes every tick: the WAL soon reaches the limit
    line = one_line(synctui("--db", str(path), cwd=tmp_path, fsize=size + 256 * 1024),
                    str(path))
    assert "disk" in line
    assert event_log_rows(path) > logged  # saves went through first: it failed mid-session
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def event_log_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM event_log").fetchone()[0])


# --- item 10: a foreign SQLite file with a high user_version ------------------------------


def test_a_foreign_sqlite_file_with_a_high_version_is_not_called_a_newer_synctui(
        tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path)
    bare = tmp_path / "bare.db"
    with closing(sqlite3.connect(bare)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 40}")
        db.commit()
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("PRAGMA application_id = 1234")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 40}")
        db.commit()
    for path in (bare, other):
        digest = sha256(path)
        code = main(["replay", str(scenario), "--db", str(path)])
        assert code == 2
        assert sha256(path) == digest
        with pytest.raises(StoreError, match="not a synctui database"):
            asyncio.run(Store.open(path))
    ours = tmp_path / "ours.db"
    with closing(sqlite3.connect(ours)) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 40}")
        db.commit()
    with pytest.raises(StoreError, match="newer synctui"):
        asyncio.run(Store.open(ours))
