"""Tag ages benchmark: what reading every tag's creation time costs the builtin crawler, crawl by crawl.

    python3 -m bench.ages [--repositories 100] [--tags 4] [--latency-ms 5] [--concurrency 8]

A real Docker Distribution registry and the GitLab token stand-in, with images whose configs carry
chosen creation times (every fourth repository also has a two-platform index with attestations, and
the tags of every second repository share one config), behind a proxy that adds a fixed latency and logs every
request. Four crawls: the first; the unchanged second (every manifest revalidated, ``304``); a new
crawler given the first one's ``config_dates()``, as after a restart with the dates kept; and a new
crawler without them, as after a restart today. Request counts are the proxy's own.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.model import Listing
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint, TokenSigner
from tests.support.proxy import FaultyProxy
from tests.support.pusher import Platform, Pusher

USER, TOKEN = "root", "glpat-benchmark"
CONFIG_GET = re.compile(r"/v2/.+/blobs/sha256:[0-9a-f]{64}")


def push(registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, repositories: int, tags: int) -> int:
    """The benchmark's images; returns how many distinct configs they have."""
    base = Pusher.make_layer("base", 2048)
    configs: list[int] = []

    def one(number: int) -> None:
        with Pusher(registry.url, gitlab.url, USER, TOKEN) as pusher:
            repo = f"group{number % 10}/project{number:04d}"
            shared = tags > 1 and number % 2 == 1  # the tags of every second repository share one config
            rootfs = {"rootfs": {"type": "layers", "diff_ids": [f"sha256:{number:064x}"] * 2}}
            for tag in range(tags):
                created = f"2024-{1 + tag % 12:02d}-{1 + number % 28:02d}T12:00:00.{number:06d}+02:00"
                pusher.push_image(repo, f"v{tag}", [base, Pusher.make_layer(f"{repo}:{tag}", 512 + tag)],
                                  created=f"2024-06-01T00:00:{number % 60:02d}Z" if shared else created,
                                  config_extra=rootfs if shared else None)
            configs.append(1 if shared else tags)
            if number % 4 == 0:
                pusher.push_index(repo, "multi", [
                    (Platform("linux", "amd64"), [base, Pusher.make_layer(f"{repo}-amd", 300)], "2023-01-01T00:00:00Z"),
                    (Platform("linux", "arm64"), [Pusher.make_layer(f"{repo}-arm", 301)], "2023-02-01T00:00:00Z"),
                ], attestation=True)
                configs.append(2)  # the attestations' configs are not read

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(repositories)))
    return sum(configs)


@dataclass
class Run:
    name: str
    seconds: float
    requests: int
    manifests: int
    revalidated: int
    config_gets: int
    dated: int
    tags: int


def measure(name: str, proxy: FaultyProxy, crawler: BuiltinCrawler) -> tuple[Run, Listing]:
    before = len(proxy.log)
    started = time.perf_counter()
    listing = crawler.crawl()
    seconds = time.perf_counter() - started
    log = proxy.log[before:]
    images = [image for repo in listing.repositories for image in repo.images or ()]
    return Run(
        name, seconds, len(log),
        manifests=sum(1 for _, path, outcome in log if "/manifests/" in path and outcome == 200),
        revalidated=sum(1 for _, path, outcome in log if "/manifests/" in path and outcome == 304),
        config_gets=sum(1 for method, path, _ in log if method == "GET" and CONFIG_GET.fullmatch(path)),
        dated=sum(image.created is not None for image in images), tags=len(images),
    ), listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with TemporaryDirectory() as workdir, GitLabTokenEndpoint(TokenSigner(), USER, TOKEN) as gitlab, \
            DistributionRegistry(Path(workdir) / "registry", gitlab) as registry:
        print(f"pushing {args.repositories} repositories x {args.tags} tags ...", flush=True)
        distinct = push(registry, gitlab, args.repositories, args.tags)
        with FaultyProxy(registry.url, latency=args.latency_ms / 1000) as proxy:

            def crawler(known: Mapping[str, float | None] | None = None) -> BuiltinCrawler:
                return BuiltinCrawler.connect(proxy.url, gitlab.url, USER, TOKEN, concurrency=args.concurrency,
                                              known_configs=known)

            first_crawler = crawler()
            first, listing = measure("first crawl", proxy, first_crawler)
            second, again = measure("unchanged second crawl", proxy, first_crawler)
            kept = first_crawler.config_dates()
            first_crawler.close()
            restarted_crawler = crawler(kept)
            restarted, after_restart = measure("restarted, config dates kept", proxy, restarted_crawler)
            restarted_crawler.close()
            cold_crawler = crawler()
            cold, cold_listing = measure("restarted, config dates lost", proxy, cold_crawler)
            cold_crawler.close()

    print(f"\nregistry: {args.repositories} repositories, {first.tags} tags, {distinct} distinct image configs "
          f"(attestations aside); {args.latency_ms:.0f} ms added per request; concurrency {args.concurrency}")
    print(f"\n{'crawl':<30} {'wall (s)':>8} {'registry requests':>17} {'manifest 200':>12} {'manifest 304':>12} "
          f"{'config GETs':>11} {'tags dated':>10}")
    for run in (first, second, restarted, cold):
        print(f"{run.name:<30} {run.seconds:>8.2f} {run.requests:>17} {run.manifests:>12} {run.revalidated:>12} "
              f"{run.config_gets:>11} {run.dated:>7}/{run.tags}")
    same = listing == again == after_restart == cold_listing
    print(f"\nlistings identical (creation times included) across the four crawls: {same}")
    print(f"the unchanged second crawl makes no config requests: {second.config_gets == 0}; "
          f"the first reads each distinct config once: {first.config_gets == distinct}")


if __name__ == "__main__":
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    main()
