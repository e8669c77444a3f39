"""/health and /metrics through the test client, with an injected clock and a refresh state driven by hand."""

from __future__ import annotations

import base64
import datetime
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gitlab_registry_usage_rest.config import (
    Config,
    GeneralConfig,
    JwtConfig,
    LdapConfig,
    RegistryConfig,
)
from gitlab_registry_usage_rest.crawl.base import CrawlError
from gitlab_registry_usage_rest.crawl.process import CrawlerProcessError
from gitlab_registry_usage_rest.model import (
    ImageListing,
    Listing,
    RepositoryListing,
    RepositoryUsage,
    Snapshot,
    TagUsage,
)
from gitlab_registry_usage_rest.refresher import Refresher, error_kind
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.metrics import Metrics

TIMESTAMP = 1_000_000.0
REGISTRY_URL = "https://registry.example.com/"
SCOPE = "repository:broken:pull"
METRICS_TOKEN = "static-scrape-token-" + "s" * 40
SNAPSHOT = Snapshot(TIMESTAMP, (
    RepositoryUsage("group/app", 300, 250, 200, (TagUsage("1.0", 150, 150, 100), TagUsage("2.0", 150, 100, 100))),
    RepositoryUsage("group/base", 100, 100, 0, (TagUsage("latest", 100, 100, 0),)),
    RepositoryUsage("empty", 0, 0, 0, ()),
    RepositoryUsage("broken", None, None, None, None),  # its tags could not be read
), errors=(f"broken: GET {REGISTRY_URL}v2/broken/tags/list: token for {SCOPE}: GitLab answered 500",))
PREFIX = "gitlab_registry_usage_"


