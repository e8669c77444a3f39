"""Operating the service as a process: data file across restarts, /health, /metrics, signals, environment, logs.

Every test runs the real process against the real registry (directly or through a ``FaultyProxy`` that
holds requests, so "while a refresh runs" is a state the test controls) and the real slapd.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitlab_registry_usage_rest.model import RepositoryUsage, Snapshot, TagUsage
from gitlab_registry_usage_rest.persistence import DataFile, decode
from gitlab_registry_usage_rest.web.humanize import iso_millis
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import running, until
from tests.support.proxy import FaultyProxy, delay, respond
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry, expected_figures
from tests.support.pusher import Pusher
from tests.support.service import JWT_SECRET, ServiceProcess, service_config
from tests.support.slapd import Slapd

pytestmark = [pytest.mark.registry, pytest.mark.slapd]

HOLD = 60.0  # longer than any test: a held request is answered only when the proxy stops
EVERY_REQUEST = r"^"
MANIFESTS = r"^GET /v2/.+/manifests/"
REPOSITORY = "group/sub/project"
REPOSITORY_PATH = "/repositories/group%2Fsub%2Fproject"
ENV_SECRET = "GITLAB_REGISTRY_USAGE_REST_JWT_SECRET_KEY"
ENV_ACCESS_TOKEN = "GITLAB_REGISTRY_USAGE_REST_REGISTRY_ACCESS_TOKEN"
METRICS_TOKEN = "operations-scrape-token-" + "m" * 32
CONFIG_GET = re.compile(r"/v2/.+/blobs/sha256:[0-9a-f]{64}")
BUILT = "2024-05-06T07:08:09Z"
BUILT_TIME = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class OwnRegistry:
    """A registry of this test's own, so that pushing to it changes no other test's figures."""

    registry: DistributionRegistry
    pusher: Pusher


@pytest.fixture
def own_registry(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[OwnRegistry]:
    with DistributionRegistry(tmp_path_factory.mktemp("own-registry"), gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        layer = Pusher.make_layer
        pusher.push_image("ages/app", "kept", [layer("kept", 100)], created=BUILT)
        pusher.push_image("ages/app", "moved", [layer("moved", 200)], created=BUILT)
        pusher.push_image("ages/app", "late", [layer("late", 250)], created=BUILT)
        pusher.push_image("ages/other", "v1", [layer("other", 300)], created="1980-01-01T00:00:00Z")
        yield OwnRegistry(registry, pusher)


def _config_gets(proxy: FaultyProxy) -> list[str]:
    return [path for method, path, _ in proxy.log if method == "GET" and CONFIG_GET.fullmatch(path)]


def _refreshed(service: ServiceProcess, count: int) -> None:
    until(lambda: _health(service)[1]["refresh"]["refreshes"] >= count
          and _health(service)[1]["refresh"]["running"] is False, f"refresh {count} done", log=service.log)


def _saved(service: ServiceProcess, data_file: Path, served: dict[str, Any]) -> None:
    until(lambda: _file_timestamp(data_file) == served["timestamp"], "the data file written after the refresh",
          log=service.log)


def _health(service: ServiceProcess) -> tuple[int, dict[str, Any]]:
    response = service.get("/health")
    return response.status_code, response.json()


def _alice(service: ServiceProcess, slapd: Slapd) -> dict[str, str]:
    user = slapd.users["alice"]
    return service.login(user.uid, user.password)


def _old_snapshot(timestamp: float) -> Snapshot:
    tag = TagUsage("v1", 10, 10, 10)
    return Snapshot(timestamp, (RepositoryUsage("old/gone", 10, 10, 10, (tag,)),))


def _served_figures(snapshot: Snapshot) -> dict[str, dict[str, object]]:
    return {
        repo.name: {
            "size": repo.size,
            "disk_size": repo.disk_size,
            "tags": {tag.name: {"size": tag.size, "disk_size": tag.disk_size} for tag in repo.tags or ()},
        }
        for repo in snapshot.repositories
    }


def _file_timestamp(path: Path) -> float | None:
    try:
        return decode(path.read_bytes()).timestamp
    except FileNotFoundError:
        return None


def test_restart_serves_the_data_file_before_any_registry_request(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    data_file = first_dir / "snapshot.json"
    first = ServiceProcess(first_dir, ["-c", str(service_config(first_dir, registry, gitlab, slapd))]).start()
    try:
        headers = _alice(first, slapd)
        timestamp = first.wait_for_data(headers)
        figures = first.get(REPOSITORY_PATH, headers=headers).json()
        until(lambda: _file_timestamp(data_file) == timestamp, "the data file holds the first run's data",
               log=first.log)
    finally:
        code, _ = first.stop()
    assert code == 0, first.log()

    with FaultyProxy(registry.url) as proxy:
        proxy.add_rule(EVERY_REQUEST, delay(HOLD))
        config = service_config(second_dir, registry, gitlab, slapd,
                                registry__registry_base_url=proxy.url, general__data_file=str(data_file))
        with ServiceProcess(second_dir, ["-c", str(config)]) as second:
            headers = _alice(second, slapd)
            response = second.get(REPOSITORY_PATH, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json() == figures
            assert response.json()["size"] == expected_figures(pushed)[REPOSITORY]["size"]
            assert second.get("/repositories", headers=headers).json()["timestamp"] == timestamp
            assert proxy.requests == 0 and proxy.log == []
            # The refresh did start: the data came from the file, not from a crawl that was quicker.
            assert _health(second)[1]["refresh"]["running"] is True
            # Log lines are written in batches, within a quarter of a second.
            loaded = f"loaded {len(expected_figures(pushed))} repositories from {data_file}"
            until(lambda: loaded in second.log(), "the data-file line in the log", log=second.log)


def test_a_restart_with_the_data_file_reads_no_image_config_again(
    tmp_path: Path, own_registry: OwnRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
) -> None:
    data_file = tmp_path / "snapshot.json"
    for run in ("first", "second"):
        workdir = tmp_path / run
        workdir.mkdir()
        with FaultyProxy(own_registry.registry.url) as proxy:
            config = service_config(workdir, own_registry.registry, gitlab, slapd,
                                    registry__registry_base_url=proxy.url, general__data_file=str(data_file))
            with ServiceProcess(workdir, ["-c", str(config)]) as service:
                _refreshed(service, 1)
                _saved(service, data_file, service.get("/repositories", headers=_alice(service, slapd)).json())
                gets = _config_gets(proxy)
        if run == "first":
            assert len(gets) == 4, "one GET per distinct config"
        else:
            assert gets == [], "the config dates came from the data file"
        saved = DataFile(str(data_file)).load_saved()
        assert saved is not None and len(saved.configs) == 4
        assert {f"{repo.name}:{tag.name}": tag.created for repo in saved.snapshot.repositories
                for tag in repo.tags or ()} == {"ages/app:kept": BUILT_TIME, "ages/app:moved": BUILT_TIME,
                                                "ages/app:late": BUILT_TIME, "ages/other:v1": None}


def _tag_times(service: ServiceProcess, headers: dict[str, str]) -> tuple[str, dict[str, tuple[str, str]]]:
    """The served data's time (as a tag's first_seen shows it), and each tag's created and first_seen."""
    timestamp = service.get("/repositories", headers=headers).json()["timestamp"]
    tags = {}
    for repository, tag in (("ages%2Fapp", "kept"), ("ages%2Fapp", "moved"), ("ages%2Fapp", "late"),
                            ("ages%2Fother", "v1")):
        document = service.get(f"/repositories/{repository}/tags/{tag}", headers=headers).json()
        tags[f"{repository}:{tag}"] = (document["created"], document["first_seen"])
    return iso_millis(timestamp), tags


