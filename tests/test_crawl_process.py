"""The crawl in a child process, against the real registry: same result, progress and counts forwarded,
caches kept between crawls, failures and deaths reported clearly, and no child left behind.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from gitlab_registry_usage_rest.crawl.base import CrawlError, ProgressCallback
from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.crawl.library import LibraryCrawler
from gitlab_registry_usage_rest.crawl.process import CrawlerFactory, CrawlerProcessError, ProcessCrawler
from gitlab_registry_usage_rest.model import Listing
from gitlab_registry_usage_rest.refresher import Refresher
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import free_port, running, until
from tests.support.proxy import FaultyProxy, delay
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry

pytestmark = pytest.mark.registry


HOLD = 60.0  # longer than any test: a held request is answered only when the proxy stops
MANIFESTS = r"^GET /v2/.+/manifests/"


def builtin(registry_url: str, gitlab: GitLabTokenEndpoint) -> functools.partial[BuiltinCrawler]:
    """The builtin crawler's factory as the service builds it, without retries: a failure shows at once."""
    return functools.partial(BuiltinCrawler.connect, registry_url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN,
                             concurrency=4, retries=0)


@pytest.fixture
def crawlers() -> Iterator[Callable[..., ProcessCrawler]]:
    """Makes ``ProcessCrawler``s and closes each at the end of the test."""
    made: list[ProcessCrawler] = []

    def make(factory: CrawlerFactory, progress: ProgressCallback | None = None, **options: Any) -> ProcessCrawler:
        crawler = ProcessCrawler(factory, progress, **options)
        made.append(crawler)
        return crawler

    yield make
    for crawler in made:
        crawler.close()


@pytest.fixture
def held(registry: DistributionRegistry, pushed: PushedRegistry) -> Iterator[FaultyProxy]:
    """A proxy holding every manifest request, so a crawl stays in progress until the test ends it."""
    with FaultyProxy(registry.url) as proxy:
        proxy.add_rule(MANIFESTS, delay(HOLD))
        yield proxy


def exited(pid: int) -> bool:
    """Whether our own child ``pid`` has ended, every thread of it, without reaping it: that is its owner's job.

    Its ``/proc`` state says zombie as soon as the main thread has gone, while the others may still be exiting.
    """
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def in_manifest_phase(proxy: FaultyProxy, pushed: PushedRegistry) -> Callable[[], bool]:
    """Every tag list answered: the crawl's manifest requests are under way, held by the proxy."""
    return lambda: sum("/tags/list" in path for _, path, _ in proxy.log) >= len(pushed.tags)


def crawl_until_the_manifests(crawler: ProcessCrawler, held: FaultyProxy, pushed: PushedRegistry,
                              ) -> tuple[Future[Listing], int]:
    """A crawl in the background, held by the proxy at its manifests, and the pid of its child."""
    crawling = crawl_in_background(crawler)
    until(in_manifest_phase(held, pushed), "the crawl reaching the manifests")
    pid = crawler.pid
    assert pid is not None
    return crawling, pid


def crawl_in_background(crawler: ProcessCrawler) -> Future[Listing]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(crawler.crawl)
    pool.shutdown(wait=False)
    return future


