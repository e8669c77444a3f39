"""``/groups`` and ``/groups/<path>`` through the test client: figures, depth, sorting, paging, embedding, links,
plain and encoded paths, 404s and 503s.

Every expected figure is computed in the test from the listing itself (sizes by summing layers, unique sizes by
counting who references each layer), not read back from the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitlab_registry_usage_rest import sizes
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web import pages, resources
from gitlab_registry_usage_rest.web.app import create_app
from tests.support.webapp import FakeDirectory, basic, bearer, get_json, make_config

TIMESTAMP = 1_700_000_000.5
SIZES = {"base": 1000, "w1": 100, "w2": 200, "a1": 30, "lint": 7, "tools": 11, "b1": 50, "s1": 3, "job": 13}
REPOSITORIES: dict[str, dict[str, tuple[str, ...]] | None] = {
    "team-a/web": {"v1": ("base", "w1"), "v2": ("base", "w2")},
    "team-a/api": {"1.0": ("base", "a1"), "1.1": ("a1",)},
    "team-a/tools/lint": {"t": ("lint", "w1")},
    "team-a/tools": {"latest": ("tools",)},  # the group's own image
    "team-b/svc": {"x": ("base", "b1")},
    "solo": {"s": ("s1",)},
    "broken": None,  # its tags could not be read
    "ops/cleanup/job": {"j": ("job",)},  # a group whose last segment reads like the simulator
}


def listing() -> Listing:
    return Listing(tuple(
        RepositoryListing(name, None if tags is None else tuple(ImageListing(tag, layers) for tag, layers in
                                                                tags.items()))
        for name, tags in REPOSITORIES.items()), SIZES)


def covered(group: str) -> list[str]:
    return [name for name in REPOSITORIES if name == group or name.startswith(group + "/")]


def expected_figures(group: str, disk_sizes: dict[str, int | None]) -> dict[str, Any]:
    """A group's figures by brute force: sums over what it covers, and the layers referenced only from inside."""
    inside = covered(group)
    references: dict[str, set[str]] = {}
    for name, tags in REPOSITORIES.items():
        for layers in (tags or {}).values():
            for layer in layers:
                references.setdefault(layer, set()).add(name)
    size = sum(SIZES[layer] for name in inside for layers in (REPOSITORIES[name] or {}).values() for layer in layers)
    unique = sum(SIZES[layer] for layer, names in references.items() if names <= set(inside))
    return {
        "name": group, "size": size, "disk_size": sum(disk_sizes[name] or 0 for name in inside),
        "unique_size": unique, "repository_count": len(inside),
        "tag_count": sum(len(REPOSITORIES[name] or {}) for name in inside),
        "unreadable_repositories": sum(1 for name in inside if REPOSITORIES[name] is None),
    }


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(build_snapshot(listing(), TIMESTAMP))


@pytest.fixture
def client(holder: SnapshotHolder) -> Iterator[FlaskClient]:
    app = create_app(make_config(), holder, FakeDirectory())
    with app.test_client() as client:
        yield client


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    return bearer(client)


@pytest.fixture
def disk_sizes(client: FlaskClient, auth: dict[str, str]) -> dict[str, int | None]:
    """Each repository's disk size as /repositories serves it (its arithmetic is test_sizes' business)."""
    body = get_json(client, "/repositories?embed=1", auth)
    return {item["name"]: item["disk_size"] for item in body["_embedded"]["items"]}


TOP_LEVEL = ["broken", "ops", "solo", "team-a", "team-b"]
GROUPS = [*TOP_LEVEL, "ops/cleanup", "team-a/tools"]


# --- /groups -------------------------------------------------------------------------------------------------

def test_groups_are_the_top_level_groups_with_totals_equal_to_the_registry_totals(
        client: FlaskClient, auth: dict[str, str]) -> None:
    groups = get_json(client, "/groups", auth)
    repositories = get_json(client, "/repositories", auth)
    assert groups == {
        "timestamp": TIMESTAMP,
        "total_size": repositories["total_size"],
        "total_disk_size": repositories["total_disk_size"],
        "group_count": len(TOP_LEVEL),
        "repository_count": len(REPOSITORIES),
        "tag_count": repositories["tag_count"],
    }


