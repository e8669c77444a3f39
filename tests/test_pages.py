"""The pages people read, rendered from hand-built snapshots: figures, hooks for scripts, paging, escaping."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from html.parser import HTMLParser

import pytest

from gitlab_registry_usage_rest.cleanup import CleanupResult, PolicyError, RepositoryCleanup, Scope, parse_policy
from gitlab_registry_usage_rest.model import (
    ImageListing,
    Listing,
    RepositoryListing,
    RepositoryUsage,
    Snapshot,
    TagUsage,
)
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import RefreshStatus
from gitlab_registry_usage_rest.web import pages
from gitlab_registry_usage_rest.web.humanize import age, iec, iso

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("size", "shown"), [
    (None, "unknown"), (0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"), (10 * 1024**2, "10 MiB"),
    (2339061588, "2.2 GiB"), (123456789, "118 MiB"), (1024**4 - 1, "1 TiB"), (3 * 1024**5, "3 PiB"),
], ids=str)
def test_sizes_are_shown_in_iec_units(size: int | None, shown: str) -> None:
    assert iec(size) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "just now"), (45, "45 seconds ago"), (60, "1 minute ago"), (250, "4 minutes ago"), (7200, "2 hours ago"),
    (86400 * 3, "3 days ago"),
], ids=str)
def test_times_are_shown_as_ages(seconds: float, shown: str) -> None:
    assert age(seconds) == shown


def test_iso_time_is_utc_to_the_second() -> None:
    assert iso(0.9) == "1970-01-01T00:00:00Z"


class _Rows(HTMLParser):
    """Collects the data-* hooks of table rows and treemap rectangles, and every href."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.rects: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.totals: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and ("data-repository" in found or "data-tag" in found):
            self.rows.append(found)
        if tag == "rect" and "data-path" in found:
            self.rects.append(found)
        if tag == "section" and found.get("id") == "totals":
            self.totals = found
        if "href" in found and found["href"] is not None:
            self.hrefs.append(found["href"])


def _snapshot(repositories: int, hostile: bool = False) -> Snapshot:
    names = [f"team-{i % 7}/app-{i}" for i in range(repositories)]
    if hostile:
        names.append('evil/"><script>alert(1)</script>&x')
    listing = Listing(
        tuple(RepositoryListing(name, (ImageListing("latest", (f"layer-{i}", "shared")),
                                       ImageListing("v1", (f"layer-{i}",))))
              for i, name in enumerate(names)) + (RepositoryListing("broken/one", None),),
        {**{f"layer-{i}": 1000 + i for i in range(len(names))}, "shared": 5},
        ("broken/one: its tags could not be read",),
    )
    return build_snapshot(listing, NOW - 250)


def _dashboard(snapshot: Snapshot, **args: str) -> _Rows:
    view = pages.Dashboard(snapshot, RefreshStatus(), NOW, "/prefix", pages.TableQuery.from_args(args), "alice")
    parser = _Rows()
    parser.feed(pages.dashboard_page(view))
    return parser


def test_dashboard_totals_carry_exact_bytes() -> None:
    snapshot = _snapshot(30)
    parsed = _dashboard(snapshot)
    assert parsed.totals["data-total-disk-size"] == str(sum(r.disk_size or 0 for r in snapshot.repositories))
    assert parsed.totals["data-repository-count"] == "31" and parsed.totals["data-tag-count"] == "60"


def test_dashboard_table_shows_one_page_of_the_largest_first_with_a_next_link() -> None:
    snapshot = _snapshot(120)
    parsed = _dashboard(snapshot)
    sizes = [int(row["data-disk-size"] or 0) for row in parsed.rows]
    assert len(parsed.rows) == pages.PAGE_ROWS and sizes == sorted(sizes, reverse=True)
    assert "/prefix/?page=2" in parsed.hrefs
    last = _dashboard(snapshot, page="3")
    assert len(last.rows) == 121 - 2 * pages.PAGE_ROWS


