"""Groups, tag ages and the cleanup simulator, end to end: the real registry, the real service, over HTTP.

The test pushes repositories of known layers to a registry of its own (layers shared across tags and across
repositories, two tags on one manifest, an OCI index and a Docker manifest list, configs created in 1970, with
an offset, or not at all), runs the service on it and compares every answer with figures that
``tests.support.expected`` computes by brute force from what was pushed, never with the package's arithmetic.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.support.distribution import DistributionRegistry
from tests.support.expected import Expected, Key, Policy, created_time, iso_utc
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry
from tests.support.pusher import ImageFormat, Platform, Pusher, sha256_digest
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd

pytestmark = [pytest.mark.registry, pytest.mark.slapd]

DAY = 86400
# Bytes of each layer; a name stands for its content (Pusher.make_layer of the name), so equal names are one blob.
LAYERS = {
    "base": 1000, "app-v3": 300, "app-rc": 310, "app-v2": 320, "app-v1": 330, "dev-x": 340,
    "worker": 500, "worker-2": 510, "shared": 700, "lib-base": 800, "lib-amd": 410, "lib-arm": 420,
    "tool": 900, "tool-2": 910, "beta": 920, "solo": 600, "fat-amd": 610, "fat-arm": 620,
}
TIE = "2023-03-01T00:00:00Z"  # team/app's rc and v2: equal times, ordered by name
GROUP_FIELDS = ("name", "size", "disk_size", "unique_size", "repository_count", "tag_count")
CLEANUP_FIELDS = ("repositories_in_scope", "unreadable_repositories", "tags_in_scope", "tags_deleted",
                  "repositories_affected", "freed_size", "tags_created_unknown")
ITEM_FIELDS = ("name", "freed_size", "tags_deleted", "tags")


@dataclass(frozen=True)
class Stand:
    registry: DistributionRegistry
    expected: Expected
    layer_digests: dict[str, str]  # layer name -> digest


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _push(pusher: Pusher, now: float) -> tuple[PushedRegistry, dict[Key, float | None], dict[str, str]]:
    content = {name: Pusher.make_layer(f"groups-cleanup-{name}", size) for name, size in LAYERS.items()}
    by_digest: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {}
    created: dict[tuple[str, str], float | None] = {}

    def image(repo: str, tag: str, layers: list[str], when: str | None) -> None:
        pushed = pusher.push_image(repo, tag, [content[name] for name in layers], created=when)
        by_digest[repo, pushed.digest] = pushed.layers
        created[repo, pushed.digest] = created_time(when)

    def index(repo: str, tag: str, platforms: list[tuple[Platform, list[str], str]], media_type: ImageFormat) -> None:
        pushed = pusher.push_index(repo, tag, [(platform, [content[name] for name in layers], when)
                                               for platform, layers, when in platforms], media_type=media_type)
        union: dict[str, int] = {}
        for child in pushed.images:
            union.update(child.layers)
        by_digest[repo, pushed.digest] = tuple(union.items())
        created[repo, pushed.digest] = max(t for *_, when in platforms if (t := created_time(when)) is not None)

    image("team/app", "latest", ["base", "app-v3"], _iso(now - DAY))
    pusher.tag_manifest("team/app", "v3", "latest")
    image("team/app", "rc", ["base", "app-rc"], TIE)
    image("team/app", "v2", ["base", "app-v2"], TIE)
    image("team/app", "v1", ["base", "app-v1"], "1970-01-01T00:00:00Z")
    image("team/app", "dev-x", ["base", "dev-x"], None)
    image("team/app/worker", "w1", ["base", "worker", "shared"], "2022-06-01T12:00:00Z")
    image("team/app/worker", "w2", ["base", "worker", "worker-2"], _iso(now - 2 * DAY))
    image("team/lib", "1.0", ["lib-base", "shared"], "2022-01-01T00:00:00Z")
    index("team/lib", "multi", [(Platform("linux", "amd64"), ["lib-base", "lib-amd"], "2021-05-05T05:05:05Z"),
                                (Platform("linux", "arm64", "v8"), ["lib-arm"], "2021-07-07T07:07:07+02:00")], "oci")
    image("other/tool", "stable", ["base", "tool"], "2020-01-01T00:00:00Z")
    pusher.tag_manifest("other/tool", "2.0", "stable")
    image("other/tool", "keep-me", ["tool-2"], "2020-02-02T00:00:00Z")
    image("other/tool", "beta", ["beta"], _iso(now - 20 * DAY))  # between two weeks and 30 days old
    image("solo", "x", ["solo"], "2019-09-09T09:09:09Z")
    index("solo", "fat", [(Platform("linux", "amd64"), ["solo", "fat-amd"], "2024-02-02T00:00:00Z"),
                          (Platform("linux", "arm", "v7"), ["fat-arm"], "2019-05-05T00:00:00Z")], "docker")

    # The registry's own catalog and tag order, as the service crawls it.
    tags: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {}
    tag_created: dict[Key, float | None] = {}
    for repo in pusher.catalog():
        tags[repo] = {}
        for tag in pusher.tags(repo):
            digest = pusher.get_manifest(repo, tag).digest
            tags[repo][tag] = by_digest[repo, digest]
            tag_created[repo, tag] = created[repo, digest]
    return PushedRegistry(tags), tag_created, {name: sha256_digest(data) for name, data in content.items()}


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[Stand]:
    with DistributionRegistry(tmp_path_factory.mktemp("groups-registry"), gitlab) as registry, \
            Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as pusher:
        pushed, created, digests = _push(pusher, time.time())
        yield Stand(registry, Expected(pushed, created), digests)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, stand: Stand, gitlab: GitLabTokenEndpoint,
            slapd: Slapd) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("groups-service")
    with ServiceProcess(workdir, ["-c", str(service_config(workdir, stand.registry, gitlab, slapd))]) as process:
        yield process


@pytest.fixture(scope="module")
def alice(service: ServiceProcess, slapd: Slapd) -> dict[str, str]:
    user = slapd.users["alice"]
    headers = service.login(user.uid, user.password)
    service.wait_for_data(headers)
    return headers


@pytest.fixture
def expected(stand: Stand) -> Expected:
    return stand.expected


def _json(service: ServiceProcess, path: str, headers: dict[str, str], **params: str) -> Any:
    response = service.get(path, headers=headers, params=params)
    assert response.status_code == 200, f"GET {response.url}: {response.status_code} {response.text[:500]}"
    return response.json()


def _follow(service: ServiceProcess, href: str, headers: dict[str, str]) -> requests.Response:
    return service.http.get(service.url.removesuffix(service.prefix) + href, headers=headers, timeout=10)


def _figures(document: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {field: document.get(field, "(missing)") for field in fields}


# -- the pushed data as the service sees it: sizes and tag ages -----------------------------------------------------


def test_the_pushed_data_covers_every_case(expected: Expected, stand: Stand) -> None:
    """The cases this module exists for are in the data (guards the fixture, not the service)."""
    created = expected.created
    assert created["team/app", "v1"] is None, "1970: a reproducible build's placeholder"
    assert created["team/app", "dev-x"] is None, "a config without created"
    assert expected.tags["team/app", "latest"] == expected.tags["team/app", "v3"], "two tags on one manifest"
    assert expected.tags["other/tool", "stable"] == expected.tags["other/tool", "2.0"]
    assert created["team/app", "rc"] == created["team/app", "v2"], "a tie, broken by name"
    beta = created["other/tool", "beta"]
    assert beta is not None and 14 * DAY < time.time() - beta < 30 * DAY, "older_than: 2 weeks and 30d differ"
    shared = stand.layer_digests["shared"]
    assert {repo for repo, _ in expected.referencing(shared)} == {"team/app/worker", "team/lib"}
    assert len({repo for repo, _ in expected.referencing(stand.layer_digests["base"])}) == 3
    assert expected.group_names() == ["other", "solo", "team", "team/app"]


def test_every_tag_serves_its_pushed_size_created_and_first_seen_at_the_first_refresh(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    body = _json(service, "/repositories", alice, embed="true")
    timestamp = body["timestamp"]
    served: dict[Key, tuple[int, str | None]] = {}
    for repository in body["_embedded"]["items"]:
        name = repository["name"]
        assert _figures(repository, ("size", "disk_size", "unique_size")) == {
            "size": expected.figure(name, "size"), "disk_size": expected.figure(name, "disk_size"),
            "unique_size": expected.freed(expected.tags_of([name]))}, name
        for tag in repository["_embedded"]["related"]["_embedded"]["items"]:
            served[name, tag["name"]] = (tag["size"], tag["created"])
            first_seen = datetime.fromisoformat(tag["first_seen"]).timestamp()
            assert abs(first_seen - timestamp) < 0.001, (name, tag["name"], tag["first_seen"], timestamp)
    assert served == {key: (expected.tag_size(key), None if (when := expected.created[key]) is None else iso_utc(when))
                      for key in expected.tags}


def test_a_multi_platform_tag_counts_the_union_of_its_platforms_layers_and_the_newest_platforms_time(
    service: ServiceProcess, alice: dict[str, str]
) -> None:
    index = _json(service, "/repositories/team%2Flib/tags/multi", alice)
    union = LAYERS["lib-base"] + LAYERS["lib-amd"] + LAYERS["lib-arm"]
    assert (index["size"], index["created"], index["platforms"]) == (
        union, "2021-07-07T05:07:07Z", ["linux/amd64", "linux/arm64/v8"]), "arm64's 07:07:07+02:00, in UTC"
    manifest_list = _json(service, "/repositories/solo/tags/fat", alice)
    assert (manifest_list["size"], manifest_list["created"], manifest_list["platforms"]) == (
        LAYERS["solo"] + LAYERS["fat-amd"] + LAYERS["fat-arm"], "2024-02-02T00:00:00Z", ["linux/amd64", "linux/arm/v7"])


# -- groups --------------------------------------------------------------------------------------------------------


def test_groups_lists_the_top_level_groups_with_sums_over_their_repositories(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    body = _json(service, "/groups", alice, embed="true")
    top = expected.groups_at(1)
    assert _figures(body, ("total_size", "total_disk_size", "group_count", "repository_count", "tag_count")) == {
        "total_size": expected.total("size"), "total_disk_size": expected.total("disk_size"),
        "group_count": len(top), "repository_count": len(expected.repositories), "tag_count": len(expected.tags)}
    assert isinstance(body["timestamp"], float)
    assert [_figures(item, GROUP_FIELDS) for item in body["_embedded"]["items"]] == [
        expected.group(name) for name in top]


def test_groups_at_depth_two_are_the_groups_with_two_segments(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    body = _json(service, "/groups", alice, embed="true", depth="2")
    assert [_figures(item, GROUP_FIELDS) for item in body["_embedded"]["items"]] == [
        expected.group(name) for name in expected.groups_at(2)] == [expected.group("team/app")]


def test_groups_sort_by_disk_size_and_page(service: ServiceProcess, alice: dict[str, str], expected: Expected) -> None:
    top = expected.groups_at(1)
    by_disk = sorted(top, key=lambda name: expected.group(name)["disk_size"], reverse=True)
    assert len({expected.group(name)["disk_size"] for name in top}) == len(top), "no ties, one right order"
    body = _json(service, "/groups", alice, embed="true", sort="-disk_size", limit="2")
    assert [item["name"] for item in body["_embedded"]["items"]] == by_disk[:2]
    body = _json(service, "/groups", alice, embed="true", limit="1", offset="1")
    assert [item["name"] for item in body["_embedded"]["items"]] == top[1:2]


@pytest.mark.parametrize(("path", "name"), [
    ("/groups/team", "team"),
    ("/groups/team/app", "team/app"),
    ("/groups/team%2Fapp", "team/app"),
    ("/groups/other", "other"),
    ("/groups/solo", "solo"),  # a group that is also a repository's whole name
], ids=["top", "nested-plain", "nested-encoded", "other", "repository-named-as-group"])
def test_a_group_of_any_depth_serves_its_figures_plain_or_percent_encoded(
    service: ServiceProcess, alice: dict[str, str], expected: Expected, path: str, name: str
) -> None:
    assert _figures(_json(service, path, alice), GROUP_FIELDS) == expected.group(name)


def test_a_groups_unique_size_counts_only_layers_no_tag_outside_references(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    # "shared" is in team/app/worker and team/lib: unique to team, not to team/app.
    team, team_app = _json(service, "/groups/team", alice), _json(service, "/groups/team%2Fapp", alice)
    shared = LAYERS["shared"]
    assert team["unique_size"] == expected.group("team")["unique_size"]
    assert team_app["unique_size"] == expected.group("team/app")["unique_size"]
    team_only = {LAYERS[name] for name in ("app-v3", "app-rc", "app-v2", "app-v1", "dev-x", "worker", "worker-2",
                                           "shared", "lib-base", "lib-amd", "lib-arm")}
    assert team["unique_size"] == sum(team_only), "every team layer but base, which other/tool shares"
    assert team_app["unique_size"] == sum(team_only) - shared - LAYERS["lib-base"] - LAYERS["lib-amd"] \
        - LAYERS["lib-arm"]


def test_group_links_lead_to_the_parent_the_subgroups_and_the_direct_repositories(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    assert expected.subgroups("team") == ["team/app"]
    assert expected.direct_repositories("team") == ["team/lib"]
    assert expected.direct_repositories("team/app") == ["team/app", "team/app/worker"]
    for name in expected.group_names():
        document = _json(service, f"/groups/{name}", alice, links="true")
        links = document["_links"]
        assert [link["title"] for link in links["subgroups"]] == expected.subgroups(name), name
        assert [link["title"] for link in links["repositories"]] == expected.direct_repositories(name), name
        for link in links["subgroups"]:
            assert _follow(service, link["href"], alice).json()["name"] == link["title"]
        for link in links["repositories"]:
            assert _follow(service, link["href"], alice).json()["name"] == link["title"]
        assert _follow(service, links["self"]["href"], alice).json()["name"] == name
        up = _follow(service, links["up"]["href"], alice)
        assert up.status_code == 200, links["up"]
        parent = name.rpartition("/")[0]
        if parent:
            assert up.json()["name"] == parent
        else:
            assert "group_count" in up.json(), f"{name}: up is /groups"


def test_an_unknown_group_or_cleanup_scope_is_404_json(service: ServiceProcess, alice: dict[str, str]) -> None:
    for path in ("/groups/nope", "/groups/team%2Fnope", "/groups/team/app/worker",  # a repository, not a group
                 "/groups/nope/cleanup", "/repositories/team%2Fnope/cleanup"):
        response = service.get(path, headers=alice)
        assert response.status_code == 404, path
        assert set(response.json()) == {"message"}, path


def test_groups_csv_at_depth_one_has_the_exact_rows_and_sums_to_the_registrys_disk_size(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    response = service.get("/groups", headers={**alice, "Accept": "text/csv"}, params={"depth": "1"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(GROUP_FIELDS)
    assert rows[1:] == [[str(expected.group(name)[field]) for field in GROUP_FIELDS]
                        for name in expected.groups_at(1)]
    total = _json(service, "/repositories", alice)["total_disk_size"]
    assert sum(int(row[2]) for row in rows[1:]) == total == expected.total("disk_size")


def test_repositories_csv_has_the_exact_rows_in_catalog_order(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    response = service.get("/repositories", headers={**alice, "Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [["name", "size", "disk_size", "unique_size", "tag_count"]] + [
        [name, str(expected.figure(name, "size")), str(expected.figure(name, "disk_size")),
         str(expected.freed(expected.tags_of([name]))), str(len(expected.tags_of([name])))]
        for name in expected.repositories]


# -- the cleanup simulator -----------------------------------------------------------------------------------------

THIRTY_DAYS = Policy(older_than="30d", older_than_seconds=30 * DAY)


@dataclass(frozen=True)
class Case:
    path: str
    policy: Policy
    group: str | None = None
    repository: str | None = None


CASES = {
    "all-default-deletes-all-but-latest": Case("/cleanup", Policy()),
    "older-than": Case("/cleanup", THIRTY_DAYS),
    "older-than-in-weeks": Case("/cleanup", Policy(older_than="2 weeks", older_than_seconds=14 * DAY)),
    "keep-n-ties-by-name-unknown-newest": Case("/cleanup", Policy(keep_n=2)),
    "keep-n-protects-unknown-first": Case("/repositories/team%2Fapp/cleanup",
                                          Policy(keep_n=1, older_than="30d", older_than_seconds=30 * DAY),
                                          repository="team/app"),
    "keep-n-and-older-than": Case("/cleanup", Policy(keep_n=1, older_than="30d", older_than_seconds=30 * DAY)),
    "name-regex-and-keep": Case("/cleanup", Policy(name_regex="v.*", name_regex_keep="v1")),
    "latest-never": Case("/cleanup", Policy(keep_n=0, name_regex="latest")),
    "group-set-wise": Case("/groups/team/cleanup", THIRTY_DAYS, group="team"),
    "nested-group-encoded": Case("/groups/team%2Fapp/cleanup", Policy(keep_n=0), group="team/app"),
    "nested-group-plain": Case("/groups/team/app/cleanup", THIRTY_DAYS, group="team/app"),
    "group-name-regex-keep": Case("/groups/other/cleanup", Policy(name_regex_keep="keep-.*"), group="other"),
    "repository-shared-with-latest": Case("/repositories/team%2Fapp/cleanup", Policy(name_regex="v3"),
                                          repository="team/app"),
    "repository-one-of-two-tags": Case("/repositories/other%2Ftool/cleanup", Policy(name_regex=r"2\.0"),
                                       repository="other/tool"),
    "repository-both-tags": Case("/repositories/other%2Ftool/cleanup", Policy(name_regex=r"stable|2\.0"),
                                 repository="other/tool"),
}


def _expected_cleanup(expected: Expected, case: Case, now: float) -> dict[str, Any]:
    expected.assert_clear_of_cutoff(case.policy, now)
    scope = expected.covered(case.group) if case.group else [case.repository] if case.repository else None
    return expected.cleanup(case.policy, now, scope)


def _served_cleanup(service: ServiceProcess, alice: dict[str, str], case: Case) -> tuple[dict[str, Any], Any]:
    body = _json(service, case.path, alice, **case.policy.query())
    served = {**_figures(body, CLEANUP_FIELDS),
              "items": [_figures(item, ITEM_FIELDS) for item in body["_embedded"]["items"]]}
    return served, body


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_cleanup_deletes_and_frees_what_gitlabs_rules_say(
    service: ServiceProcess, alice: dict[str, str], expected: Expected, case: Case
) -> None:
    served, body = _served_cleanup(service, alice, case)
    # Evaluated at the data's time, whenever asked.
    now = datetime.fromisoformat(body["evaluated_at"]).timestamp()
    assert abs(now - body["timestamp"]) < 0.001, (body["evaluated_at"], body["timestamp"])
    assert served == _expected_cleanup(expected, case, now)
    policy = case.policy
    assert _figures(body["policy"], ("keep_n", "older_than", "name_regex", "name_regex_keep")) == {
        "keep_n": policy.keep_n, "older_than": policy.older_than, "name_regex": policy.name_regex,
        "name_regex_keep": policy.name_regex_keep}
    assert body["scope"] == {"group": case.group, "repository": case.repository}
    assert isinstance(body["timestamp"], float)


def test_set_wise_freed_size_exceeds_the_sum_of_the_repositories_own(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    case = CASES["group-set-wise"]
    served, _ = _served_cleanup(service, alice, case)
    wanted = _expected_cleanup(expected, case, time.time())
    # team/app/worker:w1 and team/lib:1.0 both go: "shared" is freed only by the two deletions together.
    assert wanted["freed_size"] - sum(item["freed_size"] for item in wanted["items"]) == LAYERS["shared"]
    assert {"team/app/worker", "team/lib"} <= {item["name"] for item in wanted["items"]}
    assert served["freed_size"] == wanted["freed_size"]
    assert [(item["name"], item["freed_size"]) for item in served["items"]] == [
        (item["name"], item["freed_size"]) for item in wanted["items"]]
    assert served["freed_size"] > sum(item["freed_size"] for item in served["items"])


def test_older_than_never_deletes_latest_or_a_tag_of_unknown_age(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    served, _ = _served_cleanup(service, alice, CASES["older-than"])
    deleted = {(item["name"], tag) for item in served["items"] for tag in item["tags"]}
    assert not {key for key in deleted if key[1] == "latest"}
    assert not {key for key in deleted if expected.created[key] is None}
    assert {("team/app", "rc"), ("team/app", "v2")} <= deleted, "the old ones do go"
    assert ("team/app", "v1") not in deleted and ("team/app", "dev-x") not in deleted


def test_a_tag_sharing_its_manifest_with_a_kept_tag_frees_nothing_until_both_go(
    service: ServiceProcess, alice: dict[str, str]
) -> None:
    one, _ = _served_cleanup(service, alice, CASES["repository-one-of-two-tags"])
    both, _ = _served_cleanup(service, alice, CASES["repository-both-tags"])
    assert (one["tags_deleted"], one["freed_size"]) == (1, 0)
    assert (both["tags_deleted"], both["freed_size"]) == (2, LAYERS["tool"]), "base stays: others use it"
    next_to_latest, _ = _served_cleanup(service, alice, CASES["repository-shared-with-latest"])
    assert (next_to_latest["tags_deleted"], next_to_latest["freed_size"]) == (1, 0)


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("/cleanup", {"keep_n": "-1"}, "keep_n"),
    ("/cleanup", {"keep_n": "many"}, "keep_n"),
    ("/cleanup", {"older_than": "soon"}, "older_than"),
    ("/cleanup", {"name_regex": "("}, "name_regex"),
    ("/groups/team/cleanup", {"name_regex_keep": "[z-a]"}, "name_regex_keep"),
    ("/repositories/team%2Fapp/cleanup", {"older_than": "-3d"}, "older_than"),
], ids=["keep-n-negative", "keep-n-word", "older-than-word", "name-regex-invalid", "keep-regex-invalid-in-group",
        "older-than-negative-in-repository"])
def test_a_bad_policy_parameter_is_400_json_naming_it(
    service: ServiceProcess, alice: dict[str, str], path: str, params: dict[str, str], parameter: str
) -> None:
    response = service.get(path, headers=alice, params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"message", "parameter"} and body["parameter"] == parameter
    assert isinstance(body["message"], str) and body["message"]


def test_cleanup_csv_has_one_row_per_affected_repository_with_its_tags_space_separated(
    service: ServiceProcess, alice: dict[str, str], expected: Expected
) -> None:
    case = CASES["older-than"]
    response = service.get(case.path, headers={**alice, "Accept": "text/csv"}, params=case.policy.query())
    now = time.time()
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["name", "freed_size", "tags_deleted", "tags"]
    assert rows[1:] == [[item["name"], str(item["freed_size"]), str(item["tags_deleted"]), " ".join(item["tags"])]
                        for item in _expected_cleanup(expected, case, now)["items"]]
