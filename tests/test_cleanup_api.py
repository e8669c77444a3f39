"""The cleanup simulator's endpoints through the test client: ``/cleanup``, ``/groups/<path>/cleanup`` and
``/repositories/<name>/cleanup``, for several policies, with every expected figure computed here by brute force;
parameter errors, 404s, 503s, and the answers rendered once per snapshot and query.

The simulator's rules themselves are test_cleanup's; this checks what a client sends and gets.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import re
import tracemalloc
import weakref
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitlab_registry_usage_rest.cleanup import CleanupIndex, Scope, cleanup_input, parse_policy
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web import simulations
from gitlab_registry_usage_rest.web.app import create_app
from tests.support.webapp import FakeDirectory, basic, bearer, get_json, make_config

NOW = 1_700_000_000.0  # the clock of the app under test
TAKEN = NOW - 600  # when the snapshot was taken: every policy is evaluated at this time, not at the clock's
TAKEN_ISO = "2023-11-14T22:03:20Z"
DAY = 86400.0
HOSTILE_TAG = "a" * 100 + "!"  # (a+)+$ on this takes a backtracking engine longer than the universe has left

# name -> {tag: (days old or None for unknown, layers)}; None: the repository's tags could not be read.
REGISTRY: dict[str, dict[str, tuple[float | None, tuple[str, ...]]] | None] = {
    "team-a/web": {
        "latest": (0.5, ("base", "web-3")),
        "v3": (2, ("base", "web-3")),  # latest's manifest: deleting it frees nothing
        "v2": (20, ("base", "web-2", "shared-ab")),
        "v1": (40, ("base", "web-1", "shared-ab")),
        "v1-keep": (100, ("base", "web-0")),
        "dev": (None, ("dev",)),
    },
    "team-a/api": {"1.0": (50, ("base", "api-1")), "1.1": (35, ("base", "api-2", "shared-ab")),
                   "1.2": (5, ("base", "api-3"))},
    "team-b/svc": {"x1": (60, ("svc-1", "shared-cross")), "x2": (1, ("svc-2",)),
                   HOSTILE_TAG: (90, ("svc-h",)), "aaaa": (95, ("svc-a",))},
    "team-c/job": {"nightly": (70, ("shared-cross", "job-1")), "old": (80, ("job-2",))},
    "broken": None,
    "ops": {"cleanup": (45, ("ops-1",)), "keep": (1, ("ops-2",))},  # a tag named like the simulator
    "ops/cleanup": {"c1": (200, ("opsc-1",))},  # a repository named like ops' simulator
}
SIZES = {
    "base": 100_000, "web-3": 3000, "web-2": 2000, "web-1": 1000, "web-0": 500, "shared-ab": 70_000, "dev": 7,
    "api-1": 11, "api-2": 22, "api-3": 33, "svc-1": 1, "svc-2": 2, "svc-h": 4, "svc-a": 8, "shared-cross": 900_000,
    "job-1": 10, "job-2": 20, "ops-1": 5, "ops-2": 6, "opsc-1": 9,
}


def listing() -> Listing:
    return Listing(tuple(
        RepositoryListing(name, None if tags is None else tuple(
            ImageListing(tag, layers, created=None if days is None else NOW - days * DAY)
            for tag, (days, layers) in tags.items()))
        for name, tags in REGISTRY.items()), SIZES)


def gitlab_match(pattern: str, name: str) -> bool:
    """GitLab's ``\\A#{regex}\\z``, searched (Python's ``\\Z`` is RE2's ``\\z``): not grouped, so ``a|b`` is
    "starts with a or ends with b"."""
    # Python's backtracking engine would never finish the hostile pattern on HOSTILE_TAG: say what it means.
    if pattern == "(a+)+$":
        pattern = "a+"
    return re.search("\\A" + pattern + "\\Z", name) is not None


def brute_force(args: Mapping[str, str], names: list[str]) -> dict[str, Any]:
    """The answer as GitLab's documentation describes the policy, computed the slow, obvious way."""
    keep_n = int(args["keep_n"]) if "keep_n" in args else None
    older = {"30d": 30 * DAY, "10d": 10 * DAY, "1 month": 30 * DAY, "1h": 3600.0}
    cutoff = TAKEN - older[args["older_than"]] if "older_than" in args else None
    deleted: dict[str, list[str]] = {}
    unknown = 0
    for name in names:
        tags = [(tag, days) for tag, (days, _) in (REGISTRY[name] or {}).items() if tag != "latest"
                and gitlab_match(args.get("name_regex", ".*"), tag)
                and not ("name_regex_keep" in args and gitlab_match(args["name_regex_keep"], tag))]
        # Newest first: fewest days old; a tag of unknown age counts as created now (GitLab's created_at || now).
        tags.sort(key=lambda item: (item[1] is not None, item[1] if item[1] is not None else 0, item[0]))
        if keep_n is not None:
            tags = tags[keep_n:]
        if cutoff is not None:
            unknown += sum(1 for _, days in tags if days is None)
            tags = [(tag, days) for tag, days in tags if days is not None and NOW - days * DAY < cutoff]
        if tags:
            deleted[name] = [tag for tag, _ in tags]
    references: dict[str, list[tuple[str, str]]] = {}
    for name, listed in REGISTRY.items():
        for tag, (_, layers) in (listed or {}).items():
            for layer in layers:
                references.setdefault(layer, []).append((name, tag))

    def freed(gone: set[tuple[str, str]]) -> int:
        return sum(SIZES[layer] for layer, users in references.items() if set(users) <= gone)

    everything = {(name, tag) for name, tags in deleted.items() for tag in tags}
    items: list[dict[str, Any]] = [
        {"name": name, "freed_size": freed({(name, tag) for tag in tags}), "tags_deleted": len(tags), "tags": tags,
         "_links": {"self": {"href": "/repositories/" + quote(name, safe="")}}} for name, tags in deleted.items()]
    items.sort(key=lambda item: (-item["freed_size"], item["name"]))
    return {
        "repositories_in_scope": len(names),
        "unreadable_repositories": sum(1 for name in names if REGISTRY[name] is None),
        "tags_in_scope": sum(len(REGISTRY[name] or {}) for name in names),
        "tags_deleted": len(everything),
        "repositories_affected": len(deleted),
        "freed_size": freed(everything),
        "tags_created_unknown": unknown,
        "_embedded": {"items": items},
    }