class Clock:
    """The time the app sees: set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Directory:
    """Accepts one user; LDAP itself is tested in test_auth."""

    def authenticate(self, username: str, password: str) -> bool:
        return (username, password) == ("alice", "right")


def make_config(**general: Any) -> Config:
    return Config(
        general=GeneralConfig(**general),
        ldap=LdapConfig(),
        jwt=JwtConfig(secret_key="health-secret-" + "h" * 40, auth_token_expires=datetime.timedelta(hours=1)),
        registry=RegistryConfig(),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(TIMESTAMP + 42.5)


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(SNAPSHOT)


@pytest.fixture
def refresh() -> RefreshState:
    return RefreshState()


@pytest.fixture
def app(holder: SnapshotHolder, refresh: RefreshState, clock: Clock) -> Flask:
    app = create_app(make_config(), holder, Directory(), refresh=refresh, clock=clock)
    assert not app.testing
    return app


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def bearer(client: FlaskClient) -> dict[str, str]:
    basic = base64.b64encode(b"alice:right").decode()
    token = client.get("/auth_token", headers={"Authorization": f"Basic {basic}"}).get_json()["auth_token"]
    return {"Authorization": f"Bearer {token}"}


# --- /health -----------------------------------------------------------------------------------

IDLE: dict[str, Any] = {"running": False, "last_started": None, "last_duration_seconds": None, "last_outcome": None,
        "last_error": None, "last_success": None, "refreshes": 0, "failures": 0}


def test_health_before_any_snapshot_is_503_no_data(refresh: RefreshState, clock: Clock) -> None:
    client = create_app(make_config(), SnapshotHolder(), Directory(), refresh=refresh, clock=clock).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "no data", "timestamp": None, "age_seconds": None, "max_age_seconds": 10800.0,
        "unreadable_repositories": None, "refresh": IDLE,
    }


def test_health_before_any_snapshot_shows_the_running_refreshs_progress(refresh: RefreshState, clock: Clock) -> None:
    client = create_app(make_config(), SnapshotHolder(), Directory(), refresh=refresh, clock=clock).test_client()
    refresh.started(at=TIMESTAMP + 40)
    assert client.get("/health").get_json()["refresh"]["progress"] == {
        "repositories_done": 0, "repositories_total": None, "requests": 0,
    }
    refresh.progress(3, 10, 42)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "no data", "timestamp": None, "age_seconds": None, "max_age_seconds": 10800.0,
        "unreadable_repositories": None, "refresh": {**IDLE, "running": True, "last_started": TIMESTAMP + 40,
                    "progress": {"repositories_done": 3, "repositories_total": 10, "requests": 42}},
    }


def test_health_with_fresh_data_is_200_ok_with_the_age_from_the_clock(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok", "timestamp": TIMESTAMP, "age_seconds": 42.5, "max_age_seconds": 10800.0,
        "unreadable_repositories": 1, "refresh": IDLE,
    }


def test_health_age_follows_the_clock_and_the_current_snapshot(
    client: FlaskClient, clock: Clock, holder: SnapshotHolder
) -> None:
    clock.now = TIMESTAMP + 3600.125
    assert client.get("/health").get_json()["age_seconds"] == 3600.125
    holder.replace(Snapshot(TIMESTAMP + 3600, ()))
    body = client.get("/health").get_json()
    assert (body["timestamp"], body["age_seconds"]) == (TIMESTAMP + 3600, 0.125)


def test_health_with_a_clock_behind_the_data_is_age_zero(client: FlaskClient, clock: Clock) -> None:
    clock.now = TIMESTAMP - 5
    response = client.get("/health")
    assert (response.status_code, response.get_json()["age_seconds"]) == (200, 0.0)


@pytest.mark.parametrize(
    ("general", "max_age", "age", "code", "status"),
    [
        ({}, 10800.0, 10800.0, 200, "ok"),
        ({}, 10800.0, 10800.5, 503, "stale"),
        ({"refresh_interval": datetime.timedelta(minutes=10)}, 1800.0, 1800.0, 200, "ok"),
        ({"refresh_interval": datetime.timedelta(minutes=10)}, 1800.0, 1800.5, 503, "stale"),
        ({"max_data_age": datetime.timedelta(minutes=5)}, 300.0, 300.0, 200, "ok"),
        ({"max_data_age": datetime.timedelta(minutes=5)}, 300.0, 300.5, 503, "stale"),
        ({"max_data_age": datetime.timedelta(hours=2), "refresh_interval": datetime.timedelta(minutes=10)},
         7200.0, 7000.0, 200, "ok"),
        ({"max_data_age": datetime.timedelta(hours=2), "refresh_interval": datetime.timedelta(minutes=10)},
         7200.0, 9000.0, 503, "stale"),
    ],
    ids=["default-three-hours-at-limit", "default-three-hours-past", "three-intervals-at-limit",
         "three-intervals-past", "max-age-at-limit", "max-age-past", "max-age-beats-intervals-fresh",
         "max-age-beats-intervals-stale"],
)
def test_health_is_stale_once_data_is_older_than_the_max_age(
    holder: SnapshotHolder, refresh: RefreshState, general: dict[str, Any], max_age: float, age: float,
    code: int, status: str,
) -> None:
    client = create_app(make_config(**general), holder, Directory(), refresh=refresh,
                        clock=Clock(TIMESTAMP + age)).test_client()
    response = client.get("/health")
    assert response.status_code == code
    assert response.get_json() == {
        "status": status, "timestamp": TIMESTAMP, "age_seconds": age, "max_age_seconds": max_age,
        "unreadable_repositories": 1, "refresh": IDLE,
    }


def test_health_reports_the_last_refreshs_outcome_error_duration_and_last_success(
    client: FlaskClient, refresh: RefreshState
) -> None:
    refresh.started(at=TIMESTAMP)
    refresh.finished(at=TIMESTAMP + 30.25, error=None)
    assert client.get("/health").get_json()["refresh"] == {
        "running": False, "last_started": TIMESTAMP, "last_duration_seconds": 30.25, "last_outcome": "success",
        "last_error": None, "last_success": TIMESTAMP + 30.25, "refreshes": 1, "failures": 0,
    }
    refresh.started(at=TIMESTAMP + 40)
    refresh.finished(at=TIMESTAMP + 45.5, error=f"CrawlError: GET {REGISTRY_URL}v2/_catalog: ConnectionError",
                     error_kind="CrawlError")
    response = client.get("/health")
    # Data still young enough: a failed refresh alone does not make the service unhealthy.
    assert (response.status_code, response.get_json()["status"]) == (200, "ok")
    assert response.get_json()["refresh"] == {
        "running": False, "last_started": TIMESTAMP + 40, "last_duration_seconds": 5.5, "last_outcome": "failure",
        "last_error": "CrawlError", "last_success": TIMESTAMP + 30.25,
        "refreshes": 2, "failures": 1,
    }


class ScriptedCrawler:
    """Answers each crawl with the next listing, or raises the next exception."""

    def __init__(self, *results: Listing | Exception) -> None:
        self._results = list(results)

    def crawl(self) -> Listing:
        result = self._results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    def cancel(self) -> None:
        pass


def test_health_counts_a_failed_repository_and_names_a_failed_crawls_kind_but_nothing_of_the_registry(
    refresh: RefreshState, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    repository_error = (f"group/secret: GET {REGISTRY_URL}v2/group/secret/tags/list: "
                        f"token for {SCOPE}: GitLab answered 500")
    listing = Listing((RepositoryListing("group/app", (ImageListing("1.0", ("layer",)),)),
                       RepositoryListing("group/secret", None)), {"layer": 10}, (repository_error,))
    crawl_error = CrawlerProcessError(
        f"CrawlError: no repository could be read; the first error: {repository_error}")
    holder = SnapshotHolder()
    refresher = Refresher(ScriptedCrawler(listing, crawl_error), holder, refresh, interval=3600, clock=clock)
    client = create_app(make_config(), holder, Directory(), refresh=refresh, clock=clock).test_client()

    with caplog.at_level(logging.INFO):
        assert refresher.run_once()
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["unreadable_repositories"] == 1
    assert (body["refresh"]["last_outcome"], body["refresh"]["last_error"]) == ("success", None)

    with caplog.at_level(logging.INFO):
        assert not refresher.run_once()
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200  # the previous data is still young
    assert body["unreadable_repositories"] == 1
    assert (body["refresh"]["last_outcome"], body["refresh"]["last_error"]) == ("failure", "CrawlError")
    assert body["refresh"]["failures"] == 1
    for name in ("group/secret", "group/app", "secret", REGISTRY_URL, "registry.example.com", SCOPE, "pull"):
        assert name not in response.text, name
    # The whole story stays in the log and in the refresh state, for the logs.
    assert caplog.text.count(repository_error) == 2
    assert refresh.current().error == f"CrawlerProcessError: {crawl_error}"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RuntimeError("registry on fire"), "RuntimeError"),
        (CrawlError(f"the catalog could not be read: GET {REGISTRY_URL}v2/_catalog: ConnectionError: refused"),
         "CrawlError"),
        (CrawlerProcessError("CrawlError: the catalog could not be read: RegistryError: ..."), "CrawlError"),
        (CrawlerProcessError("crawler process exited with code -9"), "CrawlerProcessError"),
        (KeyError("group/app"), "KeyError"),
        (CrawlError("group/AppError: unreadable"), "CrawlError"),
    ],
    ids=["plain", "crawl-error", "from-the-child", "child-killed", "key-error-naming-a-repository",
         "lowercase-path-is-no-type"],
)
def test_error_kind_is_the_innermost_exception_type_and_never_the_message(error: Exception, kind: str) -> None:
    assert error_kind(error) == kind


@pytest.mark.parametrize("has_data", [True, False], ids=["ok", "no-data"])
def test_health_needs_no_token_and_is_never_cached(refresh: RefreshState, clock: Clock, has_data: bool) -> None:
    holder = SnapshotHolder(SNAPSHOT if has_data else None)
    config = make_config(metrics_require_token=True)
    client = create_app(config, holder, Directory(), refresh=refresh, clock=clock).test_client()
    response = client.get("/health")
    assert response.status_code == (200 if has_data else 503)
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"


# --- /metrics ----------------------------------------------------------------------------------

def scrape_text(client: FlaskClient, headers: dict[str, str] | None = None) -> str:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    return response.text


def scrape(client: FlaskClient, headers: dict[str, str] | None = None) -> list[Metric]:
    return list(text_string_to_metric_families(scrape_text(client, headers)))


def static_token(token: str = METRICS_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PER_REPOSITORY = {PREFIX + "repository_size_bytes", PREFIX + "repository_disk_size_bytes",
                  PREFIX + "repository_unique_size_bytes", PREFIX + "repository_tags"}


def series(families: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    """The samples called ``name``, keyed by their label values."""
    return {tuple(sample.labels.values()): sample.value
            for family in families for sample in family.samples if sample.name == name}


def test_per_repository_figures_equal_the_snapshot_and_skip_the_unreadable_one(client: FlaskClient) -> None:
    families = scrape(client, bearer(client))
    assert series(families, PREFIX + "repository_size_bytes") == {
        ("group/app",): 300.0, ("group/base",): 100.0, ("empty",): 0.0}
    assert series(families, PREFIX + "repository_disk_size_bytes") == {
        ("group/app",): 250.0, ("group/base",): 100.0, ("empty",): 0.0}
    assert series(families, PREFIX + "repository_unique_size_bytes") == {
        ("group/app",): 200.0, ("group/base",): 0.0, ("empty",): 0.0}
    assert series(families, PREFIX + "repository_tags") == {
        ("group/app",): 2.0, ("group/base",): 1.0, ("empty",): 0.0}


@pytest.mark.parametrize(
    ("name", "value"),
    [("size_bytes", 400.0), ("disk_size_bytes", 350.0), ("repositories", 4.0), ("tags", 3.0),
     ("unreadable_repositories", 1.0), ("data_timestamp_seconds", TIMESTAMP)],
)
def test_registry_totals_equal_the_snapshot(client: FlaskClient, name: str, value: float) -> None:
    assert series(scrape(client), PREFIX + name) == {(): value}


def test_before_any_snapshot_there_are_no_usage_figures(refresh: RefreshState, clock: Clock) -> None:
    client = create_app(make_config(), SnapshotHolder(), Directory(), refresh=refresh, clock=clock).test_client()
    names = {family.name for family in scrape(client)}
    assert names == {PREFIX + "refresh_running", PREFIX + "refreshes", PREFIX + "refresh_failures",
                     PREFIX + "http_requests"}


def test_refresh_metrics_follow_the_refresh_state(client: FlaskClient, refresh: RefreshState) -> None:
    refresh.started(at=TIMESTAMP)
    families = scrape(client)
    assert series(families, PREFIX + "refresh_running") == {(): 1.0}
    assert series(families, PREFIX + "refreshes_total") == {(): 0.0}
    assert series(families, PREFIX + "refresh_duration_seconds") == {}
    assert series(families, PREFIX + "refresh_last_success_timestamp_seconds") == {}

    refresh.finished(at=TIMESTAMP + 30.25, error=None)
    refresh.started(at=TIMESTAMP + 40)
    refresh.finished(at=TIMESTAMP + 45.5, error="boom")
    families = scrape(client)
    assert series(families, PREFIX + "refresh_running") == {(): 0.0}
    assert series(families, PREFIX + "refreshes_total") == {(): 2.0}
    assert series(families, PREFIX + "refresh_failures_total") == {(): 1.0}
    assert series(families, PREFIX + "refresh_duration_seconds") == {(): 5.5}
    assert series(families, PREFIX + "refresh_last_success_timestamp_seconds") == {(): TIMESTAMP + 30.25}


def test_http_requests_are_counted_by_endpoint_and_status(client: FlaskClient) -> None:
    assert client.get("/repositories").status_code == 401
    assert client.get("/repositories").status_code == 401
    assert client.get("/health").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    name = PREFIX + "http_requests_total"
    assert series(scrape(client), name) == {
        ("repositories", "401"): 2.0, ("health", "200"): 1.0, ("unmatched", "404"): 1.0,
    }
    # A scrape is counted once it has been answered, so it shows up in the next one.
    assert series(scrape(client), name)[("metrics", "200")] == 1.0


def test_registry_requests_callback_is_read_at_each_scrape(
    holder: SnapshotHolder, refresh: RefreshState, clock: Clock
) -> None:
    counts = {"200": 7, "401": 2, "error": 1}
    metrics = Metrics(holder, refresh, registry_requests=lambda: dict(counts))
    client = create_app(make_config(), holder, Directory(), refresh=refresh, metrics=metrics,
                        clock=clock).test_client()
    name = PREFIX + "registry_requests_total"
    assert series(scrape(client), name) == {("200",): 7.0, ("401",): 2.0, ("error",): 1.0}
    counts["200"] = 9
    counts["503"] = 4
    assert series(scrape(client), name) == {("200",): 9.0, ("401",): 2.0, ("503",): 4.0, ("error",): 1.0}


def test_without_a_registry_requests_callback_there_is_no_such_metric(client: FlaskClient) -> None:
    assert series(scrape(client), PREFIX + "registry_requests_total") == {}


UNIT_WORDS = {"size": "_bytes", "bytes": "_bytes", "duration": "_seconds", "timestamp": "_seconds",
              "seconds": "_seconds"}


def test_every_metric_name_follows_prometheus_conventions(
    holder: SnapshotHolder, refresh: RefreshState, clock: Clock
) -> None:
    metrics = Metrics(holder, refresh, registry_requests=lambda: {"200": 1})
    client = create_app(make_config(), holder, Directory(), refresh=refresh, metrics=metrics,
                        clock=clock).test_client()
    refresh.started(at=TIMESTAMP)
    refresh.finished(at=TIMESTAMP + 1, error=None)
    client.get("/health")
    text = scrape_text(client, bearer(client))
    families = list(text_string_to_metric_families(text))
    names = [family.name for family in families]
    assert len(names) == len(set(names))
    # Every kind of metric the service has is in this scrape, so the checks below see them all.
    assert {PREFIX + "repository_size_bytes", PREFIX + "refresh_duration_seconds", PREFIX + "http_requests",
            PREFIX + "registry_requests", PREFIX + "refresh_last_success_timestamp_seconds"} <= set(names)
    for family in families:
        assert re.fullmatch(r"gitlab_registry_usage_[a-z][a-z0-9_]*[a-z]", family.name), family.name
        assert family.documentation, family.name
        assert "__" not in family.name
        if family.type == "counter":
            assert f"# TYPE {family.name}_total counter\n" in text
            assert {sample.name for sample in family.samples} == {family.name + "_total"}
        else:
            assert family.type == "gauge", family.name
            assert not family.name.endswith("_total"), family.name
        if family.name.endswith("_created"):  # prometheus_client's creation time of each counter series
            continue
        for word, unit in UNIT_WORDS.items():
            if word in family.name.removeprefix(PREFIX):
                assert family.name.endswith(unit), family.name


def test_metrics_are_open_by_default(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 200


def _names_of_the_registry() -> list[str]:
    """Every name the public body must not carry: repositories, the registry's URL, token scopes."""
    names = [repository.name for repository in SNAPSHOT.repositories]
    return [*names, *SNAPSHOT.errors, REGISTRY_URL, "registry.example.com", SCOPE, 'repository="']


