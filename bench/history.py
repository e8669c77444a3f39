"""History benchmark: file size for 100,000 repositories x 400 days of daily changes, what refreshes cost (a
day's points crossing into the archive, spread over a day of hourly refreshes; the daily pruning), and each
history endpoint's answer time, first and cached.

    python3 -m bench.history [--repositories 100000] [--days 400] [--runs 7]

The history is generated directly in SQL, as a year of refreshes leaves it at its largest: ``--days`` plus
a block (``BLOCK_DAYS``: blocks are freed whole) of archived days, packed per series, the last
``history_full_days`` as plain rows, one totals row and one checkpoint a day. Every repository (one tag, its
own layer) grows by a different amount every day (no two deltas repeat: the worst case for packing), so
every group changes every day too. The last generated day is chosen so that the first midnight of the run
frees a whole block of every series, the heaviest pruning there is.

Then the service's own ``History`` opens the file and records a day of hourly refreshes of an unchanged
registry (the first one finds a day's points older than ``history_full_days``: they move to the archive in
batches; the one after midnight also prunes), one refresh in which 24,000 repositories change (just below a
checkpoint's worth: a window starting after it reads all of them after its checkpoint), and one more two
hours later, which the Flask app serves once ``prepare_pages`` has run (as the refresh thread runs it). Times
are medians of ``--runs`` requests; a first request (nothing cached for the snapshot yet) is measured on its
own, with this process's CPU time beside its wall time (other processes' load inflates only the latter).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import random
import sqlite3
import statistics
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from flask_jwt_extended import create_access_token

from gitlab_registry_usage_rest.growth import DAY_MS, Point
from gitlab_registry_usage_rest.history import (
    BLOCK_DAYS,
    GROUP,
    REPOSITORY,
    History,
    encode_block,
    encode_checkpoint,
)
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing, Snapshot
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.history_api import prepare_pages
from tests.support.webapp import FakeDirectory, basic, make_config

FULL_DAYS = 7
PER_GROUP = 100
HOUR_MS = 3_600_000
CHANGED = 24_000


def last_day(days: int) -> int:
    """The UTC day (days since the epoch) to end the generated history on: not after today, and such that the
    horizon of the next day is the second day of a block (that midnight frees a whole block of every series)."""
    today = int(time.time() * 1000) // DAY_MS
    return today - (today - days) % BLOCK_DAYS


def generate(path: Path, repositories: int, days: int, end_day: int) -> list[int]:
    """The file that ``days`` plus a block of daily refreshes leave (one a day at 01:00 UTC, up to ``end_day``);
    returns each repository's size on the last day."""
    history = History(str(path), FULL_DAYS, days)  # creates the schema
    history.close()
    rng = random.Random(14)
    generated = days + BLOCK_DAYS
    start = (end_day - generated + 1) * DAY_MS + HOUR_MS
    now = end_day * DAY_MS + HOUR_MS
    cutoff = now - FULL_DAYS * DAY_MS
    groups = (repositories + PER_GROUP - 1) // PER_GROUP
    series_count = repositories + groups
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO series VALUES (?, ?, ?)", itertools.chain(
        ((n + 1, REPOSITORY, f"g{n // PER_GROUP}/r{n}") for n in range(repositories)),
        ((repositories + g + 1, GROUP, f"g{g}") for g in range(groups))))
    times = [start + day * DAY_MS for day in range(generated)]
    checkpoints = [array("q", [-1]) * (series_count + 1) for _ in times]

    def store(number: int, sizes: list[int], tags: int) -> None:
        points = [Point(t, size, size, size, tags) for t, size in zip(times, sizes, strict=True)]
        old = [point for point in points if point.timestamp < cutoff]
        for block, in_block in itertools.groupby(old, key=lambda point: point.timestamp // DAY_MS // BLOCK_DAYS):
            kept = list(in_block)
            connection.execute("INSERT INTO archive VALUES (?, ?, ?, ?, 0, ?)",
                               (number, block, kept[0].timestamp, kept[-1].timestamp, encode_block(kept)))
        connection.execute("INSERT INTO base VALUES (?, ?, ?, ?, ?, ?)", (number, *old[-1]))
        connection.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?, ?)",
                               ((number, *point) for point in points if point.timestamp >= cutoff))
        for day, size in enumerate(sizes):
            checkpoints[day][number] = size

    last: list[int] = []
    totals = [0] * generated
    for g in range(groups):
        members = range(g * PER_GROUP, min((g + 1) * PER_GROUP, repositories))
        group = [0] * generated
        for n in members:
            # A different change every day: 0 to 50 MiB, so no two deltas repeat (the worst case for packing).
            grown = list(itertools.accumulate(rng.randrange(0, 50 * 2**20) for _ in range(generated - 1)))
            first = rng.randrange(10 * 2**20, 4 * 2**30)
            sizes = [first] + [first + more for more in grown]
            store(n + 1, sizes, 1)
            group = [a + b for a, b in zip(group, sizes, strict=True)]
            last.append(sizes[-1])
        store(repositories + g + 1, group, len(members))
        totals = [a + b for a, b in zip(totals, group, strict=True)]
    connection.executemany("INSERT INTO totals VALUES (?, ?, ?, ?, ?)",
                           ((t, total, total, repositories, repositories)
                            for t, total in zip(times, totals, strict=True)))
    # One refresh a day: its checkpoint (every series changed) is also the day's end.
    connection.executemany("INSERT INTO checkpoints VALUES (?, ?)",
                           ((t, encode_checkpoint({number: size for number, size in enumerate(checkpoint)
                                                    if size >= 0}))
                            for t, checkpoint in zip(times, checkpoints, strict=True)))
    connection.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("moved", max(t for t in times if t < cutoff)), ("next_series", series_count + 1),
        ("pruned_day", (now - days * DAY_MS) // DAY_MS)])
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return last


def listing(repositories: int, sizes: list[int]) -> Listing:
    return Listing(tuple(RepositoryListing(f"g{n // PER_GROUP}/r{n}", (ImageListing("latest", (f"l{n}",)),))
                         for n in range(repositories)), {f"l{n}": size for n, size in enumerate(sizes)})


def waiting(path: Path, history: History, moment: int) -> int:
    """Points older than ``history_full_days`` at ``moment`` (ms) not in the archive (yet)."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as connection:
        found = connection.execute("SELECT COUNT(*) FROM points WHERE timestamp < ?",
                                   (moment - history.full_days * DAY_MS,)).fetchone()[0]
    connection.close()
    return int(found)


def timed_record(history: History, snapshot: Snapshot) -> float:
    started = time.perf_counter()
    assert history.record(snapshot)
    return (time.perf_counter() - started) * 1000


def first_ms(call: Callable[[], object]) -> str:
    """One call's wall time, and this process's CPU time in it (which other processes' load does not inflate)."""
    started, cpu = time.perf_counter(), time.process_time()
    call()
    return f"first {(time.perf_counter() - started) * 1000:.0f} ms (cpu {(time.process_time() - cpu) * 1000:.0f} ms)"


def median_ms(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with TemporaryDirectory() as folder:
        path = Path(folder) / "history.sqlite3"
        end_day = last_day(args.days)
        now = end_day * DAY_MS + HOUR_MS
        started = time.perf_counter()
        sizes = generate(path, args.repositories, args.days, end_day)
        rows.append(("generated in", f"{time.perf_counter() - started:.0f} s"))
        size = path.stat().st_size
        points = args.repositories * (args.days + BLOCK_DAYS)
        rows.append(("file size", f"{size / 2**20:.0f} MiB ({size / points:.1f} bytes per repository point, groups "
                                  f"and checkpoints included; {args.repositories:,} x {args.days} + {BLOCK_DAYS} "
                                  "days)"))
        gc.collect()  # the generation's garbage, which a service never has, must not be collected in a timed refresh
        started = time.perf_counter()
        history = History(str(path), FULL_DAYS, args.days)
        rows.append(("open (loads the last figures)", f"{(time.perf_counter() - started) * 1000:.0f} ms"))
        unchanged = listing(args.repositories, sizes)
        backlog = waiting(path, history, now + HOUR_MS)
        hourly = []
        for hour in range(1, 25):
            hourly.append(timed_record(history, build_snapshot(unchanged, (now + hour * HOUR_MS) / 1000)))
        rows.append((f"a day of hourly unchanged refreshes ({backlog:,} points older than history_full_days at the "
                     "first, a block of every series freed after midnight)",
                     f"first {hourly[0]:.0f} ms, median {statistics.median(hourly):.0f} ms, slowest "
                     f"{max(hourly):.0f} ms (refresh {hourly.index(max(hourly)) + 1}); "
                     f"{waiting(path, history, now + 24 * HOUR_MS):,} points waiting after"))
        changed = list(sizes)
        for n in range(min(CHANGED, args.repositories)):
            changed[n] += 2**20
        moment = now + 24 * HOUR_MS + HOUR_MS // 2
        rows.append((f"refresh with {CHANGED:,} repositories changed",
                     f"{timed_record(history, build_snapshot(listing(args.repositories, changed), moment / 1000)):.0f} "
                     "ms"))
        snapshot = build_snapshot(listing(args.repositories, changed), (moment + 2 * HOUR_MS) / 1000)
        rows.append(("unchanged refresh", f"{timed_record(history, snapshot):.0f} ms"))
        app = create_app(make_config(storage_capacity=2**50), SnapshotHolder(snapshot), FakeDirectory(),
                         clock=lambda: snapshot.timestamp, history=history)
        started, cpu = time.perf_counter(), time.process_time()
        prepare_pages(app, snapshot)  # as the service's refresh thread does once the snapshot is recorded
        rows.append(("prepare_pages (in the refresh thread: the dashboard's sparkline and growers, the ids)",
                     f"{(time.perf_counter() - started) * 1000:.0f} ms (cpu {(time.process_time() - cpu) * 1000:.0f} "
                     "ms)"))
        with app.test_client() as client:
            token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
            headers = {"Authorization": f"Bearer {token}"}
            with app.app_context():
                client.set_cookie("access_token_cookie", create_access_token(identity="alice"))

            def get(url: str, html: bool = False) -> Callable[[], object]:
                asked = {"Accept": "text/html"} if html else headers

                def call() -> object:
                    response = client.get(url, headers=asked)
                    assert response.status_code == 200, response.data[:300]
                    return response

                return call

            middle = args.repositories // 2
            repository = f"g{middle // PER_GROUP}%2Fr{middle}"
            for url in ("/history?since=30d", "/history?since=400d", f"/repositories/{repository}/history",
                        f"/repositories/{repository}/history?since=400d", f"/groups/g{middle // PER_GROUP}/history",
                        f"/groups/g{middle // PER_GROUP}/history?since=400d"):
                rows.append((f"GET {url}", f"{median_ms(get(url), args.runs):.1f} ms"))
            for url, html in (("/", True), *((f"/repositories?window={window}&sort=-growth&limit=10", False)
                                             for window in ("1h", "1d", "7d", "30d", "90d", "365d")),
                              ("/groups?window=30d&sort=-growth&limit=10", False),
                              ("/repositories?window=7d&sort=-growth&format=csv", False)):
                first = first_ms(get(url, html))
                rows.append((f"GET {url}{' (dashboard)' if url == '/' else ''}",
                             f"{first}, then {median_ms(get(url, html), args.runs):.1f} ms"))
            for url in (f"/repositories/{repository}", f"/groups/g{middle // PER_GROUP}"):
                rows.append((f"GET {url} (page, with its sparkline)", f"{median_ms(get(url, True), args.runs):.1f} ms"))
        history.close()
        rows.append(("file size after", f"{os.path.getsize(path) / 2**20:.0f} MiB"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
