"""Crawl benchmarks: the gitlab-registry-usage backend against the builtin collector; or the crawl rate of two
commits of the builtin collector on one synthetic registry.

    python3 -m bench.crawl [--repositories 300] [--tags 5] [--latency-ms 30] [--concurrency 8]
    python3 -m bench.crawl --compare OLD_TREE [--repositories 10000] [--tags 10] [--layers 8] [--concurrency 8]

``--compare`` (issue 15's crawl rate): bench.gitlab_v1's synthetic registry (one asyncio process per API: the
registry API v2 alone, and with GitLab's /gitlab/v1/) serves the same content to the builtin crawler of
``OLD_TREE`` (a work tree of an earlier commit, e.g. ``git worktree add --detach /tmp/crawl-base HEAD``) and of
this tree, each in a process of its own with only its tree on the path, one after the other: a first crawl and
an unchanged second crawl through each API. Requests are the servers' own counts; the servers' CPU share is
printed, so that a registry at its limit would show.

A real Docker Distribution registry and the GitLab token stand-in run in a child process with the
pushed images (shared base layers). Both sit behind delaying proxies, each in a process of its own,
so that every request pays a fixed latency as against a real, remote GitLab, and neither the proxies
nor the servers share an interpreter with the crawler. Request counts are the proxies' own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import requests

from bench.gitlab_v1 import Server
from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.crawl.library import LibraryCrawler
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint, TokenSigner
from tests.support.processes import free_port
from tests.support.pusher import Pusher

ROOT = Path(__file__).resolve().parent.parent

USER, TOKEN = "root", "glpat-benchmark"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"


# --- the servers' process -----------------------------------------------------------------------

def serve(workdir: Path, repositories: int, tags: int) -> None:
    """Token endpoint + registry with the benchmark's images; prints READY and waits for SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with GitLabTokenEndpoint(TokenSigner(), USER, TOKEN) as gitlab, \
            DistributionRegistry(workdir / "registry", gitlab) as registry:
        bases = [Pusher.make_layer(f"base-{n}", 2048 + n) for n in range(3)]

        def push(repo_number: int) -> None:
            with Pusher(registry.url, gitlab.url, USER, TOKEN) as pusher:
                repo = f"group{repo_number % 10}/project{repo_number:04d}"
                shared = Pusher.make_layer(f"{repo}-deps", 1024 + repo_number)
                for tag in range(tags):
                    own = Pusher.make_layer(f"{repo}:{tag}", 512 + tag)
                    pusher.push_image(repo, f"v{tag}", [bases[repo_number % 3], shared, own])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(push, range(repositories)))
        print(f"READY {registry.url} {gitlab.url}", flush=True)
        stop.wait()


# --- measuring ----------------------------------------------------------------------------------

class Child:
    """A child process that announces ``READY <words>`` on stdout."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "READY":
            self.process.kill()
            raise RuntimeError(f"{args} did not start: {line}")
        self.words = line[1:]

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=30)
        return output


class Proxy(Child):
    def __init__(self, upstream: str, latency_ms: float, port: int) -> None:
        super().__init__(["-m", "tests.support.proxy", "--upstream", upstream,
                          "--latency-ms", str(latency_ms), "--port", str(port)])
        self.url = self.words[0]

    def stop_and_count(self) -> int:
        return int(self.stop().split("REQUESTS")[-1])


@dataclass
class Run:
    name: str
    seconds: float
    requests: int
    listing: Listing
    rss_mib: float


def rss_mib() -> float:
    """This process's resident memory now (the crawlers run in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proxied(registry: str, gitlab: str, latency_ms: float, ports: tuple[int, int],
            crawl: Callable[[str, str], Listing], name: str) -> Run:
    registry_proxy, gitlab_proxy = Proxy(registry, latency_ms, ports[0]), Proxy(gitlab, latency_ms, ports[1])
    try:
        started = time.perf_counter()
        listing = crawl(registry_proxy.url, gitlab_proxy.url)
        seconds = time.perf_counter() - started
    finally:
        requests_made = registry_proxy.stop_and_count() + gitlab_proxy.stop_and_count()
    return Run(name, seconds, requests_made, listing, rss_mib())


def manifest_rate(url: str, token: str, connections: int, seconds: float = 3.0) -> float:
    """Authenticated manifest GETs per second from ``connections`` keep-alive clients."""
    path = "v2/group0/project0000/manifests/v0"
    headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}

    def client() -> int:
        with requests.Session() as session:
            session.trust_env = False
            session.get(url + path, headers=headers, timeout=10).raise_for_status()
            deadline, count = time.monotonic() + seconds, 0
            while time.monotonic() < deadline:
                session.get(url + path, headers=headers, timeout=10).raise_for_status()
                count += 1
            return count

    with ThreadPoolExecutor(connections) as pool:
        return sum(pool.map(lambda _: client(), range(connections))) / seconds


