"""The history end to end: the real registry, the real service with its real SQLite history file, over HTTP.

A push between two refreshes (SIGHUP) must show as two points of the repository's history exactly the pushed
bytes apart, lead the growth ranking with exactly those bytes, draw the dashboard's sparkline in a real
browser, and still be there after a restart. Expected figures come from what was pushed
(``tests.support.pushed.expected_figures``, by brute force), never from the package's arithmetic.
"""

from __future__ import annotations

import csv
import io
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.support.browser import log_in, screenshot
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import until
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry, expected_figures
from tests.support.pusher import Pusher
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd

pytestmark = [pytest.mark.registry, pytest.mark.slapd]

APP = "hist/app"
LAYERS = {"base": 1000, "app-v1": 300, "other": 200, "app-v2": 4321, "extra": 555, "later": 777}


@dataclass
class Stand:
    registry: DistributionRegistry
    pusher: Pusher
    content: dict[str, bytes]

    def push(self, repo: str, tag: str, layers: list[str]) -> None:
        self.pusher.push_image(repo, tag, [self.content[name] for name in layers])

    def expected(self) -> dict[str, dict[str, object]]:
        """Every repository's figures as pushed so far, in the registry's own order."""
        tags: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {}
        for repo in self.pusher.catalog():
            tags[repo] = {tag: tuple((layer["digest"], layer["size"]) for layer in
                                     self.pusher.get_manifest(repo, tag).json()["layers"])
                          for tag in self.pusher.tags(repo)}
        return expected_figures(PushedRegistry(tags))


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[Stand]:
    with DistributionRegistry(tmp_path_factory.mktemp("history-registry"), gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        content = {name: Pusher.make_layer(f"history-{name}", size) for name, size in LAYERS.items()}
        built = Stand(registry, pusher, content)
        built.push(APP, "v1", ["base", "app-v1"])
        built.push("hist/other", "v1", ["other"])
        yield built


def disk(expected: dict[str, dict[str, object]], repo: str) -> int:
    value = expected[repo]["disk_size"]
    assert isinstance(value, int)
    return value


def get_json(service: ServiceProcess, path: str, headers: dict[str, str]) -> Any:
    response = service.get(path, headers=headers)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
    return response.json()


def points(service: ServiceProcess, repo: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get_json(service, f"/repositories/{repo.replace('/', '%2F')}/history",
                                           headers)["points"]
    return found


def refreshed(service: ServiceProcess, headers: dict[str, str], after: float) -> float:
    """SIGHUP, then the new snapshot's time once it is served."""
    service.send_signal(signal.SIGHUP)
    return float(until(lambda: (stamp := get_json(service, "/repositories", headers)["timestamp"]) > after and stamp,
                       "a new snapshot after SIGHUP", 30, service.log))


@dataclass
class AfterPush:
    service: ServiceProcess
    headers: dict[str, str]
    first: float  # the two snapshots' times
    second: float
    before: dict[str, dict[str, object]]  # the figures pushed at each
    after: dict[str, dict[str, object]]


@pytest.fixture(scope="module")
def after_push(tmp_path_factory: pytest.TempPathFactory, stand: Stand, gitlab: GitLabTokenEndpoint,
               slapd: Slapd) -> Iterator[AfterPush]:
    """The service's first refresh, a push of two new layers into APP, a second refresh (SIGHUP), each recorded."""
    workdir = tmp_path_factory.mktemp("history-service")
    config = service_config(workdir, stand.registry, gitlab, slapd)
    with ServiceProcess(workdir, ["-c", str(config)]) as service:
        user = slapd.users["alice"]
        headers = service.login(user.uid, user.password)
        first = service.wait_for_data(headers)
        until(lambda: len(points(service, APP, headers)) == 1, "the first refresh recorded", 30, service.log)
        before = stand.expected()
        # The ranking's window below starts between the two refreshes, to the second: they must be one apart.
        until(lambda: time.time() >= first + 1.5, "a second to pass")
        stand.push(APP, "v2", ["base", "app-v2", "extra"])
        second = refreshed(service, headers, first)
        until(lambda: len(points(service, APP, headers)) == 2, "the second refresh recorded", 30, service.log)
        yield AfterPush(service, headers, first, second, before, stand.expected())


def test_a_push_between_two_refreshes_is_two_points_exactly_the_pushed_bytes_apart(after_push: AfterPush) -> None:
    service, headers = after_push.service, after_push.headers
    pushed = LAYERS["app-v2"] + LAYERS["extra"]
    assert disk(after_push.after, APP) - disk(after_push.before, APP) == pushed, "the registry's own figures"
    earlier, later = points(service, APP, headers)
    assert (earlier["disk_size"], later["disk_size"]) == (disk(after_push.before, APP), disk(after_push.after, APP))
    assert later["disk_size"] - earlier["disk_size"] == pushed
    assert (earlier["tag_count"], later["tag_count"]) == (1, 2)
    # An unchanged repository's second point is implied, not repeated; the registry's totals have both refreshes.
    assert len(points(service, "hist/other", headers)) == 1
    totals = get_json(service, "/history", headers)["points"]
    assert [point["disk_size"] for point in totals] == [
        sum(disk(figures, repo) for repo in figures) for figures in (after_push.before, after_push.after)]
    group = get_json(service, "/groups/hist/history", headers)["points"]
    assert group[-1]["disk_size"] - group[0]["disk_size"] == pushed


def test_the_pushed_repository_leads_the_growth_ranking_with_the_pushed_bytes(after_push: AfterPush) -> None:
    service, headers = after_push.service, after_push.headers
    pushed = LAYERS["app-v2"] + LAYERS["extra"]
    # A window starting between the two refreshes (a test cannot wait the hour of window=1h).
    seconds = math.floor(after_push.second - after_push.first)
    ranking = get_json(service, f"/repositories?window={seconds}s&sort=-growth", headers)
    assert [(item["name"], item["growth"]) for item in ranking["_embedded"]["items"]] == [
        (APP, pushed), ("hist/other", 0)]
    assert ranking["total_growth"] == pushed
    # Over the last hour both are new to the history, which starts within it: each grew by all it holds.
    hour = get_json(service, "/repositories?window=1h&sort=-growth", headers)
    assert [(item["name"], item["growth"]) for item in hour["_embedded"]["items"]] == [
        (APP, disk(after_push.after, APP)), ("hist/other", disk(after_push.after, "hist/other"))]
    exported = service.get(f"/repositories?window={seconds}s&sort=-growth&format=csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(row["name"], int(row["growth"])) for row in rows] == [(APP, pushed), ("hist/other", 0)]


def test_the_dashboard_draws_a_sparkline_after_two_refreshes(
    after_push: AfterPush, browser: Browser, slapd: Slapd, tmp_path: Path
) -> None:
    service = after_push.service
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        user = slapd.users["alice"]
        log_in(page, service.url, user.uid, user.password)
        line = page.wait_for_selector("#trend svg.sparkline polyline")
        assert line is not None
        pairs = str(line.get_attribute("points")).split()
        assert len(pairs) >= 4, "a step: two points, each held until the next"
        sparkline = page.locator("#trend svg.sparkline")
        before = sum(disk(after_push.before, repo) for repo in after_push.before)
        after = sum(disk(after_push.after, repo) for repo in after_push.after)
        assert (sparkline.get_attribute("data-first"), sparkline.get_attribute("data-last")) == (str(before),
                                                                                                 str(after))
        box = sparkline.bounding_box()
        assert box is not None and box["width"] > 600 and box["height"] >= 40, "drawn, not collapsed"
        # The history is younger than a week: the growers count from its start, and say so.
        growers = page.locator("#growers tr[data-repository]")
        assert [(growers.nth(n).get_attribute("data-repository"), growers.nth(n).get_attribute("data-growth"))
                for n in range(growers.count())] == [(APP, str(LAYERS["app-v2"] + LAYERS["extra"]))]
        assert "when the history began" in page.inner_text("#growth-section")
        screenshot(page, tmp_path, "history-dashboard")
        page.goto(service.url + "/repositories/hist%2Fapp")
        assert page.locator("svg.sparkline polyline").count() == 1
    finally:
        context.close()


def test_the_history_survives_a_restart_and_is_not_repeated(
    tmp_path: Path, stand: Stand, gitlab: GitLabTokenEndpoint, slapd: Slapd
) -> None:
    config = service_config(tmp_path, stand.registry, gitlab, slapd)
    user = slapd.users["alice"]
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        headers = service.login(user.uid, user.password)
        first = service.wait_for_data(headers)
        until(lambda: len(get_json(service, "/history", headers)["points"]) == 1, "recorded", 30, service.log)
        stand.push("hist/later", "v1", ["later"])
        refreshed(service, headers, first)
        until(lambda: len(get_json(service, "/history", headers)["points"]) == 2, "recorded", 30, service.log)
        code, _ = service.stop(signal.SIGTERM)
        assert code == 0
    recorded = points_of(tmp_path, config, user.uid, user.password)
    assert [len(recorded[repo]) for repo in (APP, "hist/later")] == [1, 1]
    assert len(recorded["/history"]) == 3, "the restart's first refresh adds a totals row, and nothing else"
    assert recorded[APP][0]["disk_size"] == disk(stand.expected(), APP)
    assert list(tmp_path.glob("history.sqlite3.unreadable-*")) == []


def points_of(workdir: Path, config: Path, uid: str, password: str) -> dict[str, list[dict[str, Any]]]:
    """The history a restarted service serves, once its own first refresh is recorded."""
    with ServiceProcess(workdir, ["-c", str(config)]) as service:
        headers = service.login(uid, password)
        served = {repo: points(service, repo, headers) for repo in (APP, "hist/later")}
        assert all(served.values()), "served from the file before any refresh"

        def three() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = get_json(service, "/history", headers)["points"]
            return found if len(found) == 3 else None

        served["/history"] = until(three, "the restart's refresh recorded", 30, service.log)
        served.update({repo: points(service, repo, headers) for repo in (APP, "hist/later")})
        return served


def test_an_unreadable_history_file_is_moved_aside_and_the_service_serves_on(
    tmp_path: Path, stand: Stand, gitlab: GitLabTokenEndpoint, slapd: Slapd
) -> None:
    garbage = b"this is not an SQLite file\n" * 200
    (tmp_path / "history.sqlite3").write_bytes(garbage)
    config = service_config(tmp_path, stand.registry, gitlab, slapd)
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        user = slapd.users["alice"]
        headers = service.login(user.uid, user.password)
        service.wait_for_data(headers)
        totals = until(lambda: get_json(service, "/history", headers)["points"] or None, "recorded", 30, service.log)
        assert totals[0]["disk_size"] == sum(disk(stand.expected(), repo) for repo in stand.expected())
        [aside] = tmp_path.glob("history.sqlite3.unreadable-*")
        assert aside.read_bytes() == garbage
        assert "moved to" in service.log()