def test_public_metrics_carry_no_per_repository_series_and_no_repository_name(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    assert not PER_REPOSITORY & {family.name for family in families}
    for name in _names_of_the_registry():
        assert name not in response.text, name
    # The registry-wide figures and the process's own series stay public.
    assert series(families, PREFIX + "repositories") == {(): 4.0}
    assert series(families, PREFIX + "unreadable_repositories") == {(): 1.0}
    assert series(families, PREFIX + "refreshes_total") == {(): 0.0}
    assert response.headers["Cache-Control"] == "no-store"


def test_a_token_from_auth_token_opens_the_per_repository_series(client: FlaskClient) -> None:
    response = client.get("/metrics", headers=bearer(client))
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    assert PER_REPOSITORY <= {family.name for family in families}
    assert series(families, PREFIX + "repository_size_bytes")[("group/app",)] == 300.0
    assert series(families, PREFIX + "repositories") == {(): 4.0}
    # Authorized bodies name repositories: never kept by a cache, never handed to another client.
    assert (response.headers["Cache-Control"], response.headers["Vary"]) == ("no-store", "Authorization")


def test_the_static_metrics_token_opens_the_per_repository_series(
    holder: SnapshotHolder, refresh: RefreshState, clock: Clock
) -> None:
    client = create_app(make_config(metrics_token=METRICS_TOKEN), holder, Directory(), refresh=refresh,
                        clock=clock).test_client()
    families = scrape(client, static_token())
    assert series(families, PREFIX + "repository_disk_size_bytes") == {
        ("group/app",): 250.0, ("group/base",): 100.0, ("empty",): 0.0}
    assert series(families, PREFIX + "repository_tags")[("group/app",)] == 2.0
    # Tokens from /auth_token keep working next to it.
    assert PER_REPOSITORY <= {family.name for family in scrape(client, bearer(client))}


def test_the_static_metrics_token_opens_nothing_but_metrics(
    holder: SnapshotHolder, refresh: RefreshState, clock: Clock
) -> None:
    client = create_app(make_config(metrics_token=METRICS_TOKEN), holder, Directory(), refresh=refresh,
                        clock=clock).test_client()
    for _ in range(2):  # the second time as well: a scrape must not make it a token the data endpoints accept
        assert client.get("/metrics", headers=static_token()).status_code == 200
        assert client.get("/repositories", headers=static_token()).status_code == 401
        assert client.get("/repositories/group%2Fapp", headers=static_token()).status_code == 401


def _token_of_another_key() -> str:
    other = Config(general=GeneralConfig(), ldap=LdapConfig(), registry=RegistryConfig(),
                   jwt=JwtConfig(secret_key="another-secret-" + "o" * 40, auth_token_expires=datetime.timedelta(1)))
    client = create_app(other, SnapshotHolder(SNAPSHOT), Directory()).test_client()
    return bearer(client)["Authorization"].removeprefix("Bearer ")


@pytest.mark.parametrize(
    "credential",
    ["not.a.token", METRICS_TOKEN[:-1] + "x", METRICS_TOKEN + "x", "", "other-key"],
    ids=["garbage", "static-token-one-character-off", "static-token-longer", "empty", "jwt-of-another-key"],
)
@pytest.mark.parametrize("require_token", [False, True], ids=["open", "require-token"])
def test_a_wrong_bearer_credential_is_401_not_the_public_body(
    holder: SnapshotHolder, refresh: RefreshState, clock: Clock, credential: str, require_token: bool
) -> None:
    client = create_app(make_config(metrics_token=METRICS_TOKEN, metrics_require_token=require_token), holder,
                        Directory(), refresh=refresh, clock=clock).test_client()
    if credential == "other-key":
        credential = _token_of_another_key()
    response = client.get("/metrics", headers=static_token(credential))
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"msg"}
    assert PREFIX not in response.text


