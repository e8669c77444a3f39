"""The refresh thread: publishes crawls, keeps the last good snapshot through failures, recovers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitlab_registry_usage_rest.crawl.library import LibraryCrawler
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.refresher import Refresher
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry, expected_figures
from tests.support.pusher import Pusher


class ScriptedCrawler:
    """Returns or raises what the test scripts: the one injected failure a unit test needs."""

    def __init__(self, *results: Listing | Exception) -> None:
        self._results = list(results)
        self.calls = threading.Semaphore(0)

    def cancel(self) -> None:
        """Nothing to interrupt: each scripted crawl returns at once."""

    def crawl(self) -> Listing:
        self.calls.release()
        result = self._results.pop(0) if len(self._results) > 1 else self._results[0]
        if isinstance(result, Exception):
            raise result
        return result


def one_repo(name: str) -> Listing:
    return Listing((RepositoryListing(name, (ImageListing("t", ("l",)),)),), {"l": 3})


def test_failed_refresh_keeps_the_last_snapshot_and_records_why(caplog: pytest.LogCaptureFixture) -> None:
    holder, state = SnapshotHolder(), RefreshState()
    clock = iter(range(100, 200)).__next__
    refresher = Refresher(ScriptedCrawler(one_repo("a"), RuntimeError("registry on fire"), one_repo("b")),
                          holder, state, interval=3600, clock=lambda: float(clock()))
    assert refresher.run_once() is True
    first = holder.current()
    with caplog.at_level(logging.ERROR):
        assert refresher.run_once() is False
    assert holder.current() is first
    assert state.current().error == "RuntimeError: registry on fire"
    assert state.current().failures == 1
    assert "registry on fire" in caplog.text
    assert refresher.run_once() is True
    snapshot = holder.current()
    assert snapshot is not None and snapshot.repository("b") is not None
    assert state.current().succeeded is True and state.current().refreshes == 3


def tags_at(**digests: str) -> Listing:
    return Listing((RepositoryListing("a", tuple(ImageListing(tag, ("l",), digest=digest)
                                                 for tag, digest in digests.items())),), {"l": 3})


def test_refresh_keeps_first_seen_of_tags_at_their_digest_across_a_failed_refresh() -> None:
    holder, state = SnapshotHolder(), RefreshState()
    clock = iter(range(100, 200)).__next__
    refresher = Refresher(ScriptedCrawler(tags_at(kept="sha256:1", moved="sha256:2"), RuntimeError("down"),
                                          tags_at(kept="sha256:1", moved="sha256:3", new="sha256:1")),
                          holder, state, interval=3600, clock=lambda: float(clock()))
    assert refresher.run_once() is True
    first = holder.current()
    assert first is not None
    first_time = first.timestamp
    assert refresher.run_once() is False
    assert refresher.run_once() is True
    snapshot = holder.current()
    assert snapshot is not None and snapshot.timestamp > first_time
    assert {tag.name: tag.first_seen for tag in snapshot.repositories[0].tags or ()} == {
        "kept": first_time, "moved": snapshot.timestamp, "new": snapshot.timestamp}


def test_thread_refreshes_at_once_and_again_when_triggered() -> None:
    crawler = ScriptedCrawler(one_repo("a"))
    refresher = Refresher(crawler, SnapshotHolder(), RefreshState(), interval=3600)
    refresher.start()
    try:
        assert crawler.calls.acquire(timeout=5)
        refresher.trigger()
        assert crawler.calls.acquire(timeout=5)
    finally:
        refresher.stop()


@pytest.mark.registry
def test_library_crawler_reads_the_real_registry(
    pushed: PushedRegistry, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint
) -> None:
    holder = SnapshotHolder()
    crawler = LibraryCrawler(gitlab.url, registry.url, REGISTRY_USER, REGISTRY_TOKEN)
    assert Refresher(crawler, holder, RefreshState(), interval=3600).run_once()
    snapshot = holder.current()
    assert snapshot is not None
    served = {
        repo.name: {"size": repo.size, "disk_size": repo.disk_size,
                    "tags": {t.name: {"size": t.size, "disk_size": t.disk_size} for t in repo.tags or ()}}
        for repo in snapshot.repositories
    }
    assert served == expected_figures(pushed)


@pytest.fixture
def own_registry(tmp_path: Path, gitlab: GitLabTokenEndpoint) -> Iterator[DistributionRegistry]:
    with DistributionRegistry(tmp_path / "registry", gitlab) as running:
        yield running


@pytest.mark.registry
def test_registry_down_keeps_data_and_the_next_refresh_recovers(
    own_registry: DistributionRegistry, gitlab: GitLabTokenEndpoint
) -> None:
    with Pusher(own_registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        pusher.push_image("team/app", "v1", [Pusher.make_layer("x", 64)])
    holder, state = SnapshotHolder(), RefreshState()
    crawler = LibraryCrawler(gitlab.url, own_registry.url, REGISTRY_USER, REGISTRY_TOKEN)
    refresher = Refresher(crawler, holder, state, interval=3600)
    assert refresher.run_once()
    good = holder.current()
    own_registry.stop()
    assert not refresher.run_once()
    assert holder.current() is good
    assert "ConnectionError" in (state.current().error or "")
    own_registry.start()
    assert refresher.run_once()
    assert holder.current() is not good


def test_a_crawl_longer_than_the_interval_is_followed_at_once_never_overlapped() -> None:
    spans: list[tuple[float, float]] = []
    finished = threading.Semaphore(0)

    class SlowCrawler:
        def cancel(self) -> None:
            """Nothing to interrupt in this test."""

        def crawl(self) -> Listing:
            started = time.monotonic()
            threading.Event().wait(0.15)  # the crawl's own work: longer than the 0.05 s interval
            spans.append((started, time.monotonic()))
            finished.release()
            return one_repo("a")

    refresher = Refresher(SlowCrawler(), SnapshotHolder(), RefreshState(), interval=0.05)
    refresher.start()
    try:
        for _ in range(3):
            assert finished.acquire(timeout=5)
    finally:
        refresher.stop()
    for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
        assert next_start >= end, "refreshes never overlap"
        assert next_start - end < 0.1, "the next one starts at once"
