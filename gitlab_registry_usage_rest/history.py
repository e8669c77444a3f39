"""The history file: the registry's figures over time, in SQLite (Python's ``sqlite3``, no server).

After each successful refresh the refresh thread records, in one transaction, a row of registry totals
and a point for each repository and group whose figures (``size``, ``disk_size``, ``unique_size``,
``tag_count``) changed since its last point; a repository or group that is gone gets a closing point (all
figures NULL). A repository whose tags could not be read is skipped: its last figures stay in force. The
last figures of every series are kept in memory (loaded at open), so an unchanged registry of 100,000
repositories costs one totals row and a pass over the snapshot.

Two tiers keep a year of daily changes of 100,000 repositories under a gigabyte:

- ``points``: plain rows of the last ``history_full_days`` (every refresh's changes), queried in SQL;
- ``archive``: older points, the last of each UTC day, packed per series and 32-day block into one
  compressed row (columns of deltas, byte planes, zlib: about 12 bytes a point instead of about 40);
  ``base`` copies each series' newest archived point, so any moment since the plain tier's start is
  answered by plain rows alone.

Beside them, ``checkpoints``: every series' disk size in force at one refresh, in one packed row (an array
indexed by series id): the figures at the end of each UTC day (its last refresh, written at the next day's
first), and after any refresh that brings the points written since the last checkpoint to
``CHECKPOINT_ROWS``. Growth over a window (``disk_sizes_at``) needs every series' figures at the window's
start: one checkpoint and the plain rows after it, never a scan of every series. Where those rows are in
the archive already, only the day-end checkpoints (and the first) are kept, and a window starting there
starts with the figures at the end of the last day that ended before it: the archive's resolution, a day.

Retention runs in the same transaction: points older than ``history_full_days`` move to the archive, at
most ``ARCHIVE_BATCH`` rows (or a sixteenth of those waiting, if more) per refresh, oldest first, so a
day's changes crossing into the archive cost many refreshes a little each instead of one refresh many
seconds; totals rows thin to one a day, and archive blocks wholly older than ``history_days`` go (at most
``PRUNE_BATCH`` a refresh), except the block holding a series' last point before that horizon (the figures
in force when the kept history starts). Blocks are freed whole, so up to 32 days more than
``history_days`` may be kept.

The file is in WAL mode: request threads read through connections of their own (read-only), which never
wait for the writer. It is created with mode 0600 in folders created with 0700, as the data file is. A
file that is not a readable history file is moved aside (``history.sqlite3.unreadable-<time>``) and a new
one started; a write that fails (full disk, locked file) is logged and rolled back. None of it stops the
service, which keeps serving the new snapshot.

Schema versions (``PRAGMA user_version``), migrated in code at open: 1 kept every point in ``points``;
2 adds the archive, ``base`` and ``meta`` (the next write moves version 1's older points into the archive);
3 adds ``checkpoints`` (the next write makes the first; windows starting before it are answered, slowly,
from the tiers themselves).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import os
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .growth import DAY_MS, Point, closing, thin_daily, utc_day
from .model import Snapshot
from .persistence import _make_private_folders

log = logging.getLogger(__name__)

REPOSITORY, GROUP = 0, 1
BLOCK_DAYS = 32
SCHEMA_VERSION = 3
# A checkpoint after this many points (or a quarter of the series in force, if more): the most plain rows
# a window's start reads after its checkpoint.
CHECKPOINT_ROWS = 20_000
# Points moved into the archive per refresh: at least this many, or a sixteenth of those waiting.
ARCHIVE_BATCH = 5_000
ARCHIVE_SPREAD = 16
# Blocks freed per refresh, at most (a day's pruning frees a block of every series once every 32 days).
PRUNE_BATCH = 20_000

MIGRATIONS: tuple[str, ...] = (
    # Version 1: totals, series names, every point.
    """
    CREATE TABLE totals (
        timestamp INTEGER PRIMARY KEY,
        size INTEGER NOT NULL, disk_size INTEGER NOT NULL,
        repository_count INTEGER NOT NULL, tag_count INTEGER NOT NULL);
    CREATE TABLE series (id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE (kind, name));
    CREATE TABLE points (
        series INTEGER NOT NULL, timestamp INTEGER NOT NULL,
        size INTEGER, disk_size INTEGER, unique_size INTEGER, tag_count INTEGER,
        PRIMARY KEY (series, timestamp)) WITHOUT ROWID;
    CREATE INDEX points_by_time ON points (timestamp);
    """,
    # Version 2: the daily archive in packed blocks, each series' newest archived point, and settings.
    """
    CREATE TABLE archive (
        series INTEGER NOT NULL, block INTEGER NOT NULL,
        first INTEGER NOT NULL, last INTEGER NOT NULL, last_gone INTEGER NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (series, block)) WITHOUT ROWID;
    CREATE INDEX archive_by_block ON archive (block);
    CREATE TABLE base (
        series INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL,
        size INTEGER, disk_size INTEGER, unique_size INTEGER, tag_count INTEGER);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);
    """,
    # Version 3: checkpoints of every series' disk size, and the plain rows by time with their disk sizes (the
    # rows after a checkpoint are read from the index alone). Version 2's "compacted" (every point before it
    # archived) becomes "moved" (the newest point archived: every point after it is plain).
    """
    CREATE TABLE checkpoints (timestamp INTEGER PRIMARY KEY, data BLOB NOT NULL);
    DROP INDEX points_by_time;
    CREATE INDEX points_by_time ON points (timestamp, disk_size);
    INSERT OR IGNORE INTO meta SELECT 'moved', value - 1 FROM meta WHERE key = 'compacted';
    DELETE FROM meta WHERE key = 'compacted'
    """,
)
_TABLES = {1: {"totals", "series", "points"}, 2: {"totals", "series", "points", "archive", "base", "meta"},
           3: {"totals", "series", "points", "archive", "base", "meta", "checkpoints"}}
# SQLite's answers for a file that is not a database, or a damaged one: moved aside, a new one started.
_UNREADABLE = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})

Figures = tuple[int, int, int | None, int]  # size, disk_size, unique_size, tag_count


@dataclass(frozen=True, slots=True)
class Totals:
    """The registry's totals at one refresh (``timestamp`` in ms)."""

    timestamp: int
    size: int
    disk_size: int
    repository_count: int
    tag_count: int


