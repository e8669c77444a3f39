"""CSV exports of ``/repositories``, ``/groups`` and the cleanup answers: exact bytes, every item (not a page),
formula injection defused, sums that add up, and the render cache.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.export import cell, filename
from tests.support.webapp import FakeDirectory, basic, make_config

NOW = 1_700_000_000.0
DAY = 86400.0
CSV = {"Accept": "text/csv"}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def small() -> Listing:
    def image(tag: str, days: float, *layers: str) -> ImageListing:
        return ImageListing(tag, layers, created=NOW - days * DAY)

    return Listing((
        RepositoryListing("b/web", (image("latest", 1, "base", "w1"), image("v1", 40, "base", "w0"))),
        RepositoryListing('a/"quoted", name', (image("1", 50, "base", "q1"),)),
        RepositoryListing("b/sub/job", (image("n", 60, "j1"), image("m", 70, "j2"))),
        RepositoryListing("broken", None),
    ), {"base": 1000, "w1": 10, "w0": 20, "q1": 3, "j1": 5, "j2": 7})


def client_for(listing: Listing) -> tuple[FlaskClient, dict[str, str]]:
    app = create_app(make_config(), SnapshotHolder(build_snapshot(listing, NOW - 60)), FakeDirectory(),
                     clock=lambda: NOW)
    client = app.test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    return client, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client() -> Iterator[tuple[FlaskClient, dict[str, str]]]:
    yield client_for(small())


def download(client: FlaskClient, url: str, headers: dict[str, str]) -> bytes:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    return bytes(response.data)


def rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


# --- exact bytes ---------------------------------------------------------------------------------------------

def test_repositories_csv_is_one_row_per_repository_in_catalog_order(
        client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    # b/web: v1 owns base (its two layers tie with latest's; the first tag keeps a tie) -> disk 10 and 1020.
    assert download(web, "/repositories", {**auth, **CSV}) == (
        b"name,size,disk_size,unique_size,tag_count\r\n"
        b"b/web,2030,1030,30,2\r\n"
        b'"a/""quoted"", name",1003,3,3,1\r\n'
        b"b/sub/job,12,12,12,2\r\n"
        b"broken,,,,\r\n"
    )


def test_groups_csv_is_one_row_per_top_level_group_by_name(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    assert download(web, "/groups", {**auth, **CSV}) == (
        b"name,size,disk_size,unique_size,repository_count,tag_count\r\n"
        b"a,1003,3,3,1,1\r\n"
        b"b,2042,1042,42,2,4\r\n"  # base is shared with a's image
        b"broken,0,0,0,1,0\r\n"
    )
    assert download(web, "/groups?depth=2", {**auth, **CSV}) == (
        b"name,size,disk_size,unique_size,repository_count,tag_count\r\n"
        b"b/sub,12,12,12,1,2\r\n"
    )


def test_a_groups_csv_is_every_repository_it_covers_with_the_repository_columns(
        client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    body = download(web, "/groups/b?format=csv", auth)
    assert body == (
        b"name,size,disk_size,unique_size,tag_count\r\n"
        b"b/sub/job,12,12,12,2\r\n"
        b"b/web,2030,1030,30,2\r\n"
    )
    assert download(web, "/groups/b", {**auth, **CSV}) == body
    # Fit for chargeback: the rows' disk sizes add up to the group's.
    group = json.loads(web.get("/groups/b", headers=auth).data)
    assert sum(int(row[2]) for row in rows(body)[1:]) == group["disk_size"]
    assert [row[0] for row in rows(download(web, "/groups/b?format=csv&sort=-size&limit=1", auth))] == [
        "name", "b/web"]
    assert download(web, "/groups/b/sub?format=csv", auth) == (
        b"name,size,disk_size,unique_size,tag_count\r\nb/sub/job,12,12,12,2\r\n")


def test_cleanup_csv_lists_each_affected_repository_with_its_deleted_tags(
        client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    assert download(web, "/cleanup?older_than=30d", {**auth, **CSV}) == (
        b"name,freed_size,tags_deleted,tags\r\n"
        b"b/web,20,1,v1\r\n"
        b"b/sub/job,12,2,n m\r\n"
        b'"a/""quoted"", name",3,1,1\r\n'
    )
    # b/web's one candidate (latest never is) is its newest: keep_n=1 keeps it.
    assert download(web, "/groups/b/cleanup?older_than=30d&keep_n=1", {**auth, **CSV}) == (
        b"name,freed_size,tags_deleted,tags\r\n"
        b"b/sub/job,7,1,m\r\n"
    )
    assert download(web, "/repositories/b%2Fsub%2Fjob/cleanup?name_regex=x", {**auth, **CSV}) == (
        b"name,freed_size,tags_deleted,tags\r\n")


@pytest.mark.parametrize(("url", "name"), [
    ("/repositories", "repositories.csv"),
    ("/repositories?prefix=b/", "repositories-b.csv"),
    ("/groups", "groups.csv"),
    ("/groups?depth=2", "groups-depth-2.csv"),
    ("/groups/b/sub", "group-b_sub.csv"),
    ("/cleanup", "cleanup.csv"),
    ("/groups/b/sub/cleanup", "cleanup-b_sub.csv"),
    ("/repositories/a%2F%22quoted%22%2C%20name/cleanup", "cleanup-a_quoted_name.csv"),
])
def test_csv_is_a_download_with_a_safe_file_name(client: tuple[FlaskClient, dict[str, str]], url: str,
                                                 name: str) -> None:
    web, auth = client
    response = web.get(url, headers={**auth, **CSV})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'


@pytest.mark.parametrize(("stem", "name"), [
    ('x"; filename=evil.exe', "x_filename_evil.exe.csv"), ("../../etc/passwd", "etc_passwd.csv"),
    ("\r\nSet-Cookie: a=b", "Set-Cookie_a_b.csv"), ("ünïcode", "n_code.csv"), ("", "export.csv"),
    ("a" * 300, "a" * 100 + ".csv"),
])
def test_download_names_carry_no_quotes_separators_or_control_characters(stem: str, name: str) -> None:
    assert filename(stem) == name


# --- formula injection ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"], ids=["equals", "plus", "minus", "at", "tab", "cr"])
def test_a_text_cell_that_a_spreadsheet_would_run_gets_a_leading_apostrophe(start: str) -> None:
    assert cell(start + "HYPERLINK(\"http://evil\")") == "'" + start + "HYPERLINK(\"http://evil\")"


@pytest.mark.parametrize("value", ["plain", "a=b", "1+1", "", " =x"])
def test_other_text_cells_are_written_as_they_are(value: str) -> None:
    assert cell(value) == value


def test_numbers_and_unknowns_are_integers_and_empty_cells() -> None:
    assert (cell(0), cell(123456789012), cell(None)) == (0, 123456789012, "")


def test_hostile_repository_and_tag_names_come_out_defused_and_quoted() -> None:
    hostile = ['=cmd|" /C calc"!A0', "+1+1", "-2", "@SUM(A1)", "\tx", "\rline", "ok"]
    listing = Listing(tuple(
        RepositoryListing(name, (ImageListing("=tag", ("l" + str(number),), created=NOW - 90 * DAY),
                                 ImageListing("new", ("n" + str(number),), created=NOW)))
        for number, name in enumerate(hostile)), {**{f"l{n}": 1 for n in range(7)}, **{f"n{n}": 2 for n in range(7)}})
    web, auth = client_for(listing)
    repositories = rows(download(web, "/repositories", {**auth, **CSV}))
    assert [row[0] for row in repositories[1:]] == ["'" + name if name != "ok" else name for name in hostile]
    cleanup = rows(download(web, "/cleanup?older_than=30d", {**auth, **CSV}))
    assert {row[3] for row in cleanup[1:]} == {"'=tag"}
    assert download(web, "/groups", {**auth, **CSV}).count(b"\"'\rline\"") == 1  # quoted: it holds a CR


# --- every item, sums ----------------------------------------------------------------------------------------

def many() -> Listing:
    return Listing(tuple(
        RepositoryListing(f"g{number % 7}/s{number % 3}/r{number:03d}",
                          (ImageListing("t", ("shared", f"own{number}")),) if number % 11 else None)
        for number in range(250)), {"shared": 1_000_000, **{f"own{number}": number * 17 for number in range(250)}})


def test_groups_depth_1_disk_sizes_sum_to_the_registry_total_disk_size() -> None:
    web, auth = client_for(many())
    total = json.loads(web.get("/repositories", headers=auth).data)["total_disk_size"]
    groups = rows(download(web, "/groups?depth=1", {**auth, **CSV}))
    assert groups[0][2] == "disk_size"
    assert sum(int(row[2]) for row in groups[1:]) == total
    repositories = rows(download(web, "/repositories", {**auth, **CSV}))
    assert sum(int(row[2] or 0) for row in repositories[1:]) == total
    sizes = sum(int(row[1]) for row in groups[1:])
    assert sizes == json.loads(web.get("/repositories", headers=auth).data)["total_size"]


def test_a_browser_download_link_gets_every_row_not_a_page() -> None:
    web, _ = client_for(many())
    web.get("/auth_token", headers={**basic("alice", "right"), "Accept": BROWSER_ACCEPT})  # sets the cookie
    body = download(web, "/repositories?format=csv", {"Accept": BROWSER_ACCEPT})
    assert len(rows(body)) == 1 + 250
    assert len(rows(download(web, "/groups?format=csv&depth=2", {"Accept": BROWSER_ACCEPT}))) == 1 + 21


def test_limit_offset_sort_and_prefix_select_the_rows(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    assert [row[0] for row in rows(download(web, "/repositories?sort=-size&limit=2&offset=1", {**auth, **CSV}))] == [
        "name", 'a/"quoted", name', "b/sub/job"]
    assert [row[0] for row in rows(download(web, "/repositories?prefix=b/&sort=name", {**auth, **CSV}))] == [
        "name", "b/sub/job", "b/web"]
    assert [row[0] for row in rows(download(web, "/groups?sort=-disk_size&limit=1", {**auth, **CSV}))] == [
        "name", "b"]


# --- choosing CSV, errors, caching ---------------------------------------------------------------------------

def test_format_csv_in_the_query_equals_the_accept_header(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    for url in ("/repositories", "/groups?depth=2", "/cleanup?keep_n=1"):
        joiner = "&" if "?" in url else "?"
        assert download(web, url, {**auth, **CSV}) == download(web, url + joiner + "format=csv", auth)


def test_json_stays_the_default_and_html_the_browser_choice(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    for accept in ("*/*", "application/json", "application/hal+json"):
        assert web.get("/groups", headers={**auth, "Accept": accept}).mimetype == "application/hal+json"
    assert web.get("/groups", headers={**auth, "Accept": BROWSER_ACCEPT}).mimetype == "text/html"
    assert web.get("/groups", headers={**auth, "Accept": "text/csv, application/hal+json;q=0.5"}
                   ).mimetype == "text/csv"


@pytest.mark.parametrize("value", ["json", "CSV", "", "xlsx"])
def test_another_format_is_a_400(client: tuple[FlaskClient, dict[str, str]], value: str) -> None:
    web, auth = client
    response = web.get(f"/groups?format={value}", headers=auth)
    assert response.status_code == 400
    assert response.get_json() == {"message": "format must be csv (JSON and HTML are chosen by the Accept header)"}


def test_csv_parameter_errors_are_json_400s(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    for url, body in (("/groups?depth=0", {"message": "depth must be a whole number from 1 to 64"}),
                      ("/cleanup?keep_n=-1", {"message": "keep_n: must be an integer from 0 to 1000000",
                                              "parameter": "keep_n"})):
        response = web.get(url, headers={**auth, **CSV})
        assert (response.status_code, response.get_json()) == (400, body)


def test_csv_needs_a_token(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, _ = client
    assert web.get("/repositories", headers=CSV).status_code == 401
    assert web.get("/groups?format=csv").status_code == 401


def test_csv_is_rendered_once_and_revalidated_apart_from_json(client: tuple[FlaskClient, dict[str, str]]) -> None:
    web, auth = client
    first = web.get("/cleanup?keep_n=1", headers={**auth, **CSV})
    again = web.get("/cleanup?keep_n=1", headers={**auth, **CSV})
    assert first.headers["ETag"] == again.headers["ETag"]
    assert web.get("/cleanup?keep_n=1", headers={**auth, **CSV, "If-None-Match": first.headers["ETag"]}
                   ).status_code == 304
    as_json = web.get("/cleanup?keep_n=1", headers=auth)
    assert as_json.mimetype == "application/hal+json"
    assert as_json.headers["ETag"] != first.headers["ETag"]
    assert web.get("/cleanup?keep_n=2", headers={**auth, **CSV}).headers["ETag"] != first.headers["ETag"]
    assert "Accept" in first.headers["Vary"]


def test_before_the_first_snapshot_csv_is_the_header_row() -> None:
    web = create_app(make_config(), SnapshotHolder(), FakeDirectory()).test_client()
    token = web.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    headers: dict[str, Any] = {"Authorization": f"Bearer {token}", **CSV}
    assert download(web, "/repositories", headers) == b"name,size,disk_size,unique_size,tag_count\r\n"
    assert download(web, "/groups", headers) == b"name,size,disk_size,unique_size,repository_count,tag_count\r\n"
    assert web.get("/cleanup", headers=headers).status_code == 503
