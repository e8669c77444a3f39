"""The pages people read, rendered from hand-built snapshots: figures, hooks for scripts, paging, escaping."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

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