def test_a_tag_pushed_to_another_digest_is_seen_anew_the_others_keep_first_seen_across_sighup_and_restart(
    tmp_path: Path, own_registry: OwnRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
) -> None:
    layer, push = Pusher.make_layer, own_registry.pusher.push_image
    data_file = tmp_path / "snapshot.json"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    config = service_config(tmp_path / "first", own_registry.registry, gitlab, slapd,
                            general__data_file=str(data_file))
    built = "2024-05-06T07:08:09Z"
    with ServiceProcess(tmp_path / "first", ["-c", str(config)]) as service:
        headers = _alice(service, slapd)
        _refreshed(service, 1)
        first, tags = _tag_times(service, headers)
        assert tags == {"ages%2Fapp:kept": (built, first), "ages%2Fapp:moved": (built, first),
                        "ages%2Fapp:late": (built, first), "ages%2Fother:v1": (None, first)}

        push("ages/app", "moved", [layer("moved again", 201)], created="2024-07-08T09:10:11.5Z")
        service.send_signal(signal.SIGHUP)
        _refreshed(service, 2)
        second, tags = _tag_times(service, headers)
        assert second != first
        assert tags == {"ages%2Fapp:kept": (built, first), "ages%2Fapp:moved": ("2024-07-08T09:10:11.500Z", second),
                        "ages%2Fapp:late": (built, first), "ages%2Fother:v1": (None, first)}
        _saved(service, data_file, service.get("/repositories", headers=headers).json())

    push("ages/app", "late", [layer("late, while the service was down", 251)], created=built)
    config = service_config(tmp_path / "second", own_registry.registry, gitlab, slapd,
                            general__data_file=str(data_file))
    with ServiceProcess(tmp_path / "second", ["-c", str(config)]) as service:
        headers = _alice(service, slapd)
        assert _tag_times(service, headers)[1]["ages%2Fapp:moved"] == ("2024-07-08T09:10:11.500Z", second), \
            "served from the data file before the first refresh"
        _refreshed(service, 1)
        third, tags = _tag_times(service, headers)
        assert third not in (first, second)
        assert tags == {"ages%2Fapp:kept": (built, first), "ages%2Fapp:moved": ("2024-07-08T09:10:11.500Z", second),
                        "ages%2Fapp:late": (built, third), "ages%2Fother:v1": (None, first)}


