"""GitLab's metadata-database API (``/gitlab/v1/``): the stand-in follows the spec, and the builtin crawler uses it.

Everything runs against the real Distribution registry's content, behind ``tests.support.gitlab_v1``'s stand-in,
which answers ``/gitlab/v1/`` as GitLab's registry does and counts the requests by kind. What must hold: where the
API answers, the crawl gives the same listing as through the registry API v2 and an unchanged registry costs one
tag list request per repository (per 1,000 tags) and no manifest; a tag at a new digest costs that manifest, by
digest; ``published_at`` dates new tags; where the API answers 404 or 401 the crawl uses v2; a malformed answer
costs only its repository its figures.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.crawl.client import (
    RegistryClient,
    RegistryError,
    RequestStats,
    TokenProvider,
    make_session,
)
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import SERVICE, GitLabTokenEndpoint, TokenSigner
from tests.support.gitlab_v1 import GitLabV1Registry, iso_millis
from tests.support.processes import local_session
from tests.support.proxy import Respond, respond
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry, expected_figures
from tests.support.pusher import Platform, Pusher
from tests.support.recorder import RecordingServer
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd

pytestmark = pytest.mark.registry

Layers = tuple[tuple[str, int], ...]
MANY = "many/tags"  # 15 tags: pages of 4 when the stand-in caps them
VICTIM = "group/sub/project"
V1_TAGS = f"/gitlab/v1/repositories/{VICTIM}/tags/list/"


@dataclass(frozen=True)
class Content:
    """A registry with what a crawl meets: shared layers, two tags on one manifest, OCI, an index, a dated image,
    a deleted tag and a repository of 15 tags. ``pushed`` lists the tags by name, as GitLab's registry does."""

    registry: DistributionRegistry
    pushed: PushedRegistry


def _union(*layer_lists: Layers) -> Layers:
    union: dict[str, int] = {}
    for layers in layer_lists:
        for digest, size in layers:
            union.setdefault(digest, size)
    return tuple(union.items())


def _push_content(pusher: Pusher) -> PushedRegistry:
    layer = Pusher.make_layer
    base, certs = layer("v1-base", 3000), layer("v1-certs", 500)
    by_digest: dict[tuple[str, str], Layers] = {}

    def image(repo: str, tag: str, layers: list[bytes], **kwargs: Any) -> str:
        pushed = pusher.push_image(repo, tag, layers, **kwargs)
        by_digest[(repo, pushed.digest)] = pushed.layers
        return pushed.digest

    image("base/debian", "12", [base, certs])
    image(VICTIM, "1.0", [base, certs, layer("v1-app-1.0", 1234)])
    image(VICTIM, "latest", [base, certs, layer("v1-app-2.0", 2345)])
    pusher.tag_manifest(VICTIM, "2.0", "latest")
    image("oci/app", "main", [base, layer("v1-oci", 4321)], media_type="oci")
    image("dated/app", "v1", [base, layer("v1-dated", 77)], created="2024-03-01T12:00:00Z")
    image("deleted/app", "keep", [base, layer("v1-keep", 11)])
    pusher.delete_manifest("deleted/app", image("deleted/app", "gone", [base, layer("v1-gone", 12)]))
    for number in range(15):
        image(MANY, f"t{number:02d}", [base, layer(f"v1-many-{number}", 5 + number)])
    index = pusher.push_index("multi/oci", "latest", [
        (Platform("linux", "amd64"), [base, layer("v1-amd", 300)], "2024-05-01T00:00:00Z"),
        (Platform("linux", "arm64", "v8"), [layer("v1-base-arm", 250), layer("v1-arm", 301)])],
        media_type="oci", attestation=True)
    by_digest[("multi/oci", index.digest)] = _union(*(child.layers for child in index.images + index.attestations))
    tags: dict[str, dict[str, Layers]] = {}
    for repo in pusher.catalog():
        tags[repo] = {tag: by_digest[(repo, pusher.get_manifest(repo, tag).digest)]
                      for tag in sorted(pusher.tags(repo))}
    return PushedRegistry(tags)


