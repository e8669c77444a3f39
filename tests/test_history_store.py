"""The history store on real SQLite files: rows only where figures changed, closing rows, retention with the
snapshots' times as the clock, migrations, and the faults that must not stop the service."""

from __future__ import annotations

import configparser
import itertools
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitlab_registry_usage_rest.config import parse_config
from gitlab_registry_usage_rest.growth import DAY_MS, Point, at, closing, retained
from gitlab_registry_usage_rest.history import (
    GROUP,
    MIGRATIONS,
    REPOSITORY,
    SCHEMA_VERSION,
    History,
    decode_block,
    encode_block,
)
from tests.support.histories import snapshot
from tests.support.processes import until

T0 = 1_700_006_400.0  # a UTC midnight, in seconds
DAY = 86_400.0
HOUR = 3600.0
HOUR_MS = 3_600_000


def ms(seconds: float) -> int:
    return round(seconds * 1000)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "history.sqlite3"


@pytest.fixture
def history(path: Path) -> Iterator[History]:
    store = History(str(path))
    yield store
    store.close()


def point_count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM points").fetchone()[0])


def test_first_refresh_records_totals_every_repository_and_group(history: History) -> None:
    assert history.record(snapshot(T0, {"a/one": [100, 20], "a/two": [300], "b": [5]}))
    [totals] = history.totals(0, ms(T0))
    assert (totals.timestamp, totals.size, totals.disk_size, totals.repository_count, totals.tag_count) == (
        ms(T0), 425, 425, 3, 3)
    assert history.series(REPOSITORY, "a/one", 0, ms(T0)) == [Point(ms(T0), 120, 120, 120, 1)]
    assert history.series(GROUP, "a", 0, ms(T0)) == [Point(ms(T0), 420, 420, 420, 2)]
    assert history.series(REPOSITORY, "nothing", 0, ms(T0)) == []


def test_an_unchanged_registry_adds_one_totals_row_and_no_points(history: History, path: Path) -> None:
    repositories = {f"group/{n}": [1000 + n] for n in range(50)}
    history.record(snapshot(T0, repositories))
    points = point_count(path)
    history.record(snapshot(T0 + HOUR, repositories))
    assert point_count(path) == points
    assert [t.timestamp for t in history.totals(0, ms(T0 + HOUR))] == [ms(T0), ms(T0 + HOUR)]


def test_only_the_changed_repository_and_its_groups_get_points(history: History) -> None:
    history.record(snapshot(T0, {"a/one": [100], "a/two": [300], "b": [5]}))
    history.record(snapshot(T0 + HOUR, {"a/one": [100, 7], "a/two": [300], "b": [5]}))
    end = ms(T0 + HOUR)
    assert history.series(REPOSITORY, "a/one", 0, end) == [Point(ms(T0), 100, 100, 100, 1),
                                                           Point(end, 107, 107, 107, 1)]
    assert [p.timestamp for p in history.series(GROUP, "a", 0, end)] == [ms(T0), end]
    assert [p.timestamp for p in history.series(REPOSITORY, "a/two", 0, end)] == [ms(T0)]
    assert [p.timestamp for p in history.series(GROUP, "b", 0, end)] == [ms(T0)]


def test_a_deleted_repository_gets_a_closing_point_and_may_come_back(history: History) -> None:
    history.record(snapshot(T0, {"a": [100], "b": [5]}))
    history.record(snapshot(T0 + HOUR, {"b": [5]}))
    history.record(snapshot(T0 + 2 * HOUR, {"b": [5]}))
    history.record(snapshot(T0 + 3 * HOUR, {"a": [9], "b": [5]}))
    assert history.series(REPOSITORY, "a", 0, ms(T0 + 3 * HOUR)) == [
        Point(ms(T0), 100, 100, 100, 1), closing(ms(T0 + HOUR)), Point(ms(T0 + 3 * HOUR), 9, 9, 9, 1)]


def test_an_unreadable_repository_keeps_its_figures_without_a_closing_point(history: History) -> None:
    history.record(snapshot(T0, {"a": [100], "b": [5]}))
    history.record(snapshot(T0 + HOUR, {"a": None, "b": [5]}))
    assert history.series(REPOSITORY, "a", 0, ms(T0 + HOUR)) == [Point(ms(T0), 100, 100, 100, 1)]
    assert history.totals(ms(T0 + HOUR), ms(T0 + HOUR))[0].repository_count == 2


