"""The browser view of the HAL documents: one page of rows at most, every href an escaped anchor, the
same bytes as the json2html rendering it replaces.

Rendering time is not asserted (``python3 -m bench.html`` measures it); what is asserted is what makes
it bounded: how many rows a page holds, and that its links lead on to the rest.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from json2html import json2html

from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web import hal
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.html import PAGE_SIZE, render_page
from tests.support.webapp import TIMESTAMP, FakeDirectory, basic, make_config

REPOSITORIES = 5_000
BIG_TAGS = 250
HOSTILE = ('a"><script>alert(1)</script>', "%", "&", "100%/&amp;", "it's/<b>", "x%2Fy/z")


class Anchors(HTMLParser):
    """Every ``<a>`` of a page: its href (entities resolved) and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            assert self._open is None, "nested anchor"
            self._open, self._text = dict(attrs)["href"] or "", []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            assert self._open is not None
            self.found.append((self._open, "".join(self._text)))
            self._open = None


def anchors(page: str) -> list[tuple[str, str]]:
    parser = Anchors()
    parser.feed(page)
    parser.close()
    return parser.found


def rel(page: str, name: str) -> str | None:
    """The href of the ``_links`` entry ``name`` (``next``, ``prev``) of the page's outermost document."""
    match = re.search(f'<tr><th>{name}</th><td><table border="1"><tr><th>href</th><td><a href="([^"]*)">', page)
    return None if match is None else html.unescape(match.group(1))


def hrefs(document: Any) -> Iterator[str]:
    """Every ``href`` value of a HAL document, in document order."""
    if isinstance(document, list):
        for item in document:
            yield from hrefs(item)
    elif isinstance(document, dict):
        for key, value in document.items():
            if key == "href" and isinstance(value, str):
                yield value
            else:
                yield from hrefs(value)


def name(number: int) -> str:
    return f"group{number % 7}/project-{number:05d}"


