"""The cleanup-policy simulator on 100,000 tags: the per-snapshot index, then one policy, three scopes, two patterns;
then ``GET /cleanup`` through the Flask app.

    python3 -m bench.cleanup [--repositories 10000] [--tags 10] [--runs 3]

The synthetic registry has bench/restart.py's shapes with layer ids instead of digests: repositories named as
GitLab groups have them (8 top-level groups), 10 tags each (``latest``, versions, ``main-<sha>``), every tag 3
of 60 base layers shared across the registry and 4 of its repository's own 8; every fifth tag shares its
predecessor's manifest. Tags were created over the last 120 days, 1 % at an unknown time.

Times are the best of --runs (the index in seconds, requests in milliseconds). ``naive`` is the obvious
per-request implementation: count every layer's references across the whole registry again and sort each
repository's tags again. The hostile row runs ``name_regex=(.*){1000}`` (a backtracking engine would never
finish) on the whole registry; the plain row beside it runs ``.+``, which, unlike the default ``.*``, RE2
matches (no shortcut).

The last table sends requests through the whole app (Flask's test client: routing, token check, rendering, the
render cache and the response replay, no sockets) on the same registry as a snapshot: the first
``/cleanup?keep_n=5&older_than=30d`` after a refresh (building the index included), a second, different policy,
the first again (a cache hit), and the first as CSV (its simulation reused). Each is the best of --runs fresh apps.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from itertools import chain

from gitlab_registry_usage_rest.cleanup import (
    LATEST,
    CleanupIndex,
    CleanupInput,
    CleanupResult,
    Policy,
    RepositoryInput,
    Scope,
    TagInput,
    parse_policy,
    parse_scope,
)
from gitlab_registry_usage_rest.config import Config, GeneralConfig, JwtConfig, LdapConfig, RegistryConfig
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing, Snapshot
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app

NOW = 1_800_000_000.0
DAY = 86400.0
GROUPS = tuple(f"team-{name}" for name in ("payments", "search", "platform", "data", "mobile", "infra", "web", "ml"))


def synthetic(repositories: int, tags: int, seed: int = 1) -> CleanupInput:
    """bench/restart.py's ``synthetic_listing`` with interned layer ids, creation times and shared manifests."""
    rng = random.Random(seed)
    sizes = [rng.randint(2_000_000, 80_000_000) for _ in range(60)]
    base = list(range(60))
    listed = []
    for number in range(repositories):
        name = f"{GROUPS[number % len(GROUPS)]}/sub{number % 37}/service-{number:05d}"
        own = list(range(len(sizes), len(sizes) + 8))
        sizes.extend(rng.randint(500, 40_000_000) for _ in own)
        images: dict[str, TagInput] = {}
        previous: tuple[int, ...] = ()
        for tag in range(tags):
            if tag == 0:
                label = LATEST
            else:
                label = f"1.{tag // 4}.{tag % 4}" if tag % 3 else f"main-{rng.getrandbits(28):07x}"
            layers = previous if tag % 5 == 4 else tuple(rng.sample(base, 3) + rng.sample(own, 4))
            created = None if rng.random() < 0.01 else NOW - rng.uniform(0, 120 * DAY)
            images[label] = TagInput(label, created, layers)
            previous = layers
        listed.append(RepositoryInput(name, tuple(images.values())))
    return CleanupInput(tuple(listed), sizes)


def naive(data: CleanupInput, policy: Policy, now: float, scope: Scope) -> tuple[int, int]:
    """(tags deleted, freed bytes) without an index: all references counted again, every repository sorted."""
    references = Counter(chain.from_iterable(set(tag.layers) for repo in data.repositories for tag in repo.tags))
    cutoff = None if policy.older_than is None else now - policy.older_than.total_seconds()
    gone: list[set[int]] = []
    for repo in data.repositories:
        if scope.repository is not None and repo.name != scope.repository:
            continue
        if scope.group is not None and repo.name != scope.group and not repo.name.startswith(scope.group + "/"):
            continue
        tags = sorted((tag for tag in repo.tags if tag.name != LATEST and policy.matches_delete(tag.name)
                       and not policy.matches_keep(tag.name)),
                      key=lambda tag: (tag.created is None, -(tag.created or 0.0), tag.name))
        if policy.keep_n is not None:
            tags = tags[policy.keep_n:]
        if cutoff is not None:
            tags = [tag for tag in tags if tag.created is not None and tag.created < cutoff]
        gone.extend(set(tag.layers) for tag in tags)
    counted = Counter(chain.from_iterable(gone))
    return len(gone), sum(data.layer_sizes[layer] for layer, n in counted.items() if n == references[layer])


def as_snapshot(data: CleanupInput) -> Snapshot:
    """The same registry as the service holds it: a listing with a digest per layer id, frozen into a snapshot."""
    listing = Listing(tuple(
        RepositoryListing(repo.name, tuple(ImageListing(tag.name, tuple(f"sha256:{layer:064x}" for layer in tag.layers),
                                                        created=tag.created) for tag in repo.tags))
        for repo in data.repositories), {f"sha256:{layer:064x}": size for layer, size in enumerate(data.layer_sizes)})
    return build_snapshot(listing, NOW - 3600)


