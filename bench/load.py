"""Load benchmark ("trustworthy under load"): the original 0.3.3 and ours under wrk while they refresh.

    python3 -m bench.load [--seconds 30] [--repositories 1000] [--tags 5] [--connections 16,64] [--refreshes 100]

One registry of REPOSITORIES x TAGS images (real docker-registry, pushed once and cached, see
bench/harness.py) and a real OpenLDAP (tests.support.slapd). Each service runs alone while it is measured.
wrk runs SECONDS per cell at each connection count against:

- /repositories/<name> and /repositories?embed=1 with a bearer token forged with the services' secret;
- /auth_token with HTTP basic auth of a real directory user and a wrong password (every request is a failed
  login: ours' login limiter answers 429 after a few; the original asks LDAP every time).

Refreshes while measuring: ours runs with refresh_interval = 1s (the shortest the config accepts: whole
seconds), so one refresh follows the other, and gets a SIGHUP every --sighup-every seconds as well. The
original cannot be told to refresh (SIGHUP would end it; its interval is fixed at 60 minutes): the only
refresh it does is the crawl it starts right after it starts listening, so its cells run from then on, and the
"refresh" column says whether that crawl was still running. Status codes are counted by a wrk Lua script.

Then "no growth of memory across REFRESHES refreshes": ours alone, refresh_interval = 1s, no load; RSS is
sampled when GET /health's refresh.refreshes reaches 10 (and a few points between) and REFRESHES.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench import harness
from tests.support.processes import free_port
from tests.support.slapd import Slapd


@dataclass
class Row:
    service: str
    endpoint: str
    connections: int
    result: harness.WrkResult
    refresh: str


def status_mix(statuses: dict[int, int] | None) -> str:
    if not statuses:
        return "-"
    return " ".join(f"{code}:{count}" for code, count in sorted(statuses.items()))


def original_timestamp(service: harness.Service) -> float | None:
    try:
        timestamp = service.get("/repositories", service.token, timeout=120).json()["timestamp"]
        return None if timestamp is None else float(timestamp)
    except Exception:  # noqa: BLE001 - a busy original may not answer: unknown
        return None


class Sighup:
    """Sends SIGHUP to ``pid`` every ``every`` seconds while running."""

    def __init__(self, pid: int, every: float) -> None:
        self._pid, self._every = pid, every
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            os.kill(self._pid, signal.SIGHUP)
            self.sent += 1

    def __enter__(self) -> Sighup:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_cells(service: harness.Service, endpoints: list[tuple[str, str, dict[str, str]]], connections: list[int],
              seconds: float, sighup_every: float, first_timestamp: float | None) -> list[Row]:
    rows = []
    for label, path, headers in endpoints:
        for conns in connections:
            harness.log(f"{service.name}: {label}, {conns} connections, {seconds:g} s")
            timeout = max(30.0, seconds * 2)
            if service.name == "ours":
                before = harness.refreshes(service)
                with Sighup(service.pid, sighup_every) as hup:
                    result = harness.run_wrk(service.url + path, connections=conns, seconds=seconds, headers=headers,
                                           timeout_s=timeout, count_statuses=True)
                refresh = f"{harness.refreshes(service) - before} done, {hup.sent} SIGHUP"
            else:
                before_ts = original_timestamp(service)
                result = harness.run_wrk(service.url + path, connections=conns, seconds=seconds, headers=headers,
                                       timeout_s=timeout, count_statuses=True)
                after_ts = original_timestamp(service)
                if before_ts == first_timestamp and after_ts == first_timestamp:
                    refresh = "crawl running"
                elif before_ts == first_timestamp:
                    refresh = "crawl ended in cell"
                else:
                    refresh = "none (crawl over)"
            rows.append(Row(service.name, label, conns, result, refresh))
    return rows


def print_rows(rows: list[Row]) -> None:
    print(f"{'service':<9} {'endpoint':<22} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>5} "
          f"{'err':>4}  {'refresh during the cell':<24} statuses")
    print("-" * 120)
    for row in rows:
        r = row.result
        fivexx = r.count(500, 599)
        print(f"{row.service:<9} {row.endpoint:<22} {row.connections:>5} {r.rps:>8.1f} {harness.fmt_ms(r.p50_ms):>8} "
              f"{harness.fmt_ms(r.p99_ms):>8} {fivexx if fivexx is not None else '-':>5} {r.errors:>4}  "
              f"{row.refresh:<24} {status_mix(r.statuses)}")


def memory_across_refreshes(workdir: Path, registry: harness.RegistryFixture, secret: str, total: int,
                            ) -> tuple[list[tuple[int, dict[str, int], float, dict[str, int]]], int]:
    """Ours refreshing back to back (interval 1s); RSS when /health counts 10, ..., ``total`` refreshes, of the
    service process and summed with its child processes (the crawler)."""
    points = sorted({10, *(total * share // 4 for share in (1, 2, 3)), total} - {0})
    points = [point for point in points if point >= 10] or [total]
    ours = harness.start_ours(workdir, registry.registry_url, registry.gitlab_url, None, free_port(), secret,
                            refresh_interval="1s")
    samples = []
    started = time.monotonic()
    try:
        for point in points:
            while (done := harness.refreshes(ours)) < point:
                if ours.poll() is not None:
                    raise RuntimeError(f"ours exited:\n{ours.log_tail()}")
                time.sleep(0.2)
            samples.append((done, ours.memory_kib(), time.monotonic() - started, ours.tree_memory_kib()))
            harness.log(f"ours: {done} refreshes, VmRSS {samples[-1][1]['VmRSS'] / 1024:.1f} MiB, with the crawler "
                      f"{samples[-1][3]['VmRSS'] / 1024:.1f} MiB")
        failures = int(ours.get("/health").json()["refresh"]["failures"])
    finally:
        ours.stop()
    return samples, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="wrk duration of each cell (default 30)")
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=5)
    parser.add_argument("--connections", default="16,64", help="comma-separated connection counts (default 16,64)")
    parser.add_argument("--sighup-every", type=float, default=5.0, help="seconds between SIGHUPs to ours (default 5)")
    parser.add_argument("--refreshes", type=int, default=100, help="refreshes of the memory check (default 100)")
    parser.add_argument("--memory-registry", metavar="RxT",
                        help="registry of the memory check, e.g. 200x5 (default: the same as the load cells; a "
                             "refresh of 1000x5 takes about 15 s here, bounded by docker-registry's CPU)")
    parser.add_argument("--only", choices=("original", "ours"), help="measure one service only")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory-across-refreshes check")
    args = parser.parse_args()
    connections = [int(value) for value in args.connections.split(",")]
    memory_size = (args.repositories, args.tags)
    if args.memory_registry:
        repositories, _, tags = args.memory_registry.lower().partition("x")
        memory_size = (int(repositories), int(tags))
    harness.ensure_wrk()
    secret = harness.new_secret()
    rows: list[Row] = []
    notes: list[str] = []
    samples: list[tuple[int, dict[str, int], float, dict[str, int]]] = []
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, harness.registry_with(args.repositories, args.tags) as registry, \
            Slapd(Path(tmp) / "slapd") as slapd:
        user = slapd.users["alice"]
        name_path = f"/repositories/{quote(registry.names()[args.repositories // 2], safe='')}"
        for label in ("original", "ours"):
            if args.only and label != args.only:
                continue
            harness.log(f"starting {label} on {args.repositories} x {args.tags} ...")
            first_timestamp = None
            if label == "original":
                service = harness.start_original(Path(tmp) / label, registry.registry_url, registry.gitlab_url, slapd,
                                               free_port(), secret)
                first_timestamp = original_timestamp(service)
                # Its disk sizes are computed by the first request that needs them; done here so that the cells
                # measure serving during the refresh, not that one computation (which every refresh repeats).
                warm_started = time.monotonic()
                service.get(name_path, service.token, timeout=1800).raise_for_status()
                notes.append(f"original: listened after its first crawl ({service.startup_seconds:.0f} s), started "
                             f"its second crawl at once; first figure request (disk sizes) "
                             f"{time.monotonic() - warm_started:.1f} s; cells start right after")
            else:
                service = harness.start_ours(Path(tmp) / label, registry.registry_url, registry.gitlab_url, slapd,
                                           free_port(), secret, refresh_interval="1s")
                notes.append(f"ours: refresh_interval 1s (refreshes back to back), SIGHUP every "
                             f"{args.sighup_every:g} s during each cell; "
                             f"first data after {service.startup_seconds:.1f} s")
            endpoints = [
                ("/repositories/<name>", name_path, harness.bearer(service.token)),
                ("/repositories?embed=1", "/repositories?embed=1", harness.bearer(service.token)),
                ("/auth_token (wrong pw)", "/auth_token", harness.basic(user.uid, "not-" + user.password)),
            ]
            try:
                rows += run_cells(service, endpoints, connections, args.seconds, args.sighup_every, first_timestamp)
                if label == "original":
                    crawled = original_timestamp(service) != first_timestamp
                    notes.append(f"original: its second crawl {'ended' if crawled else 'was still running'} by the end")
                if service.poll() is not None:
                    notes.append(f"{label} EXITED during the run with status {service.returncode}")
            finally:
                service.stop()
        if not args.skip_memory and args.only != "original" and memory_size == (args.repositories, args.tags):
            harness.log(f"ours: memory across {args.refreshes} refreshes (refresh_interval 1s) ...")
            samples, failures = memory_across_refreshes(Path(tmp) / "memory", registry, secret, args.refreshes)
    if not args.skip_memory and args.only != "original" and memory_size != (args.repositories, args.tags):
        with tempfile.TemporaryDirectory() as tmp, harness.registry_with(*memory_size) as registry:
            harness.log(f"ours: memory across {args.refreshes} refreshes of {memory_size[0]} x {memory_size[1]} ...")
            samples, failures = memory_across_refreshes(Path(tmp) / "memory", registry, secret, args.refreshes)

    print(f"\nunder load: {args.repositories} repositories x {args.tags} tags, wrk {args.seconds:g} s per cell, "
          f"1 wrk thread, 127.0.0.1, cheroot (2 CPUs shared with wrk, slapd, the registry and other work: noisy)")
    for note in notes:
        print(f"  {note}")
    print()
    print_rows(rows)
    print("\n  5xx: from the status counts; err: wrk socket errors (connect/read/write/timeout); statuses: code:count")
    if samples:
        print(f"\nours: memory across {samples[-1][0]} refreshes of {memory_size[0]} x {memory_size[1]} "
              f"(refresh_interval 1s, no load; {failures} failed refreshes):")
        print(f"  {'':>9} {'service process':^21} {'with the crawler process':^24}")
        print(f"  {'refreshes':>9} {'VmRSS':>10} {'VmHWM':>10} {'VmRSS':>11} {'sum of peaks':>12} {'elapsed':>8}")
        for done, memory, elapsed, tree in samples:
            print(f"  {done:>9} {memory['VmRSS'] / 1024:>6.1f} MiB {memory['VmHWM'] / 1024:>6.1f} MiB "
                  f"{tree['VmRSS'] / 1024:>7.1f} MiB {tree['VmHWM'] / 1024:>8.1f} MiB {elapsed:>7.0f}s")
        first, last = samples[0], samples[-1]
        print(f"  difference refresh {first[0]} -> {last[0]}: "
              f"VmRSS {(last[1]['VmRSS'] - first[1]['VmRSS']) / 1024:+.1f} "
              f"MiB, VmHWM {(last[1]['VmHWM'] - first[1]['VmHWM']) / 1024:+.1f} MiB; with the crawler VmRSS "
              f"{(last[3]['VmRSS'] - first[3]['VmRSS']) / 1024:+.1f} MiB; "
              f"{(last[2] - first[2]) / max(1, last[0] - first[0]):.2f} s per refresh")


if __name__ == "__main__":
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    main()
