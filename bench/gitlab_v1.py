"""GitLab's metadata-database API against the registry API v2: the unchanged second crawl of 100,000 tags.

    python3 -m bench.gitlab_v1 [--repositories 10000] [--tags 10] [--layers 8] [--concurrency 8]

A synthetic registry (one asyncio process per API, both serving the same content) answers the token endpoint,
the registry API v2 (catalog paged by 1,000, tag lists, manifests by tag or digest with ``If-None-Match``, config
blobs) and, in one of the two, GitLab's ``/gitlab/v1/`` (the probe, and tag lists of up to 1,000 tags with their
digests). Every tag has a manifest and a config of its own; layers are shared registry-wide, per repository and
per tag. For each API one builtin crawler crawls twice: the first crawl fills its caches, the second finds the
registry unchanged. Request counts are the servers' own, by kind.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests

from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.sizes import build_snapshot

ROOT = Path(__file__).resolve().parent.parent
USER, TOKEN = "root", "glpat-benchmark"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
PAGE = 1000
_REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 404: "Not Found"}

Answer = tuple[int, list[tuple[str, str]], bytes]


# --- the synthetic registry ---------------------------------------------------------------------------------------

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(timestamp))


class SyntheticRegistry:
    """The content and the answers: manifests and configs are rebuilt per request from their indices (their
    digests are kept), so that 100,000 tags cost the server tens of MiB rather than a copy of every body."""

    def __init__(self, repositories: int, tags: int, layers: int, gitlab_v1: bool) -> None:
        self.gitlab_v1 = gitlab_v1
        self.names = sorted(f"group{number % 100:02d}/project{number:05d}" for number in range(repositories))
        # By name in both APIs, as GitLab's registry lists them from its database.
        self.tag_names = sorted(f"v1.{number}" for number in range(tags))
        self.counts: Counter[str] = Counter()
        shared = [_digest(f"base-{number}".encode()) for number in range(60)]
        self._layers: list[list[list[tuple[str, int]]]] = []  # repository -> tag -> layers
        self._manifests: dict[tuple[int, int], str] = {}  # (repository, tag) -> manifest digest
        self._configs: dict[tuple[int, int], str] = {}
        self._by_digest: dict[str, tuple[str, int, int]] = {}  # digest -> ("manifest" | "config", repository, tag)
        per_repository, per_tag = max(layers - 5, 0), min(layers, 2)
        for repo in range(repositories):
            own = [_digest(f"repo-{repo}-{n}".encode()) for n in range(per_repository)]
            base = [shared[(repo + n) % len(shared)] for n in range(layers - per_repository - per_tag)]
            rows = []
            for tag in range(tags):
                mine = [_digest(f"tag-{repo}-{tag}-{n}".encode()) for n in range(per_tag)]
                rows.append([(digest, 1000 + int(digest[7:13], 16)) for digest in base + own + mine])
                config = self.config(repo, tag)
                self._configs[(repo, tag)] = _digest(config)
                self._manifests[(repo, tag)] = _digest(self._manifest_for(repo, tag, rows[-1], len(config)))
                self._by_digest[self._manifests[(repo, tag)]] = ("manifest", repo, tag)
                self._by_digest[self._configs[(repo, tag)]] = ("config", repo, tag)
            self._layers.append(rows)
        self._index = {name: number for number, name in enumerate(self.names)}
        self._tag_index = {name: number for number, name in enumerate(self.tag_names)}

    def config(self, repo: int, tag: int) -> bytes:
        """Every tag's own: the labels keep configs apart even where two tags were built at the same second."""
        created = _iso(1_600_000_000 + repo * 60 + tag)
        return json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                           "config": {"Labels": {"repository": str(repo), "tag": str(tag)}},
                           "rootfs": {"type": "layers", "diff_ids": []}}).encode()

    def _manifest_for(self, repo: int, tag: int, layers: list[tuple[str, int]], config_size: int) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "size": config_size, "digest": _digest(self.config(repo, tag))},
            "layers": [{"mediaType": LAYER, "size": size, "digest": digest} for digest, size in layers],
        }).encode()

    def manifest(self, repo: int, tag: int) -> bytes:
        return self._manifest_for(repo, tag, self._layers[repo][tag], len(self.config(repo, tag)))

    def answer(self, method: str, target: str, headers: dict[bytes, bytes]) -> Answer:
        parts = urlsplit(target)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if path.startswith("/_bench/"):
            if path == "/_bench/reset":
                self.counts.clear()
            return 200, [("Content-Type", "application/json")], json.dumps(self.counts).encode()
        if path == "/jwt/auth":
            self.counts["token"] += 1
            return _json({"token": "bench-token", "expires_in": 3600})
        if path.startswith("/gitlab/v1/"):
            return self._gitlab_v1(path, query)
        if path == "/v2/_catalog":
            self.counts["catalog"] += 1
            return self._paged(self.names, query, "/v2/_catalog", lambda page: {"repositories": page})
        name, _, rest = path[len("/v2/"):].partition("/tags/list") if path.endswith("/tags/list") else ("", "", "")
        if name:
            self.counts["v2 tag lists"] += 1
            return _json({"name": name, "tags": self.tag_names}) if name in self._index else _unknown()
        for marker, kind in (("/manifests/", "manifest"), ("/blobs/", "blob")):
            name, found, reference = path[len("/v2/"):].partition(marker)
            if found:
                self.counts[f"{kind}s"] += 1
                return self._content(kind, name, reference, method, headers)
        return 404, [], b""

    def _content(self, kind: str, name: str, reference: str, method: str, headers: dict[bytes, bytes]) -> Answer:
        repo = self._index.get(name)
        if repo is None:
            return _unknown()
        if kind == "manifest" and not reference.startswith("sha256:"):
            tag = self._tag_index.get(reference, -1)
            if tag < 0:
                return 404, [], b""
        else:
            found = self._by_digest.get(reference)
            if found is None or found[0] != kind.replace("blob", "config") or found[1] != repo:
                return 404, [], b""
            tag = found[2]
        if kind == "manifest":
            digest = self._manifests[(repo, tag)]
            if headers.get(b"if-none-match", b"").strip(b'"').decode() == digest:
                return 304, [("Docker-Content-Digest", digest)], b""
            return 200, [("Content-Type", MANIFEST), ("Docker-Content-Digest", digest)], self.manifest(repo, tag)
        return 200, [("Content-Type", "application/octet-stream")], self.config(repo, tag)

    def _gitlab_v1(self, path: str, query: dict[str, list[str]]) -> Answer:
        if not self.gitlab_v1:
            self.counts["gitlab/v1 (off)"] += 1
            return 404, [], b"404 page not found\n"
        if path == "/gitlab/v1/":
            self.counts["probe"] += 1
            return 200, [], b""
        self.counts["v1 tag lists"] += 1
        prefix, suffix = "/gitlab/v1/repositories/", "/tags/list/"
        repo = self._index.get(path[len(prefix):-len(suffix)]) if path.endswith(suffix) else None
        if repo is None:
            return _unknown()
        name = self.names[repo]

        def entries(page: list[str]) -> list[dict[str, object]]:
            listed = []
            for tag_name in page:
                tag = self._tag_index[tag_name]
                when = _iso(1_650_000_000 + repo * 60 + tag)
                listed.append({"name": tag_name, "digest": self._manifests[(repo, tag)],
                               "config_digest": self._configs[(repo, tag)], "media_type": MANIFEST,
                               "size_bytes": sum(size for _, size in self._layers[repo][tag]),
                               "created_at": when, "published_at": when})
            return listed

        return self._paged(self.tag_names, query, f"/gitlab/v1/repositories/{quote(name)}/tags/list/",
                           entries)

    @staticmethod
    def _paged(names: list[str], query: dict[str, list[str]], path: str,
               render: Callable[[list[str]], object]) -> Answer:
        size = min(int(query.get("n", [PAGE])[0]), PAGE)
        last = query.get("last", [""])[0]
        start = bisect.bisect_right(names, last) if last else 0
        page = names[start:start + size]
        status, headers, body = _json(render(page))
        if start + size < len(names):
            headers.append(("Link", f'<{path}?last={quote(page[-1])}&n={size}>; rel="next"'))
        return status, headers, body


