"""The builtin crawler when the registry or GitLab misbehave: a proxy in front of the real servers injects faults.

What must hold: passing faults are retried away; a repository that cannot be read is reported without
figures and named, the rest stays complete; a crawl that cannot read the catalog fails as a whole,
so the refresh keeps the previous snapshot. A registry's answers never send a request, and its token,
to another host (pagination links) or another path (digests, tags and names that are not the API's).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence

import pytest

from gitlab_registry_usage_rest.crawl.base import CrawlError
from gitlab_registry_usage_rest.crawl.builtin import TOKEN_BATCH, BuiltinCrawler
from gitlab_registry_usage_rest.crawl.manifests import DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.refresher import Refresher
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import free_port
from tests.support.proxy import FaultyProxy, drop, garble, respond, truncate
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry
from tests.support.recorder import RecordingServer

pytestmark = pytest.mark.registry

VICTIM = "group/sub/project"
VICTIM_PATH = "/v2/group/sub/project/"


@pytest.fixture
def proxy(registry: DistributionRegistry, pushed: PushedRegistry) -> Iterator[FaultyProxy]:
    with FaultyProxy(registry.url) as running:
        yield running


def crawler_for(registry_url: str, gitlab_url: str, retries: int = 2) -> BuiltinCrawler:
    return BuiltinCrawler.connect(registry_url, gitlab_url, REGISTRY_USER, REGISTRY_TOKEN,
                                  concurrency=4, timeout=5, retries=retries)


def crawl(registry_url: str, gitlab_url: str, retries: int = 2) -> Listing:
    crawler = crawler_for(registry_url, gitlab_url, retries)
    try:
        return crawler.crawl()
    finally:
        crawler.close()


def tag_sizes(listing: Listing) -> dict[str, dict[str, int] | None]:
    sizes = listing.layer_sizes
    return {
        repo.name: None if repo.images is None else {
            image.tag: sum(sizes[layer] for layer in image.layers) for image in repo.images}
        for repo in listing.repositories
    }


def expected_tag_sizes(pushed: PushedRegistry) -> dict[str, dict[str, int] | None]:
    return {repo: {tag: sum(size for _, size in layers) for tag, layers in tags.items()}
            for repo, tags in pushed.tags.items()}


def test_passing_500s_on_tag_lists_are_retried_away(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry
) -> None:
    proxy.add_rule(f"GET {VICTIM_PATH}tags/list", respond(500), times=2)
    listing = crawl(proxy.url, gitlab.url)
    assert listing.errors == ()
    assert tag_sizes(listing) == expected_tag_sizes(pushed)
    assert [entry[2] for entry in proxy.log if "tags/list" in entry[1] and VICTIM in entry[1]][:3] == [500, 500, 200]


def test_429_retry_after_is_honoured(proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry) -> None:
    proxy.add_rule(f"GET {VICTIM_PATH}manifests/", respond(429, {"Retry-After": "1"}), times=1)
    started = time.monotonic()
    listing = crawl(proxy.url, gitlab.url)
    assert time.monotonic() - started >= 1.0
    assert tag_sizes(listing) == expected_tag_sizes(pushed)


@pytest.mark.parametrize(
    ("rule", "action", "reason"),
    [
        ("manifests/", respond(500), "answered 500"),
        ("tags/list", truncate(10), "IncompleteRead"),
        ("tags/list", garble(), "not the expected JSON"),
        ("manifests/", garble(), "digest mismatch"),
        ("manifests/", drop(), "ConnectionError"),
    ],
    ids=["manifest-500-forever", "truncated-tags-json", "garbled-tags-json", "wrong-digest", "connection-dropped"],
)
def test_unreadable_repository_is_reported_without_figures_and_named(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry, rule: str, action: object, reason: str
) -> None:
    proxy.add_rule(f"GET {VICTIM_PATH}{rule}", action)  # type: ignore[arg-type]
    listing = crawl(proxy.url, gitlab.url, retries=1)
    expected = expected_tag_sizes(pushed)
    expected[VICTIM] = None
    assert tag_sizes(listing) == expected
    assert len(listing.errors) == 1
    assert listing.errors[0].startswith(f"{VICTIM}: ") and reason in listing.errors[0]


def test_a_401_renews_the_token_once(proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry) -> None:
    proxy.add_rule(f"GET {VICTIM_PATH}tags/list", respond(401), times=1)
    crawler = crawler_for(proxy.url, gitlab.url)
    tokens_before = gitlab.requests
    try:
        listing = crawler.crawl()
    finally:
        crawler.close()
    assert listing.errors == ()
    assert tag_sizes(listing) == expected_tag_sizes(pushed)
    # One token for the catalog, one per batch of repositories, and the one that replaced the refused token.
    assert gitlab.requests - tokens_before == 1 + -(-len(pushed.tags) // TOKEN_BATCH) + 1


def test_unreadable_catalog_fails_the_crawl_and_the_refresh_keeps_the_last_data(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint
) -> None:
    holder, state = SnapshotHolder(), RefreshState()
    crawler = crawler_for(proxy.url, gitlab.url, retries=1)
    refresher = Refresher(crawler, holder, state, interval=3600)
    try:
        assert refresher.run_once()
        good = holder.current()
        proxy.add_rule("GET /v2/_catalog", respond(503))
        assert not refresher.run_once()
        assert holder.current() is good
        assert "catalog could not be read" in (state.current().error or "")
        proxy.clear_rules()
        assert refresher.run_once()
        assert holder.current() is not good
    finally:
        crawler.close()


def test_nothing_listening_fails_the_crawl_with_a_clear_error(gitlab: GitLabTokenEndpoint) -> None:
    with pytest.raises(CrawlError, match="catalog could not be read.*ConnectionError"):
        crawl(f"http://127.0.0.1:{free_port()}/", gitlab.url, retries=0)


def test_token_endpoint_failing_fails_the_crawl(registry: DistributionRegistry, gitlab: GitLabTokenEndpoint) -> None:
    with FaultyProxy(gitlab.url) as broken_gitlab:
        broken_gitlab.add_rule("GET /jwt/auth", respond(500))
        with pytest.raises(CrawlError, match="GitLab answered 500"):
            crawl(registry.url, broken_gitlab.url, retries=0)


def test_token_endpoint_garbage_is_a_clear_error(registry: DistributionRegistry, gitlab: GitLabTokenEndpoint) -> None:
    with FaultyProxy(gitlab.url) as broken_gitlab:
        broken_gitlab.add_rule("GET /jwt/auth", garble())
        with pytest.raises(CrawlError, match="not a token"):
            crawl(registry.url, broken_gitlab.url, retries=0)


# --- answers that would steer requests elsewhere ---------------------------------------------------

JSON = {"Content-Type": "application/json"}


def json_page(document: object, link: str | None = None) -> tuple[dict[str, str], bytes]:
    headers = dict(JSON)
    if link is not None:
        headers["Link"] = f'<{link}>; rel="next"'
    return headers, json.dumps(document).encode()


def test_a_catalog_page_linking_to_another_origin_fails_the_crawl_without_contacting_it(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint
) -> None:
    with RecordingServer() as elsewhere:
        headers, body = json_page({"repositories": ["base/debian"]},
                                  f"{elsewhere.origin}/v2/_catalog?last=base%2Fdebian&n=1000")
        proxy.add_rule("^GET /v2/_catalog", respond(200, headers, body))
        with pytest.raises(CrawlError, match=re.escape(
                f"the catalog could not be read: v2/_catalog: the next page is on another origin, "
                f"'http://127.0.0.2:{elsewhere.port}', not followed")):
            crawl(proxy.url, gitlab.url)
    assert elsewhere.requests == []  # neither the request nor the registry token went there


def test_a_tags_page_linking_to_another_origin_fails_that_repository_only(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry
) -> None:
    with RecordingServer() as elsewhere:
        headers, body = json_page({"name": VICTIM, "tags": ["1.0"]},
                                  f"{elsewhere.origin}/v2/{VICTIM}/tags/list?last=1.0&n=1000")
        proxy.add_rule(f"^GET {VICTIM_PATH}tags/list", respond(200, headers, body))
        listing = crawl(proxy.url, gitlab.url)
    assert elsewhere.requests == []
    expected = expected_tag_sizes(pushed)
    expected[VICTIM] = None
    assert tag_sizes(listing) == expected
    (error,) = listing.errors
    assert error == (f"{VICTIM}: v2/{VICTIM}/tags/list: the next page is on another origin, "
                     f"'http://127.0.0.2:{elsewhere.port}', not followed")


def test_a_next_page_on_the_registry_origin_written_absolute_is_followed(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry
) -> None:
    first = next(iter(pushed.tags))
    # The same origin with its default form spelled differently (upper-case host name) is still the registry's.
    same_origin = proxy.url.replace("http://127.0.0.1", "HTTP://127.0.0.1")
    headers, body = json_page({"repositories": [first]}, f"{same_origin}v2/_catalog?last={first}&n=1000")
    proxy.add_rule(r"^GET /v2/_catalog\?n=1000$", respond(200, headers, body), times=1)
    listing = crawl(proxy.url, gitlab.url)
    assert listing.errors == ()
    assert tag_sizes(listing) == expected_tag_sizes(pushed)
    assert [entry[1] for entry in proxy.log if entry[1].startswith("/v2/_catalog")] == [
        "/v2/_catalog?n=1000", f"/v2/_catalog?last={first}&n=1000"]


BAD_DIGESTS = ["sha256:../../x", "sha256:../../../v2/_catalog", "sha256:" + "a" * 64 + "?n=1",
               "sha256:" + "a" * 64 + "#x", "sha256:aa/" + "a" * 62, "sha256:" + "A" * 64, "sha256:", "../x"]
BAD_DIGEST_IDS = ["dot-dot", "dot-dot-to-catalog", "query", "fragment", "slash", "upper-case-hex", "empty-hex",
                  "no-algorithm"]
GOOD_DIGEST = "sha256:" + "0" * 64


def manifest_with(kind: str, digest: str) -> tuple[dict[str, str], bytes]:
    """A manifest of ``kind`` naming ``digest`` where the registry's own manifests name a layer or a child."""
    if kind == "schema2-layer":
        document: dict[str, object] = {
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {"digest": GOOD_DIGEST, "size": 2},
            "layers": [{"digest": digest, "size": 10}]}
        return {"Content-Type": DOCKER_MANIFEST}, json.dumps(document).encode()
    if kind == "index-child":
        document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"digest": digest, "size": 10, "mediaType": OCI_MANIFEST,
             "platform": {"os": "linux", "architecture": "amd64"}}]}
        return {"Content-Type": OCI_INDEX}, json.dumps(document).encode()
    document = {"schemaVersion": 1, "fsLayers": [{"blobSum": digest}]}
    return ({"Content-Type": DOCKER_SCHEMA1_SIGNED, "Docker-Content-Digest": GOOD_DIGEST},
            json.dumps(document).encode())


