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
import errno
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

import aiosqlite
import platformdirs

from synctui.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

SQLITE_HEADER = b"SQLite format 3\x00"
OPEN_BUSY_MS = 2000  # start-up: how long a lock held by another program is waited for
BUSY_MS = 5000  # a session: how long a writer waits for a reader's checkpoint and the like


class StoreError(Exception):
    """The database cannot be used; the message says why, for a person."""


def default_path() -> Path:
    """The user's data directory (platformdirs), e.g. ~/.local/share/synctui/synctui.db."""
    return Path(platformdirs.user_data_dir("synctui", appauthor=False)) / "synctui.db"


def real_path(path: Path) -> Path:
    """The file itself: absolute, `~` expanded, every symlink and `..` resolved.

    SQLite's URI needs an absolute path, and the one-instance lock must be the
    same for every name of the file (`x.db`, `./x.db`, a symlink to it).
    """
    return Path(os.path.realpath(path.expanduser()))


def explain(error: BaseException, shown: Path | str) -> StoreError:
    """What a person reads when SQLite or the operating system refuses: which file,
    what happened and what to do, on one line. The one place errors are mapped."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", -1) & 0xFF
        if code == sqlite3.SQLITE_FULL:
            return StoreError(f"{shown}: the disk is full (the last change was not saved): "
                              "free some space, then start synctui again")
        if code == sqlite3.SQLITE_IOERR:
            return StoreError(f"{shown}: the disk refused a write ({error}; the last change "
                              "was not saved): check free space and the disk, then start again")
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StoreError(f"{shown} is locked by another program: close it (an sqlite3 "
                              "shell, a backup or sync tool), then start synctui again")
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
            return StoreError(f"{shown} is read-only: make it and its folder writable, or "
                              "give --db a database elsewhere")
        if code == sqlite3.SQLITE_CANTOPEN:
            return StoreError(f"cannot open {shown}: check that its folder exists and is "
                              "writable, or give --db a database elsewhere")
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return StoreError(f"{shown} is corrupt and was left untouched ({error}): "
                              "restore a backup or move it aside")
        return StoreError(f"{shown}: database error ({error})")
    if isinstance(error, OSError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return StoreError(f"{shown}: the disk is full ({error.strerror}): free some "
                              "space, then start synctui again")
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            where = error.filename or shown
            return StoreError(f"{shown} is read-only ({where}: {error.strerror}): make it and "
                              "its folder writable, or give --db a database elsewhere")
        return StoreError(f"{shown}: {error.strerror or error}")
    return StoreError(f"{shown}: {error}")


def _inspect(path: Path, shown: Path, untouched: bool = False) -> int | None:
    """The schema version of an existing synctui database, or None for a new file.

    After an unclean shutdown (a WAL still holding commits: SQLite removes it when
    the last connection closes cleanly) the whole-file `integrity_check` runs,
    which also compares every index with its table. A file `untouched` since
    synctui closed it cleanly (`Lock.mark_clean`) is not read whole again: a
    million orders of history would cost a second at every start. Any other
    file (a clean close of an older synctui, a copy, a restore, a file changed
    while synctui was not running) gets the cheaper `quick_check`.
    """
    wal = path.with_name(path.name + "-wal")
    has_wal = wal.exists() and wal.stat().st_size > 0  # a crash left commits there
    if not path.exists() or (path.stat().st_size == 0 and not has_wal):
        return None
    if path.stat().st_size > 0:
        with path.open("rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise StoreError(f"{shown} is not a synctui database (it is not an SQLite file)")
    try:
        # Read-only. Immutable (no -wal/-shm files made beside a file we may refuse) only
        # when no WAL holds commits: after a crash the WAL is the newest truth, and
        # ignoring it would misread a live database as new or corrupt.
        uri = f"{path.as_uri()}?mode=ro" + ("" if has_wal else "&immutable=1")
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            application = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            ours = application == APPLICATION_ID
            if not ours and (application != 0 or tables or version):
                raise StoreError(f"{shown} is not a synctui database (another program's "
                                 "SQLite file): give --db another file")
            check = "ok"
            if has_wal or not untouched:
                pragma = "integrity_check" if has_wal else "quick_check"
                check = db.execute(f"PRAGMA {pragma}").fetchone()[0]
    except sqlite3.DatabaseError as error:
        code = getattr(error, "sqlite_errorcode", -1) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
                    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR):
            raise explain(error, shown) from None
        raise StoreError(f"{shown} is corrupt and was left untouched ({error}): "
                         "restore a backup or move it aside") from None
    if check != "ok":
        raise StoreError(f"{shown} is corrupt and was left untouched ({check}): "
                         "restore a backup or move it aside")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{shown} was written by a newer synctui (schema {version}; this one knows up to "
            f"{SCHEMA_VERSION}): upgrade synctui to open it")
    return int(version) if tables else None


class Lock:
    """An exclusive lock beside the database: two engines would double every copy.

    `flock` on a sidecar file named after the real file (symlinks and `./`
    resolved), so every name of one database meets the same lock. The kernel
    releases it when the process dies, even by SIGKILL, so a crash never
    leaves a stale lock behind.
    """

    def __init__(self, path: Path, shown: Path | None = None) -> None:
        self.database = path
        self.shown = shown or path
        self.path = path.with_name(path.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        try:
            handle = self.path.open("a", encoding="utf-8")
            os.chmod(self.path, 0o600)
        except OSError as error:
            raise explain(error, self.shown) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"another synctui is already using {self.shown}: "
                "close it first (two would copy every trade twice)") from None
        self._handle = handle

    def mark_clean(self) -> None:
        """Remember, in the lock file, the database as a clean close left it (no WAL):
        its inode, size and modification time. The time is set back by a nanosecond
        first, so that any later write, even within the same tick of the file
        system's clock, leaves a time that differs from the mark."""
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            if self.database.with_name(self.database.name + "-wal").exists():
                return  # not clean: the next start checks the whole file
            st = self.database.stat()
            os.utime(self.database, ns=(st.st_atime_ns, st.st_mtime_ns - 1))
            self._handle.truncate(0)
            self._handle.write(self._fingerprint() + "\n")
            self._handle.flush()

    def untouched(self) -> bool:
        """Whether the database is as the last clean close left it (`mark_clean`)."""
        if self._handle is None:
            return False
        try:
            with self.path.open(encoding="utf-8") as mark:
                said = mark.read().strip()
            return bool(said) and said == self._fingerprint()
        except (OSError, UnicodeDecodeError):
            return False

    def opened(self) -> None:
        """The mark vouches for one start only: once this one has the file open, it is
        taken off (a refused start leaves the lock file as it found it)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)

    def _fingerprint(self) -> str:
        st = self.database.stat()
        return f"clean {st.st_ino} {st.st_size} {st.st_mtime_ns}"

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _create_private(path: Path) -> bool:
    """Create an empty database file readable by the owner only; True if it was made."""
    if path.exists():
        return False
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    return True


def _writable(path: Path, shown: Path) -> None:
    """Refuse a read-only file or folder before SQLite is asked to write in it: SQLite
    would open a read-only file read-only without a word and fail at the first save."""
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"{shown} is in a read-only folder ({folder}): synctui writes its "
                         "lock and journal beside the database; make the folder writable "
                         "or give --db a database elsewhere")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"{shown} is read-only: make it writable (chmod u+rw) or give --db "
                         "a copy elsewhere")


def _forget(path: Path) -> None:
    """Remove a database file this start created and could not finish, with its WAL."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            path.with_name(path.name + suffix).unlink()


