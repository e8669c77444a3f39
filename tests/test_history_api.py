"""The history endpoints through the Flask app, on a real history file written by recording snapshots."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitlab_registry_usage_rest.growth import DAY_MS, growth_per_day
from gitlab_registry_usage_rest.history import History
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from tests.support.histories import snapshot
from tests.support.webapp import FakeDirectory, basic, bearer, get_json, make_config

T0 = 1_700_006_400.0
DAY = 86_400.0
NOW = T0 + 10 * DAY


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    store = History(str(tmp_path / "history.sqlite3"))
    # Ten days: a/grows gains 1000 bytes a day, a/steady never changes, old/gone is deleted on day 5.
    for day in range(11):
        repositories: dict[str, list[int] | None] = {"a/grows": [10_000 + 1000 * day], "a/steady": [500]}
        if day < 5:
            repositories["old/gone"] = [42]
        if day >= 8:
            repositories["a/history"] = [7]  # a repository whose name ends in /history
        store.record(snapshot(T0 + day * DAY, repositories))
    yield store
    store.close()


@pytest.fixture
def holder(history: History) -> SnapshotHolder:
    return SnapshotHolder(snapshot(NOW, {"a/grows": [20_000], "a/steady": [500], "a/history": [7]}))


@pytest.fixture
def app(holder: SnapshotHolder, history: History) -> Flask:
    config = make_config(storage_capacity=30_000 + 10_500)
    return create_app(config, holder, FakeDirectory(), clock=lambda: NOW, history=history)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    return bearer(client)


@pytest.mark.parametrize("url", ["/history", "/repositories/a%2Fgrows/history", "/groups/a/history",
                                 "/repositories?window=7d"])
def test_history_needs_a_token(client: FlaskClient, url: str) -> None:
    assert client.get(url).status_code == 401


def test_registry_history_has_the_totals_the_trend_and_the_days_until_full(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = get_json(client, "/history?since=3d", auth)
    disks = [point["disk_size"] for point in body["points"]]
    assert disks == [17_500, 18_507, 19_507, 20_507]
    assert body["points"][0] == {"timestamp": "2023-11-22T00:00:00Z", "size": 17_500, "disk_size": 17_500,
                                 "repository_count": 2, "tag_count": 2}
    rate = growth_per_day([(day * DAY_MS, disk) for day, disk in enumerate(disks)])
    assert rate is not None and body["growth_per_day"] == pytest.approx(rate, abs=0.1)
    assert body["days_until_full"] == pytest.approx((40_500 - 20_507) / rate, abs=0.1)
    assert len(get_json(client, "/history", auth)["points"]) == 11, "30 days by default"


def test_repository_history_lists_changes_only(client: FlaskClient, auth: dict[str, str]) -> None:
    grows = get_json(client, "/repositories/a%2Fgrows/history?since=2023-11-22&until=2023-11-23T00:00:00Z", auth)
    assert [(p["timestamp"], p["disk_size"]) for p in grows["points"]] == [
        ("2023-11-22T00:00:00Z", 17_000), ("2023-11-23T00:00:00Z", 18_000)]
    assert grows["growth_per_day"] == pytest.approx(1000)
    steady = get_json(client, "/repositories/a/steady/history?since=3d", auth)
    assert [p["timestamp"] for p in steady["points"]] == ["2023-11-15T00:00:00Z"], "the point in force, once"
    gone = get_json(client, "/repositories/old%2Fgone/history", auth)
    assert gone["points"][-1] == {"timestamp": "2023-11-20T00:00:00Z", "gone": True}


def test_a_repository_named_history_is_still_the_repository(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories/a/history", auth)["name"] == "a/history"
    assert [p["disk_size"] for p in get_json(client, "/repositories/a/history/history", auth)["points"]] == [7]


def test_group_history_has_the_groups_own_points(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/groups/a/history?since=2d", auth)
    assert [p["disk_size"] for p in body["points"]] == [18_507, 19_507, 20_507]


def test_unknown_names_are_404(client: FlaskClient, auth: dict[str, str]) -> None:
    get_json(client, "/repositories/nothing/history", auth, 404)
    get_json(client, "/groups/nothing/history", auth, 404)


@pytest.mark.parametrize("query", ["since=yesterday", "until=31d-ago", "since=1d&until=2d", "window=0d",
                                   "window=soon", "since=" + "9" * 80])
def test_bad_windows_are_400_with_a_message(client: FlaskClient, auth: dict[str, str], query: str) -> None:
    url = "/repositories?" + query if query.startswith("window") else "/history?" + query
    assert get_json(client, url, auth, 400)["message"]


def test_repositories_window_ranks_by_growth(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/repositories?window=3d&sort=-growth", auth)
    items = [(item["name"], item["growth"]) for item in body["_embedded"]["items"]]
    assert items == [("a/grows", 3000), ("a/history", 7), ("a/steady", 0)]
    assert body["total_growth"] == 3007
    groups = get_json(client, "/groups?window=3d&sort=-growth&links=true", auth)
    assert [(item["name"], item["growth"]) for item in groups["_embedded"]["items"]] == [("a", 3007)]
    assert groups["_links"]["items"] == [{"href": "/groups/a", "title": "a"}]


def test_without_history_the_endpoints_say_so(holder: SnapshotHolder) -> None:
    app = create_app(make_config(), holder, FakeDirectory())
    with app.test_client() as client:
        token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
        response = client.get("/history", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404
        assert "history_file" in response.get_json()["message"]


def test_growth_as_csv_has_the_listings_columns_and_growth(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/repositories?window=3d&sort=-growth&format=csv", headers=auth)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "repositories-growth-3d.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode())))
    assert rows == [["name", "size", "disk_size", "unique_size", "tag_count", "growth"],
                    ["a/grows", "20000", "20000", "20000", "1", "3000"],
                    ["a/history", "7", "7", "7", "1", "7"],
                    ["a/steady", "500", "500", "500", "1", "0"]]
    groups = client.get("/groups?window=3d&format=csv", headers=auth)
    assert list(csv.reader(io.StringIO(groups.data.decode())))[1:] == [["a", "20507", "20507", "20507", "3", "3",
                                                                         "3007"]]


def test_a_page_of_the_ranking_is_the_rankings_start(client: FlaskClient, auth: dict[str, str]) -> None:
    """A limited page is picked without sorting everything; it must be what the whole order starts with."""
    whole = get_json(client, "/repositories?window=30d&sort=growth", auth)["_embedded"]["items"]
    for sort, expected in (("growth", whole), ("-growth", sorted(whole, key=lambda item: -item["growth"]))):
        page = get_json(client, f"/repositories?window=30d&sort={sort}&limit=2&offset=1", auth)
        assert [item["name"] for item in page["_embedded"]["items"]] == [item["name"] for item in expected[1:3]]
        assert page["repository_count"] == 3


def test_a_prefix_limits_the_ranking_and_its_total(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/repositories?window=3d&sort=-growth&prefix=a/s", auth)
    assert [(item["name"], item["growth"]) for item in body["_embedded"]["items"]] == [("a/steady", 0)]
    assert (body["total_growth"], body["repository_count"]) == (0, 1)