def figures(listing: Listing) -> list[object]:
    return [(r.name, r.size, r.disk_size, [(t.name, t.size, t.disk_size) for t in r.tags or ()])
            for r in build_snapshot(listing, 0.0).repositories]


# --- two commits' crawl rate on one synthetic registry ---------------------------------------------------------

# Run in a tree's own interpreter: builds that tree's crawler, crawls once per line on stdin, answers in JSON.
CRAWLER = """
import hashlib, json, sys, time
import gitlab_registry_usage_rest
from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.sizes import build_snapshot
url, concurrency = sys.argv[1], int(sys.argv[2])
crawler = BuiltinCrawler.connect(url, url, "root", "glpat-benchmark", concurrency=concurrency)
print(json.dumps({"package": gitlab_registry_usage_rest.__file__}), flush=True)
for _ in sys.stdin:
    started, cpu = time.perf_counter(), time.process_time()
    listing = crawler.crawl()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    figures = [(r.name, r.size, r.disk_size, [(t.name, t.size) for t in r.tags or ()])
               for r in build_snapshot(listing, 0.0).repositories]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "errors": len(listing.errors),
                      "figures": hashlib.sha256(json.dumps(figures).encode()).hexdigest()}), flush=True)
crawler.close()
"""


@dataclass
class RateRun:
    commit: str
    api: str
    crawl: str
    seconds: float
    requests: int
    crawler_cpu: float
    server_cpu: float
    errors: int
    figures: str


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commit(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def crawl_twice(tree: Path, server: Server, api: str, concurrency: int) -> list[RateRun]:
    """A first and an unchanged second crawl by ``tree``'s crawler, in a process with only that tree on its path."""
    commit = _commit(tree)
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    child = subprocess.Popen([sys.executable, "-c", CRAWLER, server.url, str(concurrency)], cwd=tree,
                             env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    runs = []
    try:
        package = json.loads(child.stdout.readline())["package"]
        if not Path(package).resolve().is_relative_to(tree.resolve()):
            raise RuntimeError(f"{tree}'s crawler imported {package}")
        for crawl in ("first", "unchanged second"):
            server.counts(reset=True)
            server_cpu = _cpu_seconds(server.process.pid)
            child.stdin.write("crawl\n")
            child.stdin.flush()
            result = json.loads(child.stdout.readline())
            runs.append(RateRun(commit, api, crawl, result["seconds"], sum(server.counts().values()),
                                result["cpu"], _cpu_seconds(server.process.pid) - server_cpu, result["errors"],
                                result["figures"]))
            print(f"  {runs[-1].commit} {api}, {crawl} crawl: {result['seconds']:.1f} s", flush=True)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    return runs


def compare(old_tree: Path, args: argparse.Namespace) -> None:
    tags = args.repositories * args.tags
    print(f"synthetic registry: {args.repositories} repositories x {args.tags} tags x {args.layers} layers "
          f"({tags} tags); builtin crawler, concurrency {args.concurrency}; {os.cpu_count()} CPUs", flush=True)
    runs: list[RateRun] = []
    for api, gitlab_v1 in (("v2", False), ("v1", True)):
        server = Server(args, gitlab_v1)
        try:
            for tree in (old_tree, ROOT):
                runs += crawl_twice(tree, server, api, args.concurrency)
        finally:
            server.stop()
    print(f"\n{'commit':<8} {'crawl':<20} {'seconds':>8} {'requests':>9} {'req/s':>7} {'ratio':>6} "
          f"{'crawler CPU/req':>15} {'registry CPU':>12} {'errors':>6}")
    old = {(run.api, run.crawl): run for run in runs if run.commit == runs[0].commit}
    for run in runs:
        rate = run.requests / run.seconds
        base = old[(run.api, run.crawl)]
        print(f"{run.commit:<8} {run.api + ' ' + run.crawl:<20} {run.seconds:>8.1f} {run.requests:>9} {rate:>7.0f} "
              f"{rate / (base.requests / base.seconds):>5.2f}x {run.crawler_cpu / run.requests * 1e6:>12.0f} us "
              f"{run.server_cpu / run.seconds:>11.0%} {run.errors:>6}")
    same = len({run.figures for run in runs}) == 1
    print(f"\nfigures identical across every crawl: {same}; registry CPU is the share of one CPU the synthetic "
          "registry used during the crawl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int)
    parser.add_argument("--tags", type=int)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--compare", metavar="OLD_TREE", type=Path)
    parser.add_argument("--serve", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        args.repositories, args.tags = args.repositories or 10_000, args.tags or 10
        compare(args.compare, args)
        return
    args.repositories, args.tags = args.repositories or 300, args.tags or 5
    if args.serve:
        serve(Path(args.serve), args.repositories, args.tags)
        return

    with TemporaryDirectory() as workdir:
        print(f"pushing {args.repositories} repositories x {args.tags} tags ...", flush=True)
        servers = Child(["-m", "bench.crawl", "--serve", workdir, "--repositories", str(args.repositories),
                         "--tags", str(args.tags)])
        registry, gitlab = servers.words
        try:
            token = requests.get(gitlab + "jwt/auth", auth=(USER, TOKEN), timeout=10, params={
                "service": "container_registry", "scope": "repository:group0/project0000:pull"}).json()["token"]
            capacity = manifest_rate(registry, token, args.concurrency)
            bare = Proxy(registry, 0, free_port())
            via_proxy = manifest_rate(bare.url, token, args.concurrency)
            bare.stop()
            # What one request really costs through the delaying proxy at this concurrency, for a client
            # that does nothing else: the nominal latency plus the proxy's, the registry's and the client's time.
            delaying = Proxy(registry, args.latency_ms, free_port())
            effective_latency = args.concurrency / manifest_rate(delaying.url, token, args.concurrency)
            delaying.stop()
            ports = (free_port(), free_port())
            library = proxied(registry, gitlab, args.latency_ms, ports,
                              lambda reg, gl: LibraryCrawler(gl, reg, USER, TOKEN).crawl(), "gitlab-registry-usage")
            crawler: list[BuiltinCrawler] = []

            def builtin(reg: str, gl: str) -> Listing:
                if not crawler:
                    crawler.append(BuiltinCrawler.connect(reg, gl, USER, TOKEN, concurrency=args.concurrency))
                return crawler[0].crawl()

            first = proxied(registry, gitlab, args.latency_ms, ports, builtin, "builtin, first crawl")
            second = proxied(registry, gitlab, args.latency_ms, ports, builtin, "builtin, unchanged second crawl")
            crawler[0].close()
        finally:
            servers.stop()

    tags = args.repositories * args.tags
    print(f"\nregistry: {args.repositories} repositories, {tags} tags; {args.latency_ms:.0f} ms added per request; "
          f"builtin concurrency {args.concurrency}")
    print(f"registry capacity (authenticated manifest GETs, {args.concurrency} connections, no proxy): "
          f"{capacity:.0f} req/s; through the proxy without added latency: {via_proxy:.0f} req/s "
          f"(the proxy alone costs {1000 / via_proxy - 1000 / capacity:+.2f} ms per request at this load)")
    print(f"a trivial client with {args.concurrency} connections through the delaying proxy: "
          f"{effective_latency * 1000:.1f} ms per request ({args.latency_ms:.0f} ms added by design)")

    def bound(run: Run, latency: float) -> float:
        return float(max(run.requests * latency / args.concurrency, run.requests / capacity))

    nominal = args.latency_ms / 1000
    print(f"\n{'crawler':<32} {'wall (s)':>8} {'requests':>8} {'req/s':>6} {'vs library':>10} "
          f"{'bound (s)':>9} {'bound, effective latency (s)':>29} {'RSS after (MiB)':>16}")
    for run in (library, first, second):
        bounds = ("", "") if run is library else (f"{bound(run, nominal):.1f}", f"{bound(run, effective_latency):.1f}")
        print(f"{run.name:<32} {run.seconds:>8.1f} {run.requests:>8} {run.requests / run.seconds:>6.0f} "
              f"{library.seconds / run.seconds:>9.1f}x {bounds[0]:>9} {bounds[1]:>29} {run.rss_mib:>16.0f}")
    same = figures(library.listing) == figures(first.listing) == figures(second.listing)
    print(f"\nfigures identical across the three crawls: {same}")
    print(f"builtin first crawl: {library.seconds / first.seconds:.1f}x faster (target >= 20x), "
          f"{first.requests / library.requests:.2f} of the library's requests (target <= 0.5), "
          f"{first.seconds / bound(first, nominal):.2f} of the bound at {args.latency_ms:.0f} ms and "
          f"{first.seconds / bound(first, effective_latency):.2f} at the effective latency (target <= 1.5)")


if __name__ == "__main__":
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    main()