@pytest.fixture(scope="module")
def content(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[Content]:
    with DistributionRegistry(tmp_path_factory.mktemp("gitlab-v1"), gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        yield Content(registry, _push_content(pusher))


@pytest.fixture
def stand_in(content: Content, gitlab: GitLabTokenEndpoint) -> Iterator[GitLabV1Registry]:
    with GitLabV1Registry(content.registry, gitlab) as running:
        yield running


@dataclass
class Fresh:
    """An empty registry of the test's own, behind the stand-in, with a mutable clock for its dates."""

    pusher: Pusher
    stand_in: GitLabV1Registry
    clock: list[float]


@pytest.fixture
def fresh(tmp_path: Path, gitlab: GitLabTokenEndpoint) -> Iterator[Fresh]:
    clock = [1_700_000_000.0]
    with DistributionRegistry(tmp_path / "registry", gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher, \
            GitLabV1Registry(registry, gitlab, clock=lambda: clock[0]) as stand_in:
        yield Fresh(pusher, stand_in, clock)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with local_session() as session:
        yield session


def token(gitlab: GitLabTokenEndpoint, *scopes: str) -> str:
    with local_session() as session:
        response = session.get(gitlab.realm, params=[("service", SERVICE), *(("scope", s) for s in scopes)],
                               auth=(REGISTRY_USER, REGISTRY_TOKEN), timeout=5)
    response.raise_for_status()
    value: str = response.json()["token"]
    return value


def bearer(gitlab: GitLabTokenEndpoint, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(gitlab, *scopes)}"}


def connect(registry_url: str, gitlab_url: str) -> BuiltinCrawler:
    return BuiltinCrawler.connect(registry_url, gitlab_url, REGISTRY_USER, REGISTRY_TOKEN, concurrency=4, timeout=5,
                                  retries=1)


def client_for(registry_url: str, gitlab_url: str) -> RegistryClient:
    session, stats = make_session(2, retries=1), RequestStats()
    tokens = TokenProvider(session, gitlab_url, REGISTRY_USER, REGISTRY_TOKEN, 5, stats)
    return RegistryClient(registry_url, tokens, session, 5, stats)


def crawl_once(registry_url: str, gitlab_url: str) -> Listing:
    crawler = connect(registry_url, gitlab_url)
    try:
        return crawler.crawl()
    finally:
        crawler.close()


def without_published(listing: Listing) -> Listing:
    """The listing as the registry API v2 gives it, which has no publication times."""
    return dataclasses.replace(listing, repositories=tuple(
        dataclasses.replace(repo, images=None if repo.images is None else tuple(
            dataclasses.replace(image, published=None) for image in repo.images))
        for repo in listing.repositories))


def served_figures(listing: Listing) -> dict[str, dict[str, object]]:
    return {
        repo.name: {"size": repo.size, "disk_size": repo.disk_size,
                    "tags": {tag.name: {"size": tag.size, "disk_size": tag.disk_size} for tag in repo.tags or ()}}
        for repo in build_snapshot(listing, 0.0).repositories if repo.tags is not None
    }


def tag_count(pushed: PushedRegistry) -> int:
    return sum(len(tags) for tags in pushed.tags.values())


# -- the stand-in follows the spec --------------------------------------------------------------------------------


def test_stand_in_probe_is_200_with_a_token_401_with_a_challenge_without_and_404_with_the_database_off(
    stand_in: GitLabV1Registry, gitlab: GitLabTokenEndpoint, http: requests.Session
) -> None:
    headers = bearer(gitlab, "registry:catalog:*")
    assert http.get(stand_in.url + "gitlab/v1/", headers=headers, timeout=5).status_code == 200
    refused = http.get(stand_in.url + "gitlab/v1/", timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == f'Bearer realm="{gitlab.realm}",service="{SERVICE}"'
    stand_in.metadata_database = False
    assert http.get(stand_in.url + "gitlab/v1/", headers=headers, timeout=5).status_code == 404
    assert http.get(stand_in.url + V1_TAGS, headers=headers, timeout=5).status_code == 404


def test_stand_in_redirects_a_path_without_its_trailing_slash(
    stand_in: GitLabV1Registry, gitlab: GitLabTokenEndpoint, http: requests.Session
) -> None:
    for path, location in (("gitlab/v1", "/gitlab/v1/"), (V1_TAGS.rstrip("/")[1:] + "?n=2", V1_TAGS + "?n=2")):
        response = http.get(stand_in.url + path, allow_redirects=False, timeout=5)
        assert (response.status_code, response.headers["Location"]) == (301, location)


@pytest.mark.parametrize(("query", "code"), [
    ("n=0", "INVALID_QUERY_PARAMETER_VALUE"), ("n=1001", "INVALID_QUERY_PARAMETER_VALUE"),
    ("n=ten", "INVALID_QUERY_PARAMETER_TYPE"), ("last=..%2Fx", "INVALID_QUERY_PARAMETER_VALUE"),
], ids=["zero", "above-1000", "not-a-number", "last-not-a-tag"])
def test_stand_in_refuses_page_sizes_outside_1_to_1000_and_markers_that_are_no_tag(
    stand_in: GitLabV1Registry, gitlab: GitLabTokenEndpoint, http: requests.Session, query: str, code: str
) -> None:
    response = http.get(f"{stand_in.url}{V1_TAGS[1:]}?{query}", headers=bearer(gitlab, f"repository:{VICTIM}:pull"),
                        timeout=5)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == code


def test_stand_in_pages_tags_by_name_with_a_next_link_and_none_on_the_last_page(
    content: Content, gitlab: GitLabTokenEndpoint, http: requests.Session
) -> None:
    headers = bearer(gitlab, f"repository:{MANY}:pull")
    with GitLabV1Registry(content.registry, gitlab, page_size_cap=4) as stand_in:
        url: str | None = f"{stand_in.url}gitlab/v1/repositories/{MANY}/tags/list/?n=1000"
        pages = []
        while url is not None:
            response = http.get(url, headers=headers, timeout=5)
            assert response.status_code == 200
            pages.append(response.json())
            url = response.links.get("next", {}).get("url")
    names = [[entry["name"] for entry in page] for page in pages]
    assert [len(page) for page in names] == [4, 4, 4, 3]
    assert sum(names, []) == sorted(content.pushed.tags[MANY])
    entry = pages[0][0]
    assert set(entry) == {"name", "digest", "config_digest", "media_type", "size_bytes", "created_at", "published_at"}
    assert entry["published_at"] == entry["created_at"]
    assert entry["size_bytes"] > sum(size for _, size in content.pushed.tags[MANY][entry["name"]])  # with the config


def test_stand_in_needs_pull_on_the_repository_and_knows_no_unknown_one(
    stand_in: GitLabV1Registry, gitlab: GitLabTokenEndpoint, http: requests.Session
) -> None:
    other = http.get(stand_in.url + V1_TAGS[1:], headers=bearer(gitlab, "repository:base/debian:pull"), timeout=5)
    assert other.status_code == 401
    assert other.headers["WWW-Authenticate"].endswith(f',scope="repository:{VICTIM}:pull"')
    unknown = http.get(stand_in.url + "gitlab/v1/repositories/no/such/tags/list/",
                       headers=bearer(gitlab, "repository:no/such:pull"), timeout=5)
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["code"] == "NAME_UNKNOWN"


# -- the client ----------------------------------------------------------------------------------------------------


def test_probe_is_true_where_the_api_answers_and_false_with_the_reason_where_not(
    stand_in: GitLabV1Registry, content: Content, gitlab: GitLabTokenEndpoint, unused_port: int
) -> None:
    def probe(registry_url: str, gitlab_url: str = gitlab.url) -> tuple[bool, str]:
        client = client_for(registry_url, gitlab_url)
        try:
            return client.gitlab_v1_available()
        finally:
            client.close()

    assert probe(stand_in.url) == (True, "GET /gitlab/v1/ answered 200")
    available, reason = probe(content.registry.url)  # a plain Distribution registry
    assert not available and "answered 404" in reason
    with GitLabTokenEndpoint(TokenSigner(), REGISTRY_USER, REGISTRY_TOKEN) as untrusted:
        assert probe(stand_in.url, untrusted.url) == (False, "GET /gitlab/v1/ answered 401 even with a fresh token")
    available, reason = probe(f"http://127.0.0.1:{unused_port}/")
    assert not available and "ConnectionError" in reason


def test_tag_details_follow_every_page_and_give_digests_and_publication_times(
    content: Content, gitlab: GitLabTokenEndpoint
) -> None:
    with GitLabV1Registry(content.registry, gitlab, page_size_cap=4) as stand_in:
        stand_in.set_times(MANY, "t03", created_at=1_600_000_000.0, updated_at=1_650_000_000.5)
        client = client_for(stand_in.url, gitlab.url)
        try:
            details = client.tag_details(MANY)
            assert client.tag_details("no/such") == []
        finally:
            client.close()
        assert stand_in.counts()["v1-tags"] == 4 + 1
    with Pusher(content.registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        digests = {tag: pusher.get_manifest(MANY, tag).digest for tag in content.pushed.tags[MANY]}
    assert {detail.name: detail.digest for detail in details} == digests
    assert [detail.name for detail in details] == sorted(digests)
    assert {detail.media_type for detail in details} == {"application/vnd.docker.distribution.manifest.v2+json"}
    assert all(detail.config_digest and detail.config_digest.startswith("sha256:") for detail in details)
    assert details[3].published == 1_650_000_000.5


# -- the crawler ---------------------------------------------------------------------------------------------------


def test_a_crawl_through_the_api_gives_the_listing_a_crawl_through_v2_gives(
    stand_in: GitLabV1Registry, content: Content, gitlab: GitLabTokenEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gitlab_registry_usage_rest.crawl.builtin"):
        through_v1 = crawl_once(stand_in.url, gitlab.url)
    assert "listing tags through GitLab's metadata-database API: GET /gitlab/v1/ answered 200" in caplog.text
    v1_counts = stand_in.counts()
    stand_in.metadata_database = False
    through_v2 = crawl_once(stand_in.url, gitlab.url)
    assert through_v1.errors == () and through_v1.warnings == ()
    assert without_published(through_v1) == through_v2  # layers, digests, media types, platforms, created, sizes
    assert served_figures(through_v1) == expected_figures(content.pushed)
    created = {(repo.name, image.tag): image.created for repo in through_v1.repositories for image in repo.images or ()}
    assert created[("dated/app", "v1")] == 1709294400.0 and created[("multi/oci", "latest")] == 1714521600.0
    assert all(image.published is not None for repo in through_v1.repositories for image in repo.images or ())
    # Listing through the API fetched manifests by digest only, never by tag.
    assert v1_counts.get("manifest-by-tag", 0) == 0 and v1_counts.get("v2-tags", 0) == 0
    assert v1_counts["v1-tags"] == len(content.pushed.tags)


@pytest.mark.parametrize("cap", [None, 4], ids=["one-page-each", "pages-of-4"])
def test_an_unchanged_second_crawl_asks_one_tag_list_page_per_1000_tags_and_no_manifest(
    content: Content, gitlab: GitLabTokenEndpoint, cap: int | None
) -> None:
    with GitLabV1Registry(content.registry, gitlab, page_size_cap=cap) as stand_in:
        crawler = connect(stand_in.url, gitlab.url)
        try:
            first = crawler.crawl()
            stand_in.reset_counts()
            second = crawler.crawl()
            v1_counts = stand_in.counts()
            stand_in.metadata_database = False  # the same crawler, now through v2, for comparison
            stand_in.reset_counts()
            third = crawler.crawl()
            v2_counts = stand_in.counts()
        finally:
            crawler.close()
    assert second == first and without_published(second) == third
    pages = sum(math.ceil(len(tags) / (cap or 1000)) for tags in content.pushed.tags.values())
    assert v1_counts == {"probe": 1, "catalog": 1, "v1-tags": pages}
    assert v2_counts == {"probe": 1, "catalog": 1, "v2-tags": len(content.pushed.tags),
                         "manifest-by-tag": tag_count(content.pushed)}


def test_a_tag_at_a_new_digest_costs_its_manifest_by_digest_and_one_at_a_known_digest_nothing(
    fresh: Fresh, gitlab: GitLabTokenEndpoint
) -> None:
    layer = Pusher.make_layer
    base = layer("fresh-base", 100)
    stay = fresh.pusher.push_image("moving/app", "stay", [base, layer("stay", 10)])
    fresh.pusher.push_image("moving/app", "move", [base, layer("move-1", 20)])
    fresh.pusher.push_image("other/app", "v1", [base, layer("other", 30)])
    crawler = connect(fresh.stand_in.url, gitlab.url)
    try:
        crawler.crawl()
        moved = fresh.pusher.push_image("moving/app", "move", [base, layer("move-2", 40)])
        fresh.stand_in.reset_counts()
        after_move = crawler.crawl()
        move_counts = fresh.stand_in.counts()
        fresh.pusher.tag_manifest("moving/app", "move", stay.digest)
        fresh.stand_in.reset_counts()
        after_retag = crawler.crawl()
        retag_counts = fresh.stand_in.counts()
    finally:
        crawler.close()
    # The new manifest and its config: nothing else.
    assert move_counts == {"probe": 1, "catalog": 1, "v1-tags": 2, "manifest-by-digest": 1, "blob": 1}
    assert retag_counts == {"probe": 1, "catalog": 1, "v1-tags": 2}
    digests = {(repo.name, image.tag): image.digest for repo in after_move.repositories for image in repo.images or ()}
    assert digests[("moving/app", "move")] == moved.digest
    sizes = served_figures(after_retag)["moving/app"]["tags"]
    # Tags by name, so "move" comes first and is given the layers both hold.
    assert sizes == {"move": {"size": 110, "disk_size": 110}, "stay": {"size": 110, "disk_size": 0}}


def test_tags_sharing_a_new_digest_cost_one_manifest_request_across_repositories(
    fresh: Fresh, gitlab: GitLabTokenEndpoint
) -> None:
    layers = [Pusher.make_layer("shared-base", 100), Pusher.make_layer("shared-app", 10)]
    first = fresh.pusher.push_image("one/app", "latest", layers)
    for tag in ("1.0", "1", "stable"):
        fresh.pusher.tag_manifest("one/app", tag, first.digest)
    assert fresh.pusher.push_image("two/app", "latest", layers).digest == first.digest
    listing = crawl_once(fresh.stand_in.url, gitlab.url)
    counts = fresh.stand_in.counts()
    assert {image.digest for repo in listing.repositories for image in repo.images or ()} == {first.digest}
    assert (counts["manifest-by-digest"], counts["blob"]) == (1, 1)


def test_a_new_tag_is_first_seen_when_the_registry_published_it(fresh: Fresh, gitlab: GitLabTokenEndpoint) -> None:
    layer = Pusher.make_layer
    base = layer("dates-base", 100)
    fresh.pusher.push_image("dated/app", "old", [base, layer("old", 10)])
    fresh.pusher.push_image("dated/app", "moves", [base, layer("moves-1", 10)])
    crawler = connect(fresh.stand_in.url, gitlab.url)
    try:
        first = build_snapshot(crawler.crawl(), 1_800_000_000.0)
        fresh.clock[0] = 1_700_000_500.0
        fresh.pusher.push_image("dated/app", "new", [base, layer("new", 10)])
        fresh.pusher.push_image("dated/app", "moves", [base, layer("moves-2", 10)])
        second = build_snapshot(crawler.crawl(), 1_800_000_600.0, previous=first)
    finally:
        crawler.close()
    first_tags = first.repositories[0].tags or ()
    second_tags = second.repositories[0].tags or ()
    assert {tag.name: tag.first_seen for tag in first_tags} == {"moves": 1_700_000_000.0, "old": 1_700_000_000.0}
    assert {tag.name: tag.first_seen for tag in second_tags} == {
        "moves": 1_700_000_500.0, "new": 1_700_000_500.0, "old": 1_700_000_000.0}
    assert fresh.stand_in.published_at("dated/app", "new") == 1_700_000_500.0


@pytest.mark.parametrize(("probe", "status"), [
    pytest.param(None, 404, id="database-off-404"),
    pytest.param(respond(401, {"WWW-Authenticate": 'Bearer realm="x",service="y"'}), 401, id="401"),
    pytest.param(respond(503), 503, id="503"),
])
def test_where_the_api_does_not_answer_the_crawl_uses_v2_and_says_why(
    stand_in: GitLabV1Registry, content: Content, gitlab: GitLabTokenEndpoint, caplog: pytest.LogCaptureFixture,
    probe: Respond | None, status: int,
) -> None:
    if probe is None:
        stand_in.metadata_database = False
    else:
        stand_in.add_rule("^GET /gitlab/v1/$", probe)
    with caplog.at_level(logging.INFO, logger="gitlab_registry_usage_rest.crawl.builtin"):
        listing = crawl_once(stand_in.url, gitlab.url)
    assert f"listing tags through the registry API v2: GET /gitlab/v1/ answered {status}" in caplog.text
    assert served_figures(listing) == expected_figures(content.pushed)
    counts = stand_in.counts()
    assert counts.get("v1-tags", 0) == 0 and counts["v2-tags"] == len(content.pushed.tags)


def _page(entries: object, link: str | None = None) -> Callable[[], Respond]:
    headers = {"Content-Type": "application/json", **({"Link": link} if link else {})}
    return lambda: respond(200, headers, json.dumps(entries).encode())


GOOD = {"name": "1.0", "digest": "sha256:" + "a" * 64, "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size_bytes": 10, "created_at": "2024-01-01T00:00:00.000Z", "published_at": "2024-01-01T00:00:00.000Z"}


@pytest.mark.parametrize(("answer", "reason"), [
    (_page([{**GOOD, "digest": "sha256:../../x"}]), "tag 1.0: 'sha256:../../x' is not a digest"),
    (_page([{**GOOD, "config_digest": "md5:x"}]), "tag 1.0: config 'md5:x' is not a digest"),
    (_page([{**GOOD, "name": "../x"}]), "'../x' is not a tag name"),
    (_page([{**GOOD, "name": 7}]), "7 is not a tag name"),
    (_page([{**GOOD, "size_bytes": "10"}]), "tag 1.0: size '10' is not a number of bytes"),
    (_page([{**GOOD, "media_type": ["x"]}]), "tag 1.0: ['x'] is not a media type"),
    (_page([{**GOOD, "published_at": "yesterday"}]), "tag 1.0: published_at 'yesterday' is not a time"),
    (_page([GOOD, GOOD]), "tag '1.0' is listed twice"),
    (_page({"tags": []}), "the answer is not a list of tags"),
    (_page([GOOD] * 1001), "1001 tags on a page of at most 1000"),
    (_page([], f'<{V1_TAGS}?n=1000&last=z>; rel="next"'), "an empty page links to another"),
    (lambda: respond(200, {"Content-Type": "application/json"}, b"<html>"), "the answer is not JSON"),
    (lambda: respond(500), "the registry answered 500"),
], ids=["bad-digest", "bad-config-digest", "bad-name", "name-not-a-string", "size-a-string", "media-type-a-list",
        "bad-time", "duplicate", "not-a-list", "page-too-long", "empty-page-with-link", "not-json", "500"])
def test_a_malformed_answer_costs_only_its_repository_its_figures(
    stand_in: GitLabV1Registry, content: Content, gitlab: GitLabTokenEndpoint, answer: Callable[[], Respond],
    reason: str,
) -> None:
    stand_in.add_rule(f"^GET {V1_TAGS}", answer())
    listing = crawl_once(stand_in.url, gitlab.url)
    (error,) = listing.errors
    assert error == f"{VICTIM}: GitLab tag list of {VICTIM}: {reason}"
    expected = expected_figures(content.pushed)
    del expected[VICTIM]
    assert served_figures(listing) == expected


def test_a_next_page_on_another_origin_is_not_followed(
    stand_in: GitLabV1Registry, content: Content, gitlab: GitLabTokenEndpoint
) -> None:
    with RecordingServer() as elsewhere:
        stand_in.add_rule(f"^GET {V1_TAGS}", _page(
            [GOOD], f'<{elsewhere.origin}{V1_TAGS}?n=1000&last=1.0>; rel="next"')())
        listing = crawl_once(stand_in.url, gitlab.url)
        assert elsewhere.requests == []  # neither the request nor the registry token went there
    (error,) = listing.errors
    assert error.startswith(f"{VICTIM}: GitLab tag list of {VICTIM}: the next page is on another origin")
    assert set(served_figures(listing)) == set(content.pushed.tags) - {VICTIM}


def test_a_listed_digest_the_registry_does_not_serve_fails_that_repository(
    stand_in: GitLabV1Registry, content: Content, gitlab: GitLabTokenEndpoint
) -> None:
    stand_in.add_rule(f"^GET {V1_TAGS}", _page([GOOD])())
    listing = crawl_once(stand_in.url, gitlab.url)
    (error,) = listing.errors
    assert error == f"{VICTIM}: manifest {VICTIM}:{GOOD['digest']}: the registry answered 404"


def test_the_registry_error_names_the_repository_of_a_malformed_answer(
    stand_in: GitLabV1Registry, gitlab: GitLabTokenEndpoint
) -> None:
    stand_in.add_rule(f"^GET {V1_TAGS}", _page([{**GOOD, "digest": 1}])())
    client = client_for(stand_in.url, gitlab.url)
    try:
        with pytest.raises(RegistryError, match=f"^GitLab tag list of {VICTIM}: tag 1.0: 1 is not a digest$"):
            client.tag_details(VICTIM)
    finally:
        client.close()


# -- the service ---------------------------------------------------------------------------------------------------


@pytest.mark.slapd
def test_the_service_serves_the_pushed_figures_and_publication_dates_through_the_api(
    tmp_path: Path, content: Content, gitlab: GitLabTokenEndpoint, slapd: Slapd
) -> None:
    with GitLabV1Registry(content.registry, gitlab) as stand_in:
        stand_in.set_times("dated/app", "v1", created_at=1_650_000_000.0, updated_at=1_660_000_000.25)
        config = service_config(tmp_path, content.registry, gitlab, slapd, registry__registry_base_url=stand_in.url)
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            user = slapd.users["alice"]
            headers = service.login(user.uid, user.password)
            service.wait_for_data(headers)
            body = service.get("/repositories?embed=true", headers=headers).json()
            dated = service.get("/repositories/dated%2Fapp/tags/v1", headers=headers).json()
            log = service.log()
        counts = stand_in.counts()
    served = {
        item["name"]: {
            "size": item["size"], "disk_size": item["disk_size"],
            "tags": {tag["name"]: {"size": tag["size"], "disk_size": tag["disk_size"]}
                     for tag in item["_embedded"]["related"]["_embedded"]["items"]},
        }
        for item in body["_embedded"]["items"]
    }
    assert served == expected_figures(content.pushed)
    assert dated["first_seen"] == iso_millis(1_660_000_000.25) == "2022-08-08T23:06:40.250Z"
    assert "listing tags through GitLab's metadata-database API" in log
    assert counts.get("manifest-by-tag", 0) == 0 and counts["v1-tags"] == len(content.pushed.tags)