def in_group(group: str) -> list[str]:
    return [name for name in REGISTRY if name == group or name.startswith(group + "/")]


def describe(args: Mapping[str, str]) -> dict[str, Any]:
    seconds = {"30d": 30 * 86400, "10d": 10 * 86400, "1 month": 30 * 86400, "1h": 3600}
    return {"keep_n": int(args["keep_n"]) if "keep_n" in args else None, "older_than": args.get("older_than"),
            "older_than_seconds": seconds[args["older_than"]] if "older_than" in args else None,
            "name_regex": args.get("name_regex", ".*"), "name_regex_keep": args.get("name_regex_keep")}


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(build_snapshot(listing(), TAKEN))


@pytest.fixture
def client(holder: SnapshotHolder) -> Iterator[FlaskClient]:
    app = create_app(make_config(), holder, FakeDirectory(), clock=lambda: NOW)
    with app.test_client() as client:
        yield client


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    return bearer(client)


POLICIES = [
    {},
    {"keep_n": "1"},
    {"keep_n": "0", "older_than": "30d"},
    {"keep_n": "1", "older_than": "10d", "name_regex": "v.*|1\\..*", "name_regex_keep": ".*-keep"},
    {"older_than": "1 month", "name_regex": "(a+)+$"},
    {"name_regex": "x.*|nightly|old"},
    {"keep_n": "2", "name_regex_keep": "v1.*"},
    {"keep_n": "100"},
    {"name_regex": "v1|2", "name_regex_keep": "x|aaaa"},
]
POLICY_IDS = ["everything", "keep_newest", "older_than_30d", "all_four", "hostile_regex", "cross_repository_layer",
              "keep_regex", "keep_more_than_there_are", "ungrouped_alternation"]
