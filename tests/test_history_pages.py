"""The history on the pages: sparklines (pure SVG), the dashboard's "grew most this week", and the pages of a
Flask app recording into a real history file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token

from gitlab_registry_usage_rest.history import History
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web import sparkline
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.sparkline import Grower, Growers, Trend, growers_section, sparkline_svg, steps
from tests.support.histories import snapshot
from tests.support.webapp import FakeDirectory, make_config

T0 = 1_700_006_400.0
DAY = 86_400.0
NOW = T0 + 40 * DAY
POINTS = re.compile(r'<polyline points="([^"]*)"')
HOSTILE = ['<script>alert(1)</script>', '"><svg onload=alert(1)>', "a/b'&c", "=cmd|' /C calc'!A0"]


def coordinates(svg: str) -> list[list[tuple[float, float]]]:
    return [[(float(x), float(y)) for x, y in (pair.split(",") for pair in line.split())]
            for line in POINTS.findall(svg)]


def test_a_sparkline_is_a_step_line_across_its_span() -> None:
    trend = Trend(since=1000.0, until=2000.0, points=((500.0, 10), (1500.0, 30), (1750.0, 20)))
    svg = sparkline_svg(trend, "Disk size")
    [line] = coordinates(svg)
    # In force at the start (moved to it), then each change as a step; highest at the top, lowest at the bottom.
    top, bottom = sparkline.PAD, sparkline.HEIGHT - sparkline.PAD
    assert line == [(0.0, bottom), (300.0, bottom), (300.0, top), (450.0, top), (450.0, (top + bottom) / 2),
                    (600.0, (top + bottom) / 2)]
    assert 'data-first="10"' in svg and 'data-last="20"' in svg and 'data-points="3"' in svg
    assert 'class="sparkline"' in svg and 'role="img"' in svg


def test_the_refresh_that_ends_the_span_is_drawn_although_kept_to_the_millisecond() -> None:
    """The history rounds times to milliseconds; the snapshot's own time may be a fraction of one earlier."""
    trend = Trend(since=1000.0, until=2000.0001, points=((1000.0, 1), (2000.0004, 2)))
    assert 'data-last="2"' in sparkline_svg(trend, "Disk size")


def test_a_single_refresh_draws_no_line() -> None:
    assert sparkline_svg(Trend(0.0, 100.0, ((50.0, 7),)), "Disk size") == ""
    assert sparkline_svg(Trend(0.0, 100.0, ()), "Disk size") == ""


def test_a_repository_gone_for_a_while_leaves_a_gap() -> None:
    trend = Trend(0.0, 100.0, ((0.0, 5), (40.0, None), (70.0, 9)))
    assert len(coordinates(sparkline_svg(trend, "Disk size"))) == 2


def test_however_long_the_history_the_sparkline_draws_a_bounded_number_of_steps() -> None:
    trend = Trend(0.0, 100_000.0, tuple((float(moment), moment % 97) for moment in range(100_000)))
    drawn = steps(trend)
    assert len(drawn) == sparkline.MAX_POINTS
    assert drawn[-1][1] == 99_999 % 97, "each slice ends with its last value"
    [line] = coordinates(sparkline_svg(trend, "Disk size"))
    assert len(line) == 2 * sparkline.MAX_POINTS


@pytest.mark.parametrize("name", HOSTILE, ids=["script", "attribute", "quotes", "formula"])
def test_names_are_escaped_and_nothing_needs_a_style_or_a_script(name: str) -> None:
    picture = sparkline_svg(Trend(0.0, 10.0, ((0.0, 1), (5.0, 2))), name)
    table = growers_section(Growers(0.0, (Grower(name, 5, 10),)), "/usage")
    for html in (picture, table):
        assert "<script" not in html.lower() and "style=" not in html.lower()
    assert "<" not in re.sub(r"<[a-z/][^<>]*>", "", table.replace(f">{escaped(name)}<", "><")), "no raw markup"
    assert f'data-repository="{escaped(name)}"' in table


def escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") \
        .replace("'", "&#x27;")