@pytest.mark.parametrize(("sort", "key"), [("name", "data-repository"), ("-disk_size", "data-disk-size")])
def test_dashboard_table_sorts_by_the_chosen_column(sort: str, key: str) -> None:
    rows = _dashboard(_snapshot(20), sort=sort).rows
    values = [row[key] or "" for row in rows if row["data-repository"] != "broken/one"]
    expected = sorted(values) if sort == "name" else sorted(values, key=int, reverse=True)
    assert values == expected


def test_dashboard_filter_by_group_covers_the_group_and_what_is_below() -> None:
    rows = _dashboard(_snapshot(30), prefix="team-3/").rows
    assert rows and all(str(row["data-repository"]).startswith("team-3/") for row in rows)


def test_treemap_rectangles_link_to_repositories_and_group_pages() -> None:
    parsed = _dashboard(_snapshot(30))
    kinds = {rect["data-kind"] for rect in parsed.rects}
    assert kinds == {"group", "repository"}
    assert "/prefix/repositories/team-3%2Fapp-3" in parsed.hrefs
    assert "/prefix/groups/team-3" in parsed.hrefs


def test_hostile_names_are_escaped_everywhere() -> None:
    snapshot = _snapshot(3, hostile=True)
    view = pages.Dashboard(snapshot, RefreshStatus(), NOW, "", pages.TableQuery(), "<b>alice</b>")
    text = pages.dashboard_page(view)
    assert "<script>" not in text and "<b>alice" not in text
    assert '"><script>' not in text
    evil = next(r for r in snapshot.repositories if r.name.startswith("evil/"))
    assert "<script>" not in pages.repository_page(evil, "", "alice", now=NOW)


def test_crawl_errors_and_age_are_shown() -> None:
    text = pages.dashboard_page(pages.Dashboard(_snapshot(2), RefreshStatus(), NOW, "", pages.TableQuery(), "a"))
    assert "4 minutes ago" in text and "broken/one: its tags could not be read" in text


def test_repository_page_lists_its_tags_with_hooks_and_breadcrumbs_to_group_pages() -> None:
    snapshot = _snapshot(3)
    repository = snapshot.repositories[1]
    parsed = _Rows()
    parsed.feed(pages.repository_page(repository, "/p", "alice", now=NOW))
    assert {row["data-tag"] for row in parsed.rows} == {"latest", "v1"}
    assert {row["data-tag"]: int(row["data-disk-size"] or 0) for row in parsed.rows} == {
        tag.name: tag.disk_size for tag in repository.tags or ()}
    assert "/p/groups/team-1" in parsed.hrefs and "/p/" in parsed.hrefs


AGES = RepositoryUsage("g/p", 3, 3, 3, (
    TagUsage("built", 1, 1, 1, created=NOW - 3 * 86400 - 5, first_seen=NOW - 7200.5),
    TagUsage("reproducible", 1, 1, 1, created=None, first_seen=NOW - 60),
    TagUsage("library", 1, 1, 1),
))


def _cells(text: str, tag: str) -> str:
    match = re.search(rf'<tr data-tag="{tag}"[^>]*>(.*?)</tr>', text)
    assert match is not None
    return match.group(1)


def test_repository_page_shows_created_and_first_seen_as_ages_with_raw_times_on_the_rows() -> None:
    text = pages.repository_page(AGES, "", "alice", now=NOW)
    assert "<th>Created</th><th>First seen</th>" in text
    parsed = _Rows()
    parsed.feed(text)
    assert {row["data-tag"]: (row["data-created"], row["data-first-seen"]) for row in parsed.rows} == {
        "built": (repr(NOW - 3 * 86400 - 5), repr(NOW - 7200.5)), "reproducible": ("", repr(NOW - 60)),
        "library": ("", ""),
    }
    built = _cells(text, "built")
    assert f'title="{iso(NOW - 3 * 86400 - 5)}">3 days ago</time>' in built
    assert f'title="{iso(NOW - 7200.5)}">2 hours ago</time>' in built
    reproducible = _cells(text, "reproducible")
    assert "unknown (none or before 2000)" in reproducible and ">1 minute ago</time>" in reproducible
    library = _cells(text, "library")
    assert "unknown (none or before 2000)" in library and '<span class="muted">unknown</span>' in library