class HistoryFileError(Exception):
    """The file is not a history file this version can use."""


def _pack(raw: array[int]) -> bytes:
    """64-bit integers with their bytes regrouped by significance (the high bytes of small numbers are zeros,
    which compress to nothing), deflated; little-endian everywhere."""
    if sys.byteorder == "big":
        raw = array("q", raw)
        raw.byteswap()
    data = raw.tobytes()
    return zlib.compress(b"".join(data[plane::8] for plane in range(8)), 6)


def _unpack(blob: bytes) -> array[int]:
    planes = zlib.decompress(blob)
    count = len(planes) // 8
    data = bytearray(len(planes))
    for plane in range(8):
        data[plane::8] = planes[plane * count:(plane + 1) * count]
    raw = array("q")
    raw.frombytes(bytes(data))
    if sys.byteorder == "big":
        raw.byteswap()
    return raw


def _as_columns(points: Iterable[Point]) -> list[list[int]]:
    """The five columns of points (NULL as -1: sizes are never negative)."""
    return [[-1 if value is None else value for value in column] for column in zip(*points, strict=True)]


def _pack_columns(columns: Sequence[Sequence[int]]) -> bytes:
    raw = array("q")
    for values in columns:
        raw.append(values[0])
        raw.extend(map(operator.sub, values[1:], values))  # the deltas
    return _pack(raw)


def _unpack_columns(blob: bytes) -> list[list[int]]:
    raw = _unpack(blob)
    length = len(raw) // 5
    return [list(itertools.accumulate(raw[column * length:(column + 1) * length])) for column in range(5)]


def encode_block(points: Sequence[Point]) -> bytes:
    """Points (in time order) as a packed archive block: each column as deltas of 64-bit integers (NULL as
    -1), packed."""
    return _pack_columns(_as_columns(points))


def decode_block(blob: bytes) -> list[Point]:
    """The points of a packed archive block."""
    columns = _unpack_columns(blob)
    return [
        Point(timestamp, None if size < 0 else size, None if disk < 0 else disk, None if unique < 0 else unique,
              None if tags < 0 else tags)
        for timestamp, size, disk, unique, tags in zip(*columns, strict=True)
    ]