@pytest.mark.parametrize("digest", BAD_DIGESTS, ids=BAD_DIGEST_IDS)
@pytest.mark.parametrize("kind", ["schema2-layer", "index-child", "schema1-blob"])
def test_a_manifest_naming_an_invalid_digest_fails_that_repository_before_any_request_uses_it(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry, kind: str, digest: str
) -> None:
    headers, body = manifest_with(kind, digest)
    proxy.add_rule(f"^GET {VICTIM_PATH}manifests/", respond(200, headers, body))
    listing = crawl(proxy.url, gitlab.url)
    expected = expected_tag_sizes(pushed)
    expected[VICTIM] = None
    assert tag_sizes(listing) == expected
    (error,) = listing.errors
    field = "fsLayer without a valid blobSum" if kind == "schema1-blob" else "descriptor without a valid digest"
    assert error.startswith(f"{VICTIM}: ") and error.endswith(f"{field}: {digest!r}")
    # Manifests were asked for by their tags only; nothing by (or past) the digest. The victim's first unreadable
    # manifest ends its repository: its other tags may go unasked.
    requested, configs = split_configs(proxy.log)
    victim_manifests = {path for path in listing_requests(pushed) if path.startswith(f"{VICTIM_PATH}manifests/")}
    assert requested - victim_manifests == listing_requests(pushed) - victim_manifests
    assert requested & victim_manifests and requested <= listing_requests(pushed)
    assert {path.rpartition("/blobs/")[0] for path in configs} == {f"/v2/{repo}" for repo in pushed.tags} - {
        VICTIM_PATH.rstrip("/")}