def test_tag_page_shows_when_the_image_was_built_and_first_seen() -> None:
    tags = AGES.tags or ()
    text = pages.tag_page(AGES, tags[0], "", "alice", now=NOW)
    assert re.search(r"<th>Created</th><td[^>]*><time [^>]*>3 days ago</time>", text)
    assert re.search(r"<th>First seen</th><td[^>]*><time [^>]*>2 hours ago</time>", text)
    assert f'data-created="{NOW - 3 * 86400 - 5!r}"' in text
    text = pages.tag_page(AGES, tags[2], "", "alice", now=NOW)
    assert re.search(r"<th>Created</th><td[^>]*><span [^>]*>unknown \(none or before 2000\)</span>", text)
    assert re.search(r'<th>First seen</th><td[^>]*><span class="muted">unknown</span>', text)


def test_login_page_is_a_form_posting_to_login() -> None:
    text = pages.login_page("/p", "Invalid user name or password", 'al"ice')
    assert re.search(r'<form id="login"[^>]* method="post" action="/p/login"', text)
    assert 'name="username"' in text and 'name="password" type="password"' in text
    assert 'value="al&quot;ice"' in text and "Invalid user name or password" in text


# --- groups, a group, the cleanup simulator ------------------------------------------------------

class _Page(HTMLParser):
    """Every start tag with its attributes, and the text inside each element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag not in ("input", "meta", "br", "rect", "img"):
            self._open.append(found.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("input", "meta", "br", "rect", "img") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            if element is not None:
                self.texts[element] = self.texts.get(element, "") + data

    def all(self, tag: str, attribute: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag and attribute in attrs]

    def one(self, tag: str, **attributes: str) -> dict[str, str | None]:
        found = [attrs for name, attrs in self.tags
                 if name == tag and all(attrs.get(key.replace("_", "-")) == value for key, value in attributes.items())]
        assert len(found) == 1, (tag, attributes, found)
        return found[0]

    def hrefs(self) -> list[str]:
        return [str(attrs["href"]) for _, attrs in self.tags if attrs.get("href") is not None]


def _parse(text: str) -> _Page:
    parsed = _Page()
    parsed.feed(text)
    return parsed


def _nested() -> Snapshot:
    """A registry with groups three deep, a group's own image, and a layer shared across two groups."""
    def image(tag: str, *layers: str) -> ImageListing:
        return ImageListing(tag, layers)

    listing = Listing((
        RepositoryListing("acme/web/frontend", (image("v1", "base", "fe1"), image("v2", "base", "fe2"))),
        RepositoryListing("acme/web/backend", (image("v1", "base", "be1"),)),
        RepositoryListing("acme/tools", (image("main", "tools"),)),
        RepositoryListing("acme", (image("own", "acme-own"),)),
        RepositoryListing("other/thing", (image("x", "base", "other"),)),
    ), {"base": 1000, "fe1": 100, "fe2": 200, "be1": 50, "tools": 70, "acme-own": 9, "other": 300})
    return build_snapshot(listing, NOW - 90)


def test_groups_page_lists_the_top_level_groups_largest_first_with_their_figures() -> None:
    snapshot = _nested()
    parsed = _parse(pages.groups_page(snapshot, "/p", "alice", {}, now=NOW))
    rows = parsed.all("tr", "data-group")
    assert [row["data-group"] for row in rows] == ["acme", "other"]
    for row in rows:
        group = snapshot.group(str(row["data-group"]))
        assert group is not None
        assert (row["data-disk-size"], row["data-unique-size"], row["data-repository-count"], row["data-tag-count"]) \
            == (str(group.disk_size), str(group.unique_size), str(group.repository_count), str(group.tag_count))
    total = sum(repository.disk_size or 0 for repository in snapshot.repositories)
    totals = parsed.one("section", id="totals")
    assert totals["data-total-disk-size"] == str(total) and totals["data-group-count"] == "2"
    assert {"/p/groups/acme", "/p/groups/other", "/p/groups?format=csv", "/p/groups?depth=2", "/p/cleanup",
            "/p/groups?sort=name"} <= set(parsed.hrefs())