def test_a_snapshot_already_recorded_is_not_recorded_again(history: History) -> None:
    data = snapshot(T0, {"a": [100]})
    assert history.record(data)
    assert not history.record(data)
    assert len(history.totals(0, ms(T0))) == 1


def test_reopening_loads_the_last_figures_so_nothing_unchanged_is_written(path: Path) -> None:
    repositories = {"a/x": [100], "a/y": [5]}
    first = History(str(path))
    first.record(snapshot(T0, repositories))
    first.record(snapshot(T0 + HOUR, {"a/x": [100]}))  # a/y closed
    first.close()
    points = point_count(path)
    second = History(str(path))
    second.record(snapshot(T0 + 2 * HOUR, {"a/x": [100]}))
    assert point_count(path) == points
    assert not second.record(snapshot(T0 + HOUR, {"a/x": [1]})), "older than what the file has"
    second.close()


def test_window_starts_with_the_point_in_force(history: History) -> None:
    history.record(snapshot(T0, {"a": [100]}))
    history.record(snapshot(T0 + DAY, {"a": [150]}))
    history.record(snapshot(T0 + 2 * DAY, {"a": [200]}))
    served = history.series(REPOSITORY, "a", ms(T0 + DAY + HOUR), ms(T0 + 2 * DAY))
    assert [p.disk_size for p in served] == [150, 200]