def _prepare(given: Path) -> tuple[Lock, int | None, bool]:
    """Lock, inspect and create the file (blocking work, run in a thread). Returns the
    lock, the schema version found, and whether the file was created now."""
    shown = given.expanduser()
    path = real_path(given)
    if path.exists() and path.is_dir():
        raise StoreError(f"{shown} is a directory, not a database file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise StoreError(f"cannot create {path.parent}: {error.strerror}") from None
    _writable(path, shown)
    lock = Lock(path, shown)
    lock.acquire()
    try:
        version = _inspect(path, shown, untouched=lock.untouched())
        created = _create_private(path)
    except StoreError:
        lock.release()
        raise
    except BaseException as error:
        lock.release()
        if isinstance(error, OSError):
            raise explain(error, shown) from None
        raise
    return lock, version, created


async def open_database(path: Path) -> tuple[aiosqlite.Connection, Lock, bool]:
    """Lock, inspect, open, migrate. Returns the connection, its lock, and whether
    the database is new (holds no world yet).

    Every failure closes what was opened (aiosqlite's worker thread is not a
    daemon: a connection left open keeps the process alive) and comes out as a
    StoreError; a file this start created is removed again.
    """
    lock, version, created = await asyncio.to_thread(_prepare, path)
    try:
        # Not bound to aiosqlite's thread: the store commits from the loop's (`Store._commit`).
        db = await aiosqlite.connect(lock.database, isolation_level=None,
                                     check_same_thread=False)
    except BaseException as error:
        lock.release()
        raise explain(error, lock.shown) if isinstance(error, Exception) else error from None
    try:
        # A write lock held by another program is waited for this long, then refused.
        await db.execute(f"PRAGMA busy_timeout={OPEN_BUSY_MS}")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        # No checkpoint inside a commit (SQLite's default runs one every 1,000 WAL
        # pages, inside whichever fan-out crosses the mark): the store checkpoints
        # beside the writer instead (`Store.checkpoint_soon`).
        await db.execute("PRAGMA wal_autocheckpoint=0")
        await _migrate(db, version or 0)
        # Take the write lock once now, so a file held by another program is refused at
        # start-up and not at the first save.
        await db.execute("BEGIN IMMEDIATE")
        await db.execute("ROLLBACK")
        await db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        async with db.execute("SELECT count(*) FROM brokers") as cursor:
            row = await cursor.fetchone()
        fresh = row is None or row[0] == 0
        lock.opened()
    except BaseException as error:
        await close_quietly(db)
        if created:
            _forget(lock.database)
        lock.release()
        if isinstance(error, Exception):
            raise explain(error, lock.shown) from None
        raise
    return db, lock, fresh


async def close_quietly(db: aiosqlite.Connection) -> None:
    """Close a connection whatever state it is in: its thread must end."""
    with contextlib.suppress(Exception):
        if db.in_transaction:
            await db.execute("ROLLBACK")
    with contextlib.suppress(Exception):
        await db.close()


async def rollback(db: aiosqlite.Connection) -> None:
    """Undo a failed transaction without hiding why it failed: SQLite may already
    have rolled it back itself (a full disk or an I/O error at COMMIT do), and a
    second ROLLBACK would raise `cannot rollback - no transaction is active`."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")


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
            await rollback(db)
            raise