def test_groups_page_at_a_depth_lists_the_groups_of_that_depth_in_the_order_asked() -> None:
    snapshot = _nested()
    parsed = _parse(pages.groups_page(snapshot, "", "alice", {"depth": "2", "sort": "name"}, now=NOW))
    assert [row["data-group"] for row in parsed.all("tr", "data-group")] == ["acme/web"]
    assert "/groups?depth=2&format=csv" in parsed.hrefs()
    # The treemap draws each group with the repositories it covers; its name band opens the group.
    rects = {(rect["data-kind"], rect["data-path"]): rect["data-bytes"] for rect in parsed.all("rect", "data-path")}
    web = snapshot.group("acme/web")
    assert web is not None and rects[("group", "acme/web")] == str(web.disk_size)
    assert {path for kind, path in rects if kind == "repository"} == {"acme/web/frontend", "acme/web/backend"}
    assert parsed.one("rect", data_group="acme/web")["class"] == "band"


@pytest.mark.parametrize(("query", "expected"), [
    ({}, "default"), ({"depth": "0"}, "default"), ({"depth": "x", "sort": "-nonsense", "page": "-3"}, "default"),
    ({"sort": "repositories"}, ["other", "acme"]), ({"sort": "-tags"}, ["acme", "other"]),
], ids=["none", "depth-zero", "nonsense", "repositories-ascending", "tags-descending"])
def test_groups_page_forgives_what_links_may_carry(query: dict[str, str], expected: list[str] | str) -> None:
    parsed = _parse(pages.groups_page(_nested(), "", None, query, now=NOW))
    shown = [row["data-group"] for row in parsed.all("tr", "data-group")]
    assert shown == (["acme", "other"] if expected == "default" else expected)


def test_groups_page_pages_the_table_and_keeps_the_order_in_its_links() -> None:
    snapshot = _snapshot(10)
    names = [f"g{i:03d}/app" for i in range(pages.PAGE_ROWS + 7)]
    listing = Listing(tuple(RepositoryListing(name, (ImageListing("t", (name,)),)) for name in names),
                      {name: 100 + i for i, name in enumerate(names)})
    snapshot = build_snapshot(listing, NOW)
    first = _parse(pages.groups_page(snapshot, "", "a", {"sort": "name"}, now=NOW))
    assert len(first.all("tr", "data-group")) == pages.PAGE_ROWS
    assert "/groups?sort=name&page=2" in first.hrefs()
    second = _parse(pages.groups_page(snapshot, "", "a", {"sort": "name", "page": "2"}, now=NOW))
    assert [row["data-group"] for row in second.all("tr", "data-group")] == [
        f"g{i:03d}" for i in range(pages.PAGE_ROWS, pages.PAGE_ROWS + 7)]


def test_groups_page_without_data_says_the_first_crawl_is_running() -> None:
    assert "the first crawl is running" in pages.groups_page(None, "", "a", {}, now=NOW)


def test_group_page_shows_crumbs_figures_subgroups_then_repositories_and_a_cleanup_form() -> None:
    snapshot = _nested()
    group = snapshot.group("acme/web")
    assert group is not None
    text = pages.group_page(snapshot, group, "/p", "alice", {}, now=NOW)
    parsed = _parse(text)
    crumbs = re.search(r'<nav class="crumbs"[^>]*>(.*?)</nav>', text)
    assert crumbs is not None
    assert re.findall(r'href="([^"]+)"', crumbs.group(1)) == ["/p/", "/p/groups", "/p/groups/acme"]
    assert (parsed.one("div", id="group-disk-size")["data-disk-size"],
            parsed.one("div", id="group-unique-size")["data-unique-size"],
            parsed.one("div", id="group-repository-count")["data-repository-count"]) == (
        str(group.disk_size), str(group.unique_size), "2")
    assert "Deleting this group frees" in text
    assert [row["data-repository"] for row in parsed.all("tr", "data-repository")] == [
        "acme/web/frontend", "acme/web/backend"]
    form = parsed.one("form", id="cleanup-form")
    assert (form["method"], form["action"]) == ("get", "/p/groups/acme/web/cleanup")
    assert {attrs["name"]: attrs["value"] for attrs in parsed.all("input", "name")} == {
        "keep_n": "10", "older_than": "90d", "name_regex": ".*", "name_regex_keep": ""}


