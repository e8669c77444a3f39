"""The crawl in a child process, against the real registry: same result, progress and counts forwarded,
caches kept between crawls, failures and deaths reported clearly, no child left behind, a hung child
ended, and none of the service's secrets in the child's environment.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from gitlab_registry_usage.registry import low_level_api

from gitlab_registry_usage_rest.crawl.base import CrawlError, ProgressCallback
from gitlab_registry_usage_rest.crawl.builtin import BuiltinCrawler
from gitlab_registry_usage_rest.crawl.library import LibraryCrawler
from gitlab_registry_usage_rest.crawl.process import (
    CrawlerFactory,
    CrawlerProcessError,
    PackedConfigDates,
    ProcessCrawler,
    _from_child,
    _listing_messages,
    _ListingParts,
    child_environment,
)
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.refresher import Refresher
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.hanging import InterpreterLockHog
from tests.support.hostile import CodeRunningCrawler, WrongDatesCrawler
from tests.support.processes import free_port, running, until
from tests.support.proxy import FaultyProxy, delay
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry
from tests.support.service import JWT_SECRET, ServiceProcess, service_config
from tests.support.slapd import Slapd

pytestmark = pytest.mark.registry


HOLD = 60.0  # longer than any test: a held request is answered only when the proxy stops
MANIFESTS = r"^GET /v2/.+/manifests/"
EVERY_REQUEST = r"^"
# Short enough for a test, long enough for a fresh interpreter to start on a busy machine.
ANSWER_TIMEOUT = 3.0


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


def test_a_child_answering_with_a_hostile_pickle_cannot_run_code_in_the_service(
    crawlers: Callable[..., ProcessCrawler], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    crawler = crawlers(functools.partial(CodeRunningCrawler, str(marker)))
    with pytest.raises(CrawlerProcessError, match=r"unreadable message: .*posix\.system, which is refused"):
        crawler.crawl()
    assert not marker.exists(), "the child's pickle ran a command in the parent"


def _fresh(text: str) -> str:
    """An equal string that is another object, as each parsed manifest gives its digests."""
    return "".join(list(text))


def _shared_layer_listing() -> Listing:
    base = "sha256:" + "b" * 64
    return Listing(
        (RepositoryListing("a/one", tuple(
            ImageListing(f"v{n}", (_fresh(base), f"sha256:{n:064d}"), f"sha256:{n + 10:064d}", "m", ("linux/amd64",),
                         1.5e9, None if n else 1.6e9) for n in range(3))),
         RepositoryListing("a/broken", None),
         RepositoryListing("b/two", (ImageListing("latest", (_fresh(base),)),))),
        {base: 100, **{f"sha256:{n:064d}": n for n in range(3)}, "sha256:" + "u" * 64: 7},
        errors=("a/broken: 404",), warnings=("a/one:v1: created unknown",))


def _across_the_pipe(listing: Listing, part_tags: int) -> Listing:
    """``listing`` sent as the child sends it (pickled message by message) and rebuilt as the parent does."""
    parts = _ListingParts()
    for message in _listing_messages(listing, part_tags):
        received = _from_child(pickle.dumps(message))
        if received[0] == "part":
            parts.add(received)
    return parts.listing(received)


@pytest.mark.parametrize("part_tags", [1, 2, 1000], ids=["a-part-per-repository", "parts-of-two", "one-part"])
def test_listing_crosses_in_parts_unchanged_with_one_string_per_distinct_digest(part_tags: int) -> None:
    listing = _shared_layer_listing()
    received = _across_the_pipe(listing, part_tags)
    assert received == listing
    one, _, two = received.repositories
    assert one.images is not None and two.images is not None
    shared = {id(image.layers[0]) for image in (*one.images, *two.images)}
    assert len(shared) == 1, "every reference to the shared layer is one string"
    assert len({id(image.media_type) for image in one.images}) == 1


@pytest.mark.parametrize("forge", [
    lambda part: ("part", part[1], ((part[2][0][0], ((*part[2][0][1][0][:1], (99,), *part[2][0][1][0][2:]),)),)),
    lambda part: ("part", part[1], ((part[2][0][0], ((*part[2][0][1][0][:1], (True,), *part[2][0][1][0][2:]),)),)),
    lambda part: ("part", (("sha256:x", -1),), part[2]),
    lambda part: ("part", part[1] + part[1][:1], part[2]),
    lambda part: ("part", part[1], ((b"a/one", None),)),
    lambda part: ("part", part[1], ((part[2][0][0], ((*part[2][0][1][0][:5], float("nan"), None),)),)),
    lambda part: ("part", part[1], [part[2]]),
], ids=["layer-number-out-of-range", "layer-number-not-an-integer", "negative-size", "layer-sent-twice",
        "name-not-text", "created-not-a-number", "list-not-tuple"])
def test_listing_parts_a_compromised_child_could_forge_are_refused(forge: Callable[[Any], Any]) -> None:
    part = next(_listing_messages(_shared_layer_listing(), 1))
    with pytest.raises(CrawlerProcessError, match=r"^the crawler process sent an unreadable listing$"):
        _ListingParts().add(_from_child(pickle.dumps(forge(part))))


def test_config_dates_reach_the_parent_with_the_listing(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    in_process = builtin(registry.url, gitlab)()
    try:
        in_process.crawl()
        expected = in_process.config_dates()
    finally:
        in_process.close()
    crawler = crawlers(builtin(registry.url, gitlab))
    assert crawler.config_dates() == {}
    crawler.crawl()
    assert crawler.config_dates() == expected
    assert expected and all(digest.startswith("sha256:") for digest in expected)
    crawler.crawl()  # unchanged, so not sent again: the parent keeps the latest it had
    assert crawler.config_dates() == expected


def test_config_dates_kept_packed_read_back_as_they_were_sent() -> None:
    dates = {"sha256:" + "a" * 64: 1.5e9, "sha256:" + "0" * 63 + "b": None, "sha256:" + "A" * 64: 2.0,
             "sha512:" + "c" * 128: 3.0, "sha256:" + "1" * 64: 946_684_800.0}
    packed = PackedConfigDates(dates)
    assert dict(packed.items()) == dates and packed == dates and len(packed) == len(dates)
    # Packed (sha256 in lowercase hex) first, each in order, then the few kept as they were.
    assert list(packed) == ["sha256:" + "a" * 64, "sha256:" + "0" * 63 + "b", "sha256:" + "1" * 64,
                            "sha256:" + "A" * 64, "sha512:" + "c" * 128]
    assert packed["sha256:" + "0" * 63 + "b"] is None and packed["sha256:" + "A" * 64] == 2.0
    # A digest straddling two packed ones is not found in between them.
    straddling = "sha256:" + "a" * 32 + "0" * 32
    assert straddling not in packed and "sha256:" + "2" * 64 not in packed


def test_config_dates_that_are_no_dates_fail_the_crawl(crawlers: Callable[..., ProcessCrawler]) -> None:
    crawler = crawlers(WrongDatesCrawler)
    with pytest.raises(CrawlerProcessError, match=r"^the crawler process sent unreadable config dates$"):
        crawler.crawl()
    assert crawler.config_dates() == {}


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


def environment_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with, as the kernel shows it to anyone who may read its /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if entry)


def test_child_environment_keeps_what_an_http_client_needs_and_nothing_else() -> None:
    needed = {"PATH": "/usr/bin:/bin", "HOME": "/home/svc", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
              "PYTHONPATH": "/src", "SSL_CERT_FILE": "/etc/ca.pem", "REQUESTS_CA_BUNDLE": "/etc/ca.pem",
              "https_proxy": "http://proxy:3128", "NO_PROXY": "registry.local"}
    others = {"GITLAB_REGISTRY_USAGE_REST_JWT_SECRET_KEY": "jwt-key",
              "GITLAB_REGISTRY_USAGE_REST_LDAP_BIND_PASSWORD": "pw",
              "GITLAB_REGISTRY_USAGE_REST_REGISTRY_ACCESS_TOKEN": "glpat", "AWS_SECRET_ACCESS_KEY": "aws",
              "DATABASE_URL": "postgres://u:p@db/x", "SHELL": "/bin/sh", "OLDPWD": "/root"}
    assert child_environment({**needed, **others}) == needed


@pytest.mark.slapd
def test_crawler_child_of_the_service_starts_without_the_services_secrets(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, strict_slapd: Slapd,
    pushed: PushedRegistry, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = service_config(tmp_path, registry, gitlab, strict_slapd, ldap__bind_dn=strict_slapd.reader.dn)
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith(("secret_key", "access_token"))))
    secrets = {
        "GITLAB_REGISTRY_USAGE_REST_JWT_SECRET_KEY": JWT_SECRET,
        "GITLAB_REGISTRY_USAGE_REST_LDAP_BIND_PASSWORD": strict_slapd.reader.password,
        "GITLAB_REGISTRY_USAGE_REST_REGISTRY_ACCESS_TOKEN": REGISTRY_TOKEN,
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("UNRELATED_DEPLOY_TOKEN", "deploy-token-not-for-the-crawler")
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        alice = strict_slapd.users["alice"]
        headers = service.login(alice.uid, alice.password)  # the parent has the JWT key and the bind password
        service.wait_for_data(headers)  # and the child crawled, with the access token from its factory
        started = until(lambda: re.search(r"crawler process (\d+) started", service.log()),
                        "the crawler child's pid in the log", log=service.log)
        child = int(started.group(1))
        assert secrets.items() <= environment_of(service.pid).items()  # else this test would prove nothing
        environment = environment_of(child)
        raw = Path(f"/proc/{child}/environ").read_bytes()
    assert [name for name in environment if name.startswith("GITLAB_REGISTRY_USAGE_REST_")] == []
    for value in [*secrets.values(), "deploy-token-not-for-the-crawler"]:
        assert value.encode() not in raw
    # Exactly the allow-listed part of what the service itself was given (ServiceProcess adds PYTHONUNBUFFERED).
    assert environment == child_environment({**os.environ, "PYTHONUNBUFFERED": "1"})


def test_child_that_stops_answering_is_killed_the_refresh_fails_and_the_next_has_a_new_child(
    crawlers: Callable[..., ProcessCrawler], held: FaultyProxy, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    crawler = crawlers(builtin(held.url, gitlab), answer_timeout=ANSWER_TIMEOUT)
    state = RefreshState()
    refresher = Refresher(crawler, SnapshotHolder(), state, interval=3600)
    pool = ThreadPoolExecutor(1)
    refreshing = pool.submit(refresher.run_once)
    pool.shutdown(wait=False)
    until(in_manifest_phase(held, pushed), "the crawl reaching the manifests")
    pid = crawler.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # frozen for good: no heartbeat, no answer, no reaction to SIGTERM
    stopped = time.monotonic()
    assert refreshing.result(timeout=ANSWER_TIMEOUT + 10) is False
    # The last heartbeat came at most a fifth of the answer timeout before the stop.
    assert ANSWER_TIMEOUT * 0.8 - 0.1 < time.monotonic() - stopped < ANSWER_TIMEOUT + 3
    assert state.current().error == (
        f"CrawlerProcessError: crawler process did not answer within {ANSWER_TIMEOUT:g}s; ended")
    assert not running(pid)
    held.clear_rules()
    assert refresher.run_once() is True
    assert crawler.pid not in (None, pid)


def test_child_stuck_in_c_code_holding_the_interpreter_lock_is_ended(
    crawlers: Callable[..., ProcessCrawler],
) -> None:
    crawler = crawlers(InterpreterLockHog, answer_timeout=ANSWER_TIMEOUT)
    crawling = crawl_in_background(crawler)
    pid = until(lambda: crawler.pid, "the child started")
    with pytest.raises(CrawlerProcessError,
                       match=rf"^crawler process did not answer within {ANSWER_TIMEOUT:g}s; ended$"):
        crawling.result(timeout=ANSWER_TIMEOUT + 10)
    assert not running(pid)
    assert crawler.pid is None


def test_crawl_quiet_for_longer_than_the_answer_timeout_is_not_taken_for_a_hang(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
    pushed: PushedRegistry,
) -> None:
    published: list[tuple[int, int | None, int]] = []
    with FaultyProxy(registry.url) as slow:
        # One slow manifest: the builtin crawler reports progress every 10 s or at the end, so until then
        # only the child's heartbeats say that it is alive.
        slow.add_rule(MANIFESTS, delay(ANSWER_TIMEOUT + 2), times=1)
        crawler = crawlers(builtin(slow.url, gitlab), lambda *values: published.append(values),
                           answer_timeout=ANSWER_TIMEOUT)
        started = time.monotonic()
        listing = crawler.crawl()
    assert time.monotonic() - started > ANSWER_TIMEOUT + 2
    assert [repo.name for repo in listing.repositories] == list(pushed.tags)
    assert listing.errors == ()
    assert len(published) == 1, "no progress report before the end: the heartbeats alone kept the child"


def test_library_crawl_in_the_child_gives_up_on_a_silent_registry_after_its_request_timeout(
    crawlers: Callable[..., ProcessCrawler], registry: DistributionRegistry, gitlab: GitLabTokenEndpoint,
) -> None:
    with FaultyProxy(registry.url) as silent:
        silent.add_rule(EVERY_REQUEST, delay(HOLD))
        crawler = crawlers(functools.partial(LibraryCrawler, gitlab.url, silent.url, REGISTRY_USER, REGISTRY_TOKEN,
                                             timeout=1.0))
        started = time.monotonic()
        crawling = crawl_in_background(crawler)
        with pytest.raises(CrawlerProcessError, match=r"^ReadTimeout: .*\(read timeout=1\.0\)"):
            crawling.result(timeout=20)
        # A fresh interpreter's start and one request timeout, not the registry's silence of a minute.
        assert time.monotonic() - started < 6


def test_library_crawler_timeout_leaves_requests_as_it_was(
    registry: DistributionRegistry, gitlab: GitLabTokenEndpoint
) -> None:
    with FaultyProxy(registry.url) as silent:
        silent.add_rule(EVERY_REQUEST, delay(HOLD))
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            LibraryCrawler(gitlab.url, silent.url, REGISTRY_USER, REGISTRY_TOKEN, timeout=0.5).crawl()
        assert time.monotonic() - started < 3
    assert low_level_api.requests is requests, "the timeout is patched in for the crawl only"
