"""Opening a database safely: one synctui per file, and never harm a file that
is not ours.

Before anything is written, the file is inspected read-only: a file that is
not SQLite, a SQLite file of another application, a database from a newer
synctui, or a corrupt one is refused with a clear message and left exactly
as it was. Only then is it opened for writing, switched to WAL and migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

import aiosqlite
import platformdirs

from synctui.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """The database cannot be used; the message says why, for a person."""


def default_path() -> Path:
    """The user's data directory (platformdirs), e.g. ~/.local/share/synctui/synctui.db."""
    return Path(platformdirs.user_data_dir("synctui", appauthor=False)) / "synctui.db"


def _inspect(path: Path) -> int | None:
    """The schema version of an existing synctui database, or None for a new file."""
    wal = path.with_name(path.name + "-wal")
    has_wal = wal.exists() and wal.stat().st_size > 0  # a crash left commits there
    if not path.exists() or (path.stat().st_size == 0 and not has_wal):
        return None
    if path.stat().st_size > 0:
        with path.open("rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise StoreError(f"{path} is not a synctui database (it is not an SQLite file)")
    try:
        # Read-only. Immutable (no -wal/-shm files made beside a file we may refuse) only
        # when no WAL holds commits: after a crash the WAL is the newest truth, and
        # ignoring it would misread a live database as new or corrupt.
        uri = f"{path.as_uri()}?mode=ro" + ("" if has_wal else "&immutable=1")
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            application = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if application != APPLICATION_ID and (application != 0 or tables):
                raise StoreError(f"{path} is not a synctui database (another program's SQLite)")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path} is corrupt and was left untouched ({error})") from None
    if check != "ok":
        raise StoreError(f"{path} is corrupt and was left untouched ({check})")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer synctui (schema {version}; this one knows up to "
            f"{SCHEMA_VERSION}): upgrade synctui to open it")
    return int(version) if tables else None


class Lock:
    """An exclusive lock beside the database: two engines would double every copy.

    `flock` on a sidecar file: the kernel releases it when the process dies,
    even by SIGKILL, so a crash never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.database = path
        self.path = path.with_name(path.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a", encoding="utf-8")
        os.chmod(self.path, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"another synctui is already using {self.database}: "
                "close it first (two would copy every trade twice)") from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _create_private(path: Path) -> None:
    """Create the directory and an empty database file readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)


def _prepare(path: Path) -> tuple[Lock, int | None]:
    """Lock, inspect and create the file (blocking work, run in a thread)."""
    path = path.expanduser()
    if path.exists() and path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise StoreError(f"cannot create {path.parent}: {error.strerror}") from None
    lock = Lock(path)
    lock.acquire()
    try:
        version = _inspect(path)
        _create_private(path)
    except BaseException:
        lock.release()
        raise
    return lock, version


async def open_database(path: Path) -> tuple[aiosqlite.Connection, Lock, bool]:
    """Lock, inspect, open, migrate. Returns the connection, its lock, and whether
    the database is new (holds no world yet)."""
    lock, version = await asyncio.to_thread(_prepare, path)
    try:
        db = await aiosqlite.connect(lock.database, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await _migrate(db, version or 0)
            async with db.execute("SELECT count(*) FROM brokers") as cursor:
                row = await cursor.fetchone()
            fresh = row is None or row[0] == 0
        except BaseException:
            await db.close()
            raise
    except BaseException:
        lock.release()
        raise
    return db, lock, fresh


async def _migrate(db: aiosqlite.Connection, version: int) -> None:
    """Forward migrations, each in its own transaction with its version bump."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[target - 1]
        statements = [s.strip() for s in script.split(";") if s.strip()]
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await db.execute(statement)
            await db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            await db.execute(f"PRAGMA user_version={target}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