def test_a_basic_header_gets_the_public_body(client: FlaskClient) -> None:
    # Chromium sends the Basic credentials of /auth_token with later requests to the same directory.
    response = client.get("/metrics", headers={"Authorization": "Basic " + base64.b64encode(b"alice:right").decode()})
    assert response.status_code == 200
    assert not PER_REPOSITORY & {family.name for family in text_string_to_metric_families(response.text)}


def test_metrics_can_require_a_token(holder: SnapshotHolder, refresh: RefreshState, clock: Clock) -> None:
    client = create_app(make_config(metrics_require_token=True, metrics_token=METRICS_TOKEN), holder, Directory(),
                        refresh=refresh, clock=clock).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.mimetype == "application/json"
    assert refused.get_json() == {"msg": "Missing Authorization Header"}
    assert client.get("/metrics", headers={"Authorization": "Bearer not.a.token"}).status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(b"alice:right").decode()}
    assert client.get("/metrics", headers=basic).status_code == 401
    families = list(text_string_to_metric_families(scrape_text(client, bearer(client))))
    assert series(families, PREFIX + "repositories") == {(): 4.0}
    assert series(families, PREFIX + "repository_size_bytes")[("group/app",)] == 300.0
    assert series(families, PREFIX + "http_requests_total")[("metrics", "401")] == 3.0
    families = scrape(client, static_token())
    assert series(families, PREFIX + "repository_size_bytes")[("group/base",)] == 100.0


