"""Serving benchmark ("serving fast"): the original 0.3.3 against ours, both on cheroot, measured with wrk.

    python3 -m bench.serve [--seconds 10] [--repositories 1000] [--tags 5] [--connections 1,32]

One registry of REPOSITORIES x TAGS images (a real docker-registry, pushed once and cached, see
bench/harness.py), both services crawling it, both running throughout: the original is settled first (its
start-up crawl, the second crawl it starts at once, and the first request that computes its disk sizes), then
ours starts, and then the services take turns cell by cell, each measured while the other is idle, so that
the drift in this machine's speed does not go into the ratio. For every endpoint and connection count, wrk
runs SECONDS on 127.0.0.1 with a bearer token forged with the services' secret:

- /repositories/<name>, /repositories?embed=true, /repositories?embed=true&links=true with and without
  Accept-Encoding: gzip, and a 304 revalidation of /repositories?embed=true (If-None-Match with the ETag of a
  first response; "n/a (no ETag)" for a service that sends none).

Printed: requests/s, p50 and p99 latency (wrk --latency), responses that were neither 2xx nor 3xx, wrk's
socket errors (timeouts), for each service and the ratio ours/original of requests/s; then the floor, the
same cells of /repositories/<name> against bench/floor.py (cheroot answering fixed bytes); then the bytes each
endpoint sends and the peak RSS (VmHWM) of each service after its run; then the peak RSS of ours serving
MEMORY_REPOSITORIES x MEMORY_TAGS from a synthetic data file after a round of /repositories?embed=true.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bench import harness
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.persistence import DataFile
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.processes import free_port

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass
class Endpoint:
    label: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    revalidate: bool = False  # send If-None-Match with the ETag of a first response


@dataclass
class Probe:
    status: int
    wire_bytes: int
    encoding: str
    etag: str | None
    seconds: float


@dataclass
class Scale:
    file_bytes: int
    loaded: dict[str, int]
    after: dict[str, int]
    after_tree: dict[str, int]
    body_bytes: int
    seconds_min: float
    seconds_max: float
    requests: int


@dataclass
class Cell:
    result: harness.WrkResult | None
    note: str = ""


def probe(service: harness.Service, endpoint: Endpoint, extra: dict[str, str] | None = None) -> Probe:
    """One request as wrk will send it (no Accept-Encoding unless the endpoint sets one): status, bytes, ETag."""
    headers = {**IDENTITY, **endpoint.headers, **(extra or {})}
    started = time.monotonic()
    with harness.local_session() as session:
        response = session.get(service.url + endpoint.path, headers={**headers, **harness.bearer(service.token)},
                               timeout=600, stream=True)
        body = response.raw.read(decode_content=False)
    return Probe(response.status_code, len(body), response.headers.get("Content-Encoding", "identity"),
                 response.headers.get("ETag"), time.monotonic() - started)


def measure(services: dict[str, harness.Service], endpoints: list[Endpoint], connections: list[int], seconds: float,
            ) -> tuple[dict[str, dict[tuple[str, int], Cell]], dict[str, dict[str, Probe]]]:
    """Every cell for every service, the services taking turns cell by cell.

    This machine's speed drifts by tens of percent from minute to minute (a shared virtual machine), so
    measuring one service after the other would put the drift into the ratio; taking turns keeps it out.
    The floor service answers only the first endpoint.
    """
    cells: dict[str, dict[tuple[str, int], Cell]] = {label: {} for label in services}
    probes: dict[str, dict[str, Probe]] = {label: {} for label in services}
    drained = 0.0

    def idle() -> float:
        # Requests still running from the previous cell (cheroot finishes what its workers have read even
        # when wrk has gone) would slow the next one down: wait until every process is idle again.
        return sum(service.wait_idle() for service in services.values())

    for number, endpoint in enumerate(endpoints):
        headers: dict[str, dict[str, str]] = {}
        for label, service in services.items():
            if label == "floor" and number:
                continue
            headers[label] = {**endpoint.headers, **harness.bearer(service.token)}
            drained += idle()
            first = probe(service, endpoint)
            probes[label][endpoint.label] = first
            if endpoint.revalidate:
                if first.etag is None:
                    for conns in connections:
                        cells[label][(endpoint.label, conns)] = Cell(None, "n/a (no ETag)")
                    del headers[label]
                    continue
                headers[label]["If-None-Match"] = first.etag
                probes[label][endpoint.label] = probe(service, endpoint, {"If-None-Match": first.etag})
        for conns in connections:
            for label in headers:
                drained += idle()
                harness.log(f"{label}: {endpoint.label}, {conns} connection(s), {seconds:g} s")
                result = harness.run_wrk(services[label].url + endpoint.path, connections=conns, seconds=seconds,
                                       headers=headers[label], timeout_s=max(30.0, seconds * 2))
                cells[label][(endpoint.label, conns)] = Cell(result)
    harness.log(f"{drained:.0f} s spent waiting for left-over requests between cells")
    return cells, probes


def synthetic_data_file(path: Path, repositories: int, tags: int) -> tuple[int, float]:
    """A data file of repositories x tags (3 base layers shared registry-wide, one per repository, one per tag)."""
    def digest(text: str) -> str:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    bases = [digest(f"base-{n}") for n in range(3)]
    sizes = {base: 30_000_000 + n for n, base in enumerate(bases)}
    listed = []
    for number in range(repositories):
        name = f"group{number % 50}/sub{number % 7}/project{number:05d}"
        deps = digest(f"{name}-deps")
        sizes[deps] = 5_000_000 + number
        images = []
        for tag in range(tags):
            own = digest(f"{name}:{tag}")
            sizes[own] = 100_000 + tag
            images.append(ImageListing(f"v{tag}.0", (bases[number % 3], deps, own), digest(f"{name}@{tag}"),
                                       DOCKER_MANIFEST))
        listed.append(RepositoryListing(name, tuple(images)))
    snapshot = build_snapshot(Listing(tuple(listed), sizes), time.time())
    if not DataFile(str(path)).save(snapshot):
        raise RuntimeError(f"could not write {path}")
    return path.stat().st_size, snapshot.timestamp


def memory_at_scale(workdir: Path, repositories: int, tags: int, secret: str) -> Scale:
    """Peak RSS of ours serving repositories x tags from a data file, before and after a round of embed=true."""
    data_file = workdir / "snapshot.json"
    harness.log(f"writing a synthetic data file of {repositories} x {tags} ...")
    file_bytes, _ = synthetic_data_file(data_file, repositories, tags)
    # Nothing listens at the registry URL: the data can only come from the file (the refresh just fails).
    dead = f"http://127.0.0.1:{free_port()}/"
    ours = harness.start_ours(workdir / "ours", dead, dead, None, free_port(), secret, data_file=data_file)
    try:
        loaded = ours.memory_kib()
        path = "/repositories?embed=true"
        timings: list[float] = []

        def fetch(_: int) -> int:
            with harness.local_session() as session:
                total = 0
                for _ in range(2):
                    started = time.monotonic()
                    response = session.get(ours.url + path, headers={**IDENTITY, **harness.bearer(ours.token)},
                                           timeout=600)
                    timings.append(time.monotonic() - started)
                    response.raise_for_status()
                    total = len(response.content)
                return total

        harness.log(f"ours at {repositories} x {tags}: one request, then 8 clients x 2 requests of {path}")
        body_bytes = fetch(0)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(fetch, range(8)))
        after, after_tree = ours.memory_kib(), ours.tree_memory_kib()
    finally:
        ours.stop()
    return Scale(file_bytes, loaded, after, after_tree, body_bytes, min(timings), max(timings), len(timings))


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def print_table(endpoints: list[Endpoint], connections: list[int], results: dict[str, dict[tuple[str, int], Cell]],
                ) -> None:
    services = [name for name in ("original", "ours") if name in results]  # the floor is printed apart
    head = f"{'endpoint':<38} {'conns':>5}"
    sub = f"{'':<38} {'':>5}"
    for name in services:
        head += f" | {name:^44}"
        sub += f" | {'req/s':>8} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'non2/3xx':>8} {'err':>3}"
    if len(services) == 2:
        head += f" | {'ours/orig':>9}"
        sub += f" | {'req/s':>9}"
    print(head)
    print(sub)
    print("-" * len(sub))
    for endpoint in endpoints:
        for conns in connections:
            line = f"{endpoint.label:<38} {conns:>5}"
            rates: list[float | None] = []
            for name in services:
                cell = results[name][(endpoint.label, conns)]
                if cell.result is None:
                    line += f" | {cell.note:^44}"
                    rates.append(None)
                    continue
                r = cell.result
                line += (f" | {r.rps:>8.1f} {r.requests:>5} {harness.fmt_ms(r.p50_ms):>8} "
                         f"{harness.fmt_ms(r.p99_ms):>8} "
                         f"{r.non_2xx_3xx:>8} {r.errors:>3}")
                rates.append(r.rps if r.requests else 0.0)
            if len(services) == 2:
                a, b = rates
                ratio = "-" if a is None or b is None else ("orig 0" if a == 0 else f"{b / a:.1f}x")
                line += f" | {ratio:>9}"
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration of each cell (default 10)")
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=5)
    parser.add_argument("--connections", default="1,32", help="comma-separated connection counts (default 1,32)")
    parser.add_argument("--memory-repositories", type=int, default=5000)
    parser.add_argument("--memory-tags", type=int, default=10)
    parser.add_argument("--only", choices=("original", "ours"), help="measure one service only")
    parser.add_argument("--skip-memory", action="store_true", help="skip the data-file memory figure")
    args = parser.parse_args()
    connections = [int(value) for value in args.connections.split(",")]
    harness.ensure_wrk()
    secret = harness.new_secret()
    results: dict[str, dict[tuple[str, int], Cell]] = {}
    probes: dict[str, dict[str, Probe]] = {}
    memory: dict[str, dict[str, int]] = {}
    tree: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, harness.registry_with(args.repositories, args.tags) as registry:
        name = registry.names()[args.repositories // 2]
        endpoints = [
            Endpoint("/repositories/<name>", f"/repositories/{quote(name, safe='')}"),
            Endpoint("/repositories?embed=true", "/repositories?embed=true"),
            Endpoint("?embed=true&links=true", "/repositories?embed=true&links=true"),
            Endpoint("?embed=true&links=true, gzip", "/repositories?embed=true&links=true", GZIP),
            Endpoint("?embed=true, If-None-Match (304)", "/repositories?embed=true", revalidate=True),
        ]
        services: dict[str, harness.Service] = {}
        try:
            if args.only != "ours":
                harness.log(f"starting the original on {args.repositories} x {args.tags} ...")
                original = services["original"] = harness.start_original(
                    Path(tmp) / "original", registry.registry_url, registry.gitlab_url, None, free_port(), secret)
                harness.log(f"original listens after {original.startup_seconds:.0f} s (its first crawl); waiting for "
                          f"the crawl it starts right away and for its lazily computed disk sizes ...")
                crawl, warm = harness.settle_original(original, original.token, endpoints[0].path)
                notes.append(f"original: first crawl before listening {original.startup_seconds:.0f} s, the second "
                             f"crawl it starts at once {crawl:.0f} s, first figure request (computes disk sizes) "
                             f"{warm:.1f} s; all before measuring")
            if args.only != "original":
                harness.log(f"starting ours on {args.repositories} x {args.tags} ...")
                ours = services["ours"] = harness.start_ours(
                    Path(tmp) / "ours", registry.registry_url, registry.gitlab_url, None, free_port(), secret)
                notes.append(f"ours: first data after {ours.startup_seconds:.1f} s (serves at once, crawls "
                             f"concurrently); refresh_interval 60 minutes, so no refresh while measuring")
                services["floor"] = harness.start_floor(Path(tmp) / "floor", free_port())
            results, probes = measure(services, endpoints, connections, args.seconds)
            memory = {label: service.memory_kib() for label, service in services.items() if label != "floor"}
            tree = {label: service.tree_memory_kib() for label, service in services.items() if label != "floor"}
        finally:
            for service in services.values():
                service.stop()
    scale = None
    if not args.skip_memory and args.only != "original":
        with tempfile.TemporaryDirectory() as tmp:
            scale = memory_at_scale(Path(tmp), args.memory_repositories, args.memory_tags, secret)

    print(f"\nserving: {args.repositories} repositories x {args.tags} tags, wrk {args.seconds:g} s per cell, "
          f"1 wrk thread, 127.0.0.1, both on cheroot (2 CPUs shared with wrk and other work: noisy)")
    for note in notes:
        print(f"  {note}")
    print()
    print_table(endpoints, connections, results)
    print("\n  n: requests completed in the cell; non2/3xx: responses neither 2xx nor 3xx; err: wrk socket errors"
          "\n  (connect/read/write/timeout); orig 0: the original completed no request in the cell")
    floor = results.get("floor", {})
    if floor:
        print(f"\nthe floor: cheroot with the same settings and a WSGI app that answers fixed bytes with ours' headers "
              f"(bench/floor.py), measured in turn with the others on {endpoints[0].label}:")
        for conns in connections:
            cell = floor[(endpoints[0].label, conns)]
            if cell.result is not None:
                r = cell.result
                print(f"  {conns:>3} connection(s): {r.rps:8.1f} req/s, p50 {harness.fmt_ms(r.p50_ms)} ms, "
                      f"p99 {harness.fmt_ms(r.p99_ms)} ms")
    print("\nresponse sizes (a single request as wrk sends it, on the idle service, and its time):")
    for endpoint in endpoints:
        line = f"  {endpoint.label:<38}"
        for label, found in probes.items():
            p = found.get(endpoint.label)
            if p is None:
                continue
            line += (f" {label}: {p.status} {p.wire_bytes:>9,} B {p.encoding:<8} ETag {'yes' if p.etag else 'no '} "
                     f"{p.seconds * 1000:>7.1f} ms ")
        print(line)
    print("\npeak RSS (VmHWM) after the run:")
    for label, values in memory.items():
        print(f"  {label:<9} {mib(values.get('VmHWM'))} (VmRSS now {mib(values.get('VmRSS'))}); with its child "
              f"processes (ours: the crawler) VmRSS {mib(tree[label].get('VmRSS'))}, sum of peaks "
              f"{mib(tree[label].get('VmHWM'))}")
    if scale is not None:
        print(f"\nours serving {args.memory_repositories} repositories x {args.memory_tags} tags from a data file "
              f"({scale.file_bytes:,} B):")
        loaded, after = scale.loaded, scale.after
        print(f"  after loading: VmHWM {mib(loaded.get('VmHWM'))}, VmRSS {mib(loaded.get('VmRSS'))}")
        print(f"  after {scale.requests} x /repositories?embed=true ({scale.body_bytes:,} B, "
              f"{scale.seconds_min:.2f}-{scale.seconds_max:.2f} s each, up to 8 at once): "
              f"VmHWM {mib(after.get('VmHWM'))}, VmRSS {mib(after.get('VmRSS'))}")
        print(f"  with its child processes (the crawler): VmRSS {mib(scale.after_tree.get('VmRSS'))}, sum of peaks "
              f"{mib(scale.after_tree.get('VmHWM'))}")


if __name__ == "__main__":
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    main()