def test_group_page_lists_subgroups_before_repositories_and_draws_both() -> None:
    snapshot = _nested()
    group = snapshot.group("acme")
    assert group is not None
    parsed = _parse(pages.group_page(snapshot, group, "", "alice", {}, now=NOW))
    kinds = [("group", attrs["data-group"]) if "data-group" in attrs else ("repository", attrs["data-repository"])
             for name, attrs in parsed.tags if name == "tr" and ("data-group" in attrs or "data-repository" in attrs)]
    assert kinds == [("group", "acme/web"), ("repository", "acme/tools"), ("repository", "acme")]
    assert {"/groups/acme/web", "/repositories/acme%2Ftools", "/repositories/acme"} <= set(parsed.hrefs())
    rects = {(rect["data-kind"], rect["data-path"]): int(rect["data-bytes"] or 0)
             for rect in parsed.all("rect", "data-path")}
    web = snapshot.group("acme/web")
    assert web is not None
    assert rects[("group", "acme/web")] == web.disk_size
    assert {path for kind, path in rects if kind == "repository"} == {
        "acme/web/frontend", "acme/web/backend", "acme/tools", "acme"}
    leaves = sum(size for (kind, _), size in rects.items() if kind != "group")
    assert leaves == group.disk_size


def test_group_page_from_a_kept_overview_is_the_page_built_afresh() -> None:
    snapshot = _nested()
    group, other = snapshot.group("acme"), snapshot.group("acme/web")
    assert group is not None and other is not None
    overview = pages.GroupOverview(snapshot, group, "/p")
    for query in ({}, {"page": "2"}):
        fresh = pages.group_page(snapshot, group, "/p", "a", query, now=NOW)
        assert pages.group_page(snapshot, group, "/p", "a", query, now=NOW, overview=overview) == fresh
    # An overview of another group, prefix or snapshot is not used.
    assert pages.group_page(snapshot, other, "/p", "a", {}, now=NOW, overview=overview) == pages.group_page(
        snapshot, other, "/p", "a", {}, now=NOW)
    assert pages.group_page(snapshot, group, "", "a", {}, now=NOW, overview=overview) == pages.group_page(
        snapshot, group, "", "a", {}, now=NOW)
    again = _nested()
    again_group = again.group("acme")
    assert again_group is not None
    assert pages.group_page(again, again_group, "/p", "a", {}, now=NOW, overview=overview) == pages.group_page(
        again, again_group, "/p", "a", {}, now=NOW)


def test_group_page_warns_that_unreadable_repositories_may_overstate_what_deleting_it_frees() -> None:
    listing = Listing((RepositoryListing("acme/web", (ImageListing("v1", ("base",)),)),
                       RepositoryListing("acme/broken", None),
                       RepositoryListing("other/x", (ImageListing("x", ("o",)),))), {"base": 10, "o": 5})
    snapshot = build_snapshot(listing, NOW)
    acme, other = snapshot.group("acme"), snapshot.group("other")
    assert acme is not None and other is not None
    parsed = _parse(pages.group_page(snapshot, acme, "", "a", {}, now=NOW))
    assert parsed.one("p", id="unreadable")["data-unreadable-repositories"] == "1"
    assert parsed.texts["unreadable"].startswith("1 repository in this group could not be read in the last crawl")
    assert "what deleting this group frees may be overstated" in parsed.texts["unreadable"]
    assert "unreadable" not in _parse(pages.group_page(snapshot, other, "", "a", {}, now=NOW)).texts