def listing_requests(pushed: PushedRegistry) -> set[str]:
    """What a crawl of the pushed images asks the registry for when no manifest names another, configs aside."""
    return {"/gitlab/v1/", "/v2/_catalog?n=1000"} | {
        path for repo, tags in pushed.tags.items()
        for path in (f"/v2/{repo}/tags/list?n=1000", *(f"/v2/{repo}/manifests/{tag}" for tag in tags))}


def split_configs(log: Sequence[tuple[str, str, object]]) -> tuple[set[str], set[str]]:
    """The paths requested: all but the config blob GETs (of readable images, by valid digest), and those."""
    configs = {path for method, path, _ in log if "/blobs/" in path}
    assert all(re.fullmatch(r"/v2/[a-z0-9/]+/blobs/sha256:[0-9a-f]{64}", path) for path in configs), configs
    assert {method for method, path, _ in log if path in configs} <= {"GET"}
    return {path for _, path, _ in log} - configs, configs


def test_an_invalid_digest_header_on_a_schema1_manifest_fails_that_repository(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry
) -> None:
    headers, body = manifest_with("schema1-blob", GOOD_DIGEST)
    proxy.add_rule(f"^GET {VICTIM_PATH}manifests/", respond(200, {**headers, "Docker-Content-Digest": "sha256:../x"},
                                                          body))
    listing = crawl(proxy.url, gitlab.url)
    (error,) = listing.errors
    assert error.startswith(f"{VICTIM}: manifest {VICTIM}:") and error.endswith(
        "the registry sent the invalid digest 'sha256:../x'")