class Everyone:
    """A directory that lets the benchmark in."""

    def authenticate(self, username: str, password: str) -> bool:
        return True


def through_the_app(snapshot: Snapshot, data: CleanupInput, runs: int) -> None:
    """``GET /cleanup`` as a client sends it, on fresh apps (nothing built yet), best of ``runs``."""
    config = Config(general=GeneralConfig(data_file=None), ldap=LdapConfig(),
                    jwt=JwtConfig(secret_key=secrets.token_urlsafe(48), auth_token_expires=datetime.timedelta(hours=1)),
                    registry=RegistryConfig())
    first, second = "/cleanup?keep_n=5&older_than=30d", "/cleanup?keep_n=3&older_than=60d"
    steps = [("first request (index built)", first, {}), ("second, different policy", second, {}),
             ("first again (cached)", first, {}), ("first as CSV (simulation kept)", first, {"Accept": "text/csv"})]
    timings: dict[str, list[float]] = {label: [] for label, _, _ in steps}
    sizes: dict[str, int] = {}
    for _ in range(runs):
        client = create_app(config, SnapshotHolder(snapshot), Everyone(), clock=lambda: NOW).test_client()
        basic = base64.b64encode(b"bench:bench").decode()
        token = client.get("/auth_token", headers={"Authorization": f"Basic {basic}"}).get_json()["auth_token"]
        for label, url, extra in steps:
            started = time.perf_counter()
            response = client.get(url, headers={"Authorization": f"Bearer {token}", **extra})
            timings[label].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{url}: {response.status_code} {response.data[:200]!r}")
            sizes[label] = len(response.data)
            if label.startswith("first request"):
                body = response.get_json()
                policy = parse_policy({"keep_n": "5", "older_than": "30d"})
                if naive(data, policy, NOW, Scope()) != (body["tags_deleted"], body["freed_size"]):
                    raise SystemExit("the app's answer disagrees with the naive implementation")
                answer = body
    print(f"\nGET through the Flask app (test client), {answer['tags_in_scope']} tags; keep_n=5&older_than=30d deletes "
          f"{answer['tags_deleted']} and frees {answer['freed_size']:,} bytes; best of {runs}")
    print(f"{'request':<72} {'ms':>9} {'bytes':>11}")
    for label, url, extra in steps:
        shown = f"{label}: {url.removeprefix('/cleanup')}" + (" (Accept: text/csv)" if extra else "")
        print(f"{shown:<72} {min(timings[label]) * 1000:>9.1f} {sizes[label]:>11,}")


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    data = synthetic(options.repositories, options.tags)
    pairs = sum(len(tag.layers) for repo in data.repositories for tag in repo.tags)
    tags = sum(len(repo.tags) for repo in data.repositories)
    print(f"{len(data.repositories)} repositories, {tags} tags, {pairs} (tag, layer) pairs, "
          f"{len(data.layer_sizes)} layers; best of {options.runs}")
    index_time = best(options.runs, lambda: CleanupIndex(data))
    index = CleanupIndex(data)
    print(f"\n{'CleanupIndex(data), once per snapshot':<58} {index_time:8.3f} s\n")
    one = data.repositories[len(data.repositories) // 2].name
    cases: list[tuple[str, Mapping[str, str]]] = [
        ("whole registry", {"keep_n": "5", "older_than": "30d"}),
        (f"group={GROUPS[0]}", {"keep_n": "5", "older_than": "30d", "group": GROUPS[0]}),
        (f"repository={one}", {"keep_n": "5", "older_than": "30d", "repository": one}),
        ("whole registry, plain name_regex=.+", {"keep_n": "5", "older_than": "30d", "name_regex": ".+"}),
        ("whole registry, hostile name_regex=(.*){1000}",
         {"keep_n": "5", "older_than": "30d", "name_regex": "(.*){1000}"}),
    ]
    print(f"{'keep_n=5&older_than=30d on':<50} {'tags':>7} {'deleted':>7} {'freed bytes':>15} {'ours ms':>8} "
          f"{'naive ms':>8} {'naive/ours':>10}")
    for label, args in cases:
        result: list[CleanupResult] = []

        def request(args: Mapping[str, str] = args, result: list[CleanupResult] = result) -> None:
            result[:] = [index.simulate(parse_policy(args), NOW, parse_scope(args))]

        ours = best(options.runs, request)
        policy, scope = parse_policy(args), parse_scope(args)

        def baseline(policy: Policy = policy, scope: Scope = scope) -> None:
            naive(data, policy, NOW, scope)

        slow = best(options.runs, baseline)
        answer = result[0]
        if naive(data, policy, NOW, scope) != (answer.tags_deleted, answer.freed_size):
            raise SystemExit(f"{label}: the naive implementation disagrees")
        print(f"{label[:50]:<50} {answer.tags_in_scope:>7} {answer.tags_deleted:>7} {answer.freed_size:>15,} "
              f"{ours * 1000:>8.2f} {slow * 1000:>8.1f} {slow / ours:>9.0f}x")
    started = time.perf_counter()
    snapshot = as_snapshot(data)
    print(f"\n(the snapshot for the app: build_snapshot of the same registry, {time.perf_counter() - started:.1f} s)")
    through_the_app(snapshot, data, options.runs)


if __name__ == "__main__":
    main()