def test_child_crawl_returns_what_the_in_process_crawler_returns(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    in_process = builtin(registry.url, gitlab)()
    try:
        expected = in_process.crawl()
    finally:
        in_process.close()
    crawler = crawlers(builtin(registry.url, gitlab))
    assert crawler.crawl() == expected
    assert crawler.pid not in (None, os.getpid())
    assert [repo.name for repo in expected.repositories] == list(pushed.tags)


def test_progress_and_request_counts_reach_the_parent(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    published: list[tuple[int, int | None, int]] = []
    crawler = crawlers(builtin(registry.url, gitlab), lambda *values: published.append(values))
    assert crawler.request_stats() == {}
    crawler.crawl()
    total = len(pushed.tags)
    done, listed, requests = published[-1]
    assert (done, listed) == (total, total)
    counts = crawler.request_stats()
    assert counts["200"] > 0
    assert sum(counts.values()) >= requests > 0


def test_second_crawl_reuses_the_child_and_its_caches(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    crawler = crawlers(builtin(registry.url, gitlab))
    first = crawler.crawl()
    pid, before = crawler.pid, crawler.request_stats()
    second = crawler.crawl()
    after = crawler.request_stats()
    assert second == first
    assert crawler.pid == pid
    tags = sum(len(tags) for tags in pushed.tags.values())
    assert after.get("304", 0) - before.get("304", 0) == tags, "every manifest revalidated, none downloaded"


def test_failure_in_the_child_names_its_cause_in_the_parent(
    crawlers: Callable[..., ProcessCrawler], gitlab: GitLabTokenEndpoint
) -> None:
    crawler = crawlers(builtin(f"http://127.0.0.1:{free_port()}/", gitlab))
    with pytest.raises(CrawlerProcessError, match=r"^CrawlError: the catalog could not be read: .*ConnectionError"):
        crawler.crawl()
    # What the refresh log and /health show: the child's own exception, after the parent's.
    state = RefreshState()
    assert Refresher(crawler, SnapshotHolder(), state, interval=3600).run_once() is False
    assert (state.current().error or "").startswith(
        "CrawlerProcessError: CrawlError: the catalog could not be read: ")
    assert crawler.request_stats().get("error", 0) >= 2, "the failed catalog requests are counted"


def test_child_killed_during_a_crawl_is_a_clear_error_and_the_next_crawl_has_a_new_child(
    crawlers: Callable[..., ProcessCrawler], held: FaultyProxy, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    crawler = crawlers(builtin(held.url, gitlab))
    crawling, pid = crawl_until_the_manifests(crawler, held, pushed)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(CrawlerProcessError, match=r"^crawler process exited with code -9$"):
        crawling.result(timeout=5)
    held.clear_rules()
    listing = crawler.crawl()
    assert [repo.name for repo in listing.repositories] == list(pushed.tags)
    assert crawler.pid not in (None, pid)


def test_child_killed_between_crawls_is_replaced_by_the_next_crawl(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    crawler = crawlers(builtin(registry.url, gitlab))
    first = crawler.crawl()
    pid, before = crawler.pid, crawler.request_stats()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    until(lambda: exited(pid), "the child gone")
    with caplog.at_level(logging.WARNING, logger="gitlab_registry_usage_rest.crawl.process"):
        assert crawler.crawl() == first
    assert crawler.pid not in (None, pid)
    assert f"crawler process {pid} exited with code -9 between crawls" in caplog.text
    after = crawler.request_stats()
    # The new child downloads every manifest again; the counter adds to the dead child's, never goes back.
    assert all(after.get(outcome, 0) >= count for outcome, count in before.items())
    assert after["200"] > before["200"]


def test_cancel_during_a_crawl_ends_it_within_two_seconds(
    crawlers: Callable[..., ProcessCrawler], held: FaultyProxy, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    crawler = crawlers(builtin(held.url, gitlab))
    crawling, pid = crawl_until_the_manifests(crawler, held, pushed)
    started = time.monotonic()
    crawler.cancel()
    with pytest.raises(CrawlError, match="^cancelled$"):
        crawling.result(timeout=2)
    assert time.monotonic() - started < 2
    assert not running(pid)
    with pytest.raises(CrawlError, match="^cancelled$"):
        crawler.crawl()


def test_close_leaves_no_child_and_can_be_repeated(
    registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry
) -> None:
    crawler = ProcessCrawler(builtin(registry.url, gitlab))
    crawler.close()  # before any child: nothing to stop
    crawler = ProcessCrawler(builtin(registry.url, gitlab))
    crawler.crawl()
    pid = crawler.pid
    assert pid is not None and running(pid)
    crawler.close()
    assert not running(pid)
    assert crawler.pid is None
    crawler.close()
    with pytest.raises(CrawlError, match="^closed$"):
        crawler.crawl()


def test_child_logs_in_the_parents_format(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry, capfd: pytest.CaptureFixture[str],
) -> None:
    crawlers(builtin(registry.url, gitlab), log_format="json").crawl()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    progress = [line for line in lines if line["logger"] == "gitlab_registry_usage_rest.crawl.builtin"]
    assert progress[-1]["message"].startswith(f"crawl progress: {len(pushed.tags)}/{len(pushed.tags)} repositories")


def test_library_crawler_runs_in_the_child_and_counts_no_requests(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    crawler = crawlers(functools.partial(LibraryCrawler, gitlab.url, registry.url, REGISTRY_USER, REGISTRY_TOKEN))
    listing = crawler.crawl()
    assert {repo.name: [image.tag for image in repo.images or ()] for repo in listing.repositories} == {
        repo: list(tags) for repo, tags in pushed.tags.items()
    }
    assert crawler.request_stats() == {}


PARENT = textwrap.dedent("""
    import functools, sys, threading, time
    from gitlab_registry_usage_rest.crawl.process import ProcessCrawler
    from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler

    crawler = ProcessCrawler(functools.partial(BuiltinCrawler.connect, *sys.argv[1:5]))
    threading.Thread(target=crawler.crawl, daemon=True).start()
    while crawler.pid is None:
        time.sleep(0.01)
    print(crawler.pid, flush=True)
    threading.Event().wait()
""")


def test_parent_killed_leaves_no_child(
    held: FaultyProxy, gitlab: GitLabTokenEndpoint, pushed: PushedRegistry
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT, held.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN],
        stdout=subprocess.PIPE, text=True,
    ) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            until(in_manifest_phase(held, pushed), "the crawl reaching the manifests")
            assert running(child)
        finally:
            parent.kill()
    until(lambda: not running(child), "the orphaned child ending by itself", timeout=10)