def test_corrupt_data_file_is_moved_aside_and_the_registry_fills_in(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    garbage = b"\x00\xffnot a snapshot\x8b\x1f" * 50
    data_file = tmp_path / "snapshot.json"
    data_file.write_bytes(garbage)
    with FaultyProxy(registry.url) as proxy:
        # The catalog is held until the test has seen "no data"; then a retry after the 2 s timeout goes through.
        proxy.add_rule(r"^GET /v2/_catalog", delay(HOLD))
        config = service_config(tmp_path, registry, gitlab, slapd,
                                registry__registry_base_url=proxy.url, registry__timeout="2 seconds")
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            aside = list(tmp_path.glob("snapshot.json.unreadable-*"))
            assert len(aside) == 1, service.log()
            assert aside[0].read_bytes() == garbage
            assert "ignoring the data file" in service.log() and str(aside[0]) in service.log()
            headers = _alice(service, slapd)
            assert service.get("/repositories", headers=headers).json()["timestamp"] is None
            proxy.clear_rules()
            timestamp = service.wait_for_data(headers)
            body = service.get(REPOSITORY_PATH, headers=headers).json()
            assert body["size"] == expected_figures(pushed)[REPOSITORY]["size"]
            until(lambda: _file_timestamp(data_file) == timestamp, "the new data file", log=service.log)
    assert aside[0].read_bytes() == garbage, "the unreadable file is kept, never overwritten"


def test_sigterm_during_a_refresh_keeps_the_last_good_data_file(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    data_file = tmp_path / "snapshot.json"
    DataFile(str(data_file)).save(_old_snapshot(1000.0))
    with FaultyProxy(registry.url) as proxy:
        config = service_config(tmp_path, registry, gitlab, slapd, registry__registry_base_url=proxy.url)
        service = ServiceProcess(tmp_path, ["-c", str(config)]).start()
        try:
            headers = _alice(service, slapd)
            timestamp = until(
                lambda: (ts if (ts := service.get("/repositories", headers=headers).json()["timestamp"]) != 1000.0
                         else None),
                "data from the first refresh", log=service.log)
            # After a successful refresh the file holds the new snapshot, exactly what is served.
            until(lambda: _file_timestamp(data_file) == timestamp, "the data file replaced", log=service.log)
            good = data_file.read_bytes()
            assert _served_figures(decode(good)) == expected_figures(pushed)

            proxy.add_rule(MANIFESTS, delay(HOLD))
            listed_before = sum("/tags/list" in path for _, path, _ in proxy.log)
            service.send_signal(signal.SIGHUP)
            # Every tags/list of the second crawl answered: its manifest requests are now held by the proxy.
            until(lambda: sum("/tags/list" in path for _, path, _ in proxy.log) >= 2 * listed_before,
                   "the second crawl reaching the manifests", log=service.log)
            status, document = _health(service)
            assert document["refresh"]["running"] is True and status == 200
        finally:
            code, seconds = service.stop(signal.SIGTERM)
    assert code == 0, service.log()
    assert seconds < 5, service.log()
    assert data_file.read_bytes() == good
    assert decode(data_file.read_bytes()).timestamp == timestamp
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []
    assert service.log().count("refresh done") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_crawl_runs_in_a_child_process_that_ends_with_the_service(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry, sig: signal.Signals,
) -> None:
    with FaultyProxy(registry.url) as proxy:
        proxy.add_rule(MANIFESTS, delay(HOLD))
        config = service_config(tmp_path, registry, gitlab, slapd, registry__registry_base_url=proxy.url)
        service = ServiceProcess(tmp_path, ["-c", str(config)]).start()
        try:
            until(lambda: sum("/tags/list" in path for _, path, _ in proxy.log) >= len(pushed.tags),
                   "the crawl reaching the manifests", log=service.log)
            match = until(lambda: re.search(r"crawler process (\d+) started", service.log()),
                           "the crawler process's start in the log", log=service.log)
            child = int(match.group(1))
            with open(f"/proc/{child}/stat") as stat:
                assert int(stat.read().rpartition(")")[2].split()[1]) == service.pid, "the service's child"
        finally:
            service.stop(sig)
        # SIGKILL gives the service no chance to stop it: the child sees the pipe close and ends itself.
        until(lambda: not running(child), "the crawler process ended", timeout=10, log=service.log)


def test_health_before_and_after_data(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    with FaultyProxy(registry.url) as proxy:
        proxy.add_rule(MANIFESTS, delay(HOLD))
        config = service_config(tmp_path, registry, gitlab, slapd,
                                registry__registry_base_url=proxy.url, registry__timeout="1 second")
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            # Every tag list answered: the crawl is in its manifest phase, held by the proxy.
            until(lambda: sum("/tags/list" in path for _, path, _ in proxy.log) >= len(pushed.tags),
                   "the crawl reaching the manifests", log=service.log)
            status, document = _health(service)
            assert status == 503, document
            assert document["status"] == "no data"
            assert document["timestamp"] is None and document["age_seconds"] is None
            refresh = document["refresh"]
            assert refresh["running"] is True and refresh["refreshes"] == 0
            assert set(refresh["progress"]) == {"repositories_done", "repositories_total", "requests"}
            assert service.get("/health").headers["Cache-Control"] == "no-store"

            proxy.clear_rules()
            # The new data is served a moment before the refresh is counted finished (the data file is
            # written in between), so wait for both.
            status, document = until(
                lambda: (h if (h := _health(service))[0] == 200 and not h[1]["refresh"]["running"] else None),
                "/health answering 200 after the refresh", log=service.log)
            assert document["status"] == "ok"
            assert document["timestamp"] is not None and 0 <= document["age_seconds"] < 60
            refresh = document["refresh"]
            assert refresh["running"] is False and "progress" not in refresh
            assert (refresh["last_outcome"], refresh["refreshes"], refresh["failures"]) == ("success", 1, 0)
            assert refresh["last_duration_seconds"] >= 1.0, "the held manifests made it last a timeout at least"


def test_health_is_503_stale_with_old_data(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd
) -> None:
    old = time.time() - 3600
    DataFile(str(tmp_path / "snapshot.json")).save(_old_snapshot(old))
    with FaultyProxy(registry.url) as proxy:
        proxy.add_rule(EVERY_REQUEST, delay(HOLD))
        config = service_config(tmp_path, registry, gitlab, slapd,
                                registry__registry_base_url=proxy.url, general__max_data_age="1s")
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            status, document = _health(service)
    assert status == 503, document
    assert document["status"] == "stale"
    assert document["timestamp"] == old
    assert document["age_seconds"] >= 3600 and document["max_age_seconds"] == 1


def _families(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _per_repository(families: dict[str, Any], name: str) -> dict[str, float]:
    return {sample.labels["repository"]: sample.value
            for sample in families[f"gitlab_registry_usage_repository_{name}"].samples}


def test_metrics_from_the_process_equal_what_was_pushed(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd, general__metrics_token=METRICS_TOKEN)
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        alice = _alice(service, slapd)
        service.wait_for_data(alice)
        # The snapshot is served before the data file is written and the refresh counted: wait for the count.
        until(lambda: _health(service)[1]["refresh"]["refreshes"] == 1, "the first refresh counted")
        public = service.get("/metrics")
        with_login = service.get("/metrics", headers=alice)
        with_static = service.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        wrong = service.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN[:-1]}x"})
        log = service.log()
    expected = expected_figures(pushed)

    # Without credentials: the registry-wide and the process's series, and not one repository name.
    families = _families(public)
    assert not {name for name in families if name.startswith("gitlab_registry_usage_repository_")}
    for repository in expected:
        assert f'"{repository}"' not in public.text and repository not in public.text, repository
    assert families["gitlab_registry_usage_repositories"].samples[0].value == len(expected)

    assert wrong.status_code == 401 and set(wrong.json()) == {"msg"}
    assert METRICS_TOKEN not in log

    for response in (with_login, with_static):
        families = _families(response)
        assert _per_repository(families, "size_bytes") == {
            repo: figures["size"] for repo, figures in expected.items()}
        assert _per_repository(families, "disk_size_bytes") == {
            repo: figures["disk_size"] for repo, figures in expected.items()}
        assert _per_repository(families, "tags") == {repo: len(tags) for repo, tags in pushed.tags.items()}

        requests = {sample.labels["outcome"]: sample.value
                    for sample in families["gitlab_registry_usage_registry_requests"].samples
                    if sample.name == "gitlab_registry_usage_registry_requests_total"}
        assert requests.get("200", 0) > 0, requests
        assert families["gitlab_registry_usage_refreshes"].samples[0].value == 1
        assert families["gitlab_registry_usage_refresh_failures"].samples[0].value == 0
        assert families["gitlab_registry_usage_refresh_duration_seconds"].samples[0].value > 0
        assert families["gitlab_registry_usage_refresh_last_success_timestamp_seconds"].samples[0].value > 0
        assert families["gitlab_registry_usage_refresh_running"].samples[0].value == 0


def test_metrics_require_token_closes_the_whole_endpoint_of_the_process(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd, general__metrics_token=METRICS_TOKEN,
                            general__metrics_require_token="True")
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        alice = _alice(service, slapd)
        service.wait_for_data(alice)
        refused = service.get("/metrics")
        with_static = service.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with_login = service.get("/metrics", headers=alice)
    assert refused.status_code == 401 and refused.json() == {"msg": "Missing Authorization Header"}
    for response in (with_static, with_login):
        assert "gitlab_registry_usage_repository_size_bytes" in _families(response)


def test_health_of_the_process_counts_failed_repositories_and_names_no_repository_url_or_scope(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    with FaultyProxy(registry.url) as proxy:
        # One repository unreadable (a 400 is not retried): the refresh succeeds without it.
        proxy.add_rule(f"^GET /v2/{REPOSITORY}/tags/list", respond(400))
        config = service_config(tmp_path, registry, gitlab, slapd,
                                registry__registry_base_url=proxy.url, registry__timeout="2 seconds")
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            until(lambda: _health(service)[1]["refresh"]["refreshes"] == 1, "the first refresh counted",
                  log=service.log)
            status, after_repository = _health(service)
            health_text = service.get("/health").text
            assert status == 200, after_repository
            assert after_repository["unreadable_repositories"] == 1
            assert after_repository["refresh"]["last_outcome"] == "success"
            assert after_repository["refresh"]["last_error"] is None

            # Then no repository at all can be read: the crawl fails as a whole, naming the first one.
            proxy.add_rule(r"^GET /v2/.+/tags/list", respond(400))
            service.send_signal(signal.SIGHUP)
            until(lambda: _health(service)[1]["refresh"]["refreshes"] == 2, "the failed second refresh",
                  log=service.log)
            status, after_crawl = _health(service)
            health_text += service.get("/health").text
            until(lambda: "refresh failed" in service.log(), "the failure in the log", log=service.log)
            log = service.log()
    assert status == 200, after_crawl  # the last good data is young: a failed refresh alone is not unhealthy
    refresh = after_crawl["refresh"]
    assert (refresh["last_outcome"], refresh["last_error"], refresh["failures"]) == ("failure", "CrawlError", 1)
    assert after_crawl["unreadable_repositories"] == 1  # of the data still served
    host = proxy.url.split("//", 1)[1].rstrip("/")
    for name in (*pushed.tags, host, "127.0.0.1", "/v2/", "repository:", "scope", "pull"):
        assert name not in health_text, name
    # The details stay in the log.
    assert f"{REPOSITORY}: v2/{REPOSITORY}/tags/list: the registry answered 400" in log
    assert "CrawlError: no repository could be read; the first error: " in log


def test_sighup_starts_a_refresh_now(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd)  # refresh_interval is 1 hour
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        service.wait_for_data(_alice(service, slapd))
        until(lambda: _health(service)[1]["refresh"]["refreshes"] == 1, "the first refresh counted")
        assert "refresh requested" not in service.log()
        service.send_signal(signal.SIGHUP)
        until(lambda: "refresh requested" in service.log(), "'refresh requested' in the log", log=service.log)
        until(lambda: _health(service)[1]["refresh"]["refreshes"] == 2, "a second refresh", log=service.log)
        assert _health(service)[1]["refresh"]["last_outcome"] == "success"


def _without_secrets(config: Path) -> None:
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if not line.startswith(("secret_key", "access_token"))))


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitlab_registry_usage_rest", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=30, check=False)


def test_secrets_from_the_environment(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd)
    _without_secrets(config)
    assert JWT_SECRET not in config.read_text() and REGISTRY_TOKEN not in config.read_text()
    missing = _run_cli(["-c", str(config)], {})
    assert missing.returncode == 2 and "[jwt] secret_key: is required" in missing.stderr

    env = {ENV_SECRET: JWT_SECRET, ENV_ACCESS_TOKEN: REGISTRY_TOKEN,
           "GITLAB_REGISTRY_USAGE_REST_REGISTRY_CONCURRENCY": "3"}
    printed = _run_cli(["-c", str(config), "--print-config"], env)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert "secret_key = ********" in lines and "access_token = ********" in lines
    assert "concurrency = 3" in lines and f"registry_base_url = {registry.url}" in lines
    assert JWT_SECRET not in printed.stdout + printed.stderr
    assert REGISTRY_TOKEN not in printed.stdout + printed.stderr

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        headers = _alice(service, slapd)  # tokens signed with the secret from the environment
        service.wait_for_data(headers)  # the registry crawled with the access token from the environment
        body = service.get(REPOSITORY_PATH, headers=headers).json()
        assert body["size"] == expected_figures(pushed)[REPOSITORY]["size"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GITLAB_REGISTRY_USAGE_REST_GENERAL_REFRESH_INTERVAL", "soon",
         "GITLAB_REGISTRY_USAGE_REST_GENERAL_REFRESH_INTERVAL ([general] refresh_interval): invalid value 'soon'"),
        ("GITLAB_REGISTRY_USAGE_REST_REGISTRY_CONCURRENCY", "lots",
         "GITLAB_REGISTRY_USAGE_REST_REGISTRY_CONCURRENCY ([registry] concurrency): invalid value 'lots'"),
        (ENV_SECRET, "too-short-secret-xyz", f"{ENV_SECRET} ([jwt] secret_key): is shorter than 32 characters"),
    ],
    ids=["duration", "number", "short-secret"],
)
def test_invalid_environment_value_is_one_line_and_exit_2(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    name: str, value: str, message: str,
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd)
    result = _run_cli(["-c", str(config)], {name: value})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gitlab-registry-usage-rest: error: ")
    assert message in result.stderr
    if name == ENV_SECRET:
        assert value not in result.stderr


