"""The builtin crawler when the registry or GitLab misbehave: a proxy in front of the real servers injects faults.

What must hold: passing faults are retried away; a repository that cannot be read is reported without
figures and named, the rest stays complete; a crawl that cannot read the catalog fails as a whole,
so the refresh keeps the previous snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gitlab_registry_usage_rest.crawl.base import CrawlError
from gitlab_registry_usage_rest.crawl.builtin import TOKEN_BATCH, BuiltinCrawler
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.refresher import Refresher
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import free_port
from tests.support.proxy import FaultyProxy, drop, garble, respond, truncate
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry

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
        ("tags/list", truncate(10), "ChunkedEncodingError"),
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
