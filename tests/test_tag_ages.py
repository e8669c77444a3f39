"""Tags' creation times from their image configs, against the real Distribution registry behind a proxy.

The proxy's log shows every request, so the tests count config blob GETs exactly: one per distinct
config digest, none for an unchanged registry or after a restart with the dates kept, none for
attestations or schema 1 manifests. A config that cannot be read costs its tag ``created`` and adds a
warning, never the repository's figures, and never an entry in ``errors`` (those count unreadable
repositories).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.crawl.client import (
    MAX_CONFIG_SIZE,
    RegistryClient,
    RequestStats,
    TokenProvider,
    make_session,
)
from gitlab_registry_usage_rest.crawl.library import LibraryCrawler
from gitlab_registry_usage_rest.model import ImageListing, Listing
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.proxy import FaultyProxy, garble, respond
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER
from tests.support.pusher import DOCKER_MANIFEST, Platform, PushedImage, Pusher

pytestmark = pytest.mark.registry

OFFSET = "2023-06-15T12:34:56.789+02:00"
OFFSET_TIME = datetime(2023, 6, 15, 12, 34, 56, 789000, tzinfo=timezone(timedelta(hours=2))).timestamp()
AMD64 = "2022-02-02T02:02:02Z"
ARM64 = "2023-03-03T03:03:03.5-05:00"  # the newer platform, listed second
ARM64_TIME = datetime(2023, 3, 3, 8, 3, 3, 500000, tzinfo=UTC).timestamp()
SHARED = "2021-01-01T00:00:00.000000001Z"
SHARED_TIME = datetime(2021, 1, 1, tzinfo=UTC).timestamp()  # a nanosecond is below a float's resolution here
BLOB_GET = re.compile(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Ages:
    registry: DistributionRegistry
    pusher: Pusher
    configs: dict[str, PushedImage]  # "repo:tag" (and "repo@platform" for index children) -> what was pushed


@pytest.fixture(scope="module")
def ages(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[Ages]:
    with DistributionRegistry(tmp_path_factory.mktemp("ages"), gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        layer = Pusher.make_layer
        base = layer("ages-base", 300)
        pushed = {
            "ages/offset:v1": pusher.push_image("ages/offset", "v1", [base, layer("offset", 40)], created=OFFSET),
            "ages/reproducible:v1": pusher.push_image(
                "ages/reproducible", "v1", [base, layer("repro", 41)], created="1970-01-01T00:00:00Z"),
            "ages/undated:v1": pusher.push_image("ages/undated", "v1", [base, layer("undated", 42)]),
            "ages/bad-time:v1": pusher.push_image("ages/bad-time", "v1", [layer("bad-time", 47)], created="yesterday"),
        }
        # Two manifests (different layers) with one config, in two repositories: one config digest.
        rootfs = {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}
        for repo, tag, seed in (("ages/shared", "a", "shared-a"), ("ages/shared", "b", "shared-b"),
                                ("ages/shared-copy", "c", "shared-c")):
            pushed[f"{repo}:{tag}"] = pusher.push_image(repo, tag, [layer(seed, 43)], created=SHARED,
                                                        config_extra=rootfs)
        index = pusher.push_index("ages/multi", "latest", [
            (Platform("linux", "amd64"), [base, layer("multi-amd", 44)], AMD64),
            (Platform("linux", "arm64", "v8"), [layer("multi-arm", 45)], ARM64),
        ], attestation=True)
        pushed.update({f"ages/multi@{child.platform.architecture}": child for child in index.images})
        pushed.update({f"ages/multi@attestation-{n}": child for n, child in enumerate(index.attestations)})
        padding = {"padding": "x" * MAX_CONFIG_SIZE}
        pushed["ages/big:v1"] = pusher.push_image("ages/big", "v1", [layer("big", 46)], created=OFFSET,
                                                  config_extra=padding)
        yield Ages(registry, pusher, pushed)


@pytest.fixture
def proxy(ages: Ages) -> Iterator[FaultyProxy]:
    with FaultyProxy(ages.registry.url) as running:
        yield running


@pytest.fixture
def crawler(proxy: FaultyProxy, gitlab: GitLabTokenEndpoint) -> Iterator[BuiltinCrawler]:
    crawler = BuiltinCrawler.connect(proxy.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN, concurrency=4, retries=0)
    yield crawler
    crawler.close()


def tags(listing: Listing) -> dict[str, ImageListing]:
    return {f"{repo.name}:{image.tag}": image for repo in listing.repositories for image in repo.images or ()}


def created(listing: Listing) -> dict[str, float | None]:
    return {key: image.created for key, image in tags(listing).items()}


def config_gets(proxy: FaultyProxy) -> list[str]:
    """The blob GETs in the proxy's log, as ``repo@digest`` (layers are never GET, only HEAD for schema 1)."""
    return [f"{match[1]}@{match[2]}" for method, path, _ in proxy.log
            if method == "GET" and (match := BLOB_GET.fullmatch(path))]


