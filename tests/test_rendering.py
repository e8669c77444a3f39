"""Responses rendered once per snapshot: ETag / Last-Modified revalidation, compression, the bounded cache."""

from __future__ import annotations

import gzip
import threading
from concurrent.futures import ThreadPoolExecutor

import brotli
import pytest
from flask.testing import FlaskClient
from werkzeug.http import http_date

from gitlab_registry_usage_rest.model import Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.responses import RenderCache, Rendered, make_etag
from tests.support.webapp import TIMESTAMP, FakeDirectory, bearer, make_config, sample_listing

BIG = "/repositories?embed=true&links=true"  # well above the compression threshold


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(build_snapshot(sample_listing(), TIMESTAMP))


@pytest.fixture
def client(holder: SnapshotHolder) -> FlaskClient:
    return create_app(make_config(), holder, FakeDirectory()).test_client()


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    return bearer(client)


def test_data_responses_carry_validators_and_cache_control(client: FlaskClient, auth: dict[str, str]) -> None:
    first, second = client.get(BIG, headers=auth), client.get(BIG, headers=auth)
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["ETag"].strip('"') == make_etag(first.data)
    assert first.headers["Last-Modified"] == http_date(TIMESTAMP)
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert "Accept-Encoding" in first.headers["Vary"]


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [
        ("If-None-Match", "{etag}", 304),
        ("If-None-Match", '"other", {etag}', 304),
        ("If-None-Match", "*", 304),
        ("If-None-Match", '"other"', 200),
        ("If-Modified-Since", http_date(TIMESTAMP), 304),
        ("If-Modified-Since", http_date(TIMESTAMP + 3600), 304),
        ("If-Modified-Since", http_date(TIMESTAMP - 3600), 200),
    ],
    ids=["etag", "etag-in-list", "star", "other-etag", "since-same", "since-later", "since-earlier"],
)
def test_conditional_requests(client: FlaskClient, auth: dict[str, str], header: str, value: str, status: int) -> None:
    etag = client.get(BIG, headers=auth).headers["ETag"]
    response = client.get(BIG, headers={**auth, header: value.format(etag=etag)})
    assert response.status_code == status
    if status == 304:
        assert response.data == b""
        assert response.headers["ETag"] == etag


def test_the_etag_of_a_compressed_response_revalidates_too(client: FlaskClient, auth: dict[str, str]) -> None:
    compressed = client.get(BIG, headers={**auth, "Accept-Encoding": "gzip"})
    assert compressed.headers["ETag"].endswith('-gzip"')
    again = client.get(BIG, headers={**auth, "Accept-Encoding": "gzip", "If-None-Match": compressed.headers["ETag"]})
    assert again.status_code == 304


def test_revalidation_still_needs_a_token(client: FlaskClient, auth: dict[str, str]) -> None:
    etag = client.get(BIG, headers=auth).headers["ETag"]
    assert client.get(BIG, headers={"If-None-Match": etag}).status_code == 401


def test_a_new_snapshot_changes_the_etag(client: FlaskClient, auth: dict[str, str], holder: SnapshotHolder) -> None:
    before = client.get(BIG, headers=auth)
    holder.replace(build_snapshot(Listing((RepositoryListing("other", ()),), {}), TIMESTAMP + 60))
    after = client.get(BIG, headers={**auth, "If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert b'"other"' in after.data


@pytest.mark.parametrize(
    ("accept_encoding", "encoding"),
    [("gzip", "gzip"), ("br", "br"), ("gzip, br", "br"), ("br;q=0.5, gzip", "gzip"), ("identity", None),
     ("gzip;q=0", None), (None, None)],
)
def test_compression_as_the_client_accepts(
    client: FlaskClient, auth: dict[str, str], accept_encoding: str | None, encoding: str | None
) -> None:
    plain = client.get(BIG, headers=auth).data
    headers = {**auth, **({"Accept-Encoding": accept_encoding} if accept_encoding else {})}
    response = client.get(BIG, headers=headers)
    assert response.headers.get("Content-Encoding") == encoding
    decoded = {"gzip": gzip.decompress, "br": brotli.decompress, None: lambda data: data}[encoding](response.data)
    assert decoded == plain
    if encoding is not None:
        assert len(response.data) < len(plain)


def test_small_bodies_are_not_compressed(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/repositories/group%2Ftags/tags/v1", headers={**auth, "Accept-Encoding": "gzip, br"})
    assert "Content-Encoding" not in response.headers
    assert len(response.data) < 1024


def test_html_view_is_cached_and_validated_separately(client: FlaskClient, auth: dict[str, str]) -> None:
    json_etag = client.get("/repositories", headers=auth).headers["ETag"]
    page = client.get("/repositories", headers={**auth, "Accept": "text/html"})
    assert page.mimetype == "text/html" and page.headers["ETag"] != json_etag
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    again = client.get("/repositories", headers={**auth, "Accept": "text/html", "If-None-Match": page.headers["ETag"]})
    assert again.status_code == 304


# --- the cache itself --------------------------------------------------------------------------

def rendered(body: bytes) -> Rendered:
    return Rendered(body, "application/hal+json", make_etag(body))


def test_renders_once_per_snapshot_and_key() -> None:
    cache, calls = RenderCache(), []
    first, second = (build_snapshot(sample_listing(), stamp) for stamp in (1.0, 2.0))

    def render() -> Rendered:
        calls.append(1)
        return rendered(b"x" * 10)

    for _ in range(3):
        cache.get(first, "key", render)
    assert len(calls) == 1
    cache.get(first, "other", render)
    cache.get(second, "key", render)
    assert len(calls) == 3
    assert cache.size == 10, "entries of the replaced snapshot were released"


def test_a_slow_request_for_the_snapshot_before_keeps_the_newer_snapshots_entries() -> None:
    cache, calls = RenderCache(), []
    older, newer = (build_snapshot(sample_listing(), stamp) for stamp in (1.0, 2.0))

    def render() -> Rendered:
        calls.append(1)
        return rendered(b"y" * 10)

    cache.get(newer, "key", render)
    late = cache.get(older, "key", render)  # a request that took the snapshot before the refresh
    assert late.body == b"y" * 10
    cache.get(newer, "key", render)
    assert len(calls) == 2, "the newer snapshot's rendering was kept, the late one not cached"
    assert cache.size == 10


def test_concurrent_requests_render_once() -> None:
    cache, calls, gate = RenderCache(), [], threading.Event()
    snapshot = build_snapshot(sample_listing(), 1.0)

    def render() -> Rendered:
        calls.append(1)
        gate.wait(1)
        return rendered(b"big")

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, snapshot, "key", render) for _ in range(8)]
        gate.set()
        results = {id(future.result()) for future in futures}
    assert len(calls) == 1 and len(results) == 1


def test_the_budget_evicts_least_recently_used_and_skips_what_never_fits() -> None:
    cache = RenderCache(budget=100)
    snapshot = build_snapshot(sample_listing(), 1.0)
    for key in ("a", "b", "c"):
        cache.get(snapshot, key, lambda: rendered(b"x" * 40))
    assert cache.size == 80
    calls: list[int] = []

    def render_a() -> Rendered:
        calls.append(1)
        return rendered(b"x" * 40)

    cache.get(snapshot, "a", render_a)
    assert calls == [1], "a was evicted first"
    cache.get(snapshot, "huge", lambda: rendered(b"x" * 500))
    assert cache.size <= 100