SCOPES = [
    ("/cleanup", None, None, list(REGISTRY)),
    ("/groups/team-a/cleanup", "team-a", None, in_group("team-a")),
    ("/groups/ops/cleanup", "ops", None, in_group("ops")),
    ("/repositories/team-a%2Fweb/cleanup", None, "team-a/web", ["team-a/web"]),
    ("/repositories/team-b/svc/cleanup", None, "team-b/svc", ["team-b/svc"]),
]


@pytest.mark.parametrize("args", POLICIES, ids=POLICY_IDS)
@pytest.mark.parametrize(("path", "group", "repository", "names"), SCOPES, ids=[scope[0] for scope in SCOPES])
def test_cleanup_answers_what_the_policy_deletes_and_frees_set_wise(
        client: FlaskClient, auth: dict[str, str], args: dict[str, str], path: str, group: str | None,
        repository: str | None, names: list[str]) -> None:
    query = "?" + urlencode(args) if args else ""
    body = get_json(client, path + query, auth)
    self_path = path.replace("team-b/svc", "team-b%2Fsvc")
    assert body == {
        "timestamp": TAKEN,
        "evaluated_at": TAKEN_ISO,
        "policy": describe(args),
        "scope": {"group": group, "repository": repository},
        **brute_force(args, names),
        "_links": {"self": {"href": self_path + query}},
    }