def without_created(listing: Listing) -> Listing:
    repositories = tuple(dataclasses.replace(repo, images=tuple(
        dataclasses.replace(image, created=None) for image in repo.images or ())) for repo in listing.repositories)
    return dataclasses.replace(listing, repositories=repositories, warnings=())


EXPECTED = {
    "ages/bad-time:v1": None,  # its config, read and verified, has no RFC 3339 time
    "ages/big:v1": None,  # refused: larger than a config may be
    "ages/multi:latest": ARM64_TIME,
    "ages/offset:v1": OFFSET_TIME,
    "ages/reproducible:v1": None,
    "ages/shared:a": SHARED_TIME,
    "ages/shared:b": SHARED_TIME,
    "ages/shared-copy:c": SHARED_TIME,
    "ages/undated:v1": None,
}


def test_created_is_the_configs_time_in_utc_the_newest_platforms_and_none_before_2000(
    crawler: BuiltinCrawler, proxy: FaultyProxy, ages: Ages
) -> None:
    listing = crawler.crawl()
    assert created(listing) == EXPECTED
    assert listing.errors == ()
    big, bad = ages.configs["ages/big:v1"], ages.configs["ages/bad-time:v1"]
    assert listing.warnings == (
        f"ages/bad-time:v1: created unknown: config ages/bad-time@{bad.config_digest}: 'created' is not an RFC 3339 "
        "time: 'yesterday'",
        f"ages/big:v1: created unknown: config ages/big@{big.config_digest}: {big.config_size} bytes, more than "
        f"the {MAX_CONFIG_SIZE} a config may have; not read",
    )


def test_one_get_per_distinct_config_none_for_attestations_or_an_oversized_config(
    crawler: BuiltinCrawler, proxy: FaultyProxy, ages: Ages
) -> None:
    crawler.crawl()
    fetched = config_gets(proxy)
    digests = [entry.partition("@")[2] for entry in fetched]
    assert len(digests) == len(set(digests)), "no config read twice"
    configs = ages.configs
    wanted = {configs[key].config_digest for key in (
        "ages/offset:v1", "ages/reproducible:v1", "ages/undated:v1", "ages/bad-time:v1", "ages/shared:a",
        "ages/multi@amd64", "ages/multi@arm64")}
    assert set(digests) == wanted
    assert configs["ages/shared:a"].config_digest == configs["ages/shared-copy:c"].config_digest, \
        "three tags, two manifests, two repositories, one config"
    assert crawler.config_requests == len(fetched)


def test_the_unchanged_second_crawl_makes_no_config_request(crawler: BuiltinCrawler, proxy: FaultyProxy) -> None:
    first = crawler.crawl()
    requests_before = len(proxy.log)
    configs_before = crawler.config_requests
    second = crawler.crawl()
    after = proxy.log[requests_before:]
    assert second == first
    assert len(second.warnings) == 2, "an unreadable config is reported again, though not read again"
    assert [entry for entry in after if "/blobs/" in entry[1]] == []
    assert crawler.config_requests == configs_before
    assert {outcome for _, path, outcome in after if "/manifests/" in path} == {304}


