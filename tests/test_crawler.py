"""The builtin crawler against the real Distribution registry: complete, multi-architecture, cached.

The registry here pages its catalog at 20 entries, so pagination is exercised with a few dozen
repositories. Expected figures come from the bytes the test pushed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pytest

from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.crawl.client import RequestStats, TokenProvider, make_session
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.proxy import FaultyProxy, page_tags
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry, expected_figures
from tests.support.pusher import Platform, Pusher

pytestmark = pytest.mark.registry

Layers = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Fixture:
    registry: DistributionRegistry
    pushed: PushedRegistry
    platforms: dict[tuple[str, str], list[str]]


def _union(*layer_lists: Layers) -> Layers:
    union: dict[str, int] = {}
    for layers in layer_lists:
        for digest, size in layers:
            union.setdefault(digest, size)
    return tuple(union.items())


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[Fixture]:
    with DistributionRegistry(tmp_path_factory.mktemp("paged"), gitlab, catalog_max_entries=20) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        layer = Pusher.make_layer
        base = layer("base", 200)
        by_digest: dict[tuple[str, str], Layers] = {}
        platforms: dict[tuple[str, str], list[str]] = {}

        def image(repo: str, tag: str, layers: list[bytes], **kwargs: object) -> str:
            pushed = pusher.push_image(repo, tag, layers, **kwargs)  # type: ignore[arg-type]
            by_digest[(repo, pushed.digest)] = pushed.layers
            return pushed.digest

        for number in range(40):
            image(f"bulk/r{number:02d}", "v1", [base, layer(f"own-{number}", 10 + number)])
        for number in range(25):
            image("many/tags", f"t{number:02d}", [base, layer(f"tag-{number}", 5 + number)])
        image("oci/app", "main", [base, layer("oci", 70)], media_type="oci")
        image("retag/app", "latest", [base, layer("retag", 33)])
        pusher.tag_manifest("retag/app", "v1", "latest")
        image("deleted/app", "keep", [base, layer("keep", 11)])
        pusher.delete_manifest("deleted/app", image("deleted/app", "gone", [base, layer("gone", 12)]))
        indexes: list[tuple[str, Literal["docker", "oci"], list[tuple[Platform, list[bytes]]]]] = [
            ("multi/oci", "oci", [(Platform("linux", "amd64"), [base, layer("amd", 300)]),
                                  (Platform("linux", "arm64", "v8"), [layer("base-arm", 250), layer("arm", 301)])]),
            ("multi/docker", "docker", [(Platform("linux", "amd64"), [base, layer("x", 50)]),
                                        (Platform("linux", "arm", "v7"), [layer("y", 60)])]),
        ]
        for repo, media_type, children in indexes:
            index = pusher.push_index(repo, "latest", children, media_type=media_type, attestation=repo == "multi/oci")
            parts = [child.layers for child in index.images + index.attestations]
            by_digest[(repo, index.digest)] = _union(*parts)
            platforms[(repo, "latest")] = [
                "/".join(filter(None, (child.platform.os, child.platform.architecture, child.platform.variant)))
                for child in index.images
            ]

        tags = {
            repo: {tag: by_digest[(repo, pusher.get_manifest(repo, tag).digest)] for tag in pusher.tags(repo)}
            for repo in pusher.catalog()
        }
        yield Fixture(registry, PushedRegistry(tags), platforms)


@pytest.fixture
def crawler(paged: Fixture, gitlab: GitLabTokenEndpoint) -> Iterator[BuiltinCrawler]:
    crawler = BuiltinCrawler.connect(paged.registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN, concurrency=4)
    yield crawler
    crawler.close()


def served(listing: Listing) -> dict[str, dict[str, object]]:
    return {
        repo.name: {"size": repo.size, "disk_size": repo.disk_size,
                    "tags": {t.name: {"size": t.size, "disk_size": t.disk_size} for t in repo.tags or ()}}
        for repo in build_snapshot(listing, 0.0).repositories
    }


def test_every_repository_and_tag_is_found_across_catalog_pages(crawler: BuiltinCrawler, paged: Fixture) -> None:
    listing = crawler.crawl()
    assert len(paged.pushed.tags) > 40, "more repositories than two catalog pages"
    assert [repo.name for repo in listing.repositories] == list(paged.pushed.tags)
    assert {repo.name: [image.tag for image in repo.images or ()] for repo in listing.repositories} == {
        repo: list(tags) for repo, tags in paged.pushed.tags.items()
    }
    assert listing.errors == ()


def test_figures_equal_what_was_pushed_including_multi_arch(crawler: BuiltinCrawler, paged: Fixture) -> None:
    assert served(crawler.crawl()) == expected_figures(paged.pushed)


def test_multi_arch_tags_list_platforms_but_not_attestations(crawler: BuiltinCrawler, paged: Fixture) -> None:
    listing = crawler.crawl()
    images = {(repo.name, image.tag): image for repo in listing.repositories for image in repo.images or ()}
    for key, platforms in paged.platforms.items():
        assert list(images[key].platforms) == platforms
    assert images[("multi/oci", "latest")].media_type == "application/vnd.oci.image.index.v1+json"
    assert images[("oci/app", "main")].media_type == "application/vnd.oci.image.manifest.v1+json"
    assert images[("retag/app", "latest")].digest == images[("retag/app", "v1")].digest


def test_deleted_tags_are_gone(crawler: BuiltinCrawler) -> None:
    repos = {repo.name: repo for repo in crawler.crawl().repositories}
    assert [image.tag for image in repos["deleted/app"].images or ()] == ["keep"]


def test_unchanged_second_crawl_fetches_no_manifest_again(crawler: BuiltinCrawler, paged: Fixture) -> None:
    first = crawler.crawl()
    before = crawler.request_counts()
    second = crawler.crawl()
    after = crawler.request_counts()
    delta = {outcome: after.get(outcome, 0) - before.get(outcome, 0) for outcome in after}
    tags = sum(len(tags) for tags in paged.pushed.tags.values())
    assert second == first
    assert delta.get("304", 0) == tags, "every tag revalidated, none downloaded"
    # What is left: catalog pages and one tags/list per repository; no new tokens.
    assert delta.get("200", 0) == 3 + len(paged.pushed.tags)


def test_tokens_are_reused_until_shortly_before_they_expire(gitlab: GitLabTokenEndpoint) -> None:
    now = [1000.0]
    session, stats = make_session(1), RequestStats()
    tokens = TokenProvider(session, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN, 5, stats, clock=lambda: now[0])
    try:
        first = tokens.token("repository:a/b:pull")
        assert tokens.token("repository:a/b:pull") == first
        assert stats.total == 1
        now[0] += gitlab.lifetime_s - 31  # GitLab's 5 minutes, less the renewal margin
        assert tokens.token("repository:a/b:pull") == first
        now[0] += 2
        assert tokens.token("repository:a/b:pull") != first
        assert stats.total == 2
    finally:
        session.close()


def test_builtin_figures_equal_the_library_backend_number_for_number(
    tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint
) -> None:
    from gitlab_registry_usage_rest.crawl.library import LibraryCrawler

    with DistributionRegistry(tmp_path_factory.mktemp("differential"), gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        layer = Pusher.make_layer
        shared = [layer(f"shared-{n}", 100 + 17 * n) for n in range(6)]
        for number in range(12):
            repo = f"team{number % 3}/svc{number}"
            for tag_number in range(1 + number % 4):
                layers = shared[: 1 + (number + tag_number) % 5] + [layer(f"{repo}:{tag_number}", 40 + tag_number)]
                pusher.push_image(repo, f"v{tag_number}", layers, media_type="oci" if number % 5 == 0 else "docker")
            if number % 4 == 1:
                pusher.tag_manifest(repo, "latest", "v0")
        builtin = BuiltinCrawler.connect(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN)
        try:
            ours = build_snapshot(builtin.crawl(), 0.0)
        finally:
            builtin.close()
        theirs = build_snapshot(LibraryCrawler(gitlab.url, registry.url, REGISTRY_USER, REGISTRY_TOKEN).crawl(), 0.0)
    figures = [
        [(repo.name, repo.size, repo.disk_size, repo.unique_size,
          [(tag.name, tag.size, tag.disk_size, tag.unique_size) for tag in repo.tags or ()])
         for repo in snapshot.repositories]
        for snapshot in (ours, theirs)
    ]
    assert len(figures[0]) == 12
    assert all(repo[1] is not None for repo in figures[1]), "the library read every repository"
    assert figures[0] == figures[1]


def test_progress_is_logged_and_published(
    paged: Fixture, gitlab: GitLabTokenEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    published: list[tuple[int, int | None, int]] = []
    crawler = BuiltinCrawler.connect(paged.registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN,
                                     progress=lambda *values: published.append(values), progress_interval=0.0)
    try:
        with caplog.at_level("INFO", logger="gitlab_registry_usage_rest.crawl.builtin"):
            crawler.crawl()
    finally:
        crawler.close()
    total = len(paged.pushed.tags)
    assert published[-1][:2] == (total, total)
    assert [done for done, _, _ in published] == sorted(done for done, _, _ in published)
    assert f"crawl progress: {total}/{total} repositories" in caplog.text
    assert "requests/s, ETA" in caplog.text


def test_tags_are_followed_across_pages_as_gitlab_serves_them(paged: Fixture, gitlab: GitLabTokenEndpoint) -> None:
    with FaultyProxy(paged.registry.url) as gitlab_like:
        gitlab_like.add_rule("GET /v2/many/tags/tags/list", page_tags(10))
        crawler = BuiltinCrawler.connect(gitlab_like.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN)
        try:
            listing = crawler.crawl()
        finally:
            crawler.close()
        pages = [entry for entry in gitlab_like.log if entry[1].startswith("/v2/many/tags/tags/list")]
    repos = {repo.name: repo for repo in listing.repositories}
    assert [image.tag for image in repos["many/tags"].images or ()] == sorted(paged.pushed.tags["many/tags"])
    assert len(pages) == 3, "25 tags in pages of 10"