def test_groups_embedded_one_level_are_group_documents_in_name_order(
        client: FlaskClient, auth: dict[str, str], disk_sizes: dict[str, int | None]) -> None:
    body = get_json(client, "/groups?embed=1", auth)
    assert "_links" not in body
    assert body["_embedded"]["items"] == [expected_figures(name, disk_sizes) for name in TOP_LEVEL]


@pytest.mark.parametrize("group", GROUPS)
def test_group_figures_are_sums_over_what_it_covers_and_unique_size_its_own_layers(
        client: FlaskClient, auth: dict[str, str], disk_sizes: dict[str, int | None], group: str) -> None:
    assert get_json(client, "/groups/" + quote(group, safe=""), auth) == expected_figures(group, disk_sizes)


def test_groups_with_links_list_every_group_as_an_item(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/groups?links=true", auth)
    assert body["_links"] == {
        "self": {"href": "/groups"},
        "items": [{"href": f"/groups/{name}", "title": name} for name in TOP_LEVEL],
    }
    assert "_embedded" not in body


@pytest.mark.parametrize(("depth", "names"), [
    ("1", TOP_LEVEL), ("2", ["ops/cleanup", "team-a/tools"]), ("3", []), ("64", []),
])
def test_groups_depth_lists_the_groups_of_that_depth_with_their_totals(
        client: FlaskClient, auth: dict[str, str], disk_sizes: dict[str, int | None], depth: str,
        names: list[str]) -> None:
    body = get_json(client, f"/groups?depth={depth}&embed=1", auth)
    items = [expected_figures(name, disk_sizes) for name in names]
    assert body["_embedded"]["items"] == items
    assert body["group_count"] == len(names)
    for total, field in (("total_size", "size"), ("total_disk_size", "disk_size"),
                         ("repository_count", "repository_count"), ("tag_count", "tag_count")):
        assert body[total] == sum(item[field] for item in items)


@pytest.mark.parametrize("depth", ["0", "65", "-1", "x", "", "1.5", "9" * 30])
def test_groups_depth_outside_1_to_64_is_a_400(client: FlaskClient, auth: dict[str, str], depth: str) -> None:
    body = get_json(client, f"/groups?depth={depth}", auth, status=400)
    assert body == {"message": "depth must be a whole number from 1 to 64"}


@pytest.mark.parametrize("sort", ["name", "size", "disk_size", "unique_size", "repository_count", "tag_count"])
@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
def test_groups_sort_by_every_figure(client: FlaskClient, auth: dict[str, str], disk_sizes: dict[str, int | None],
                                     sort: str, descending: bool) -> None:
    figures = [expected_figures(name, disk_sizes) for name in TOP_LEVEL]
    # Python's sort is stable, as the service's: equal figures keep name order.
    expected = sorted(figures, key=lambda group: group[sort], reverse=descending)
    key = "-" + sort if descending else sort
    body = get_json(client, f"/groups?embed=1&sort={key}", auth)
    assert [item["name"] for item in body["_embedded"]["items"]] == [group["name"] for group in expected]


@pytest.mark.parametrize("sort", ["created", "--size", "", "prefix"])
def test_groups_unknown_sort_is_a_400_naming_the_keys(client: FlaskClient, auth: dict[str, str], sort: str) -> None:
    body = get_json(client, f"/groups?sort={sort}", auth, status=400)
    assert body == {"message": "sort must be one of name, size, disk_size, unique_size, repository_count, "
                               "tag_count, with '-' in front for descending order"}


def test_groups_prefix_is_refused(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/groups?prefix=team", auth, status=400) == {
        "message": "prefix is accepted on /repositories only"}


def test_groups_self_link_carries_the_depth_as_next_and_prev_do(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/groups?depth=2&links=1", auth)["_links"]["self"] == {"href": "/groups?depth=2"}
    assert get_json(client, "/groups?depth=1&links=1", auth)["_links"]["self"] == {"href": "/groups"}
    second = get_json(client, "/groups?depth=2&limit=1&offset=1&links=1", auth)
    assert second["_links"]["self"] == {"href": "/groups?depth=2"}
    assert second["_links"]["prev"] == {"href": "/groups?links=true&depth=2&limit=1&offset=0"}
    assert get_json(client, second["_links"]["self"]["href"], auth)["group_count"] == 2
    assert get_json(client, second["_links"]["prev"]["href"], auth)["_links"]["items"] == [
        {"href": "/groups/ops%2Fcleanup", "title": "ops/cleanup"}]


def test_groups_limit_and_offset_page_with_next_and_prev_keeping_depth_and_sort(
        client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/groups?sort=-name&limit=2&offset=1&links=1&embed=1", auth)
    assert [item["name"] for item in body["_embedded"]["items"]] == ["team-a", "solo"]
    assert body["group_count"] == len(TOP_LEVEL)  # the totals cover every group, the window only the items
    assert body["_links"] == {
        "self": {"href": "/groups"},
        "items": [{"href": "/groups/team-a", "title": "team-a"}, {"href": "/groups/solo", "title": "solo"}],
        "next": {"href": "/groups?embed=1&links=true&sort=-name&limit=2&offset=3"},
        "prev": {"href": "/groups?embed=1&links=true&sort=-name&limit=2&offset=0"},
    }
    deeper = get_json(client, "/groups?depth=2&limit=1&links=1", auth)
    assert deeper["_links"]["next"] == {"href": "/groups?links=true&depth=2&limit=1&offset=1"}
    following = get_json(client, deeper["_links"]["next"]["href"], auth)
    assert following["_links"]["items"] == [{"href": "/groups/team-a/tools", "title": "team-a/tools"}]


def test_groups_embedding_goes_one_level_deeper_per_step(client: FlaskClient, auth: dict[str, str]) -> None:
    one = get_json(client, "/groups?embed=1", auth)["_embedded"]["items"]
    assert all("_embedded" not in item for item in one)
    two = get_json(client, "/groups?embed=2", auth)["_embedded"]["items"]
    team_a = next(item for item in two if item["name"] == "team-a")
    assert [group["name"] for group in team_a["_embedded"]["subgroups"]] == ["team-a/tools"]
    assert [repository["name"] for repository in team_a["_embedded"]["repositories"]] == ["team-a/api", "team-a/web"]
    assert all("_embedded" not in child for child in team_a["_embedded"]["subgroups"])
    assert all("_embedded" not in child for child in team_a["_embedded"]["repositories"])
    full = get_json(client, "/groups?embed=true", auth)["_embedded"]["items"]
    team_a = next(item for item in full if item["name"] == "team-a")
    tools = team_a["_embedded"]["subgroups"][0]
    assert [repository["name"] for repository in tools["_embedded"]["repositories"]] == [
        "team-a/tools", "team-a/tools/lint"]
    lint = tools["_embedded"]["repositories"][1]
    assert [tag["name"] for tag in lint["_embedded"]["related"]["_embedded"]["items"]] == ["t"]


# --- /groups/<path> ------------------------------------------------------------------------------------------

def test_group_with_links_and_embedded_children(client: FlaskClient, auth: dict[str, str],
                                                disk_sizes: dict[str, int | None]) -> None:
    body = get_json(client, "/groups/team-a?links=1&embed=1", auth)
    assert body == {
        **expected_figures("team-a", disk_sizes),
        "_links": {
            "self": {"href": "/groups/team-a"},
            "up": {"href": "/groups"},
            "subgroups": [{"href": "/groups/team-a/tools", "title": "team-a/tools"}],
            "repositories": [
                {"href": "/repositories/team-a%2Fapi", "title": "team-a/api"},
                {"href": "/repositories/team-a%2Fweb", "title": "team-a/web"},
            ],
        },
        "_embedded": {
            "subgroups": [{**expected_figures("team-a/tools", disk_sizes), "_links": {
                "self": {"href": "/groups/team-a/tools"},
                "up": {"href": "/groups/team-a"},
                "subgroups": [],
                "repositories": [{"href": "/repositories/team-a%2Ftools", "title": "team-a/tools"},
                                 {"href": "/repositories/team-a%2Ftools%2Flint", "title": "team-a/tools/lint"}],
            }}],
            "repositories": [get_json(client, f"/repositories/team-a%2F{name}?links=1", auth)
                             for name in ("api", "web")],
        },
    }


def test_group_without_parameters_has_no_links(client: FlaskClient, auth: dict[str, str]) -> None:
    assert set(get_json(client, "/groups/team-a", auth)) == {
        "name", "size", "disk_size", "unique_size", "repository_count", "tag_count", "unreadable_repositories"}


def test_a_group_counts_the_repositories_it_covers_whose_tags_could_not_be_read(
        client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/groups/broken", auth)["unreadable_repositories"] == 1
    assert [item["unreadable_repositories"] for item in get_json(client, "/groups?embed=1", auth)[
        "_embedded"]["items"]] == [1 if name == "broken" else 0 for name in TOP_LEVEL]


def test_a_groups_sort_limit_and_offset_window_its_direct_repositories_with_next_and_prev(
        client: FlaskClient, auth: dict[str, str], disk_sizes: dict[str, int | None]) -> None:
    by_disk = sorted(["team-a/api", "team-a/web"], key=lambda name: disk_sizes[name] or 0, reverse=True)
    first = get_json(client, "/groups/team-a?sort=-disk_size&limit=1&links=1&embed=1", auth)
    assert first["_links"]["repositories"] == [{"href": "/repositories/" + quote(by_disk[0], safe=""),
                                                "title": by_disk[0]}]
    assert [item["name"] for item in first["_embedded"]["repositories"]] == by_disk[:1]
    assert first["_links"]["subgroups"] == [{"href": "/groups/team-a/tools", "title": "team-a/tools"}]
    assert first["_links"]["next"] == {"href": "/groups/team-a?embed=1&links=true&sort=-disk_size&limit=1&offset=1"}
    assert "prev" not in first["_links"]
    second = get_json(client, first["_links"]["next"]["href"], auth)
    assert [item["name"] for item in second["_embedded"]["repositories"]] == by_disk[1:]
    assert "next" not in second["_links"]
    assert get_json(client, second["_links"]["prev"]["href"], auth) == first
    # The figures are the group's, whatever the window.
    assert {key: second[key] for key in expected_figures("team-a", disk_sizes)} == expected_figures(
        "team-a", disk_sizes)
    by_name = get_json(client, "/groups/team-a?sort=-name&links=1", auth)["_links"]["repositories"]
    assert [link["title"] for link in by_name] == ["team-a/web", "team-a/api"]


@pytest.mark.parametrize(("query", "message"), [
    ("sort=repository_count", "sort must be one of name, size, disk_size, unique_size, with '-' in front for "
                              "descending order"),
    ("limit=0", "limit must be a whole number from 1 to 100000"),
    ("offset=x", "offset must be a whole number from 0 to 1000000000"),
])
def test_a_groups_window_that_cannot_apply_to_repositories_is_a_400_naming_it(
        client: FlaskClient, auth: dict[str, str], query: str, message: str) -> None:
    assert get_json(client, f"/groups/team-a?{query}", auth, status=400) == {"message": message}


@pytest.mark.parametrize("name", [*GROUPS, "team-a/web", "team", "team-a/tool", "nope", "ops/cleanup/job", "t"])
def test_covered_is_the_repository_named_so_and_those_below_by_name(holder: SnapshotHolder, name: str) -> None:
    snapshot = holder.current()
    assert snapshot is not None
    assert [repository.name for repository in sizes.covered(snapshot, name)] == sorted(covered(name))


def test_the_snapshots_totals_are_the_sums_over_its_repositories(client: FlaskClient, auth: dict[str, str],
                                                                  holder: SnapshotHolder) -> None:
    snapshot = holder.current()
    assert snapshot is not None
    body = get_json(client, "/repositories", auth)
    assert (snapshot.total_size, snapshot.total_disk_size, snapshot.tag_count) == (
        body["total_size"], body["total_disk_size"], body["tag_count"])
    assert snapshot.total_size == sum(SIZES[layer] for tags in REPOSITORIES.values() for layers in (tags or {}).values()
                                      for layer in layers)


@pytest.mark.parametrize("path", ["team-a/tools", "team-a%2Ftools", "team-a%2ftools"])
def test_group_paths_plain_or_percent_encoded_are_one_group(client: FlaskClient, auth: dict[str, str],
                                                            path: str) -> None:
    body = get_json(client, f"/groups/{path}?links=1", auth)
    assert body["name"] == "team-a/tools"
    assert body["_links"]["self"] == {"href": "/groups/team-a/tools"}
    assert body["_links"]["up"] == {"href": "/groups/team-a"}


def test_group_whose_name_ends_in_cleanup_is_linked_unambiguously(client: FlaskClient, auth: dict[str, str]) -> None:
    ops = get_json(client, "/groups/ops?links=1", auth)
    assert ops["_links"]["subgroups"] == [{"href": "/groups/ops%2Fcleanup", "title": "ops/cleanup"}]
    group = get_json(client, ops["_links"]["subgroups"][0]["href"] + "?links=1", auth)
    assert group["name"] == "ops/cleanup"
    assert group["_links"]["up"] == {"href": "/groups/ops"}
    # Plain, the trailing segment asks for the simulator of ops; the group's own simulator is one level further.
    assert get_json(client, "/groups/ops/cleanup", auth)["scope"] == {"group": "ops", "repository": None}
    assert get_json(client, "/groups/ops%2Fcleanup/cleanup", auth)["scope"] == {
        "group": "ops/cleanup", "repository": None}


def test_group_links_carry_the_server_prefix(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/groups/team-a/tools?links=1", headers=auth, base_url="http://localhost/usage/")
    links = response.get_json()["_links"]
    assert links["self"] == {"href": "/usage/groups/team-a/tools"}
    assert links["up"] == {"href": "/usage/groups/team-a"}
    assert links["repositories"][0] == {"href": "/usage/repositories/team-a%2Ftools", "title": "team-a/tools"}


@pytest.mark.parametrize(("url", "shown"), [
    ("/groups/nope", "/groups/nope"),
    ("/groups/team-a/nope", "/groups/team-a/nope"),
    ("/groups/team-a%2Fnope", "/groups/team-a/nope"),
    ("/groups/team-a/web", "/groups/team-a/web"),  # a repository, not a group
    ("/groups/team-a/tools/lint", "/groups/team-a/tools/lint"),
])
def test_unknown_group_is_a_404_json_naming_the_path(client: FlaskClient, auth: dict[str, str], url: str,
                                                     shown: str) -> None:
    response = client.get(url, headers=auth)
    assert (response.status_code, response.mimetype) == (404, "application/json")
    assert response.get_json() == {"message": f'The resource "{shown}" does not exist'}


@pytest.mark.parametrize("url", ["/groups/%FF", "/groups/a//b", "/groups/team-a/", "/groups/%00",
                                 "/groups/" + "a/" * 3000 + "a", "/groups/..%2F.."])
def test_hostile_group_paths_are_404_json(client: FlaskClient, auth: dict[str, str], url: str) -> None:
    response = client.get(url, headers=auth)
    assert response.status_code == 404
    assert "does not exist" in json.loads(response.data)["message"]


segments = st.one_of(st.sampled_from(["team-a", "tools", "cleanup", "ops", "%2F", "", "..", "%FF", "nope"]),
                     st.text(alphabet="%/2Ff.~-_azAZ09", max_size=12), st.text(max_size=8).map(quote))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(segments, max_size=4).map(lambda parts: "/groups" + "".join("/" + part for part in parts)),
       args=st.dictionaries(
           st.sampled_from(["depth", "embed", "links", "sort", "limit", "offset", "format", "view", "prefix"]),
           st.one_of(st.sampled_from(["1", "2", "0", "65", "true", "-size", "tag_count", "csv", "api", "9" * 30]),
                     st.text(max_size=10)), max_size=4),
       accept=st.sampled_from([None, "text/csv", "text/html", "*/*"]))
def test_no_group_path_or_query_gets_a_5xx_and_every_body_parses(client: FlaskClient, auth: dict[str, str],
                                                                 path: str, args: dict[str, str],
                                                                 accept: str | None) -> None:
    headers = {**auth, **({"Accept": accept} if accept else {})}
    response = client.get(path + "?" + urlencode(args), headers=headers)
    assert response.status_code in (200, 400, 404), response.data
    if response.mimetype == "text/csv":
        assert response.data.startswith(b"name,")
    elif response.mimetype != "text/html":
        json.loads(response.data)


def test_groups_need_a_token(client: FlaskClient) -> None:
    for url in ("/groups", "/groups/team-a", "/groups/team-a/cleanup"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.get_json() == {"msg": "Missing Authorization Header"}


def test_before_the_first_snapshot_groups_has_a_null_timestamp_and_a_group_503() -> None:
    client = create_app(make_config(), SnapshotHolder(), FakeDirectory()).test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert get_json(client, "/groups?links=1", headers) == {"timestamp": None, "_links": {"self": {"href": "/groups"}}}
    waiting = client.get("/groups/team-a", headers=headers)
    assert waiting.status_code == 503
    assert int(waiting.headers["Retry-After"]) > 0


def test_group_documents_are_rendered_once_and_revalidated(client: FlaskClient, auth: dict[str, str]) -> None:
    first = client.get("/groups/team-a?embed=1", headers=auth)
    again = client.get("/groups/team-a?embed=1", headers=auth)
    assert first.headers["ETag"] == again.headers["ETag"]
    assert client.get("/groups/team-a?embed=1", headers={**auth, "If-None-Match": first.headers["ETag"]}
                      ).status_code == 304
    assert client.get("/groups/team-a", headers=auth).headers["ETag"] != first.headers["ETag"]


def test_browser_gets_the_groups_page_and_a_groups_page(client: FlaskClient, auth: dict[str, str],
                                                        disk_sizes: dict[str, int | None]) -> None:
    response = client.get("/groups?depth=2", headers={**auth, "Accept": "text/html"})
    assert (response.status_code, response.mimetype) == (200, "text/html")
    assert '<a href="/groups/team-a/tools">' in response.data.decode()
    page = client.get("/groups/team-a", headers={**auth, "Accept": "text/html"})
    assert page.status_code == 200
    assert f'data-disk-size="{expected_figures("team-a", disk_sizes)["disk_size"]}"' in page.data.decode()


def test_browser_api_view_shows_the_group_document(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/groups/team-a?view=api", headers={**auth, "Accept": "text/html"})
    assert response.status_code == 200
    assert "<th>repository_count</th>" in response.data.decode()


def test_the_groups_page_builds_its_treemap_and_orders_once_per_snapshot(
        holder: SnapshotHolder, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    original = pages.GroupsOverview

    def counting(snapshot: Any, base: str) -> pages.GroupsOverview:
        built.append(snapshot)
        return original(snapshot, base)

    monkeypatch.setattr(pages, "GroupsOverview", counting)
    app = create_app(make_config(), holder, FakeDirectory())
    with app.test_client() as client:
        token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
        pages_seen = [client.get(f"/groups?sort={sort}", headers=headers) for sort in ("name", "-disk_size", "name")]
        assert [page.status_code for page in pages_seen] == [200, 200, 200]
        assert len(built) == 1
        holder.replace(build_snapshot(listing(), TIMESTAMP + 60))
        assert client.get("/groups", headers=headers).status_code == 200
        assert len(built) == 2


def test_a_group_page_builds_its_treemap_and_order_once_per_snapshot_and_group(
        holder: SnapshotHolder, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = pages.GroupOverview

    def counting(snapshot: Any, group: Any, base: str) -> pages.GroupOverview:
        built.append(group.name)
        return original(snapshot, group, base)

    monkeypatch.setattr(pages, "GroupOverview", counting)
    app = create_app(make_config(), holder, FakeDirectory())
    with app.test_client() as client:
        token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
        for url in ("/groups/team-a", "/groups/team-a?page=2", "/groups/team-a%2Ftools", "/groups/team-a"):
            assert client.get(url, headers=headers).status_code == 200
        assert built == ["team-a", "team-a/tools"]
        holder.replace(build_snapshot(listing(), TIMESTAMP + 60))
        assert client.get("/groups/team-a", headers=headers).status_code == 200
        assert built == ["team-a", "team-a/tools", "team-a"]


def test_group_overviews_keep_the_latest_few_of_the_snapshot_served_only(holder: SnapshotHolder) -> None:
    snapshot = holder.current()
    assert snapshot is not None
    overviews = resources.GroupOverviews(holder.current, size=2)

    def group(name: str) -> Any:
        found = snapshot.group(name)
        assert found is not None
        return found

    team_a = overviews.get(snapshot, group("team-a"), "")
    assert overviews.get(snapshot, group("team-a"), "") is team_a
    assert overviews.get(snapshot, group("team-a"), "/p") is not team_a  # another prefix, other links
    overviews.get(snapshot, group("ops"), "")  # the third: team-a, the least recently used, goes
    assert overviews.get(snapshot, group("team-a"), "") is not team_a
    newer = build_snapshot(listing(), TIMESTAMP + 60)
    holder.replace(newer)
    kept = overviews.get(newer, _group_of(newer, "ops"), "")
    # A slow request still holding the old snapshot gets a page, but does not replace the new snapshot's.
    assert overviews.get(snapshot, group("ops"), "").snapshot is snapshot
    assert overviews.get(newer, _group_of(newer, "ops"), "") is kept


def _group_of(snapshot: Any, name: str) -> Any:
    found = snapshot.group(name)
    assert found is not None
    return found