def test_a_restarted_crawler_given_the_dates_makes_no_config_request(
    crawler: BuiltinCrawler, proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, ages: Ages
) -> None:
    first = crawler.crawl()
    kept = json.loads(json.dumps(crawler.config_dates()))  # as a data file would keep them
    assert len(kept) == 6, "every config read, but the one without a readable time (it is read again)"
    assert sorted(value for value in kept.values() if value is not None) == sorted(
        [OFFSET_TIME, SHARED_TIME, datetime(2022, 2, 2, 2, 2, 2, tzinfo=UTC).timestamp(), ARM64_TIME])
    restarted = BuiltinCrawler.connect(proxy.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN, known_configs=kept)
    try:
        requests_before = len(proxy.log)
        assert restarted.crawl() == first
    finally:
        restarted.close()
    bad = ages.configs["ages/bad-time:v1"].config_digest
    assert [path for _, path, _ in proxy.log[requests_before:] if "/blobs/" in path] == [
        f"/v2/ages/bad-time/blobs/{bad}"]


def test_a_garbled_config_leaves_created_none_names_the_tag_and_keeps_the_figures(
    crawler: BuiltinCrawler, proxy: FaultyProxy, ages: Ages
) -> None:
    digest = ages.configs["ages/offset:v1"].config_digest
    proxy.add_rule(f"^GET /v2/ages/offset/blobs/{digest}$", garble())
    damaged = crawler.crawl()
    assert created(damaged) == {**EXPECTED, "ages/offset:v1": None}
    assert damaged.errors == (), "the repository keeps its figures: not an unreadable repository"
    (warning,) = (warning for warning in damaged.warnings if warning.startswith("ages/offset:"))
    assert warning.startswith(f"ages/offset:v1: created unknown: config ages/offset@{digest}: digest mismatch (got ")
    proxy.clear_rules()
    repaired = crawler.crawl()  # a failed read is not remembered: read again, and now it is right
    assert created(repaired) == EXPECTED
    assert without_created(damaged) == without_created(repaired)
    assert config_gets(proxy).count(f"ages/offset@{digest}") == 2


def test_a_config_announcing_more_than_the_bound_is_refused_unread(
    crawler: BuiltinCrawler, proxy: FaultyProxy, ages: Ages
) -> None:
    digest = ages.configs["ages/offset:v1"].config_digest
    proxy.add_rule(f"^GET /v2/ages/offset/blobs/{digest}$", respond(200, {"Content-Type": "application/json"},
                                                                   b" " * (MAX_CONFIG_SIZE + 1)))
    listing = crawler.crawl()
    assert created(listing)["ages/offset:v1"] is None
    assert f"ages/offset:v1: created unknown: config ages/offset@{digest}: {MAX_CONFIG_SIZE + 1} bytes, more than " \
           f"the {MAX_CONFIG_SIZE} a config may have; not read" in listing.warnings
    assert listing.errors == ()


def test_a_config_digest_that_is_no_digest_is_never_requested(
    crawler: BuiltinCrawler, proxy: FaultyProxy, ages: Ages
) -> None:
    manifest = ages.pusher.get_manifest("ages/offset", "v1").json()
    manifest["config"]["digest"] = "sha256:../../../v2/_catalog"
    proxy.add_rule("^GET /v2/ages/offset/manifests/v1$", respond(200, {"Content-Type": DOCKER_MANIFEST},
                                                                 json.dumps(manifest).encode()))
    listing = crawler.crawl()
    assert created(listing) == {**EXPECTED, "ages/offset:v1": None}
    assert "ages/offset:v1: created unknown: config ages/offset@'sha256:../../../v2/_catalog': not a digest, " \
           "not requested" in listing.warnings
    assert [path for _, path, _ in proxy.log if "/v2/ages/offset/blobs/" in path] == []
    assert listing.errors == ()