def test_files_are_private(path: Path, history: History) -> None:
    history.record(snapshot(T0, {"a": [1]}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for suffix in ("-wal", "-shm"):
        assert stat.S_IMODE(Path(f"{path}{suffix}").stat().st_mode) == 0o600


def test_retention_keeps_recent_points_daily_points_and_the_base(path: Path) -> None:
    """Sixty days of four refreshes a day, kept 5 days in full and 20 in all: what is served from both tiers
    equals the pure rule, blocks aside (freed whole, they may keep older points up to 32 days more)."""
    full_days, days = 5, 20
    history = History(str(path), full_days=full_days, days=days)
    recorded: dict[str, list[Point]] = {"grows": [], "steady": []}
    moment = T0
    for step in range(60 * 4):
        moment = T0 + step * 6 * HOUR
        disk = 1000 + step  # grows changes every refresh; steady only in the first one
        history.record(snapshot(moment, {"grows": [disk], "steady": [77]}))
        recorded["grows"].append(Point(ms(moment), disk, disk, disk, 1))
    recorded["steady"].append(Point(ms(T0), 77, 77, 77, 1))
    now, horizon = ms(moment), ms(moment) - days * DAY_MS
    for name, points in recorded.items():
        kept = retained(points, now, full_days, days)
        served = history.series(REPOSITORY, name, 0, now)
        assert [p for p in served if p.timestamp >= horizon] == [p for p in kept if p.timestamp >= horizon]
        assert [p for p in served if p.timestamp < horizon][-1:] == [p for p in kept if p.timestamp < horizon]
        assert all(p.timestamp >= horizon - 32 * DAY_MS for p in served[1:]), "whole blocks freed"
        refreshes = [p.timestamp for p in recorded["grows"]]
        day_ends = [t for t, after in itertools.pairwise(refreshes) if t // DAY_MS != after // DAY_MS]
        for offset in (0, 3, 7, 12, 19):
            moment_ms = now - offset * DAY_MS - 1  # 17:59:59.999, after the day's 12:00 refresh
            # In the plain tier the figures in force; before it, those at the end of the day before (18:00).
            then = moment_ms if offset < full_days else max(t for t in day_ends if t <= moment_ms)
            expected = at(points, then)
            assert history.disk_sizes_at(REPOSITORY, moment_ms).get(name) == (
                None if expected is None else expected.disk_size), (name, offset)
    totals = [t.timestamp for t in history.totals(0, now)]
    cutoff = now - full_days * DAY_MS
    older = [t for t in totals if t < cutoff]
    assert len(older) == len({t // DAY_MS for t in older}), "one totals row a day before history_full_days"
    assert min(totals) >= horizon
    assert [t for t in totals if t >= cutoff] == [p.timestamp for p in recorded["grows"] if p.timestamp >= cutoff]
    history.close()


def in_force(recorded: list[tuple[int, dict[str, int]]], moment: int) -> dict[str, int]:
    """The disk sizes recorded at the last refresh not after ``moment`` (brute force)."""
    found: dict[str, int] = {}
    for timestamp, disks in recorded:
        if timestamp > moment:
            break
        found = disks
    return found


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(0, 3), min_size=6, max_size=6), min_size=30, max_size=55),
       st.sampled_from([2, 5, 1000]))
def test_a_windows_start_is_the_figures_in_force_then(changes: list[list[int]], checkpoint_rows: int) -> None:
    """Hourly refreshes over two or three days, each changing some of six repositories (3: deleted), with
    checkpoints every few rows or only at day ends and the archive fed two points a refresh: from
    ``history_full_days`` on, every moment's disk sizes are exactly those in force; before it, those in force
    at a refresh no earlier than the end of the day before (the archive's resolution: a day)."""
    with TemporaryDirectory() as folder:
        history = History(f"{folder}/history.sqlite3", full_days=1, days=5, checkpoint_rows=checkpoint_rows,
                          archive_batch=2)
        disks = {f"team/r{n}": 100 * n for n in range(6)}
        recorded: list[tuple[int, dict[str, int]]] = []
        for step, change in enumerate(changes):
            for n, kind in enumerate(change):
                name = f"team/r{n}"
                if kind == 3:
                    disks.pop(name, None)
                elif kind:
                    disks[name] = disks.get(name, 7) + kind * 10 + step
            moment = T0 + 5 * HOUR + step * HOUR
            assert history.record(snapshot(moment, {name: [disk] for name, disk in disks.items()}))
            recorded.append((ms(moment), dict(disks)))
        now = recorded[-1][0]
        day_ends = [t for (t, _), (after, _) in itertools.pairwise(recorded) if t // DAY_MS != after // DAY_MS]
        for timestamp, _ in recorded:
            for moment in (timestamp - 1, timestamp, timestamp + HOUR_MS // 2):
                served = history.disk_sizes_at(REPOSITORY, moment)
                if moment >= now - DAY_MS or moment < recorded[0][0]:
                    assert served == in_force(recorded, moment), moment
                else:
                    earliest = max([t for t in day_ends if t <= moment], default=recorded[0][0])
                    assert any(served == disks for t, disks in recorded if earliest <= t <= moment), moment
                groups = history.disk_sizes_at(GROUP, moment)
                assert set(groups) <= {"team"}
        history.close()


def test_the_archive_is_fed_a_batch_per_refresh_until_nothing_waits(path: Path) -> None:
    """Forty repositories changing at every one of four refreshes a day: once a day's points are older than
    history_full_days, each refresh moves at most its batch (or a sixteenth of those waiting) into the archive;
    unchanged refreshes then move the rest, and what is kept is the retention rule's."""
    history = History(str(path), full_days=1, days=10, archive_batch=15)
    names = [f"g/r{n}" for n in range(40)]
    recorded: dict[str, list[Point]] = {name: [] for name in names}
    moment = T0

    def waiting() -> int:
        with sqlite3.connect(path) as connection:
            found = connection.execute("SELECT COUNT(*) FROM points WHERE timestamp < ?",
                                       (ms(moment) - DAY_MS,)).fetchone()[0]
        connection.close()
        return int(found)

    for step in range(16):
        moment = T0 + step * 6 * HOUR
        before = waiting()
        history.record(snapshot(moment, {name: [1000 * step + n] for n, name in enumerate(names)}))
        for n, name in enumerate(names):
            recorded[name].append(Point(ms(moment), 1000 * step + n, 1000 * step + n, 1000 * step + n, 1))
        crossing = waiting() if step else 0
        assert before - crossing <= max(15, before // 16) or before == 0, step
    assert waiting() > 0, "more crossed than a few refreshes' batches move"
    last = dict.fromkeys(names, 0)
    for hour in range(1, 45):
        moment = T0 + 15 * 6 * HOUR + hour * HOUR
        history.record(snapshot(moment, {name: [1000 * 15 + n] for n, name in enumerate(names)}))
        last = {name: 1000 * 15 + n for n, name in enumerate(names)}
    assert waiting() == 0
    now = ms(moment)
    for name in names:
        assert history.series(REPOSITORY, name, 0, now) == retained(recorded[name], now, 1, 10)
    assert history.disk_sizes_at(REPOSITORY, now) == last
    history.close()


def test_series_ids_are_never_reused(path: Path) -> None:
    """A repository deleted long ago is forgotten (nothing of it left within history_days); a new one gets a
    new id, so no old checkpoint can count the old one's bytes as the new one's."""
    history = History(str(path), full_days=1, days=3)
    history.record(snapshot(T0, {"a": [500], "keep": [1]}))
    history.record(snapshot(T0 + HOUR, {"keep": [1]}))
    for day in range(1, 80):
        history.record(snapshot(T0 + day * DAY, {"keep": [1]}))
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM series WHERE name = 'a'").fetchone()[0] == 0, "forgotten"
    connection.close()
    history.record(snapshot(T0 + 80 * DAY, {"keep": [1], "b": [7]}))
    with sqlite3.connect(path) as connection:
        ids = dict(connection.execute("SELECT name, id FROM series WHERE kind = 0"))
    connection.close()
    assert ids["b"] > max(ids["keep"], 1) + 1, "a's id (after keep's) is not given again"
    assert history.disk_sizes_at(REPOSITORY, ms(T0 + 80 * DAY - HOUR)) == {"keep": 1}
    history.close()


def test_archive_blocks_round_trip() -> None:
    points = [Point(ms(T0), 2**40, 12345, None, 3), closing(ms(T0 + DAY)), Point(ms(T0 + 2 * DAY), 0, 0, 0, 0)]
    assert decode_block(encode_block(points)) == points


def test_a_schema_1_file_is_migrated_and_its_older_points_archived(path: Path) -> None:
    path.parent.mkdir(mode=0o700)
    with sqlite3.connect(path) as connection:
        for statement in MIGRATIONS[0].split(";"):
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 1")
        connection.execute("INSERT INTO series VALUES (1, 0, 'old/repo')")
        for day in range(30):
            connection.execute("INSERT INTO totals VALUES (?, 10, 10, 1, 1)", (ms(T0 + day * DAY),))
            connection.execute("INSERT INTO points VALUES (1, ?, ?, ?, ?, 1)", (ms(T0 + day * DAY), day, day, day))
    connection.close()
    history = History(str(path))
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.close()
    assert len(history.series(REPOSITORY, "old/repo", 0, ms(T0 + 40 * DAY))) == 30
    # Before its first checkpoint (written at the migration, of the figures in force), windows start from the tiers.
    assert history.disk_sizes_at(REPOSITORY, ms(T0 + 10 * DAY + HOUR)) == {"old/repo": 10}
    assert history.disk_sizes_at(REPOSITORY, ms(T0 + 29 * DAY + HOUR)) == {"old/repo": 29}
    history.record(snapshot(T0 + 30 * DAY, {"old/repo": [29]}))
    served = history.series(REPOSITORY, "old/repo", 0, ms(T0 + 40 * DAY))
    assert [p.disk_size for p in served] == list(range(30)), "all kept, the newest unchanged"
    assert point_count(path) < 10, "the points older than history_full_days moved to the archive"
    history.close()


def test_a_file_of_a_newer_schema_is_left_alone(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    History(str(path)).close()
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    history = History(str(path))
    assert not history.available
    assert not history.record(snapshot(T0, {"a": [1]}))
    assert list(path.parent.glob("*.unreadable-*")) == []
    assert "reads up to" in caplog.text


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b""], ids=["garbage", "empty"])
def test_an_unreadable_file_is_moved_aside_and_a_new_one_started(
    path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    history = History(str(path))
    assert history.record(snapshot(T0, {"a": [1]}))
    if content:
        [aside] = path.parent.glob("history.sqlite3.unreadable-*")
        assert aside.read_bytes() == content
        assert "moved to" in caplog.text
    assert history.series(REPOSITORY, "a", 0, ms(T0)) == [Point(ms(T0), 1, 1, 1, 1)]
    history.close()


def test_a_file_damaged_while_open_is_moved_aside_at_the_next_write(path: Path) -> None:
    history = History(str(path))
    history.record(snapshot(T0, {f"r{n}": [n + 1] for n in range(2000)}))
    history.close()
    with open(path, "r+b") as file:  # keep the header, garble every page after the first
        size = file.seek(0, os.SEEK_END)
        file.seek(4096)
        file.write(b"\xa5" * (size - 4096))
    reopened = History(str(path))
    assert reopened.record(snapshot(T0 + HOUR, {"a": [1]}))
    assert len(list(path.parent.glob("history.sqlite3.unreadable-*"))) == 1
    assert reopened.series(REPOSITORY, "a", 0, ms(T0 + HOUR)) == [Point(ms(T0 + HOUR), 1, 1, 1, 1)]
    reopened.close()


def test_a_locked_file_fails_the_write_which_is_logged_and_the_next_one_succeeds(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = History(str(path), busy_timeout=0.2)
    history.record(snapshot(T0, {"a": [1]}))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with caplog.at_level(logging.ERROR):
        assert not history.record(snapshot(T0 + HOUR, {"a": [2]}))
    assert "could not write the history file" in caplog.text and "locked" in caplog.text
    assert [p.disk_size for p in history.series(REPOSITORY, "a", 0, ms(T0 + HOUR))] == [1]
    other.execute("ROLLBACK")
    other.close()
    assert history.record(snapshot(T0 + 2 * HOUR, {"a": [2]}))
    assert [p.disk_size for p in history.series(REPOSITORY, "a", 0, ms(T0 + 2 * HOUR))] == [1, 2]
    history.close()


WRITER = textwrap.dedent("""
    import resource, signal, sys
    from gitlab_registry_usage_rest.history import History
    from tests.support.histories import snapshot
    path, mode = sys.argv[1], sys.argv[2]
    history = History(path, full_days=1, days=3)
    if mode == "full":
        # The file may not grow past this: each write fails as on a full disk (EFBIG instead of ENOSPC).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        history.record(snapshot(1_700_006_400.0, {"a": [1]}))
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        ok = history.record(snapshot(1_700_010_000.0, {f"r{n}": [n + 1] for n in range(20_000)}))
        print("recorded" if ok else "failed", flush=True)
        print(history.series(0, "a", 0, 2 * 10**12), flush=True)
        sys.exit(0)
    step = 0
    while True:
        step += 1
        history.record(snapshot(1_700_006_400.0 + step * 3600, {f"r{n}": [n + step] for n in range(3000)}))
        print(step, flush=True)
""")


def test_a_full_disk_fails_the_write_and_the_file_stays_as_it_was(path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", WRITER, str(path), "full"], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "failed"
    assert "could not write the history file" in result.stderr
    assert lines[1] == repr([Point(1_700_006_400_000, 1, 1, 1, 1)])


def test_sigkill_during_writes_leaves_a_consistent_file(path: Path) -> None:
    """A writer killed at an arbitrary moment of its loop: the file passes integrity_check, and every totals
    row has all of its refresh's points (each refresh changes every repository, hence every group)."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "loop"], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)
    output = writer.stdout
    assert output is not None
    until(lambda: int(output.readline() or 0) >= 30 or None, "30 refreshes recorded", 120)
    writer.kill()
    writer.wait()
    output.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        totals = [row[0] for row in connection.execute("SELECT timestamp FROM totals")]
        counts = dict(connection.execute("SELECT timestamp, COUNT(*) FROM points GROUP BY timestamp"))
        moved = connection.execute("SELECT value FROM meta WHERE key = 'moved'").fetchone()
    connection.close()
    # The points after the newest one moved into the archive are all still plain rows.
    recent = [counts.get(timestamp) for timestamp in totals if moved is None or timestamp > moved[0]]
    assert len(recent) >= 20  # a day of hourly refreshes, less the last one's possibly lost commit
    assert set(recent) == {6000}, "3000 repositories and as many top-level groups, or nothing of a refresh"
    cutoff = max(totals) - DAY_MS  # full_days=1: before it, one totals row a day
    assert {timestamp for timestamp in counts if timestamp >= cutoff} <= set(totals)


def config(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string("[jwt]\nsecret_key = " + "s3cr3t-" * 6 + "\n" + text)
    return parser


def test_history_file_defaults_to_beside_the_data_file() -> None:
    general = parse_config(config("[general]\ndata_file = /srv/x/data.json\n")).general
    assert general.history_path == "/srv/x/history.sqlite3"
    assert (general.history_full_days, general.history_days, general.storage_capacity) == (7, 400, None)
    assert parse_config(config("[general]\ndata_file =\n")).general.history_path is None
    assert parse_config(config("[general]\nhistory_file =\n")).general.history_path is None
    assert parse_config(config("[general]\nhistory_file = /h.db\n")).general.history_path == "/h.db"
    assert parse_config(config("[general]\nstorage_capacity = 2 TiB\n")).general.storage_capacity == 2 * 1024**4


def test_history_full_days_may_not_exceed_history_days() -> None:
    with pytest.raises(Exception, match="history_full_days"):
        parse_config(config("[general]\nhistory_full_days = 30\nhistory_days = 10\n"))