def test_layers_shared_across_repositories_free_more_together_than_each_alone(
        client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/cleanup?name_regex=x1|nightly", auth)
    items = {item["name"]: item for item in body["_embedded"]["items"]}
    assert items["team-b/svc"]["freed_size"] == SIZES["svc-1"]
    assert items["team-c/job"]["freed_size"] == SIZES["job-1"]
    assert body["freed_size"] == SIZES["svc-1"] + SIZES["job-1"] + SIZES["shared-cross"]


def test_a_tag_sharing_its_manifest_with_a_kept_tag_frees_nothing(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/repositories/team-a%2Fweb/cleanup?name_regex=v3", auth)
    assert body["tags_deleted"] == 1
    assert body["freed_size"] == 0
    assert body["_embedded"]["items"] == [{"name": "team-a/web", "freed_size": 0, "tags_deleted": 1, "tags": ["v3"],
                                           "_links": {"self": {"href": "/repositories/team-a%2Fweb"}}}]


def test_cleanup_links_carry_the_server_prefix(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/groups/team-a/cleanup?keep_n=1", headers=auth, base_url="http://localhost/usage/")
    body = response.get_json()
    assert body["_links"] == {"self": {"href": "/usage/groups/team-a/cleanup?keep_n=1"}}
    assert body["_embedded"]["items"][0]["_links"]["self"]["href"].startswith("/usage/repositories/team-a%2F")


# --- which resource a path means -----------------------------------------------------------------------------

def test_a_repository_named_like_a_simulator_is_still_found(client: FlaskClient, auth: dict[str, str]) -> None:
    # ops exists, so the plain path asks for its simulator; encoded, it is the repository "ops/cleanup".
    assert get_json(client, "/repositories/ops/cleanup", auth)["scope"] == {"group": None, "repository": "ops"}
    assert get_json(client, "/repositories/ops%2Fcleanup", auth)["name"] == "ops/cleanup"
    assert get_json(client, "/repositories/ops%2Fcleanup/cleanup", auth)["scope"] == {
        "group": None, "repository": "ops/cleanup"}


def test_a_plain_path_ending_in_cleanup_falls_back_to_the_repository(holder: SnapshotHolder) -> None:
    only = Listing((RepositoryListing("tools/cleanup", (ImageListing("1", ("l",)),)),), {"l": 1})
    holder.replace(build_snapshot(only, NOW))
    client = create_app(make_config(), holder, FakeDirectory(), clock=lambda: NOW).test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    body = get_json(client, "/repositories/tools/cleanup", {"Authorization": f"Bearer {token}"})
    assert body["name"] == "tools/cleanup"


def test_a_tag_named_cleanup_keeps_its_link(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories/ops/tags/cleanup", auth)["name"] == "cleanup"


@pytest.mark.parametrize(("url", "shown"), [
    ("/groups/nope/cleanup", "/groups/nope/cleanup"),
    ("/groups/team-a/web/cleanup", "/groups/team-a/web/cleanup"),
    ("/repositories/nope/cleanup", "/repositories/nope/cleanup"),
    ("/repositories/team-a/cleanup", "/repositories/team-a/cleanup"),  # a group, not a repository
])
def test_cleanup_of_an_unknown_scope_is_a_404(client: FlaskClient, auth: dict[str, str], url: str,
                                              shown: str) -> None:
    assert get_json(client, url + "?keep_n=1", auth, status=404) == {
        "message": f'The resource "{shown}" does not exist'}


# --- errors --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "parameter"), [
    ("keep_n=-1", "keep_n"), ("keep_n=x", "keep_n"), ("keep_n=", "keep_n"), ("keep_n=99999999999", "keep_n"),
    ("older_than=soon", "older_than"), ("older_than=-3d", "older_than"), ("older_than=", "older_than"),
    ("name_regex=(", "name_regex"), ("name_regex=a(?=b)", "name_regex"), ("name_regex_keep=[", "name_regex_keep"),
    ("name_regex=" + "a" * 1001, "name_regex"), ("keep_n=1&group=team-a", "group"),
    ("repository=team-a%2Fweb", "repository"),
], ids=["negative_keep_n", "word_keep_n", "empty_keep_n", "huge_keep_n", "word_duration", "negative_duration",
        "empty_duration", "unbalanced_regex", "lookahead_not_re2", "bad_keep_regex", "long_regex",
        "group_parameter", "repository_parameter"])
@pytest.mark.parametrize("path", ["/cleanup", "/groups/team-a/cleanup", "/repositories/team-a%2Fweb/cleanup"])
def test_a_bad_parameter_is_a_400_naming_it(client: FlaskClient, auth: dict[str, str], path: str, query: str,
                                            parameter: str) -> None:
    response = client.get(f"{path}?{query}", headers=auth)
    assert (response.status_code, response.mimetype) == (400, "application/json")
    body = response.get_json()
    assert set(body) == {"message", "parameter"}
    assert body["parameter"] == parameter
    assert body["message"].startswith(parameter + ": ")


@pytest.mark.parametrize(("query", "parameter"), [
    ("name_regex=", "name_regex"), ("name_regex_keep=", "name_regex_keep"), ("keepn=5", "keepn"),
    ("keep_n=1&olderthan=30d", "olderthan"), ("embed=1", "embed"), ("limit=5&keep_n=1", "limit"),
    ("name-regex=v.*", "name-regex"),
], ids=["empty_name_regex", "empty_keep_regex", "misspelt_keep_n", "misspelt_older_than", "embed", "limit",
        "dash_for_underscore"])
@pytest.mark.parametrize("path", ["/cleanup", "/groups/team-a/cleanup", "/repositories/team-a%2Fweb/cleanup"])
def test_an_empty_regex_or_an_unknown_parameter_is_a_400_naming_it(
        client: FlaskClient, auth: dict[str, str], path: str, query: str, parameter: str) -> None:
    for headers in (auth, {**auth, "Accept": "text/csv"}):
        response = client.get(f"{path}?{query}", headers=headers)
        assert (response.status_code, response.mimetype) == (400, "application/json"), response.data
        body = response.get_json()
        assert body["parameter"] == parameter
        assert body["message"].startswith(parameter + ": ")


def test_several_unknown_parameters_are_named_in_one_message(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/cleanup?keepn=5&older=30d&keep_n=1", auth, status=400)
    assert body["parameter"] == "keepn"
    assert body["message"].startswith("keepn: unknown parameter (also unknown: older); the cleanup endpoints take "
                                      "keep_n, older_than, name_regex, name_regex_keep, format, view, page")


def test_the_page_form_still_treats_empty_fields_as_absent(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/cleanup?keep_n=1&older_than=&name_regex=&name_regex_keep=", headers={**auth, **HTML})
    assert response.status_code == 200, response.data
    expected = brute_force({"keep_n": "1"}, list(REGISTRY))
    assert f'data-tags-deleted="{expected["tags_deleted"]}"' in response.data.decode()


def test_a_policy_is_evaluated_at_the_snapshots_time_so_json_csv_and_html_agree_whatever_the_clock() -> None:
    taken = NOW
    clock = [taken]
    only = Listing((RepositoryListing("a/x", (
        ImageListing("v1", ("l1",), created=taken - 30 * DAY + 1),  # 30 days old a second after the snapshot
        ImageListing("v0", ("l0",), created=taken - 31 * DAY))),), {"l0": 10, "l1": 20})
    app = create_app(make_config(), SnapshotHolder(build_snapshot(only, taken)), FakeDirectory(),
                     clock=lambda: clock[0])
    client = app.test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    headers = {"Authorization": f"Bearer {token}"}
    clock[0] = taken + 3600  # an hour later, the same snapshot: v1 is older than 30 days by the clock now
    first = get_json(client, "/cleanup?older_than=30d", headers)
    assert (first["tags_deleted"], first["freed_size"], first["evaluated_at"]) == (1, 10, "2023-11-14T22:13:20Z")
    clock[0] = taken + 7200
    for number in range(simulations.MAX_RESULTS + 1):  # the kept result goes: a new simulation must agree
        get_json(client, f"/cleanup?keep_n={number}", headers)
    csv = client.get("/cleanup?older_than=30d", headers={**headers, "Accept": "text/csv"}).data.decode()
    assert csv.splitlines()[1:] == ["a/x,10,1,v0"]
    page = client.get("/cleanup?older_than=30d", headers={**headers, **HTML}).data.decode()
    assert 'data-tags-deleted="1" ' in page and 'data-freed-size="10" ' in page
    assert get_json(client, "/cleanup?older_than=30d", headers) == first


def test_an_unreadable_repositorys_cleanup_is_a_503_saying_its_tags_could_not_be_read(
        client: FlaskClient, auth: dict[str, str]) -> None:
    for headers in (auth, {**auth, "Accept": "text/csv"}):
        response = client.get("/repositories/broken/cleanup?keep_n=1", headers=headers)
        assert (response.status_code, response.mimetype) == (503, "application/json")
        assert int(response.headers["Retry-After"]) > 0
        assert response.get_json() == {"message": "The tags of broken could not be read in the last crawl: what a "
                                                  "cleanup would delete there is unknown until a crawl reads them"}
    page = client.get("/repositories/broken/cleanup?keep_n=1", headers={**auth, **HTML})
    assert (page.status_code, page.mimetype) == (503, "text/html")
    assert "could not be read in the last crawl" in page.data.decode()


def test_cleanup_answers_count_the_unreadable_repositories_they_cover(client: FlaskClient,
                                                                      auth: dict[str, str]) -> None:
    assert get_json(client, "/cleanup", auth)["unreadable_repositories"] == 1
    assert get_json(client, "/groups/broken/cleanup", auth)["unreadable_repositories"] == 1
    assert get_json(client, "/groups/team-a/cleanup", auth)["unreadable_repositories"] == 0
    page = client.get("/cleanup?keep_n=1", headers={**auth, **HTML}).data.decode()
    assert 'id="unreadable"' in page and "may be overstated" in page
    assert 'id="unreadable"' not in client.get("/groups/team-a/cleanup?keep_n=1", headers={**auth, **HTML}
                                               ).data.decode()


def test_a_request_whose_snapshot_is_replaced_before_it_simulates_answers_from_the_new_one(
        monkeypatch: pytest.MonkeyPatch, holder: SnapshotHolder, client: FlaskClient, auth: dict[str, str]) -> None:
    newer = build_snapshot(listing(), TAKEN + 60)
    built: list[object] = []
    original_index, original_init = simulations.Simulations.index, CleanupIndex.__init__

    def refreshed_meanwhile(self: simulations.Simulations, snapshot: Any) -> CleanupIndex:
        holder.replace(newer)  # the refresh lands after the request took its snapshot, before it simulates
        return original_index(self, snapshot)

    def counting(self: CleanupIndex, data: Any) -> None:
        built.append(data.repositories)
        original_init(self, data)

    monkeypatch.setattr(simulations.Simulations, "index", refreshed_meanwhile)
    monkeypatch.setattr(CleanupIndex, "__init__", counting)
    body = get_json(client, "/cleanup?keep_n=1", auth)
    assert body["timestamp"] == TAKEN + 60
    assert built == [newer.repositories], "no index was built for the replaced snapshot"


def test_cleanup_needs_a_token(client: FlaskClient) -> None:
    for url in ("/cleanup", "/groups/team-a/cleanup", "/repositories/team-a%2Fweb/cleanup"):
        assert client.get(url).status_code == 401


@pytest.mark.parametrize("path", ["/cleanup", "/groups/team-a/cleanup", "/repositories/team-a%2Fweb/cleanup"])
def test_before_the_first_snapshot_cleanup_is_a_503_with_retry_after(path: str) -> None:
    client = create_app(make_config(), SnapshotHolder(), FakeDirectory()).test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    response = client.get(path + "?keep_n=1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "message" in response.get_json()


@pytest.mark.parametrize("path", ["/cleanup", "/groups/team-a/cleanup", "/repositories/team-a%2Fweb/cleanup"])
def test_data_from_an_old_data_file_without_layers_is_a_503_until_the_next_refresh(
        holder: SnapshotHolder, client: FlaskClient, auth: dict[str, str], path: str) -> None:
    snapshot = holder.current()
    assert snapshot is not None
    holder.replace(dataclasses.replace(snapshot, layers=None))
    response = client.get(path + "?keep_n=1", headers=auth)
    assert response.status_code == 503
    assert response.get_json()["message"].endswith("layers a cleanup frees are unknown until the next refresh")
    assert int(response.headers["Retry-After"]) > 0
    # The rest of the API still answers from that data.
    assert client.get("/groups/team-a", headers=auth).status_code == 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/cleanup", "/groups/team-a/cleanup", "/repositories/ops%2Fcleanup/cleanup",
                             "/repositories/team-a%2Fweb/cleanup", "/repositories/ops/cleanup"]),
       args=st.dictionaries(
           st.sampled_from(["keep_n", "older_than", "name_regex", "name_regex_keep", "format", "view", "page",
                            "group"]),
           st.one_of(st.sampled_from(["1", "-1", "30d", "(a+)+$", "(", "\\", "csv", "api", "9" * 40, ".*\n"]),
                     st.text(max_size=20)), max_size=4),
       accept=st.sampled_from([None, "text/csv", "text/html", "*/*"]))
def test_no_policy_query_gets_a_5xx_and_every_body_parses(client: FlaskClient, auth: dict[str, str], path: str,
                                                           args: dict[str, str], accept: str | None) -> None:
    headers = {**auth, **({"Accept": accept} if accept else {})}
    response = client.get(path + "?" + urlencode(args), headers=headers)
    assert response.status_code in (200, 400), response.data
    if response.mimetype == "text/csv":
        assert response.data.startswith(b"name,freed_size,tags_deleted,tags\r\n")
    elif response.mimetype != "text/html":
        json.loads(response.data)


# --- rendered once -------------------------------------------------------------------------------------------

def test_a_repeated_query_is_answered_from_the_cache_with_the_same_etag(client: FlaskClient,
                                                                        auth: dict[str, str]) -> None:
    first = client.get("/cleanup?keep_n=1&older_than=10d", headers=auth)
    again = client.get("/cleanup?keep_n=1&older_than=10d", headers=auth)
    assert first.data == again.data
    assert first.headers["ETag"] == again.headers["ETag"]
    revalidated = client.get("/cleanup?keep_n=1&older_than=10d",
                             headers={**auth, "If-None-Match": first.headers["ETag"]})
    assert revalidated.status_code == 304


@pytest.mark.parametrize(("one", "other"), [
    ({"keep_n": "1"}, {"keep_n": "2"}),
    ({"older_than": "10d"}, {"older_than": "30d"}),
    ({"name_regex": "v.*"}, {"name_regex": "1.*"}),
    ({"name_regex_keep": "v.*"}, {"name_regex_keep": "1.*"}),
    ({}, {"keep_n": "0", "older_than": "1h"}),
], ids=["keep_n", "older_than", "name_regex", "name_regex_keep", "defaults_spelled_out"])
def test_every_policy_parameter_is_part_of_the_cache_key(client: FlaskClient, auth: dict[str, str],
                                                         one: dict[str, str], other: dict[str, str]) -> None:
    first = get_json(client, "/cleanup?" + urlencode(one), auth)
    second = get_json(client, "/cleanup?" + urlencode(other), auth)
    assert first["policy"] == describe(one)
    assert second["policy"] == describe(other)
    assert first["tags_deleted"] == brute_force(one, list(REGISTRY))["tags_deleted"]
    assert second["tags_deleted"] == brute_force(other, list(REGISTRY))["tags_deleted"]


def test_the_index_is_built_once_per_snapshot(monkeypatch: pytest.MonkeyPatch, holder: SnapshotHolder,
                                              client: FlaskClient, auth: dict[str, str]) -> None:
    built: list[CleanupIndex] = []

    class CountingIndex(CleanupIndex):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(simulations, "CleanupIndex", CountingIndex)
    for query in ("keep_n=1", "keep_n=2", "older_than=30d"):
        get_json(client, "/cleanup?" + query, auth)
    get_json(client, "/groups/team-a/cleanup?keep_n=1", auth)
    get_json(client, "/repositories/team-a%2Fweb/cleanup", auth)
    assert len(built) == 1
    holder.replace(build_snapshot(listing(), NOW))
    get_json(client, "/cleanup?keep_n=1", auth)
    assert len(built) == 2


HTML = {"Accept": "text/html"}


def test_browser_gets_the_simulation_page_with_the_answers_figures(client: FlaskClient,
                                                                   auth: dict[str, str]) -> None:
    args = {"keep_n": "1", "older_than": "10d"}
    response = client.get("/groups/team-a/cleanup?" + urlencode(args), headers={**auth, **HTML})
    assert (response.status_code, response.mimetype) == (200, "text/html")
    expected = brute_force(args, in_group("team-a"))
    section = re.search(r'<section id="cleanup-result"([^>]*)>', response.data.decode())
    assert section is not None
    assert f'data-tags-deleted="{expected["tags_deleted"]}"' in section.group(1)
    assert f'data-freed-size="{expected["freed_size"]}"' in section.group(1)


def test_browser_without_a_policy_gets_the_form_alone(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/cleanup", headers={**auth, **HTML})
    assert response.status_code == 200
    page = response.data.decode()
    assert 'id="cleanup-form"' in page and "cleanup-result" not in page


def test_browser_gets_a_bad_parameter_as_a_400_page_marking_the_field(client: FlaskClient,
                                                                      auth: dict[str, str]) -> None:
    response = client.get("/repositories/team-a%2Fweb/cleanup?keep_n=-1", headers={**auth, **HTML})
    assert (response.status_code, response.mimetype) == (400, "text/html")
    assert re.search(r'<input id="keep_n"[^>]*aria-invalid="true"', response.data.decode())


def test_browser_api_view_shows_the_json_answer_as_tables(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/cleanup?keep_n=1&view=api", headers={**auth, **HTML})
    assert (response.status_code, response.mimetype) == (200, "text/html")
    assert "<th>freed_size</th>" in response.data.decode()


def test_browser_page_without_layers_is_a_503_saying_so(holder: SnapshotHolder, client: FlaskClient,
                                                        auth: dict[str, str]) -> None:
    snapshot = holder.current()
    assert snapshot is not None
    holder.replace(dataclasses.replace(snapshot, layers=None))
    response = client.get("/cleanup?keep_n=1", headers={**auth, **HTML})
    assert (response.status_code, response.mimetype) == (503, "text/html")
    assert "unknown until the next refresh" in response.data.decode()


# --- the index of the snapshot served ------------------------------------------------------------------------

def test_an_index_is_never_built_for_a_snapshot_no_longer_served(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = build_snapshot(listing(), TAKEN), build_snapshot(listing(), TAKEN + 60)
    holder = SnapshotHolder(old)
    kept = simulations.Simulations(holder.current)
    old_index = kept.index(old)
    holder.replace(new)
    new_index = kept.index(new)
    # A slow request still holding the old snapshot neither builds its index again nor evicts the new one.
    with pytest.raises(simulations.Superseded):
        kept.index(old)
    with pytest.raises(simulations.Superseded):
        kept.result(old, parse_policy({}), Scope(), ())
    assert kept.index(new) is new_index
    # The old index went when the new one was built, and with it the old snapshot's figures.
    gone = weakref.ref(old_index)
    del old_index
    gc.collect()
    assert gone() is None


def test_the_result_of_a_query_is_kept_and_measured_from_the_snapshots_time() -> None:
    snapshot = build_snapshot(listing(), TAKEN)
    kept = simulations.Simulations(lambda: snapshot)
    policy, query = simulations.parse_request({"older_than": "30d"})
    first = kept.result(snapshot, policy, Scope(), query)
    assert first.evaluated_at == TAKEN
    assert kept.result(snapshot, policy, Scope(), query) is first


# --- the simulator's input -----------------------------------------------------------------------------------

def test_cleanup_input_is_the_snapshots_own_repositories_and_layer_table_not_a_copy() -> None:
    snapshot = build_snapshot(listing(), NOW)
    data = cleanup_input(snapshot)
    assert data.repositories is snapshot.repositories
    assert data.layers is snapshot.layers


def test_the_index_keeps_a_few_bytes_per_tag_and_no_copy_of_the_layer_ids() -> None:
    # 2,000 repositories x 10 tags x 7 layers: a copy of the layer ids as Python ints alone would hold 140,000
    # objects (about 4 MB); positions in policy order are 4 bytes a tag, reference counts 4 bytes a layer.
    repositories = tuple(RepositoryListing(f"g{number % 9}/r{number}", tuple(
        ImageListing(f"t{tag}", tuple(f"r{number}-{tag}-{layer}" for layer in range(7)),
                     created=NOW - tag * DAY) for tag in range(10))) for number in range(2000))
    snapshot = build_snapshot(Listing(repositories, {f"r{number}-{tag}-{layer}": 1 for number in range(2000)
                                                     for tag in range(10) for layer in range(7)}), NOW)
    data = cleanup_input(snapshot)
    tracemalloc.start()
    try:
        index = CleanupIndex(data)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    tags, layers = 20_000, 140_000
    assert kept < 4 * tags + 4 * layers + 100 * 2000 + 100_000, f"{kept:,} bytes"
    assert index.simulate(parse_policy({"keep_n": "9"}), NOW).tags_deleted == 2000


def test_cleanup_input_refuses_a_snapshot_without_layers() -> None:
    snapshot = dataclasses.replace(build_snapshot(listing(), NOW), layers=None)
    with pytest.raises(ValueError, match="no layer table"):
        cleanup_input(snapshot)