def encode_checkpoint(disk_sizes: Mapping[int, int]) -> bytes:
    """Every series' disk size (by series id) as a packed array indexed by id, -1 where a series has none."""
    dense = array("q", [-1]) * (max(disk_sizes, default=-1) + 1)
    for number, disk in disk_sizes.items():
        dense[number] = disk
    return _pack(dense)


def decode_checkpoint(blob: bytes) -> array[int]:
    """A checkpoint's disk sizes, indexed by series id (-1: none, or gone)."""
    return _unpack(blob)


def _block(timestamp: int) -> int:
    return utc_day(timestamp) // BLOCK_DAYS


def _point(row: Sequence[int | None]) -> Point:
    timestamp, size, disk, unique, tags = row
    assert timestamp is not None
    return Point(timestamp, size, disk, unique, tags)


class History:
    """The history file: written by the refresh thread (``record``), read by request threads."""

    def __init__(self, path: str, full_days: int = 7, days: int = 400, busy_timeout: float = 5.0,
                 checkpoint_rows: int = CHECKPOINT_ROWS, archive_batch: int = ARCHIVE_BATCH) -> None:
        self.path = Path(path)
        self.full_days, self.days = full_days, days
        self._busy_timeout = busy_timeout
        self._checkpoint_rows, self._archive_batch = checkpoint_rows, archive_batch
        self._writer: sqlite3.Connection | None = None
        self._readers = threading.local()
        # Bumped whenever the file is replaced: readers reopen instead of reading the file moved aside.
        self._generation = 0
        # Replaced, never changed in place, once loaded: request threads iterate it while the writer goes on.
        self._ids: tuple[dict[str, int], dict[str, int]] = ({}, {})  # per kind: name -> series id
        self._next_id = 1  # ids are never reused: old checkpoints still name the ids of series gone since
        self._last: dict[int, Figures] = {}  # series id -> its figures in force (absent: none or gone)
        self._latest: int | None = None  # the newest totals timestamp
        self._checkpoint: int | None = None  # the newest checkpoint's timestamp
        self._since_checkpoint = 0  # points written after it
        # Held by a write: close() waits for the one under way instead of closing the connection under it.
        self._writing = threading.Lock()
        self._open()

    # ---- writing (the refresh thread)

    def _open(self) -> None:
        """Open (creating or migrating) the file; one that cannot be read as a history file is moved aside."""
        for attempt in (1, 2):
            try:
                self._writer = self._connect()
                return
            except (sqlite3.DatabaseError, HistoryFileError) as error:
                self._close_writer()
                name = getattr(error, "sqlite_errorname", None)
                if attempt == 2 or not (isinstance(error, HistoryFileError) or name in _UNREADABLE):
                    log.error("history file %s cannot be used, no history is recorded: %s", self.path, error)
                    return
                self._move_aside(error)
            except OSError as error:
                self._close_writer()
                log.error("history file %s cannot be opened, no history is recorded: %s", self.path, error)
                return

    def _connect(self) -> sqlite3.Connection:
        _make_private_folders(self.path.parent)
        # Created here, not by SQLite, so that its mode is 0600 whatever the umask.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise HistoryFileError(f"journal mode {mode!r}, not WAL")
            # With WAL, a power cut may lose the last commits but never consistency; a killed process loses nothing.
            connection.execute("PRAGMA synchronous = NORMAL")
            self._migrate(connection)
            self._load(connection)
            if self._checkpoint is None and self._latest is not None:
                # A file from before checkpoints: its figures in force now are the first one.
                connection.execute("BEGIN IMMEDIATE")
                _checkpoint(connection, self._latest, self._last)
                connection.execute("COMMIT")
                self._checkpoint = self._latest
        except BaseException:
            connection.close()
            raise
        for suffix in ("-wal", "-shm"):
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except FileNotFoundError:
                continue
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version}, this version reads up to {SCHEMA_VERSION}")
        if version == 0 and tables:
            raise HistoryFileError(f"not a history file (tables {', '.join(sorted(tables))[:200]})")
        if version and not _TABLES[version] <= tables:
            raise HistoryFileError(f"schema version {version} without its tables")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            if version:
                log.info("history file %s migrated to schema version %d", self.path, number)

    def _load(self, connection: sqlite3.Connection) -> None:
        """The series' ids and the figures in force: the newest plain point, else the newest archived one."""
        self._ids = _series_ids(connection)
        stored = connection.execute("SELECT value FROM meta WHERE key = 'next_series'").fetchone()
        highest = max(itertools.chain(self._ids[REPOSITORY].values(), self._ids[GROUP].values()), default=0)
        self._next_id = max(highest + 1, stored[0] if stored else 1)
        last: dict[int, Figures | None] = {}
        for series, size, disk, unique, tags in connection.execute("SELECT series, size, disk_size, unique_size, "
                                                                   "tag_count FROM base"):
            last[series] = None if size is None else (size, disk, unique, tags)
        for series, size, disk, unique, tags, _ in connection.execute(
                "SELECT series, size, disk_size, unique_size, tag_count, MAX(timestamp) FROM points GROUP BY series"):
            last[series] = None if size is None else (size, disk, unique, tags)
        self._last = {series: figures for series, figures in last.items() if figures is not None}
        self._latest = connection.execute("SELECT MAX(timestamp) FROM totals").fetchone()[0]
        self._checkpoint = connection.execute("SELECT MAX(timestamp) FROM checkpoints").fetchone()[0]
        self._since_checkpoint = 0 if self._checkpoint is None else connection.execute(
            "SELECT COUNT(*) FROM points WHERE timestamp > ?", (self._checkpoint,)).fetchone()[0]

    def _move_aside(self, error: Exception) -> None:
        stem = f"{self.path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
        aside, number = self.path.with_name(stem), 1
        while aside.exists():
            aside, number = self.path.with_name(f"{stem}.{number}"), number + 1
        try:
            os.replace(self.path, aside)
        except OSError as move_error:
            log.error("history file %s is unreadable (%s) and could not be moved aside: %s", self.path, error,
                      move_error)
            raise
        for suffix in ("-wal", "-shm"):
            # The journal belongs to the file moved aside; a new file must not replay it.
            try:
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                continue
        self._generation += 1
        log.warning("history file %s is unreadable, moved to %s; a new one is started: %s", self.path, aside, error)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self, timeout: float = 10.0) -> None:
        """Close the file, after the write under way (if any) is done; a write still going on after ``timeout``
        seconds is left to its transaction (the file stays consistent whenever the process ends)."""
        if not self._writing.acquire(timeout=timeout):
            log.warning("history file %s: a write is still going on; not closed", self.path)
            return
        try:
            self._close_writer()
        finally:
            self._writing.release()

    def record(self, snapshot: Snapshot) -> bool:
        """Record ``snapshot``'s figures where they changed, then apply retention, in one transaction;
        ``False`` if nothing was written (a failure is logged, the file keeps its last state)."""
        with self._writing:
            return self._record(snapshot)

    def _record(self, snapshot: Snapshot, _retry: bool = True) -> bool:
        timestamp = round(snapshot.timestamp * 1000)
        if self._writer is None:
            self._open()  # a file that could not be opened may be back (a disk remounted, a lock released)
        if self._writer is None:
            return False
        if self._latest is not None and timestamp <= self._latest:
            log.info("history already has data of %s or later; not recorded again",
                     time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp / 1000)))
            return False
        started = time.monotonic()
        try:
            changes = self._write(self._writer, snapshot, timestamp)
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorname", None) in _UNREADABLE:
                self._close_writer()
                try:
                    self._move_aside(error)
                except OSError:
                    return False
                self._open()
                return _retry and self._record(snapshot, _retry=False)  # into the new file
            else:
                log.error("could not write the history file %s, the data is served without it: %s", self.path, error)
            return False
        log.info("history: %d changed series recorded in %.2fs", changes, time.monotonic() - started)
        return True

    def _write(self, connection: sqlite3.Connection, snapshot: Snapshot, timestamp: int) -> int:
        ids, last = self._ids, self._last
        new_ids: tuple[dict[str, int], dict[str, int]] = ({}, {})
        new_last: dict[int, Figures] = {}
        present: set[int] = set()
        rows: list[tuple[int, int, int | None, int | None, int | None, int | None]] = []
        next_id = self._next_id
        connection.execute("BEGIN IMMEDIATE")
        try:
            size = disk = tags = 0

            def observe(kind: int, name: str, figures: Figures | None) -> None:
                number = ids[kind].get(name)
                if figures is None:  # unreadable: whatever it had stays in force
                    if number is not None:
                        present.add(number)
                    return
                if number is None:
                    nonlocal next_id
                    number = new_ids[kind][name] = next_id
                    next_id += 1
                    connection.execute("INSERT INTO series VALUES (?, ?, ?)", (number, kind, name))
                present.add(number)
                if last.get(number) != figures:
                    new_last[number] = figures
                    rows.append((number, timestamp, *figures))

            for repository in snapshot.repositories:
                repo_tags = len(repository.tags or ())
                tags += repo_tags
                if repository.size is None or repository.disk_size is None:
                    observe(REPOSITORY, repository.name, None)
                    continue
                size += repository.size
                disk += repository.disk_size
                observe(REPOSITORY, repository.name,
                        (repository.size, repository.disk_size, repository.unique_size, repo_tags))
            for group in snapshot.groups:
                observe(GROUP, group.name, (group.size, group.disk_size, group.unique_size, group.tag_count))
            gone = [number for number in last if number not in present]
            rows.extend((number, *closing(timestamp)) for number in gone)
            connection.execute("INSERT INTO totals VALUES (?, ?, ?, ?, ?)",
                               (timestamp, size, disk, len(snapshot.repositories), tags))
            connection.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?, ?)", rows)
            if next_id != self._next_id:
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('next_series', ?)", (next_id,))
            checkpoint, since_checkpoint = self._checkpoint, self._since_checkpoint + len(rows)
            previous = self._latest
            if previous is not None and utc_day(previous) != utc_day(timestamp) and checkpoint != previous:
                # The first refresh of a day: the figures at the end of the last one (its last refresh).
                _checkpoint(connection, previous, last)
                checkpoint, since_checkpoint = previous, len(rows)
            in_force = len(last) + len(new_last) - len(gone)
            if checkpoint is None or since_checkpoint >= max(self._checkpoint_rows, in_force // 4):
                after = {**last, **new_last}
                for number in gone:
                    del after[number]
                _checkpoint(connection, timestamp, after)
                checkpoint, since_checkpoint = timestamp, 0
            removed = self._retain(connection, timestamp)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        # In memory only once committed: a failed write leaves the figures of the last one that worked.
        if new_ids[REPOSITORY] or new_ids[GROUP] or removed:
            self._ids = (_merged(ids[REPOSITORY], new_ids[REPOSITORY], removed),
                         _merged(ids[GROUP], new_ids[GROUP], removed))
        self._next_id = next_id
        last.update(new_last)
        for number in gone:
            del last[number]
        self._latest = timestamp
        self._checkpoint, self._since_checkpoint = checkpoint, since_checkpoint
        return len(rows)

    def _retain(self, connection: sqlite3.Connection, now: int) -> set[int]:
        """Move points older than ``full_days`` into the archive (a batch of them), thin the totals and the
        checkpoints, free old blocks; returns the ids of the series removed (nothing left of them)."""
        cutoff, horizon = now - self.full_days * DAY_MS, now - self.days * DAY_MS
        self._move(connection, cutoff)
        moved = _meta(connection, "moved")
        if moved is not None:
            # Before the archive's edge, one checkpoint a day (the day's last) is all a daily point can use;
            # and the first, for the moments before the first day's end.
            connection.execute(
                "DELETE FROM checkpoints WHERE timestamp < ? AND timestamp NOT IN "
                "(SELECT MAX(timestamp) FROM checkpoints WHERE timestamp < ? GROUP BY timestamp / ?) "
                "AND timestamp > (SELECT MIN(timestamp) FROM checkpoints)", (moved, moved, DAY_MS))
        connection.execute(
            "DELETE FROM checkpoints WHERE timestamp < (SELECT MAX(timestamp) FROM checkpoints WHERE timestamp <= ?)",
            (horizon,))
        connection.execute(
            "DELETE FROM totals WHERE timestamp < ? AND timestamp NOT IN "
            "(SELECT MAX(timestamp) FROM totals WHERE timestamp < ? GROUP BY timestamp / ?)", (cutoff, cutoff, DAY_MS))
        connection.execute("DELETE FROM totals WHERE timestamp < ?", (horizon,))
        horizon_block, horizon_day = _block(horizon), utc_day(horizon)
        pruned = _meta(connection, "pruned_day")
        if pruned is not None and pruned >= horizon_day:
            return set()
        # Once a day: free the blocks no query can need any more (each series keeps the newest one holding a
        # point before the horizon: the figures in force when the kept history starts), and forget the series
        # closed before it. At most PRUNE_BATCH blocks a refresh: the rest goes with the next refreshes.
        doomed = connection.execute(
            "SELECT series, block FROM archive WHERE block < ? AND block < (SELECT MAX(newer.block) FROM archive "
            "AS newer WHERE newer.series = archive.series AND newer.first < ?) LIMIT ?",
            (horizon_block, horizon, PRUNE_BATCH)).fetchall()
        connection.executemany("DELETE FROM archive WHERE series = ? AND block = ?", doomed)
        closed = {row[0] for row in connection.execute(
            "SELECT series FROM archive AS closed WHERE block < ? AND last_gone AND NOT EXISTS "
            "(SELECT 1 FROM archive AS newer WHERE newer.series = closed.series AND newer.block > closed.block) "
            "AND NOT EXISTS (SELECT 1 FROM points WHERE points.series = closed.series) LIMIT ?",
            (horizon_block, PRUNE_BATCH))}
        for statement in ("DELETE FROM archive WHERE series = ?", "DELETE FROM base WHERE series = ?",
                          "DELETE FROM series WHERE id = ?"):
            connection.executemany(statement, ((number,) for number in closed))
        if len(doomed) < PRUNE_BATCH and len(closed) < PRUNE_BATCH:
            connection.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_day', ?)", (horizon_day,))
        return closed

    def _move(self, connection: sqlite3.Connection, cutoff: int) -> None:
        """Move the oldest of the points older than ``cutoff`` into the archive: ``archive_batch`` of them, or
        a sixteenth of those waiting if more. The rest waits for the next refreshes; every point after the
        newest one moved (meta ``moved``) is still a plain row.

        Only points up to the newest checkpoint before ``cutoff`` move, so that from that checkpoint on every
        moment is answered exactly (the checkpoint and the plain rows after it). Points from before the first
        checkpoint (a file from before checkpoints) move freely: their moments are answered from the tiers."""
        boundary = connection.execute("SELECT MAX(timestamp) FROM checkpoints WHERE timestamp <= ?",
                                      (cutoff,)).fetchone()[0]
        last = cutoff - 1 if boundary is None else min(boundary, cutoff - 1)
        waiting = connection.execute("SELECT COUNT(*) FROM points WHERE timestamp <= ?", (last,)).fetchone()[0]
        if not waiting:
            return
        moving = connection.execute(
            "SELECT series, timestamp, size, disk_size, unique_size, tag_count FROM points WHERE timestamp <= ? "
            "ORDER BY timestamp, series LIMIT ?",
            (last, max(self._archive_batch, waiting // ARCHIVE_SPREAD))).fetchall()
        newest = moving[-1][1]
        moving.sort()
        for series, rows in itertools.groupby(moving, key=lambda row: row[0]):
            points = [_point(row[1:]) for row in rows]
            for block, in_block in itertools.groupby(points, key=lambda point: _block(point.timestamp)):
                self._archive(connection, series, block, in_block)
            last = points[-1]
            if last.gone:
                connection.execute("DELETE FROM base WHERE series = ?", (series,))
            else:
                connection.execute("INSERT OR REPLACE INTO base VALUES (?, ?, ?, ?, ?, ?)", (series, *last))
        connection.executemany("DELETE FROM points WHERE series = ? AND timestamp = ?",
                               ((row[0], row[1]) for row in moving))
        connection.execute("INSERT OR REPLACE INTO meta VALUES ('moved', ?)", (newest,))

    def _archive(self, connection: sqlite3.Connection, series: int, block: int, points: Iterable[Point]) -> None:
        """Add ``points`` (one series', in time order, all in ``block``) to its block, the last of each day kept."""
        row = connection.execute("SELECT data FROM archive WHERE series = ? AND block = ?", (series, block)).fetchone()
        added = thin_daily(points)
        if row is None:
            columns = _as_columns(added)
        else:
            columns = _unpack_columns(row[0])
            newest, first = columns[0][-1], added[0].timestamp
            if newest < first:
                # The usual case, points after the block's: appended, without building its points.
                if utc_day(newest) == utc_day(first):
                    for column in columns:
                        column.pop()  # the same day's later point replaces it
                columns = [old + new for old, new in zip(columns, _as_columns(added), strict=True)]
            else:
                merged = {point.timestamp: point for point in decode_block(row[0])}
                merged.update((point.timestamp, point) for point in added)
                columns = _as_columns(thin_daily(merged[key] for key in sorted(merged)))
        connection.execute("INSERT OR REPLACE INTO archive VALUES (?, ?, ?, ?, ?, ?)",
                           (series, block, columns[0][0], columns[0][-1], columns[1][-1] < 0, _pack_columns(columns)))

    # ---- reading (request threads, each on a read-only connection of its own)

    def _reader(self) -> sqlite3.Connection:
        readers = self._readers
        connection: sqlite3.Connection | None = getattr(readers, "connection", None)
        if connection is not None and readers.generation == self._generation:
            return connection
        if connection is not None:
            connection.close()
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
        readers.connection, readers.generation = connection, self._generation
        return connection

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The reader connection in a read transaction: its statements see one state of the file, even if
        the writer moves points into the archive in between (WAL: the writer never waits for it)."""
        connection = self._reader()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    @property
    def available(self) -> bool:
        """Whether the file is open (a file that could not be opened or replaced records nothing)."""
        return self._writer is not None

    def first_recorded(self) -> int | None:
        """When the kept history starts: its oldest totals row (ms); ``None`` before the first refresh."""
        found = self._reader().execute("SELECT MIN(timestamp) FROM totals").fetchone()[0]
        return None if found is None else int(found)

    def totals(self, since: int, until: int) -> list[Totals]:
        """The registry's totals recorded from ``since`` to ``until`` (ms, inclusive)."""
        rows = self._reader().execute(
            "SELECT timestamp, size, disk_size, repository_count, tag_count FROM totals "
            "WHERE timestamp BETWEEN ? AND ? ORDER BY timestamp", (since, until))
        return [Totals(*row) for row in rows]

    def series(self, kind: int, name: str, since: int, until: int) -> list[Point]:
        """One repository's or group's points from ``since`` to ``until`` (ms, inclusive), preceded by the last
        point before ``since`` where there is one (the figures in force when the window starts)."""
        with self._reading() as connection:
            found = connection.execute("SELECT id FROM series WHERE kind = ? AND name = ?", (kind, name)).fetchone()
            if found is None:
                return []
            number = found[0]
            merged: dict[int, Point] = {}
            for (data,) in connection.execute(
                    "SELECT data FROM archive WHERE series = ? AND first <= ? AND block >= "
                    "(SELECT IFNULL(MAX(block), 0) FROM archive WHERE series = ? AND first < ?)",
                    (number, until, number, since)):
                merged.update((point.timestamp, point) for point in decode_block(data))
            for row in connection.execute("SELECT timestamp, size, disk_size, unique_size, tag_count FROM base "
                                          "WHERE series = ? UNION ALL "
                                          "SELECT timestamp, size, disk_size, unique_size, tag_count FROM points "
                                          "WHERE series = ? AND timestamp <= ?", (number, number, until)):
                merged[row[0]] = _point(row)
        ordered = [merged[key] for key in sorted(merged) if key <= until]
        before = [point for point in ordered if point.timestamp < since]
        inside = [point for point in ordered if point.timestamp >= since]
        # The point in force at the window's start, unless one starts it.
        return (before[-1:] if not inside or inside[0].timestamp > since else []) + inside

    def state_at(self, moment: int) -> array[int]:
        """Every series' disk size in force at ``moment`` (ms), indexed by series id (``series_ids``); -1: none
        then, or gone.

        One checkpoint and the plain rows after it, up to ``moment``; where the rows after the checkpoint are
        in the archive already (a moment before ``history_full_days``), the checkpoint alone: the figures at
        the end of the last UTC day that ended before ``moment``."""
        with self._reading() as connection:
            state = _state_at(connection, moment)
            if state is not None:
                return state
            if not connection.execute("SELECT 1 FROM totals WHERE timestamp <= ? LIMIT 1", (moment,)).fetchone():
                return array("q")
            found = _tiers_at(connection, moment)  # a file from before checkpoints (version 2)
        state = array("q", [-1]) * (max(found, default=-1) + 1)
        for number, disk in found.items():
            state[number] = disk
        return state

    def series_ids(self, kind: int, names: Iterable[str]) -> list[int]:
        """The series id of each repository (or group) named, 0 for one never recorded (no id is 0)."""
        known = self._ids[kind]
        if self._writer is None:  # a reader without a writer: the file could not be opened for writing
            with self._reading() as connection:
                known = _series_ids(connection)[kind]
        return list(map(known.get, names, itertools.repeat(0)))

    def disk_sizes_at(self, kind: int, moment: int) -> dict[str, int]:
        """Every repository's (or group's) disk size in force at ``moment`` (ms), as ``state_at`` finds them;
        absent: none then, or gone."""
        state = self.state_at(moment)
        known = self._ids[kind] if self._writer is not None else None
        if known is None:
            with self._reading() as connection:
                known = _series_ids(connection)[kind]
        size = len(state)
        return {name: disk for name, number in known.items() if number < size and (disk := state[number]) >= 0}


def _series_ids(connection: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int]]:
    ids: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for number, kind, name in connection.execute("SELECT id, kind, name FROM series"):
        ids[kind][name] = number
    return ids


def _merged(known: dict[str, int], added: dict[str, int], removed: set[int]) -> dict[str, int]:
    """A new map of names to ids: ``known`` with ``added``, without the ids ``removed``."""
    if not added and not removed:
        return known
    merged = {name: number for name, number in known.items() if number not in removed} if removed else dict(known)
    merged.update(added)
    return merged


def _checkpoint(connection: sqlite3.Connection, timestamp: int, figures: Mapping[int, Figures]) -> None:
    connection.execute("INSERT INTO checkpoints VALUES (?, ?)",
                       (timestamp, encode_checkpoint({number: values[1] for number, values in figures.items()})))


def _meta(connection: sqlite3.Connection, key: str) -> int | None:
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def _state_at(connection: sqlite3.Connection, moment: int) -> array[int] | None:
    """Every series' disk size in force at ``moment``, indexed by series id (-1: none, or gone): the newest
    checkpoint not after it, then the plain rows from there on; ``None`` without such a checkpoint."""
    row = connection.execute("SELECT timestamp, data FROM checkpoints WHERE timestamp <= ? "
                             "ORDER BY timestamp DESC LIMIT 1", (moment,)).fetchone()
    if row is None:
        return None
    taken, data = row
    state = decode_checkpoint(data)
    moved = _meta(connection, "moved")
    if taken < moment and (moved is None or taken >= moved):
        rows = connection.execute("SELECT series, IFNULL(disk_size, -1) FROM points WHERE timestamp > ? "
                                  "AND timestamp <= ? ORDER BY timestamp", (taken, moment)).fetchall()
        if rows:
            top = max(rows)[0]
            if top >= len(state):
                state.extend(array("q", [-1]) * (top + 1 - len(state)))
            for series, disk in rows:
                state[series] = disk  # -1: gone
    return state


def _tiers_at(connection: sqlite3.Connection, moment: int) -> dict[int, int]:
    """Every series' disk size in force at ``moment`` (by id) from the tiers alone, for moments before the first
    checkpoint: its newest plain point not after it, else its archived one (a scan of every series)."""
    moved = _meta(connection, "moved")
    found: dict[int, int | None] = {}
    if moved is None or moment >= moved:
        # Every point after the moment is plain: its newest point not after it, else the newest archived one.
        for series, disk in connection.execute("SELECT series, disk_size FROM base"):
            found[series] = disk
        for series, disk, _ in connection.execute(
                "SELECT series, disk_size, MAX(timestamp) FROM points WHERE timestamp <= ? GROUP BY series",
                (moment,)):
            found[series] = disk
    else:
        block = _block(moment)
        for series, data in connection.execute(
                "SELECT series.id, (SELECT data FROM archive WHERE archive.series = series.id AND block <= ? "
                "AND first <= ? ORDER BY block DESC LIMIT 1) FROM series", (block, moment)):
            if data is not None:
                point = _latest(decode_block(data), moment)
                found[series] = None if point is None else point.disk_size
    return {series: disk for series, disk in found.items() if disk is not None}


def _latest(points: Sequence[Point], moment: int) -> Point | None:
    latest = None
    for point in points:
        if point.timestamp > moment:
            break
        latest = point
    return latest


def recorder(*callbacks: Callable[[Snapshot], object]) -> Callable[[Snapshot], None]:
    """One ``on_snapshot`` callback that runs each of ``callbacks`` in turn (the data file, the history), each
    whatever the others did."""

    def record(snapshot: Snapshot) -> None:
        for callback in callbacks:
            try:
                callback(snapshot)
            except Exception:  # one keeper's failure must not cost the others their write
                log.exception("could not keep the new data with %r", callback)

    return record
