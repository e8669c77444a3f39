"""History benchmark: file size for 100,000 repositories x 400 days of daily changes, an unchanged refresh's
write, and each history endpoint's answer time.

    python3 -m bench.history [--repositories 100000] [--days 400] [--runs 7]

The history is generated directly in SQL (the archive's packed blocks for the days before
``history_full_days``, plain rows after, one totals row a day), as a year of refreshes would leave it: every
repository (one tag, its own layer) grows every day, so every group changes every day too. Then the service's
own ``History`` opens the file, records a snapshot equal to the last day (unchanged: one totals row), and the
Flask app answers each endpoint; times are medians of ``--runs`` requests (the growth listing's first request,
which reads every repository's disk size of a window ago, is shown apart: later ones come from the render cache).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from gitlab_registry_usage_rest.growth import DAY_MS, Point
from gitlab_registry_usage_rest.history import BLOCK_DAYS, GROUP, REPOSITORY, History, encode_block
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from tests.support.webapp import FakeDirectory, basic, make_config

FULL_DAYS = 7
PER_GROUP = 100


def generate(path: Path, repositories: int, days: int, now: int) -> list[int]:
    """The file a year of daily refreshes leaves; returns each repository's size on the last day."""
    history = History(str(path), FULL_DAYS, days)  # creates the schema
    history.close()
    rng = random.Random(14)
    start = now - (days - 1) * DAY_MS
    cutoff = now - FULL_DAYS * DAY_MS
    groups = (repositories + PER_GROUP - 1) // PER_GROUP
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO series VALUES (?, ?, ?)", itertools.chain(
        ((n + 1, REPOSITORY, f"g{n // PER_GROUP}/r{n}") for n in range(repositories)),
        ((repositories + g + 1, GROUP, f"g{g}") for g in range(groups))))
    times = [start + day * DAY_MS + 3_600_000 for day in range(days)]

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

    last: list[int] = []
    totals = [0] * days
    for g in range(groups):
        members = range(g * PER_GROUP, min((g + 1) * PER_GROUP, repositories))
        group = [0] * days
        for n in members:
            # A different change every day: 0 to 50 MiB, so no two deltas repeat (the worst case for packing).
            sizes = list(itertools.accumulate(rng.randrange(0, 50 * 2**20) for _ in range(days - 1)))
            sizes = [rng.randrange(10 * 2**20, 4 * 2**30)] + sizes
            sizes = [sizes[0]] + [sizes[0] + grown for grown in sizes[1:]]
            store(n + 1, sizes, 1)
            group = [a + b for a, b in zip(group, sizes, strict=True)]
            last.append(sizes[-1])
        store(repositories + g + 1, group, len(members))
        totals = [a + b for a, b in zip(totals, group, strict=True)]
    connection.executemany("INSERT INTO totals VALUES (?, ?, ?, ?, ?)",
                           ((t, total, total, repositories, repositories) for t, total in zip(times, totals,
                                                                                           strict=True)))
    connection.execute("INSERT INTO meta VALUES ('compacted', ?)", (cutoff,))
    connection.execute("INSERT INTO meta VALUES ('pruned_day', ?)", ((now - days * DAY_MS) // DAY_MS,))
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return last


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
        now = (int(time.time() * 1000) // DAY_MS) * DAY_MS + 3_600_000 - DAY_MS
        started = time.perf_counter()
        sizes = generate(path, args.repositories, args.days, now)
        rows.append(("generated in", f"{time.perf_counter() - started:.0f} s"))
        size = path.stat().st_size
        points = args.repositories * args.days
        rows.append(("file size", f"{size / 2**20:.0f} MiB ({size / points:.1f} bytes per repository point, "
                                  f"groups included; {args.repositories} x {args.days} days)"))
        started = time.perf_counter()
        history = History(str(path), FULL_DAYS, args.days)
        rows.append(("open (loads the last figures)", f"{(time.perf_counter() - started) * 1000:.0f} ms"))
        listing = Listing(tuple(RepositoryListing(f"g{n // PER_GROUP}/r{n}", (ImageListing("latest", (f"l{n}",)),))
                                for n in range(args.repositories)), {f"l{n}": size for n, size in enumerate(sizes)})
        snapshot = build_snapshot(listing, (now + 2 * 3_600_000) / 1000)
        started = time.perf_counter()
        assert history.record(snapshot)
        rows.append(("unchanged refresh, a day's points crossing history_full_days into the archive",
                     f"{(time.perf_counter() - started) * 1000:.0f} ms"))
        snapshot = build_snapshot(listing, snapshot.timestamp + 60)
        started = time.perf_counter()
        assert history.record(snapshot)
        rows.append(("unchanged refresh, a minute later", f"{(time.perf_counter() - started) * 1000:.0f} ms"))
        app = create_app(make_config(storage_capacity=2**50), SnapshotHolder(snapshot), FakeDirectory(),
                         clock=lambda: snapshot.timestamp, history=history)
        with app.test_client() as client:
            token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
            headers = {"Authorization": f"Bearer {token}"}

            def get(url: str) -> Callable[[], object]:
                def call() -> object:
                    response = client.get(url, headers=headers)
                    assert response.status_code == 200, response.data[:300]
                    return response

                return call

            middle = args.repositories // 2
            for url in ("/history?since=30d", "/history?since=400d",
                        f"/repositories/g{middle // PER_GROUP}%2Fr{middle}/history",
                        f"/repositories/g{middle // PER_GROUP}%2Fr{middle}/history?since=400d",
                        f"/groups/g{middle // PER_GROUP}/history?since=400d"):
                rows.append((f"GET {url}", f"{median_ms(get(url), args.runs):.1f} ms"))
            for window in ("7d", "30d", "1h"):
                url = f"/repositories?window={window}&sort=-growth&limit=10"
                first = median_ms(get(url), 1)
                rows.append((f"GET {url}", f"first {first:.0f} ms, then {median_ms(get(url), args.runs):.1f} ms"))
            url = "/groups?window=30d&sort=-growth&limit=10"
            first = median_ms(get(url), 1)
            rows.append((f"GET {url}", f"first {first:.0f} ms, then {median_ms(get(url), args.runs):.1f} ms"))
        history.close()
        rows.append(("file size after", f"{os.path.getsize(path) / 2**20:.0f} MiB"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