def test_json_logs_carry_requests_and_refreshes_and_no_secret(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    # DEBUG as well: the most verbose level must not leak a secret either.
    config = service_config(tmp_path, registry, gitlab, slapd, general__log_format="json", general__log_level="DEBUG")
    alice = slapd.users["alice"]
    service = ServiceProcess(tmp_path, ["-c", str(config)]).start()
    try:
        headers = service.login(alice.uid, alice.password)
        service.wait_for_data(headers)
        assert service.get(REPOSITORY_PATH, headers=headers).status_code == 200
        until(lambda: "refresh done" in service.log(), "the refresh line", log=service.log)
    finally:
        code, _ = service.stop()
    assert code == 0
    text = service.log()
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)

    requests = [entry for entry in entries if entry["logger"] == "gitlab_registry_usage_rest.access"]
    for path in ("/auth_token", "/repositories", REPOSITORY_PATH):  # cheroot keeps %2F as sent
        matching = [entry for entry in requests if entry["path"] == path and entry["status"] == 200]
        assert matching, (path, requests)
        assert matching[-1]["method"] == "GET" and matching[-1]["user"] == "alice"
        assert isinstance(matching[-1]["duration_ms"], (int, float))

    refreshes = [entry for entry in entries if entry.get("event") == "refresh"]
    assert len(refreshes) == 1
    expected = expected_figures(pushed)
    assert refreshes[0]["repositories"] == len(expected)
    assert refreshes[0]["tags"] == sum(len(pushed.tags[repo]) for repo in expected)
    assert refreshes[0]["requests"] > 0 and refreshes[0]["duration_seconds"] >= 0
    assert refreshes[0]["errors"] == [] and refreshes[0]["warnings"] == 0

    token = headers["Authorization"].removeprefix("Bearer ")
    for secret in (alice.password, token, JWT_SECRET, REGISTRY_TOKEN):
        assert secret not in text