class CountingRepositories(tuple[RepositoryUsage, ...]):
    """A snapshot's repositories that count how often they are walked."""

    walks = 0

    def __iter__(self) -> Iterator[RepositoryUsage]:
        self.walks += 1
        return super().__iter__()


def test_the_snapshots_series_are_rendered_once_per_snapshot_and_the_live_ones_at_each_scrape(
    refresh: RefreshState, clock: Clock
) -> None:
    repositories = CountingRepositories(SNAPSHOT.repositories)
    snapshot = Snapshot(TIMESTAMP, repositories)
    holder = SnapshotHolder(snapshot)
    metrics = Metrics(holder, refresh)
    client = create_app(make_config(metrics_token=METRICS_TOKEN), holder, Directory(), refresh=refresh,
                        metrics=metrics, clock=clock).test_client()
    walks = repositories.walks  # building the snapshot's index walked it once
    rendered = metrics.snapshot_text(snapshot)
    assert repositories.walks == walks + 1
    for headers in ({}, static_token(), {}, static_token()):
        scrape_text(client, headers)
    assert repositories.walks == walks + 1, "a scrape walked the snapshot again"
    assert metrics.snapshot_text(snapshot) is rendered
    assert rendered.per_repository in scrape_text(client, static_token()).encode()
    assert rendered.registry_wide in scrape_text(client).encode()
    # The live families still change from one scrape to the next.
    assert series(scrape(client), PREFIX + "http_requests_total")[("metrics", "200")] == 6.0
    refresh.started(at=TIMESTAMP)
    assert series(scrape(client), PREFIX + "refresh_running") == {(): 1.0}

    # A new snapshot is rendered once, at its first scrape.
    replacement = Snapshot(TIMESTAMP + 60, (RepositoryUsage("new", 5, 5, 5, (TagUsage("t", 5, 5, 5),)),))
    holder.replace(replacement)
    families = scrape(client, static_token())
    assert series(families, PREFIX + "repository_size_bytes") == {("new",): 5.0}
    assert series(families, PREFIX + "data_timestamp_seconds") == {(): TIMESTAMP + 60}
    assert metrics.snapshot_text(replacement) is metrics.snapshot_text(replacement) is not rendered