def client_for(listing: Listing) -> tuple[FlaskClient, dict[str, str]]:
    app = create_app(make_config(), SnapshotHolder(build_snapshot(listing, TIMESTAMP)), FakeDirectory())
    client = app.test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    return client, {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def big() -> tuple[FlaskClient, dict[str, str]]:
    """5,000 repositories of one tag each, and ``big/repo`` with 250 tags at the end."""
    repositories = [RepositoryListing(name(n), (ImageListing("latest", (f"layer{n}",)),)) for n in range(REPOSITORIES)]
    tags = tuple(ImageListing(f"t{n:03d}", (f"big{n}",)) for n in range(BIG_TAGS))
    sizes = {f"layer{n}": 1000 + n for n in range(REPOSITORIES)} | {f"big{n}": 10 + n for n in range(BIG_TAGS)}
    return client_for(Listing((*repositories, RepositoryListing("big/repo", tags)), sizes))


def page(client: FlaskClient, auth: dict[str, str], url: str) -> str:
    response = client.get(url, headers={**auth, "Accept": "text/html"})
    assert response.status_code == 200 and response.mimetype == "text/html", response.data[:300]
    text: str = response.data.decode()
    return text


def linked_repositories(text: str) -> Counter[str]:
    """How often each repository's own path is an anchor (an ``items`` link and an embedded ``self``)."""
    paths = Counter(href for href, _ in anchors(text))
    prefix = "/repositories/"
    return Counter({unquote(path[len(prefix):]): count for path, count in paths.items()
                    if path.startswith(prefix) and "/" not in path[len(prefix):] and "?" not in path})


def test_html_collection_shows_one_page_of_rows_with_a_working_next_link(
        big: tuple[FlaskClient, dict[str, str]]) -> None:
    client, auth = big
    first = page(client, auth, "/repositories?embed=1")
    assert linked_repositories(first) == {name(n): 2 for n in range(PAGE_SIZE)}
    assert f"<th>repository_count</th><td>{REPOSITORIES + 1}</td>" in first  # the totals cover everything
    assert rel(first, "prev") is None
    following = rel(first, "next")
    assert following == f"/repositories?embed=1&links=true&limit={PAGE_SIZE}&offset={PAGE_SIZE}"
    second = page(client, auth, following)
    assert linked_repositories(second) == {name(n): 2 for n in range(PAGE_SIZE, 2 * PAGE_SIZE)}
    assert rel(second, "prev") == f"/repositories?embed=1&links=true&limit={PAGE_SIZE}&offset=0"
    last = page(client, auth, f"/repositories?embed=1&offset={REPOSITORIES + 1 - 5}")
    assert linked_repositories(last) == {**{name(n): 2 for n in range(REPOSITORIES - 4, REPOSITORIES)}, "big/repo": 2}
    assert rel(last, "next") is None


@pytest.mark.parametrize(("query", "shown"), [
    ("limit=1000", PAGE_SIZE),
    ("limit=100000", PAGE_SIZE),
    ("limit=7", 7),
], ids=["above-the-cap", "the-maximum", "below-the-cap"])
def test_html_limit_is_capped_at_one_page(big: tuple[FlaskClient, dict[str, str]], query: str, shown: int) -> None:
    client, auth = big
    text = page(client, auth, f"/repositories?embed=1&sort=-name&{query}")
    assert len(linked_repositories(text)) == shown
    assert rel(text, "next") == f"/repositories?embed=1&links=true&sort=-name&limit={shown}&offset={shown}"


def test_html_embedded_collections_are_paged_too(big: tuple[FlaskClient, dict[str, str]]) -> None:
    client, auth = big
    # The API view of a repository (its page for people is tests/test_pages.py's).
    text = page(client, auth, "/repositories/big%2Frepo?embed=2&view=api")
    tags = Counter(href for href, _ in anchors(text) if href.startswith("/repositories/big%2Frepo/tags/"))
    # Each shown tag: an ``items`` link and its embedded ``self``.
    assert tags == {f"/repositories/big%2Frepo/tags/t{n:03d}": 2 for n in range(PAGE_SIZE)}
    following = f"/repositories/big%2Frepo/tags?embed=1&links=true&limit={PAGE_SIZE}&offset={PAGE_SIZE}"
    assert following in {href for href, _ in anchors(text)}
    rest = page(client, auth, following)
    assert Counter(href for href, _ in anchors(rest) if href.startswith("/repositories/big%2Frepo/tags/")) == {
        f"/repositories/big%2Frepo/tags/t{n:03d}": 2 for n in range(PAGE_SIZE, 2 * PAGE_SIZE)}


def test_json_collections_are_not_paged(big: tuple[FlaskClient, dict[str, str]]) -> None:
    client, auth = big
    for url, count in (("/repositories?embed=1&links=true", REPOSITORIES + 1),
                       ("/repositories/big%2Frepo/tags?embed=1&links=true", BIG_TAGS)):
        document = json.loads(client.get(url, headers=auth).data)
        assert len(document["_embedded"]["items"]) == len(document["_links"]["items"]) == count
        assert "next" not in document["_links"]


@pytest.mark.parametrize("url", [
    "/repositories?embed=true",
    "/repositories?embed=2&sort=-name&limit=3&offset=1",
    f"/repositories/{hal.quote_name(HOSTILE[0])}?embed=true&view=api",
    f"/repositories/{hal.quote_name(HOSTILE[1])}/tags",
    f"/repositories/{hal.quote_name(HOSTILE[2])}/tags/{hal.quote_name(HOSTILE[0])}?view=api",
], ids=["everything", "window", "repository", "tags", "tag"])
def test_every_href_is_an_anchor_exactly_once_and_escaped(url: str) -> None:
    listing = Listing(
        tuple(RepositoryListing(repo, tuple(ImageListing(tag, ("shared", f"own-{tag}")) for tag in (*HOSTILE, "1.0")))
              for repo in HOSTILE),
        {"shared": 100, **{f"own-{tag}": 7 for tag in (*HOSTILE, "1.0")}},
    )
    client, auth = client_for(listing)
    text = page(client, auth, url)
    separator = "&" if "?" in url else "?"
    expected = list(hrefs(json.loads(client.get(f"{url}{separator}links=true", headers=auth).data)))
    assert expected  # the document does have links
    assert "<script>" not in text
    assert text.count("<a ") == len(expected)
    for href, count in Counter(expected).items():
        escaped = html.escape(href, quote=True)
        assert text.count(f'<a href="{escaped}">{escaped}</a>') == count, href
    assert anchors(text) == [(href, href) for href in expected]


def test_small_page_is_byte_for_byte_what_json2html_rendered() -> None:
    document = {
        "name": "a\"<&'", "size": None, "ok": True, "timestamp": 1521796487.7021387,
        "_links": {"self": {"href": "/r/a%22%3C?x=1&y=2"},
                   "items": [{"href": "/r/1", "title": "one"}, {"href": "/r/2", "title": "<two>"}]},
        "platforms": ["linux/amd64", "linux/arm64/v8"], "empty": [], "none": {},
    }
    head = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>T &lt;i&gt;</title><style>'
            "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
            "table{border-collapse:collapse;margin:.2em 0}"
            "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f4f4f4}"
            "a{color:#0645ad}</style></head>\n<body><h1>T &lt;i&gt;</h1>\n")
    assert render_page(document, "T <i>") == head + (
        '<table border="1"><tr><th>name</th><td>a&quot;&lt;&amp;&#x27;</td></tr><tr><th>size</th><td>None</td></tr>'
        '<tr><th>ok</th><td>True</td></tr><tr><th>timestamp</th><td>1521796487.7021387</td></tr><tr><th>_links</th>'
        '<td><table border="1"><tr><th>self</th><td><table border="1"><tr><th>href</th><td>'
        '<a href="/r/a%22%3C?x=1&amp;y=2">/r/a%22%3C?x=1&amp;y=2</a></td></tr></table></td></tr><tr><th>items</th>'
        '<td><table border="1"><thead><tr><th>href</th><th>title</th></tr></thead><tbody><tr><td><a href="/r/1">/r/1'
        '</a></td><td>one</td></tr><tr><td><a href="/r/2">/r/2</a></td><td>&lt;two&gt;</td></tr></tbody></table>'
        '</td></tr></table></td></tr><tr><th>platforms</th><td><ul><li>linux/amd64</li><li>linux/arm64/v8</li></ul>'
        "</td></tr><tr><th>empty</th><td></td></tr><tr><th>none</th><td></td></tr></table>\n</body></html>\n"
    )
    assert render_page({}, "Empty") == head.replace("T &lt;i&gt;", "Empty") + "<p>(no fields)</p>\n</body></html>\n"


