"""Rankings through the test client: ?sort, ?limit, ?offset, ?prefix, totals and HAL paging links.

The snapshot is built by hand so that catalog order, name order and the order by each figure are all
different: a window or a sort applied to the wrong list cannot pass by accident.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from gitlab_registry_usage_rest.config import (
    Config,
    GeneralConfig,
    JwtConfig,
    LdapConfig,
    RegistryConfig,
)
from gitlab_registry_usage_rest.model import RepositoryUsage, Snapshot, TagUsage
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app

TIMESTAMP = 1700000000.25


def tag(name: str, size: int, disk_size: int, unique_size: int) -> TagUsage:
    return TagUsage(name, size, disk_size, unique_size)


# Catalog order. Repository figures are the sums over their tags (unique_size too, as it happens).
SNAPSHOT = Snapshot(TIMESTAMP, (
    RepositoryUsage("team/web", 500, 40, 30, (
        tag("v2", 130, 15, 4), tag("latest", 120, 3, 1), tag("v1", 140, 12, 20), tag("dev", 110, 10, 5),
    )),
    RepositoryUsage("base/alpine", 80, 80, 0, (tag("3.19", 80, 80, 0),)),
    RepositoryUsage("team/api", 300, 120, 100, (tag("main", 200, 70, 60), tag("stable", 100, 50, 40))),
    RepositoryUsage("legacy", None, None, None, None),  # its tags could not be read
    RepositoryUsage("base/debian", 1000, 900, 5, (tag("12", 400, 400, 2), tag("11", 350, 300, 2),
                                                  tag("10", 250, 200, 1))),
    RepositoryUsage("team/worker", 150, 10, 60, (tag("1", 150, 10, 60),)),
))

CATALOG = ["team/web", "base/alpine", "team/api", "legacy", "base/debian", "team/worker"]
REPOSITORY_ORDERS = {
    "name": ["base/alpine", "base/debian", "legacy", "team/api", "team/web", "team/worker"],
    "-name": ["team/worker", "team/web", "team/api", "legacy", "base/debian", "base/alpine"],
    "size": ["base/alpine", "team/worker", "team/api", "team/web", "base/debian", "legacy"],
    "-size": ["base/debian", "team/web", "team/api", "team/worker", "base/alpine", "legacy"],
    "disk_size": ["team/worker", "team/web", "base/alpine", "team/api", "base/debian", "legacy"],
    "-disk_size": ["base/debian", "team/api", "base/alpine", "team/web", "team/worker", "legacy"],
    "unique_size": ["base/alpine", "base/debian", "team/web", "team/worker", "team/api", "legacy"],
    "-unique_size": ["team/api", "team/worker", "team/web", "base/debian", "base/alpine", "legacy"],
}
WEB_TAGS = ["v2", "latest", "v1", "dev"]
WEB_TAG_ORDERS = {
    "name": ["dev", "latest", "v1", "v2"],
    "-name": ["v2", "v1", "latest", "dev"],
    "size": ["dev", "latest", "v2", "v1"],
    "-size": ["v1", "v2", "latest", "dev"],
    "disk_size": ["latest", "dev", "v1", "v2"],
    "-disk_size": ["v2", "v1", "dev", "latest"],
    "unique_size": ["latest", "v2", "dev", "v1"],
    "-unique_size": ["v1", "dev", "v2", "latest"],
}
WEB_TAGS_PATH = "/repositories/team%2Fweb/tags"


class Directory:
    """Accepts one user; LDAP itself is tested in test_auth."""

    def authenticate(self, username: str, password: str) -> bool:
        return (username, password) == ("alice", "right")


@pytest.fixture
def client() -> Iterator[FlaskClient]:
    config = Config(general=GeneralConfig(), ldap=LdapConfig(), registry=RegistryConfig(),
                    jwt=JwtConfig(secret_key="rankings-secret-" + "r" * 40,
                                  auth_token_expires=datetime.timedelta(hours=1)))
    app = create_app(config, SnapshotHolder(SNAPSHOT), Directory())
    assert not app.testing
    with app.test_client() as client:
        yield client


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    basic = base64.b64encode(b"alice:right").decode()
    token = client.get("/auth_token", headers={"Authorization": f"Basic {basic}"}).get_json()["auth_token"]
    return {"Authorization": f"Bearer {token}"}


def get(client: FlaskClient, url: str, auth: dict[str, str]) -> Any:
    response = client.get(url, headers=auth)
    assert response.status_code == 200, response.data
    return json.loads(response.data)


def embedded_names(body: dict[str, Any]) -> list[str]:
    return [item["name"] for item in body["_embedded"]["items"]]


def item_titles(body: dict[str, Any]) -> list[str]:
    return [link["title"] for link in body["_links"]["items"]]


def paging(body: dict[str, Any]) -> dict[str, str]:
    return {rel: link["href"] for rel, link in body["_links"].items() if rel in ("next", "prev")}


SORTS = [None, *REPOSITORY_ORDERS]
WINDOWS = [(None, None), (2, None), (2, 0), (2, 2), (2, 4), (4, 3), (10, None), (None, 5), (1, 5), (None, 6),
           (3, 100)]


def window_query(limit: int | None, offset: int | None) -> str:
    return "".join(f"&{name}={value}" for name, value in (("limit", limit), ("offset", offset)) if value is not None)


# --- sorting and windows -----------------------------------------------------------------------

@pytest.mark.parametrize("sort", SORTS, ids=lambda sort: sort or "catalog-order")
@pytest.mark.parametrize(("limit", "offset"), WINDOWS,
                         ids=[f"limit={limit},offset={offset}" for limit, offset in WINDOWS])
def test_repositories_embedded_items_and_item_links_show_the_same_sorted_window(
    client: FlaskClient, auth: dict[str, str], sort: str | None, limit: int | None, offset: int | None
) -> None:
    order = CATALOG if sort is None else REPOSITORY_ORDERS[sort]
    start = offset or 0
    expected = order[start:] if limit is None else order[start:start + limit]
    sort_query = "" if sort is None else f"&sort={sort}"
    body = get(client, f"/repositories?embed=1&links=true{sort_query}{window_query(limit, offset)}", auth)
    assert embedded_names(body) == expected
    assert item_titles(body) == expected


@pytest.mark.parametrize("sort", [None, *WEB_TAG_ORDERS], ids=lambda sort: sort or "tag-list-order")
@pytest.mark.parametrize(("limit", "offset"), [(None, None), (2, None), (2, 1), (3, 2), (None, 3), (1, 4)],
                         ids=lambda value: str(value))
def test_tags_embedded_items_and_item_links_show_the_same_sorted_window(
    client: FlaskClient, auth: dict[str, str], sort: str | None, limit: int | None, offset: int | None
) -> None:
    order = WEB_TAGS if sort is None else WEB_TAG_ORDERS[sort]
    start = offset or 0
    expected = order[start:] if limit is None else order[start:start + limit]
    sort_query = "" if sort is None else f"&sort={sort}"
    body = get(client, f"{WEB_TAGS_PATH}?embed=1&links=true{sort_query}{window_query(limit, offset)}", auth)
    assert embedded_names(body) == expected
    assert item_titles(body) == expected


@pytest.mark.parametrize("key", ["size", "disk_size", "unique_size"])
@pytest.mark.parametrize("direction", ["", "-"], ids=["ascending", "descending"])
def test_unreadable_repository_comes_last_in_both_directions(
    client: FlaskClient, auth: dict[str, str], key: str, direction: str
) -> None:
    body = get(client, f"/repositories?embed=1&sort={direction}{key}", auth)
    assert body["_embedded"]["items"][-1] == {"name": "legacy", "size": None, "disk_size": None, "unique_size": None}


def test_sorted_items_carry_their_own_figures(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get(client, "/repositories?embed=1&sort=-disk_size&limit=2", auth)
    assert body["_embedded"]["items"] == [
        {"name": "base/debian", "size": 1000, "disk_size": 900, "unique_size": 5},
        {"name": "team/api", "size": 300, "disk_size": 120, "unique_size": 100},
    ]
    tags = get(client, f"{WEB_TAGS_PATH}?embed=1&sort=unique_size&offset=3", auth)
    assert tags["_embedded"]["items"] == [
        {"name": "v1", "size": 140, "disk_size": 12, "unique_size": 20, "created": None, "first_seen": None}]


def test_window_of_repositories_does_not_reach_embedded_tag_collections(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = get(client, "/repositories?embed=3&sort=-size&limit=2&offset=1", auth)
    (web, api) = body["_embedded"]["items"]
    assert [item["name"] for item in web["_embedded"]["related"]["_embedded"]["items"]] == WEB_TAGS
    assert [item["name"] for item in api["_embedded"]["related"]["_embedded"]["items"]] == ["main", "stable"]


# --- paging links ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("links=true&limit=2", {"next": "/repositories?links=true&limit=2&offset=2"}),
        ("links=true&limit=2&offset=2", {"next": "/repositories?links=true&limit=2&offset=4",
                                         "prev": "/repositories?links=true&limit=2&offset=0"}),
        ("links=true&limit=2&offset=4", {"prev": "/repositories?links=true&limit=2&offset=2"}),
        ("links=true&limit=4&offset=3", {"prev": "/repositories?links=true&limit=4&offset=0"}),
        ("links=true&limit=6", {}),
        ("links=true&limit=100000", {}),
        ("links=true&limit=5&offset=0", {"next": "/repositories?links=true&limit=5&offset=5"}),
        ("links=true&offset=2", {}),
        ("links=yes&limit=3", {"next": "/repositories?links=true&limit=3&offset=3"}),
        ("links=true&embed=1&sort=-size&limit=2&offset=1",
         {"next": "/repositories?embed=1&links=true&sort=-size&limit=2&offset=3",
          "prev": "/repositories?embed=1&links=true&sort=-size&limit=2&offset=0"}),
        ("embed=true&links=1&sort=unique_size&prefix=team%2F&limit=1&offset=1",
         {"next": "/repositories?embed=true&links=true&sort=unique_size&prefix=team%2F&limit=1&offset=2",
          "prev": "/repositories?embed=true&links=true&sort=unique_size&prefix=team%2F&limit=1&offset=0"}),
        ("links=true&prefix=team&limit=2&offset=2", {"prev": "/repositories?links=true&prefix=team&limit=2&offset=0"}),
        ("links=true&prefix=base%2F&limit=2", {}),
    ],
    ids=["first-page", "middle-page", "last-page", "last-page-overlapping-start", "limit-equals-count",
         "limit-above-count", "offset-zero-given", "offset-without-limit", "links-word-normalised",
         "sort-and-embed-carried", "prefix-carried", "prefix-last-page", "prefix-fits-one-page"],
)
def test_repositories_next_and_prev_links_appear_exactly_when_there_is_more(
    client: FlaskClient, auth: dict[str, str], query: str, expected: dict[str, str]
) -> None:
    assert paging(get(client, f"/repositories?{query}", auth)) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("links=true&limit=3", {"next": f"{WEB_TAGS_PATH}?links=true&limit=3&offset=3"}),
        ("links=true&embed=1&sort=-name&limit=1&offset=2",
         {"next": f"{WEB_TAGS_PATH}?embed=1&links=true&sort=-name&limit=1&offset=3",
          "prev": f"{WEB_TAGS_PATH}?embed=1&links=true&sort=-name&limit=1&offset=1"}),
        ("links=true&limit=4", {}),
        ("links=true&limit=2&offset=2", {"prev": f"{WEB_TAGS_PATH}?links=true&limit=2&offset=0"}),
    ],
    ids=["first-page", "middle-page", "one-page", "last-page"],
)
def test_tags_next_and_prev_links_appear_exactly_when_there_is_more(
    client: FlaskClient, auth: dict[str, str], query: str, expected: dict[str, str]
) -> None:
    assert paging(get(client, f"{WEB_TAGS_PATH}?{query}", auth)) == expected


def test_limit_without_links_adds_no_links(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get(client, "/repositories?embed=1&limit=2", auth)
    assert "_links" not in body
    assert embedded_names(body) == ["team/web", "base/alpine"]


def test_unreadable_repositorys_tags_have_no_items_or_paging_links(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get(client, "/repositories/legacy/tags?embed=1&links=true&sort=size&limit=1", auth) == {
        "_links": {"self": {"href": "/repositories/legacy/tags"}, "up": {"href": "/repositories/legacy"}},
    }


def follow(client: FlaskClient, auth: dict[str, str], url: str, rel: str) -> list[list[str]]:
    """Every page's item titles, from ``url`` along ``rel`` until a page has none."""
    pages = []
    for _ in range(20):  # more pages than any test has: a loop in the links fails instead of hanging
        body = get(client, url, auth)
        pages.append(item_titles(body))
        assert embedded_names(body) == pages[-1]
        if rel not in body["_links"]:
            return pages
        url = body["_links"][rel]["href"]
    raise AssertionError(f"still a {rel} link after 20 pages: {pages}")