@pytest.mark.parametrize("tag", ["..", ".", "a/../../../_catalog", "-x", "x" * 129, "v1?n=1", ""],
                         ids=["dot-dot", "dot", "slashes", "leading-dash", "too-long", "query", "empty"])
def test_a_tag_the_api_does_not_allow_fails_that_repository_without_a_request(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry, tag: str
) -> None:
    headers, body = json_page({"name": VICTIM, "tags": [tag]})
    proxy.add_rule(f"^GET {VICTIM_PATH}tags/list", respond(200, headers, body))
    listing = crawl(proxy.url, gitlab.url)
    (error,) = listing.errors
    assert error == (f"{VICTIM}: manifest {VICTIM}:{tag!r:.100}: not a tag or digest the registry API allows, "
                     "not requested")
    assert [path for _, path, _ in proxy.log if path.startswith(VICTIM_PATH)] == [f"{VICTIM_PATH}tags/list?n=1000"]


@pytest.mark.parametrize("name", ["../../v2/_catalog", "group/../other/app", "group//x", "Group/X", "a?b"],
                         ids=["dot-dot", "dot-dot-inside", "empty-component", "upper-case", "query"])
def test_a_catalog_name_the_api_does_not_allow_fails_that_repository_without_a_request(
    proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry, name: str
) -> None:
    headers, body = json_page({"repositories": ["base/debian", name]})
    proxy.add_rule(r"^GET /v2/_catalog", respond(200, headers, body))
    listing = crawl(proxy.url, gitlab.url)
    assert tag_sizes(listing) == {"base/debian": expected_tag_sizes(pushed)["base/debian"], name: None}
    assert listing.errors == (f"{name}: {name!r}: not a repository name the registry API allows, not requested",)
    requested, configs = split_configs(proxy.log)
    assert {path.split("?")[0] for path in requested} == {
        "/gitlab/v1/", "/v2/_catalog", "/v2/base/debian/tags/list", *(f"/v2/base/debian/manifests/{tag}"
                                                       for tag in pushed.tags["base/debian"])}
    assert len(configs) == 1 and configs.pop().startswith("/v2/base/debian/blobs/")
