"""Dashboard rendering time on big registries, against the browser view it replaces.

    python3 -m bench.dashboard [--repositories 1000,10000,100000] [--tags 10]

The dashboard (totals, treemap, a page of the largest repositories) is rendered from a synthetic
snapshot as the service renders it on a request; the baseline is what a browser got for
``/repositories`` before the dashboard: the whole ``?embed=1`` document as nested tables (links on),
in the one-pass renderer of web/html.py (the quadratic one it replaced is bench/html.py's baseline),
rendered by the same process in the same run. Best of three runs each.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

from bench.restart import synthetic_listing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import RefreshStatus
from gitlab_registry_usage_rest.web import hal, html, pages


def best_of(runs: int, work: Callable[[], object]) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
        size = len(str(result))
    return best, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", default="1000,10000,100000")
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"dashboard rendering, synthetic registry, {args.tags} tags per repository, best of {args.runs}")
    print(f"{'repositories':>12} {'tags':>9} | {'dashboard (s)':>13} {'bytes':>9} | "
          f"{'repository page (s)':>19} | {'tables ?embed=1 (s)':>21} {'bytes':>11}")
    for count in (int(value) for value in args.repositories.split(",")):
        snapshot = build_snapshot(synthetic_listing(count, args.tags), time.time())
        view = pages.Dashboard(snapshot, RefreshStatus(), time.time(), "", pages.TableQuery(), "bench")
        dashboard, dashboard_bytes = best_of(args.runs, functools.partial(pages.dashboard_page, view))
        repository_page, _ = best_of(args.runs, functools.partial(pages.repository_page, snapshot.repositories[0],
                                                                  "", "bench", now=time.time()))
        options = hal.Options(embed=1, links=True, base="", window=hal.Window())
        document = hal.repositories_document(snapshot, options)
        old, old_bytes = best_of(1 if count > 10000 else args.runs,
                                 functools.partial(html.render_page, document, "Repositories"))
        print(f"{count:>12,} {count * args.tags:>9,} | {dashboard:>13.3f} {dashboard_bytes:>9,} | "
              f"{repository_page:>19.4f} | {old:>21.3f} {old_bytes:>11,}")


if __name__ == "__main__":
    main()