def test_schema1_takes_created_from_its_newest_history_entry_without_a_config_request(
    crawler: BuiltinCrawler, proxy: FaultyProxy, ages: Ages
) -> None:
    # What the registry serves a client that does not accept schema 2: the same image, converted.
    schema1 = ages.pusher.get_manifest("ages/offset", "v1", "application/vnd.oci.image.manifest.v1+json")
    assert json.loads(json.loads(schema1.raw)["history"][0]["v1Compatibility"])["created"] == OFFSET
    proxy.add_rule("^GET /v2/ages/offset/manifests/v1$", respond(200, {
        "Content-Type": schema1.media_type, "Docker-Content-Digest": schema1.digest}, schema1.raw))
    listing = crawler.crawl()
    assert created(listing) == EXPECTED
    assert tags(listing)["ages/offset:v1"].media_type == schema1.media_type
    assert [path for method, path, _ in proxy.log if method == "GET" and "/v2/ages/offset/blobs/" in path] == []


def test_the_config_cache_is_bounded_and_what_it_cannot_keep_is_read_again(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, ages: Ages
) -> None:
    session, stats = make_session(1), RequestStats()
    tokens = TokenProvider(session, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN, 10, stats)
    # One request at a time: tags are resolved in catalog order, and no two ever wait for one read.
    bounded = BuiltinCrawler(RegistryClient(proxy.url, tokens, session, 10, stats), concurrency=1, max_configs=2)
    configs = ages.configs
    try:
        first = bounded.crawl()
        # The first two configs read are kept: ages/bad-time's (as unreadable, so not handed out) and
        # ages/multi's amd64 one (ages/big's is refused unread).
        amd64 = configs["ages/multi@amd64"].config_digest
        assert bounded.config_dates() == {amd64: datetime(2022, 2, 2, 2, 2, 2, tzinfo=UTC).timestamp()}
        before = bounded.config_requests
        assert bounded.crawl() == first
    finally:
        bounded.close()
    kept = {amd64, configs["ages/bad-time:v1"].config_digest}
    uses = [configs[key].config_digest for key in (
        "ages/bad-time:v1", "ages/multi@amd64", "ages/multi@arm64", "ages/offset:v1", "ages/reproducible:v1",
        "ages/shared:a", "ages/shared:b", "ages/shared-copy:c", "ages/undated:v1")]
    # Including ages/shared's config once per tag that uses it: what is not kept is not kept within a crawl either.
    assert bounded.config_requests - before == sum(digest not in kept for digest in uses) == 7


def test_the_library_backend_gives_no_creation_times(ages: Ages, gitlab: GitLabTokenEndpoint) -> None:
    listing = LibraryCrawler(gitlab.url, ages.registry.url, REGISTRY_USER, REGISTRY_TOKEN).crawl()
    assert "ages/offset:v1" in tags(listing)
    assert set(created(listing).values()) == {None}


def test_known_configs_keep_only_digests_with_finite_times_or_none() -> None:
    session, stats = make_session(1), RequestStats()
    tokens = TokenProvider(session, "http://127.0.0.1:9/", REGISTRY_USER, REGISTRY_TOKEN, 1, stats)
    good, other = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    known: dict[str, object] = {good: 1.7e9, other: None, "sha256:../x": 1.7e9, "sha256:" + "c" * 64: float("nan"),
                                "sha256:" + "d" * 64: float("inf"), "sha256:" + "e" * 64: True,
                                "sha256:" + "f" * 64: "2024-01-01T00:00:00Z"}
    crawler = BuiltinCrawler(RegistryClient("http://127.0.0.1:9/", tokens, session, 1, stats),
                             known_configs=known)  # type: ignore[arg-type]  # a data file can hold anything
    try:
        assert crawler.config_dates() == {good: 1.7e9, other: None}
        assert stats.total == 0
    finally:
        crawler.close()
