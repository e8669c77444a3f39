"""The cleanup-policy simulator on 100,000 tags: the per-snapshot index (its time and memory, against the previous
layout), then one policy, three scopes, two patterns; then ``GET /cleanup`` through the Flask app.

    python3 -m bench.cleanup [--repositories 10000] [--tags 10] [--runs 3]

The synthetic registry has bench/restart.py's shapes with layer ids instead of digests: repositories named as
GitLab groups have them (8 top-level groups), 10 tags each (``latest``, versions, ``main-<sha>``), every tag 3
of 60 base layers shared across the registry and 4 of its repository's own 8; every fifth tag shares its
predecessor's manifest. Tags were created over the last 120 days, 1 % at an unknown time.

The first table compares the index as it is (``CleanupIndex``: per repository the positions of its tags in policy
order, ``array('I')``, layer ids read from the snapshot's ``LayerTable`` at simulation time) with the previous
layout (``TupleIndex`` below: names, times and every tag's layer ids copied into Python tuples), on the same
snapshot: build time, the memory the index keeps and its peak while building (``tracemalloc``, the input
excluded), and one whole-registry simulation; both must give the same answer.

Times are the best of --runs (the index in seconds, requests in milliseconds). ``naive`` is the obvious
per-request implementation: count every layer's references across the whole registry again and sort each
repository's tags again. The hostile row runs ``name_regex=(.*){1000}`` (a backtracking engine would never
finish) on the whole registry; the plain row beside it runs ``.+``, which, unlike the default ``.*``, RE2
matches (no shortcut).

The last table sends requests through the whole app (Flask's test client: routing, token check, rendering, the
render cache and the response replay, no sockets) on the same registry as a snapshot: the first
``/cleanup?keep_n=5&older_than=30d`` after a refresh (building the index included), a second, different policy,
the first again (a cache hit), and the first as CSV (its simulation reused). Each is the best of --runs fresh apps.
The policies are evaluated at the snapshot's time, as the service does.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gc
import random
import secrets
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain

from gitlab_registry_usage_rest.cleanup import (
    LATEST,
    CleanupIndex,
    CleanupInput,
    CleanupResult,
    Policy,
    RepositoryCleanup,
    RepositoryInput,
    Scope,
    TagInput,
    cleanup_input,
    parse_policy,
)
from gitlab_registry_usage_rest.config import Config, GeneralConfig, JwtConfig, LdapConfig, RegistryConfig
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing, Snapshot
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app

NOW = 1_800_000_000.0
DAY = 86400.0
GROUPS = tuple(f"team-{name}" for name in ("payments", "search", "platform", "data", "mobile", "infra", "web", "ml"))


@dataclass(frozen=True)
class Registry:
    """The synthetic registry as written: repositories with their tags' layer ids, and each layer's size."""

    repositories: tuple[RepositoryInput, ...]
    layer_sizes: list[int]


def synthetic(repositories: int, tags: int, seed: int = 1) -> Registry:
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
    return Registry(tuple(listed), sizes)


def _in(scope: Scope, name: str) -> bool:
    if scope.repository is not None:
        return name == scope.repository
    return scope.group is None or name == scope.group or name.startswith(scope.group + "/")


def _order(tag: TagInput) -> tuple[bool, float, str]:
    return (tag.created is not None, -(tag.created or 0.0), tag.name)


def naive(registry: Registry, policy: Policy, now: float, scope: Scope) -> tuple[int, int]:
    """(tags deleted, freed bytes) without an index: all references counted again, every repository sorted."""
    references = Counter(chain.from_iterable(set(tag.layers) for repo in registry.repositories
                                             for tag in repo.tags or ()))
    cutoff = None if policy.older_than is None else now - policy.older_than.total_seconds()
    gone: list[set[int]] = []
    for repo in registry.repositories:
        if not _in(scope, repo.name):
            continue
        tags = sorted((tag for tag in repo.tags or () if tag.name != LATEST and policy.matches_delete(tag.name)
                       and not policy.matches_keep(tag.name)), key=_order)
        if policy.keep_n is not None:
            tags = tags[policy.keep_n:]
        if cutoff is not None:
            tags = [tag for tag in tags if tag.created is not None and tag.created < cutoff]
        gone.extend(set(tag.layers) for tag in tags)
    counted = Counter(chain.from_iterable(gone))
    return len(gone), sum(registry.layer_sizes[layer] for layer, n in counted.items() if n == references[layer])


@dataclass(frozen=True, slots=True)
class _Copied:
    name: str
    tag_count: int
    names: tuple[str, ...]
    created: tuple[float | None, ...]
    layers: tuple[tuple[int, ...], ...]


class TupleIndex:
    """The index's previous layout, for comparison only: every repository's tag names, times and layer ids copied
    into Python tuples in policy order (what ``CleanupIndex`` did before it read them from the ``LayerTable``)."""

    def __init__(self, data: CleanupInput) -> None:
        sizes = tuple(data.layers.sizes)
        repositories: list[_Copied] = []
        every: list[tuple[int, ...]] = []
        number = 0
        for repository in data.repositories:
            tags = repository.tags or ()
            copied = [(tag, tuple(dict.fromkeys(data.layers.tag_layers(number + index))))
                      for index, tag in enumerate(tags)]
            number += len(tags)
            every.extend(layers for _, layers in copied)
            ordered = sorted(((tag, layers) for tag, layers in copied if tag.name != LATEST),
                             key=lambda pair: (pair[0].created is not None, -(pair[0].created or 0.0), pair[0].name))
            repositories.append(_Copied(repository.name, len(tags), tuple(tag.name for tag, _ in ordered),
                                        tuple(tag.created for tag, _ in ordered),
                                        tuple(layers for _, layers in ordered)))
        counted = Counter(chain.from_iterable(every))
        references = [0] * len(sizes)
        for layer, count in counted.items():
            references[layer] = count
        self._sizes, self._references, self._repositories = sizes, tuple(references), tuple(repositories)
        # Kept as the previous index kept them (for scopes, which this copy filters plainly): its memory counts.
        by_name = sorted(range(len(repositories)), key=lambda index: repositories[index].name)
        self._sorted_names = [repositories[index].name for index in by_name]
        self._sorted_numbers = by_name

    def simulate(self, policy: Policy, now: float, scope: Scope | None = None) -> tuple[int, int]:
        """(tags deleted, freed bytes), as the previous ``CleanupIndex.simulate`` computed them."""
        scope = scope or Scope()
        cutoff = None if policy.older_than is None else now - policy.older_than.total_seconds()
        memo: dict[str, bool] = {}
        references, sizes = self._references, self._sizes
        in_scope = [repository for repository in self._repositories if _in(scope, repository.name)]
        affected: list[RepositoryCleanup] = []
        all_deleted: list[tuple[int, ...]] = []
        for repository in in_scope:
            candidates = []
            for index, name in enumerate(repository.names):
                deletable = memo.get(name)
                if deletable is None:
                    deletable = memo[name] = policy.matches_delete(name) and not policy.matches_keep(name)
                if deletable:
                    candidates.append(index)
            if policy.keep_n is not None:
                del candidates[:policy.keep_n]
            if cutoff is not None:
                candidates = [index for index in candidates
                              if (when := repository.created[index]) is not None and when < cutoff]
            if not candidates:
                continue
            deleted = [repository.layers[index] for index in candidates]
            all_deleted.extend(deleted)
            own = Counter(chain.from_iterable(deleted))
            freed = sum(sizes[layer] for layer, count in own.items() if count == references[layer])
            affected.append(RepositoryCleanup(repository.name, freed, len(candidates),
                                              tuple(repository.names[index] for index in candidates)))
        together = Counter(chain.from_iterable(all_deleted))
        return len(all_deleted), sum(sizes[layer] for layer, count in together.items() if count == references[layer])


def as_snapshot(registry: Registry) -> Snapshot:
    """The same registry as the service holds it: a listing with a digest per layer id, frozen into a snapshot."""
    listing = Listing(tuple(
        RepositoryListing(repo.name, tuple(ImageListing(tag.name, tuple(f"sha256:{layer:064x}" for layer in tag.layers),
                                                        created=tag.created) for tag in repo.tags or ()))
        for repo in registry.repositories),
        {f"sha256:{layer:064x}": size for layer, size in enumerate(registry.layer_sizes)})
    return build_snapshot(listing, NOW - 3600)


class Everyone:
    """A directory that lets the benchmark in."""

    def authenticate(self, username: str, password: str) -> bool:
        return True


def through_the_app(snapshot: Snapshot, registry: Registry, runs: int) -> None:
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
                # The service evaluates a policy at the snapshot's time, not the request's.
                if naive(registry, policy, snapshot.timestamp, Scope()) != (body["tags_deleted"], body["freed_size"]):
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


def traced(build: Callable[[], object]) -> tuple[object, int, int]:
    """What ``build`` returns, the bytes it still holds once built, and its peak while building (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        built = build()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return built, kept, peak


def layouts(data: CleanupInput, runs: int) -> None:
    """The index before (tuples) and after (positions over the LayerTable): build time, memory, one simulation."""
    policy = parse_policy({"keep_n": "5", "older_than": "30d"})
    rows = []
    answers = []
    for label, build in (("before: TupleIndex (tuples of names, times, layer ids)", lambda: TupleIndex(data)),
                         ("after: CleanupIndex (array('I') positions, LayerTable)", lambda: CleanupIndex(data))):
        seconds = best(runs, build)
        index, kept, peak = traced(build)
        assert isinstance(index, (TupleIndex, CleanupIndex))

        def simulate(index: TupleIndex | CleanupIndex = index) -> object:
            return index.simulate(policy, NOW)

        simulated = best(runs, simulate)
        result = index.simulate(policy, NOW)
        answers.append((result.tags_deleted, result.freed_size) if isinstance(result, CleanupResult) else result)
        rows.append((label, seconds, kept, peak, simulated))
        del index
    if answers[0] != answers[1]:
        raise SystemExit(f"the two layouts disagree: {answers}")
    print(f"{'index, once per snapshot':<58} {'build s':>8} {'kept MiB':>9} {'peak MiB':>9} {'simulate ms':>12}")
    for label, seconds, kept, peak, simulated in rows:
        print(f"{label:<58} {seconds:>8.3f} {kept / 2**20:>9.2f} {peak / 2**20:>9.2f} {simulated * 1000:>12.1f}")
    print(f"(whole registry, keep_n=5&older_than=30d: {answers[1][0]} tags deleted, {answers[1][1]:,} bytes freed; "
          "memory measured with tracemalloc, the snapshot itself not counted)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    registry = synthetic(options.repositories, options.tags)
    pairs = sum(len(tag.layers) for repo in registry.repositories for tag in repo.tags or ())
    tags = sum(len(repo.tags or ()) for repo in registry.repositories)
    started = time.perf_counter()
    snapshot = as_snapshot(registry)
    print(f"{len(registry.repositories)} repositories, {tags} tags, {pairs} (tag, layer) pairs, "
          f"{len(registry.layer_sizes)} layers; best of {options.runs} "
          f"(the snapshot: build_snapshot, {time.perf_counter() - started:.1f} s)\n")
    data = cleanup_input(snapshot)
    layouts(data, options.runs)
    index = CleanupIndex(data)
    one = registry.repositories[len(registry.repositories) // 2].name
    cases: list[tuple[str, Mapping[str, str], Scope]] = [
        ("whole registry", {"keep_n": "5", "older_than": "30d"}, Scope()),
        (f"group={GROUPS[0]}", {"keep_n": "5", "older_than": "30d"}, Scope(group=GROUPS[0])),
        (f"repository={one}", {"keep_n": "5", "older_than": "30d"}, Scope(repository=one)),
        ("whole registry, plain name_regex=.+", {"keep_n": "5", "older_than": "30d", "name_regex": ".+"}, Scope()),
        ("whole registry, hostile name_regex=(.*){1000}",
         {"keep_n": "5", "older_than": "30d", "name_regex": "(.*){1000}"}, Scope()),
    ]
    print(f"{'keep_n=5&older_than=30d on':<50} {'tags':>7} {'deleted':>7} {'freed bytes':>15} {'ours ms':>8} "
          f"{'naive ms':>8} {'naive/ours':>10}")
    for label, args, scope in cases:
        result: list[CleanupResult] = []

        def request(args: Mapping[str, str] = args, scope: Scope = scope, result: list[CleanupResult] = result) -> None:
            result[:] = [index.simulate(parse_policy(args), NOW, scope)]

        ours = best(options.runs, request)
        policy = parse_policy(args)

        def baseline(policy: Policy = policy, scope: Scope = scope) -> None:
            naive(registry, policy, NOW, scope)

        slow = best(options.runs, baseline)
        answer = result[0]
        if naive(registry, policy, NOW, scope) != (answer.tags_deleted, answer.freed_size):
            raise SystemExit(f"{label}: the naive implementation disagrees")
        print(f"{label[:50]:<50} {answer.tags_in_scope:>7} {answer.tags_deleted:>7} {answer.freed_size:>15,} "
              f"{ours * 1000:>8.2f} {slow * 1000:>8.1f} {slow / ours:>9.0f}x")
    through_the_app(snapshot, registry, options.runs)


if __name__ == "__main__":
    main()