def test_repository_page_offers_a_cleanup_simulation_for_it() -> None:
    snapshot = _nested()
    repository = snapshot.repository("acme/web/backend")
    assert repository is not None
    parsed = _parse(pages.repository_page(repository, "/p", "alice", now=NOW))
    assert parsed.one("form", id="cleanup-form")["action"] == "/p/repositories/acme%2Fweb%2Fbackend/cleanup"
    assert {"/p/groups/acme", "/p/groups/acme/web"} <= set(parsed.hrefs())


def test_dashboard_lists_the_largest_groups_and_links_to_groups_and_the_simulator() -> None:
    snapshot = _nested()
    view = pages.Dashboard(snapshot, RefreshStatus(), NOW, "/p", pages.TableQuery(), "alice")
    text = pages.dashboard_page(view)
    parsed = _parse(text)
    assert [row["data-group"] for row in parsed.all("tr", "data-group")] == ["acme", "other"]
    assert {"/p/groups", "/p/cleanup", "/p/groups/acme"} <= set(parsed.hrefs())
    # A group's tooltip says what deleting it frees.
    acme = snapshot.group("acme")
    assert acme is not None and acme.unique_size is not None
    assert f"deleting the group frees {iec(acme.unique_size)} ({acme.unique_size:,} bytes)" in text


def _result(repositories: int = 2, tags: int = 3, freed: int = 5000) -> CleanupResult:
    entries = tuple(RepositoryCleanup(f"team/app-{i}", 1000 - i, tags, tuple(f"v{j}" for j in range(tags)))
                    for i in range(repositories))
    return CleanupResult(parse_policy({"keep_n": "2", "older_than": "30d"}), Scope(group="team"), repositories + 1,
                         repositories * tags + 5, repositories * tags, repositories, freed, entries)


def test_cleanup_page_says_what_would_be_deleted_and_freed_with_one_row_per_repository() -> None:
    result = _result()
    text = pages.cleanup_page(_nested(), result, None, {"keep_n": "2", "older_than": "30d"}, "/p", "alice",
                              now=NOW)
    parsed = _parse(text)
    assert "Would delete 6 tags in 2 repositories and free 4.9 KiB." in parsed.texts["cleanup-result"]
    assert 'title="5,000 bytes"' in text
    section = parsed.one("section", id="cleanup-result")
    assert (section["data-freed-size"], section["data-tags-deleted"], section["data-own-freed-size"]) == (
        "5000", "6", str(1000 + 999))
    assert "more than the sum of what each repository's deletions free alone" in text
    assert [(row["data-repository"], row["data-freed-size"]) for row in parsed.all("tr", "data-repository")] == [
        ("team/app-0", "1000"), ("team/app-1", "999")]
    assert {"/p/groups/team/cleanup?keep_n=2&older_than=30d&format=csv", "/p/groups/team"} <= set(parsed.hrefs())
    form = parsed.one("form", id="cleanup-form")
    assert form["action"] == "/p/groups/team/cleanup"
    assert {attrs["name"]: attrs["value"] for attrs in parsed.all("input", "name")} == {
        "keep_n": "2", "older_than": "30d", "name_regex": "", "name_regex_keep": ""}


def test_cleanup_page_says_in_one_sentence_why_tags_of_unknown_age_are_kept() -> None:
    kept = dataclasses.replace(_result(), tags_created_unknown=3)
    parsed = _parse(pages.cleanup_page(_nested(), kept, None, {"older_than": "30d"}, "", "a", now=NOW))
    assert parsed.one("section", id="cleanup-result")["data-tags-created-unknown"] == "3"
    sentence = parsed.texts["created-unknown"]
    assert sentence.startswith("3 tags would go but for an unknown creation time")
    assert "reproducible builds record 1970" in sentence and "would delete such tags under older_than" in sentence
    none = _parse(pages.cleanup_page(_nested(), _result(), None, {"older_than": "30d"}, "", "a", now=NOW))
    assert "created-unknown" not in none.texts