def _json(document: object) -> Answer:
    return 200, [("Content-Type", "application/json")], json.dumps(document).encode()


def _unknown() -> Answer:
    return 404, [("Content-Type", "application/json")], b'{"errors":[{"code":"NAME_UNKNOWN"}]}'


async def _serve_connection(registry: SyntheticRegistry, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].decode("latin-1").split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if int(headers.get(b"content-length", b"0")):
                await reader.readexactly(int(headers[b"content-length"]))
            status, extra, body = registry.answer(method, target, headers)
            lines_out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Other')}", f"Content-Length: {len(body)}",
                         *(f"{name}: {value}" for name, value in extra)]
            writer.write(("\r\n".join(lines_out) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD" and status != 304:
                writer.write(body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the client hung up, or the server is stopping
    finally:
        writer.close()


def serve(port: int, repositories: int, tags: int, layers: int, gitlab_v1: bool) -> None:
    """Build the content, print ``READY <url>``, and serve until SIGTERM."""
    registry = SyntheticRegistry(repositories, tags, layers, gitlab_v1)

    async def main() -> None:
        connections: set[asyncio.Task[None]] = set()

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            connections.add(task)
            try:
                await _serve_connection(registry, reader, writer)
            finally:
                connections.discard(task)

        server = await asyncio.start_server(connected, "127.0.0.1", port, backlog=256)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(f"READY http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", flush=True)
        async with server:
            await stop.wait()
            # Idle keep-alive connections end here, so that none is cancelled half-way when the loop closes.
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

    asyncio.run(main())


# --- measuring ----------------------------------------------------------------------------------------------------

@dataclass
class Crawl:
    api: str
    crawl: str
    seconds: float
    counts: dict[str, int]
    listing: Listing

    @property
    def requests(self) -> int:
        return sum(self.counts.values())


class Server:
    def __init__(self, args: argparse.Namespace, gitlab_v1: bool) -> None:
        command = [sys.executable, "-m", "bench.gitlab_v1", "--serve", "--repositories", str(args.repositories),
                   "--tags", str(args.tags), "--layers", str(args.layers), *(["--gitlab-v1"] if gitlab_v1 else [])]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "READY":
            self.process.kill()
            raise RuntimeError(f"the synthetic registry did not start: {line}")
        self.url = line[1]
        self.http = requests.Session()
        self.http.trust_env = False

    def counts(self, reset: bool = False) -> dict[str, int]:
        counts: dict[str, int] = self.http.get(self.url + ("_bench/reset" if reset else "_bench/counts"),
                                               timeout=10).json()
        return counts

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def measure(api: str, server: Server, concurrency: int) -> list[Crawl]:
    crawler = BuiltinCrawler.connect(server.url, server.url, USER, TOKEN, concurrency=concurrency)
    runs = []
    try:
        for name in ("first", "unchanged second"):
            server.counts(reset=True)
            started = time.perf_counter()
            listing = crawler.crawl()
            seconds = time.perf_counter() - started
            runs.append(Crawl(api, name, seconds, server.counts(), listing))
            print(f"  {api}, {name} crawl: {seconds:.1f} s", flush=True)
    finally:
        crawler.close()
    return runs


def figures(listing: Listing) -> object:
    unpublished = dataclasses.replace(listing, repositories=tuple(
        dataclasses.replace(repo, images=tuple(dataclasses.replace(image, published=None)
                                               for image in repo.images or ()))
        for repo in listing.repositories))
    snapshot = build_snapshot(unpublished, 0.0)
    return unpublished, [(repo.name, repo.size, repo.disk_size, repo.unique_size) for repo in snapshot.repositories]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gitlab-v1", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(0, args.repositories, args.tags, args.layers, args.gitlab_v1)
        return
    tags = args.repositories * args.tags
    print(f"synthetic registry: {args.repositories} repositories x {args.tags} tags x {args.layers} layers "
          f"({tags} tags); builtin crawler, concurrency {args.concurrency}", flush=True)
    runs: list[Crawl] = []
    for api, gitlab_v1 in (("registry API v2", False), ("GitLab /gitlab/v1/", True)):
        server = Server(args, gitlab_v1)
        try:
            runs += measure(api, server, args.concurrency)
        finally:
            server.stop()

    kinds = sorted({kind for run in runs for kind in run.counts})
    print(f"\n{'API':<20} {'crawl':<17} {'seconds':>8} {'requests':>9} {'req/s':>7} {'errors':>6}  "
          + " ".join(f"{kind:>15}" for kind in kinds))
    for run in runs:
        print(f"{run.api:<20} {run.crawl:<17} {run.seconds:>8.1f} {run.requests:>9} "
              f"{run.requests / run.seconds:>7.0f} {len(run.listing.errors):>6}  "
              + " ".join(f"{run.counts.get(kind, 0):>15}" for kind in kinds))
    v2, v1 = runs[1], runs[3]
    same = figures(runs[0].listing) == figures(v2.listing) == figures(runs[2].listing) == figures(v1.listing)
    print(f"\nunchanged second crawl of {tags} tags: GitLab /gitlab/v1/ {v1.requests} requests in {v1.seconds:.1f} s, "
          f"registry API v2 {v2.requests} in {v2.seconds:.1f} s: {v2.requests / v1.requests:.1f}x fewer requests, "
          f"{v2.seconds / v1.seconds:.1f}x faster")
    print(f"figures (and listings, publication times aside) identical across the four crawls: {same}")


if __name__ == "__main__":
    main()