def test_two_apps_in_one_process_do_not_share_counters(refresh: RefreshState, clock: Clock) -> None:
    other = Snapshot(TIMESTAMP, (RepositoryUsage("other", 7, 7, 7, (TagUsage("t", 7, 7, 7),)),))
    first = create_app(make_config(), SnapshotHolder(SNAPSHOT), Directory(), refresh=refresh, clock=clock)
    second = create_app(make_config(metrics_token=METRICS_TOKEN), SnapshotHolder(other), Directory(), clock=clock)
    first_client, second_client = first.test_client(), second.test_client()
    first_client.get("/repositories")
    first_client.get("/repositories")
    refresh.started(at=TIMESTAMP)
    refresh.finished(at=TIMESTAMP + 1, error=None)

    second_families = scrape(second_client, static_token())
    assert series(second_families, PREFIX + "http_requests_total") == {}
    assert series(second_families, PREFIX + "refreshes_total") == {(): 0.0}
    assert series(second_families, PREFIX + "repository_size_bytes") == {("other",): 7.0}
    first_families = scrape(first_client)
    assert series(first_families, PREFIX + "http_requests_total") == {("repositories", "401"): 2.0}
    assert series(first_families, PREFIX + "refreshes_total") == {(): 1.0}
    # Nothing registers with prometheus_client's process-wide registry.
    assert PREFIX.encode() not in generate_latest(REGISTRY)