def test_cleanup_page_cuts_long_tag_lists_and_pages_the_repositories() -> None:
    result = _result(repositories=pages.PAGE_ROWS + 3, tags=pages.TAGS_SHOWN + 4)
    text = pages.cleanup_page(_nested(), result, None, {"keep_n": "2"}, "", "alice", now=NOW)
    parsed = _parse(text)
    assert len(parsed.all("tr", "data-repository")) == pages.PAGE_ROWS
    assert f"and {4} more" in text and f"v{pages.TAGS_SHOWN}," not in text
    assert "/groups/team/cleanup?keep_n=2&page=2" in parsed.hrefs()
    last = _parse(pages.cleanup_page(_nested(), result, None, {"keep_n": "2", "page": "2"}, "", "a", now=NOW))
    assert len(last.all("tr", "data-repository")) == 3


@pytest.mark.parametrize("parameter", ["keep_n", "older_than", "name_regex", "name_regex_keep"])
def test_cleanup_page_shows_an_error_beside_the_field_it_names(parameter: str) -> None:
    values = {"keep_n": "5", "older_than": "30d", "name_regex": ".*", "name_regex_keep": "", parameter: "bad<b>"}
    try:
        parse_policy({parameter: {"keep_n": "-1", "older_than": "soon", "name_regex": "(",
                                  "name_regex_keep": "[z-a]"}[parameter]})
    except PolicyError as raised:
        error = raised
    text = pages.cleanup_page(_nested(), None, error, values, "", "alice", now=NOW, scope=Scope())
    parsed = _parse(text)
    invalid = [attrs["name"] for attrs in parsed.all("input", "aria-invalid")]
    assert invalid == [parameter]
    field = parsed.one("input", name=parameter)
    assert field["value"] == "bad<b>" and f"{parameter}-error" in str(field["aria-describedby"])
    assert parsed.texts[f"{parameter}-error"] == error.message
    assert "bad<b>" not in text and "cleanup-result" not in text


def test_cleanup_page_shows_an_error_about_no_field_above_the_form() -> None:
    error = PolicyError("group", "the scope is the path")
    parsed = _parse(pages.cleanup_page(_nested(), None, error, {"group": "x"}, "", "alice", now=NOW))
    assert parsed.texts["cleanup-error"] == "group: the scope is the path"
    assert not parsed.all("input", "aria-invalid")


def test_cleanup_page_without_a_policy_offers_gitlabs_usual_one() -> None:
    parsed = _parse(pages.cleanup_page(_nested(), None, None, {}, "", "alice", now=NOW,
                                       scope=Scope(repository="acme/tools")))
    assert {attrs["name"]: attrs["value"] for attrs in parsed.all("input", "name")} == {
        "keep_n": "10", "older_than": "90d", "name_regex": ".*", "name_regex_keep": ""}
    assert parsed.one("form", id="cleanup-form")["action"] == "/repositories/acme%2Ftools/cleanup"
    assert "/groups/acme" in parsed.hrefs()


def test_cleanup_page_of_unknown_scope_sends_its_form_to_its_own_address() -> None:
    parsed = _parse(pages.cleanup_page(_nested(), None, PolicyError("keep_n", "bad"), {"keep_n": "x"}, "", "a",
                                       now=NOW))
    assert "action" not in parsed.one("form", id="cleanup-form")


def _hostile() -> Snapshot:
    names = ['"><img src=x onerror=alert(1)>/x&y/app', "a/cleanup/b", "<b>g<b>/sub/<i>r<i>", "a/<script>/c"]
    listing = Listing(tuple(RepositoryListing(name, (ImageListing('t"<x>', (name,)),)) for name in names),
                      {name: 10 + i for i, name in enumerate(names)})
    return build_snapshot(listing, NOW)