@pytest.mark.parametrize("sort", SORTS, ids=lambda sort: sort or "catalog-order")
@pytest.mark.parametrize("limit", [1, 2, 4, 5])
def test_following_next_visits_every_repository_once_in_order(
    client: FlaskClient, auth: dict[str, str], sort: str | None, limit: int
) -> None:
    sort_query = "" if sort is None else f"&sort={sort}"
    pages = follow(client, auth, f"/repositories?embed=1&links=true{sort_query}&limit={limit}", "next")
    visited = [name for page in pages for name in page]
    assert visited == (CATALOG if sort is None else REPOSITORY_ORDERS[sort])
    assert len(pages) == -(-6 // limit)
    assert all(len(page) == limit for page in pages[:-1])


def test_following_prev_from_the_last_page_walks_back_to_the_first(client: FlaskClient, auth: dict[str, str]) -> None:
    pages = follow(client, auth, "/repositories?embed=1&links=true&sort=-size&limit=2&offset=4", "prev")
    assert pages == [["base/alpine", "legacy"], ["team/api", "team/worker"], ["base/debian", "team/web"]]


def test_following_next_within_a_prefix_visits_only_matching_repositories(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    pages = follow(client, auth, "/repositories?embed=1&links=true&sort=size&prefix=team%2F&limit=2", "next")
    assert pages == [["team/worker", "team/api"], ["team/web"]]


def test_following_next_through_tags_visits_every_tag_once(client: FlaskClient, auth: dict[str, str]) -> None:
    pages = follow(client, auth, f"{WEB_TAGS_PATH}?embed=1&links=true&sort=-disk_size&limit=3", "next")
    assert pages == [["v2", "v1", "dev"], ["latest"]]


# --- prefix and totals -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("prefix", "totals", "names"),
    [
        (None, (2030, 1150, 6, 11), CATALOG),
        ("", (2030, 1150, 6, 11), CATALOG),
        ("team%2F", (950, 170, 3, 7), ["team/web", "team/api", "team/worker"]),
        ("team", (950, 170, 3, 7), ["team/web", "team/api", "team/worker"]),
        ("base%2Fd", (1000, 900, 1, 3), ["base/debian"]),
        ("legacy", (0, 0, 1, 0), ["legacy"]),
        ("team%2Fweb", (500, 40, 1, 4), ["team/web"]),
        ("Team", (0, 0, 0, 0), []),
        ("zzz", (0, 0, 0, 0), []),
    ],
    ids=["none", "empty", "group", "no-trailing-slash", "partial-name", "only-unreadable", "full-name",
         "case-sensitive", "no-match"],
)
def test_prefix_scopes_items_and_totals(
    client: FlaskClient, auth: dict[str, str], prefix: str | None, totals: tuple[int, int, int, int], names: list[str]
) -> None:
    prefix_query = "" if prefix is None else f"&prefix={prefix}"
    body = get(client, f"/repositories?embed=1&links=true{prefix_query}", auth)
    assert (body["total_size"], body["total_disk_size"], body["repository_count"], body["tag_count"]) == totals
    assert embedded_names(body) == names
    assert item_titles(body) == names
    assert body["timestamp"] == TIMESTAMP


def test_prefix_without_match_is_zeros_and_empty_lists(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get(client, "/repositories?embed=1&links=true&prefix=nothing%2F&limit=2", auth) == {
        "timestamp": TIMESTAMP, "total_size": 0, "total_disk_size": 0, "repository_count": 0, "tag_count": 0,
        "_links": {"self": {"href": "/repositories"}, "items": []},
        "_embedded": {"items": []},
    }


def test_totals_cover_the_whole_prefix_match_not_the_window(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get(client, "/repositories?embed=1&prefix=team&sort=-size&limit=1&offset=1", auth)
    assert (body["total_size"], body["total_disk_size"], body["repository_count"], body["tag_count"]) == (
        950, 170, 3, 7)
    assert embedded_names(body) == ["team/api"]


# --- rejected parameters -----------------------------------------------------------------------

SORT_MESSAGE = "sort must be one of name, size, disk_size, unique_size, with '-' in front for descending order"
LIMIT_MESSAGE = "limit must be a whole number from 1 to 100000"
OFFSET_MESSAGE = "offset must be a whole number from 0 to 1000000000"
BAD_QUERIES = [
    ("sort=bogus", SORT_MESSAGE),
    ("sort=--size", SORT_MESSAGE),
    ("sort=%2Bsize", SORT_MESSAGE),
    ("sort=SIZE", SORT_MESSAGE),
    ("sort=", SORT_MESSAGE),
    ("limit=0", LIMIT_MESSAGE),
    ("limit=-1", LIMIT_MESSAGE),
    ("limit=abc", LIMIT_MESSAGE),
    ("limit=1.5", LIMIT_MESSAGE),
    ("limit=", LIMIT_MESSAGE),
    ("limit=100001", LIMIT_MESSAGE),
    (f"limit={10**12}", LIMIT_MESSAGE),
    ("limit=%EF%BC%91", LIMIT_MESSAGE),  # a full-width digit one: int() would take it
    ("offset=-1", OFFSET_MESSAGE),
    ("offset=abc", OFFSET_MESSAGE),
    ("offset=1000000001", OFFSET_MESSAGE),
    ("limit=2&offset=" + "9" * 5000, OFFSET_MESSAGE),
]


@pytest.mark.parametrize("path", ["/repositories", WEB_TAGS_PATH], ids=["repositories", "tags"])
@pytest.mark.parametrize(("query", "message"), BAD_QUERIES, ids=[query[:20] for query, _ in BAD_QUERIES])
def test_unusable_values_are_400_json_with_a_message(
    client: FlaskClient, auth: dict[str, str], path: str, query: str, message: str
) -> None:
    response = client.get(f"{path}?embed=1&links=true&{query}", headers=auth)
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": message}


@pytest.mark.parametrize(
    "url",
    [f"{WEB_TAGS_PATH}?prefix=v", f"{WEB_TAGS_PATH}?prefix=", "/repositories/team/web/tags?links=true&prefix=v"],
    ids=["encoded-path", "empty-prefix", "unencoded-path"],
)
def test_prefix_on_the_tags_collection_is_400(client: FlaskClient, auth: dict[str, str], url: str) -> None:
    response = client.get(url, headers=auth)
    assert response.status_code == 400
    assert response.get_json() == {"message": "prefix is accepted on /repositories only"}


@pytest.mark.parametrize(
    ("query", "count"),
    [("limit=100000", 6), ("offset=1000000000", 0), ("limit=1&offset=5", 1)],
    ids=["largest-limit", "largest-offset", "last-item"],
)
def test_boundary_values_are_accepted(client: FlaskClient, auth: dict[str, str], query: str, count: int) -> None:
    assert len(get(client, f"/repositories?embed=1&{query}", auth)["_embedded"]["items"]) == count


# --- absent parameters change nothing ----------------------------------------------------------

@pytest.mark.parametrize("path", ["/repositories", WEB_TAGS_PATH], ids=["repositories", "tags"])
@pytest.mark.parametrize("embed_links", ["", "?embed=1", "?links=true", "?embed=true&links=true"],
                         ids=["bare", "embed", "links", "embed-and-links"])
@pytest.mark.parametrize("neutral", ["offset=0", "limit=100000", "offset=0&limit=6"])
def test_neutral_window_values_give_the_same_bytes_as_none(
    client: FlaskClient, auth: dict[str, str], path: str, embed_links: str, neutral: str
) -> None:
    plain = client.get(f"{path}{embed_links}", headers=auth)
    separator = "&" if embed_links else "?"
    windowed = client.get(f"{path}{embed_links}{separator}{neutral}", headers=auth)
    assert (plain.status_code, windowed.status_code) == (200, 200)
    assert windowed.data == plain.data


def test_without_window_parameters_repositories_are_in_catalog_order_without_paging(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.get("/repositories?embed=1&links=true", headers=auth)
    assert response.data == (
        b'{"timestamp": 1700000000.25, "total_size": 2030, "total_disk_size": 1150, "repository_count": 6, '
        b'"tag_count": 11, "_links": {"self": {"href": "/repositories"}, "items": ['
        b'{"href": "/repositories/team%2Fweb", "title": "team/web"}, '
        b'{"href": "/repositories/base%2Falpine", "title": "base/alpine"}, '
        b'{"href": "/repositories/team%2Fapi", "title": "team/api"}, '
        b'{"href": "/repositories/legacy", "title": "legacy"}, '
        b'{"href": "/repositories/base%2Fdebian", "title": "base/debian"}, '
        b'{"href": "/repositories/team%2Fworker", "title": "team/worker"}]}, "_embedded": {"items": ['
        b'{"name": "team/web", "size": 500, "disk_size": 40, "unique_size": 30, "_links": {'
        b'"self": {"href": "/repositories/team%2Fweb"}, "collection": {"href": "/repositories"}, '
        b'"related": {"href": "/repositories/team%2Fweb/tags", "title": "tags"}}}, '
        b'{"name": "base/alpine", "size": 80, "disk_size": 80, "unique_size": 0, "_links": {'
        b'"self": {"href": "/repositories/base%2Falpine"}, "collection": {"href": "/repositories"}, '
        b'"related": {"href": "/repositories/base%2Falpine/tags", "title": "tags"}}}, '
        b'{"name": "team/api", "size": 300, "disk_size": 120, "unique_size": 100, "_links": {'
        b'"self": {"href": "/repositories/team%2Fapi"}, "collection": {"href": "/repositories"}, '
        b'"related": {"href": "/repositories/team%2Fapi/tags", "title": "tags"}}}, '
        b'{"name": "legacy", "size": null, "disk_size": null, "unique_size": null, "_links": {'
        b'"self": {"href": "/repositories/legacy"}, "collection": {"href": "/repositories"}}}, '
        b'{"name": "base/debian", "size": 1000, "disk_size": 900, "unique_size": 5, "_links": {'
        b'"self": {"href": "/repositories/base%2Fdebian"}, "collection": {"href": "/repositories"}, '
        b'"related": {"href": "/repositories/base%2Fdebian/tags", "title": "tags"}}}, '
        b'{"name": "team/worker", "size": 150, "disk_size": 10, "unique_size": 60, "_links": {'
        b'"self": {"href": "/repositories/team%2Fworker"}, "collection": {"href": "/repositories"}, '
        b'"related": {"href": "/repositories/team%2Fworker/tags", "title": "tags"}}}]}}\n'
    )


def test_without_window_parameters_tags_are_in_tag_list_order_without_paging(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.get(f"{WEB_TAGS_PATH}?links=true", headers=auth)
    assert response.data == (
        b'{"_links": {"self": {"href": "/repositories/team%2Fweb/tags"}, '
        b'"up": {"href": "/repositories/team%2Fweb"}, "items": ['
        b'{"href": "/repositories/team%2Fweb/tags/v2", "title": "v2"}, '
        b'{"href": "/repositories/team%2Fweb/tags/latest", "title": "latest"}, '
        b'{"href": "/repositories/team%2Fweb/tags/v1", "title": "v1"}, '
        b'{"href": "/repositories/team%2Fweb/tags/dev", "title": "dev"}]}}\n'
    )


def test_prev_from_past_the_end_leads_to_the_last_page_with_items(client: FlaskClient, auth: dict[str, str]) -> None:
    body = client.get("/repositories?links=true&limit=3&offset=100", headers=auth).get_json()
    total = body["repository_count"]
    assert body["_links"]["items"] == []
    assert body["_links"]["prev"] == {"href": f"/repositories?links=true&limit=3&offset={total - 3}"}