def json2html_body(document: dict[str, Any]) -> str:
    """What render_page put in the body before: json2html over the document with each href swapped for a
    marker, the markers then replaced by anchors (here in one pass, so a marker that is a prefix of
    another, ``...n1`` of ``...n10``, cannot take its place)."""
    marks: list[str] = []

    def mark(node: Any) -> Any:
        if isinstance(node, list):
            return [mark(item) for item in node]
        if not isinstance(node, dict):
            return node
        result = {}
        for key, value in node.items():
            if key == "href" and isinstance(value, str):
                marks.append(value)
                result[key] = f"hrefmarker{len(marks) - 1}x"
            else:
                result[key] = mark(value)
        return result

    body = json2html.convert(json=mark(document), escape=True)
    anchor = [f'<a href="{escaped}">{escaped}</a>' for escaped in (html.escape(href, quote=True) for href in marks)]
    return re.sub("hrefmarker([0-9]+)x", lambda match: anchor[int(match.group(1))], body)


keys = st.sampled_from(["href", "name", "size", "_links", "items", "title", "a b", "Ä"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12).filter(
    lambda text: "hrefmarker" not in text))


def tables(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of objects with the same keys, which json2html shows as one table (keys in any order per row)."""
    return st.lists(keys, min_size=1, max_size=3, unique=True).flatmap(lambda columns: st.lists(
        st.permutations(columns).flatmap(lambda order: st.fixed_dictionaries({key: children for key in order})),
        max_size=4))


documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4),
                               tables(children)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(keys, documents, min_size=1, max_size=5))
def test_render_page_matches_json2html_for_any_document(document: dict[str, Any]) -> None:
    body = render_page(document, "x").split("\n", 3)[3].removesuffix("\n</body></html>\n")
    assert body == json2html_body(document)