def test_hostile_group_and_repository_names_are_escaped_on_the_group_and_cleanup_pages() -> None:
    snapshot = _hostile()
    entries = tuple(RepositoryCleanup(repository.name, 10, 1, ('t"<x>',)) for repository in snapshot.repositories)
    result = CleanupResult(parse_policy({"name_regex": '"><script>'}), Scope(group=snapshot.groups[0].name), 3, 3,
                           3, 3, 30, entries)
    texts = [pages.groups_page(snapshot, "", "<b>alice</b>", {"depth": str(depth)}, now=NOW) for depth in (1, 2)]
    texts += [pages.group_page(snapshot, group, "", "a", {}, now=NOW) for group in snapshot.groups]
    texts.append(pages.cleanup_page(snapshot, result, None, {"name_regex": '"><script>'}, "", "a", now=NOW))
    texts.append(pages.cleanup_page(snapshot, None, PolicyError("keep_n", "<i>no</i>"), {"keep_n": '"><script>'},
                                    "", "a", now=NOW))
    texts.append(pages.dashboard_page(pages.Dashboard(snapshot, RefreshStatus(), NOW, "", pages.TableQuery(), "a")))
    for text in texts:
        assert "<script" not in text and "<img" not in text and "<b>" not in text and "<i>" not in text
        assert '"<x>' not in text
        parsed = _parse(text)  # and every attribute still parses as one attribute
        assert not [attrs for _, attrs in parsed.tags if "onerror" in attrs or "alert(1)" in attrs]
    group_hrefs = {href for text in texts for href in _parse(text).hrefs() if href.startswith("/groups/")}
    assert "/groups/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/x%26y" in group_hrefs
    # A group named .../cleanup keeps its last slash encoded, so the link cannot ask for a simulation.
    assert "/groups/a%2Fcleanup" in group_hrefs
    group = snapshot.group("a")
    assert group is not None
    form = _parse(pages.group_page(snapshot, group, "", "a", {}, now=NOW)).one("form", id="cleanup-form")
    assert form["action"] == "/groups/a/cleanup"


def test_pages_carry_no_script_and_no_style_but_the_one_block_the_csp_allows() -> None:
    snapshot = _nested()
    group = snapshot.group("acme")
    assert group is not None
    texts = [
        pages.groups_page(snapshot, "", "a", {}, now=NOW),
        pages.group_page(snapshot, group, "", "a", {}, now=NOW),
        pages.cleanup_page(snapshot, _result(), None, {"keep_n": "2"}, "", "a", now=NOW),
        pages.cleanup_page(snapshot, None, PolicyError("keep_n", "bad"), {"keep_n": "x"}, "", "a", now=NOW),
    ]
    digest = base64.b64encode(hashlib.sha256(pages.STYLE.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in pages.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in pages.CONTENT_SECURITY_POLICY
    for text in texts:
        parsed = _parse(text)
        assert not [tag for tag, _ in parsed.tags if tag == "script"]
        assert [tag for tag, _ in parsed.tags if tag == "style"] == ["style"]
        assert re.findall(r"<style>(.*?)</style>", text, re.S) == [pages.STYLE]
        assert not [attrs for _, attrs in parsed.tags if "style" in attrs or any(
            key.startswith("on") for key in attrs)]


def test_groups_page_from_a_kept_overview_is_the_page_built_afresh() -> None:
    snapshot, other = _nested(), _snapshot(5)
    overview = pages.GroupsOverview(snapshot, "/p")
    for query in ({}, {"depth": "2"}, {"sort": "name"}):
        fresh = pages.groups_page(snapshot, "/p", "a", query, now=NOW)
        assert pages.groups_page(snapshot, "/p", "a", query, now=NOW, overview=overview) == fresh
    # An overview of another snapshot (or prefix) is not used.
    assert pages.groups_page(other, "/p", "a", {}, now=NOW, overview=overview) == pages.groups_page(
        other, "/p", "a", {}, now=NOW)
    assert pages.groups_page(snapshot, "", "a", {}, now=NOW, overview=overview) == pages.groups_page(
        snapshot, "", "a", {}, now=NOW)