def test_the_growers_are_listed_in_the_order_given_with_links_and_figures() -> None:
    table = growers_section(Growers(0.0, (Grower("a/big", 3000, 9000), Grower("b/small", 10, 20))), "/usage")
    assert re.findall(r'data-repository="([^"]+)" data-growth="(\d+)"', table) == [("a/big", "3000"), ("b/small", "10")]
    assert 'href="/usage/repositories/a%2Fbig"' in table
    assert "No repository grew in the last 7 days" in growers_section(Growers(0.0, ()), "")
    assert "when the history began" in growers_section(Growers(0.0, (), begun=True), "")
    assert growers_section(None, "") == ""


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    store = History(str(tmp_path / "history.sqlite3"))
    # Forty days: a/grows gains 1000 bytes a day, a/steady never changes, b/new appears three days before NOW.
    for day in range(40):
        repositories: dict[str, list[int] | None] = {"a/grows": [10_000 + 1000 * day], "a/steady": [500]}
        if day >= 37:
            repositories["b/new"] = [64]
        store.record(snapshot(T0 + day * DAY, repositories))
    yield store
    store.close()


CURRENT = {"a/grows": [50_000], "a/steady": [500], "b/new": [64]}


@pytest.fixture
def client(history: History) -> Iterator[FlaskClient]:
    app = create_app(make_config(), SnapshotHolder(snapshot(NOW, CURRENT)), FakeDirectory(),
                     clock=lambda: NOW + 60, history=history)
    with app.test_client() as client:
        with app.app_context():
            client.set_cookie("access_token_cookie", create_access_token(identity="alice"))
        yield client


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 200, response.data[:300]
    assert "style-src 'sha256-" in response.headers["Content-Security-Policy"]
    return response.get_data(as_text=True)


def test_the_dashboard_shows_the_registrys_disk_size_over_30_days_and_who_grew_most(client: FlaskClient) -> None:
    body = page(client, "/")
    svg = re.search(r'<svg class="sparkline".*?</svg>', body)
    assert svg is not None
    # The registry 30 days before NOW (day 10: 20,000 + 500), and the snapshot being served last.
    assert 'data-first="20500"' in svg.group(0) and 'data-last="50564"' in svg.group(0)
    growers = re.findall(r'<tr data-repository="([^"]+)" data-growth="(-?\d+)"', body)
    # a/grows: 50,000 now, 43,000 at day 33 (a week before NOW); b/new did not exist then.
    assert growers == [("a/grows", "7000"), ("b/new", "64")], "a/steady did not grow"


def test_repository_and_group_pages_show_their_disk_size_over_30_days(client: FlaskClient) -> None:
    grows = page(client, "/repositories/a%2Fgrows")
    assert 'data-first="20000"' in grows and 'data-last="50000"' in grows
    assert "Disk size over the last 30 days" in grows
    group = page(client, "/groups/a")
    assert 'data-first="20500"' in group and 'data-last="50500"' in group
    new = page(client, "/repositories/b%2Fnew")
    assert 'data-first="64"' in new and 'data-last="64"' in new, "a new repository's line starts when it does"


def test_without_history_the_pages_show_no_history(history: History) -> None:
    app = create_app(make_config(), SnapshotHolder(snapshot(NOW, CURRENT)), FakeDirectory(), clock=lambda: NOW)
    with app.test_client() as client:
        with app.app_context():
            client.set_cookie("access_token_cookie", create_access_token(identity="alice"))
        for path in ("/", "/repositories/a%2Fgrows", "/groups/a"):
            body = page(client, path)
            assert "sparkline" not in body.replace("svg.sparkline", "") and 'id="growers"' not in body


def test_a_history_younger_than_the_span_is_drawn_from_its_start_and_says_so() -> None:
    young = sparkline.trend_section(Trend(1_700_000_000.0, 1_700_000_060.0, ((1_700_000_000.0, 5),
                                                                           (1_700_000_030.0, 9)), begun=True),
                                    "Disk used")
    assert "Disk used since 2023-11-14, when the history began" in young
    [line] = coordinates(young)
    assert (line[0][0], line[-1][0]) == (0.0, sparkline.WIDTH), "across the whole width"
    full = sparkline.trend_section(Trend(0.0, 30 * DAY, ((0.0, 5), (DAY, 9))), "Disk used")
    assert "Disk used over the last 30 days" in full
