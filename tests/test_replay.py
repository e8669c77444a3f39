"""Repeated data requests are answered from memory without Flask, byte for byte as Flask answered them."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable
from typing import Any

import jwt as pyjwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client

from gitlab_registry_usage_rest.model import Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.replay import ResponseReplay
from gitlab_registry_usage_rest.web.responses import ENVIRON_KEY, Rendered, Replayable
from gitlab_registry_usage_rest.web.tokens import VerifiedTokens
from tests.support.webapp import TIMESTAMP, FakeDirectory, basic, make_config, sample_listing

BIG = "/repositories?embed=true&links=true"


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(build_snapshot(sample_listing(), TIMESTAMP))


class CountingApp:
    """The service's app, counting the requests that reach Flask (the replay answers the others)."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.app: Flask = create_app(make_config(), holder, FakeDirectory())
        self.flask_requests = 0

        @self.app.before_request
        def _count() -> None:
            self.flask_requests += 1

        self.client: FlaskClient = self.app.test_client()
        token = self.client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
        self.auth = {"Authorization": f"Bearer {token}"}

    def get(self, url: str, **headers: str) -> Any:
        return self.client.get(url, headers={**self.auth, **headers})


@pytest.fixture
def served(holder: SnapshotHolder) -> CountingApp:
    return CountingApp(holder)


def whole(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.items()), response.get_data()


@pytest.mark.parametrize("url, headers", [
    ("/repositories", {}),
    (BIG, {}),
    (BIG, {"Accept-Encoding": "gzip"}),
    (BIG, {"Accept-Encoding": "br, gzip"}),
    ("/repositories/group%2Fsub%2Fproject/tags/1.0", {}),
    ("/repositories/group/sub/project/tags", {"Origin": "https://dashboard.example"}),
    ("/repositories?embed=1", {"Accept": "text/html"}),
])
def test_a_repeated_request_is_replayed_byte_for_byte(served: CountingApp, url: str, headers: dict[str, str]) -> None:
    first = served.get(url, **headers)
    assert first.status_code == 200
    reached = served.flask_requests
    again = served.get(url, **headers)
    assert served.flask_requests == reached  # answered without Flask
    assert whole(again) == whole(first)


def test_revalidation_is_replayed_as_304(served: CountingApp) -> None:
    etag = served.get(BIG).headers["ETag"]
    first = served.get(BIG, **{"If-None-Match": etag})
    reached = served.flask_requests
    again = served.get(BIG, **{"If-None-Match": etag})
    assert served.flask_requests == reached
    assert again.status_code == 304 and whole(again) == whole(first)


def test_other_vary_headers_are_other_entries(served: CountingApp) -> None:
    plain = served.get(BIG)
    html = served.get(BIG, Accept="text/html")
    gzipped = served.get(BIG, **{"Accept-Encoding": "gzip"})
    assert plain.mimetype == "application/hal+json" and html.mimetype == "text/html"
    assert gzipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert served.get(BIG).get_data() == plain.get_data()


def test_a_token_never_verified_is_not_replayed(served: CountingApp) -> None:
    assert served.get(BIG).status_code == 200
    claims = pyjwt.decode(served.auth["Authorization"][7:], options={"verify_signature": False})
    forged = pyjwt.encode(claims, "not-the-secret-" + "x" * 40, algorithm="HS256")
    response = served.client.get(BIG, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert served.client.get(BIG, headers={"Authorization": "Bearer "}).status_code == 401
    assert served.client.get(BIG).status_code == 401


def test_a_new_snapshot_is_not_answered_from_the_old_one(served: CountingApp, holder: SnapshotHolder) -> None:
    before = served.get(BIG)
    holder.replace(build_snapshot(Listing((RepositoryListing("only", ()),), {}), TIMESTAMP + 60))
    after = served.get(BIG)
    assert after.get_json()["repository_count"] == 1 and before.get_json()["repository_count"] == 4
    assert after.headers["ETag"] != before.headers["ETag"]


def test_errors_are_not_replayed(served: CountingApp) -> None:
    for _ in range(2):
        assert served.get("/repositories/nope").status_code == 404
        assert served.get("/repositories?sort=nonsense").status_code == 400
    assert served.flask_requests == 5  # the login and all four


def test_replayed_requests_are_counted_and_logged(served: CountingApp, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gitlab_registry_usage_rest.access"):
        served.get("/repositories/group%2Ftags")
        served.get("/repositories/group%2Ftags")
    lines = [record.getMessage() for record in caplog.records if record.name.endswith(".access")]
    assert len(lines) == 2
    assert all(line.startswith("GET /repositories/group/tags 200 ") and line.endswith(" user=alice") for line in lines)
    metrics = served.client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{endpoint="repositorypath",status="200"} 2.0' in metrics


# --- the middleware alone -------------------------------------------------------------------------

class MarkingApp:
    """A WSGI app that answers like a data resource: marks its answer as replayable."""

    def __init__(self, snapshots: SnapshotHolder) -> None:
        self.snapshots = snapshots
        self.calls = 0
        self.rendered: Rendered | None = Rendered(b"body", "application/hal+json", "etag")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        snapshot = self.snapshots.current()
        assert snapshot is not None and self.rendered is not None
        environ[ENVIRON_KEY] = Replayable(snapshot, "repositories", self.rendered, None)
        start_response("200 OK", [("Content-Type", "application/hal+json")])
        return [self.rendered.body]


def replaying(holder: SnapshotHolder, max_entries: int = 16) -> tuple[MarkingApp, Client, list[tuple[Any, ...]]]:
    inner, observed = MarkingApp(holder), []
    tokens = VerifiedTokens()
    tokens.add("good", "alice", float("inf"))
    middleware = ResponseReplay(inner, holder.current, tokens, lambda *args: observed.append(args), max_entries)
    return inner, Client(middleware), observed


def test_an_evicted_rendering_goes_back_to_the_app(holder: SnapshotHolder) -> None:
    inner, client, _ = replaying(holder)
    headers = {"Authorization": "Bearer good"}
    client.get("/repositories", headers=headers)
    client.get("/repositories", headers=headers)
    assert inner.calls == 1
    inner.rendered = Rendered(b"body", "application/hal+json", "etag")  # the old one is dropped by the cache
    gc.collect()
    assert client.get("/repositories", headers=headers).get_data() == b"body"
    assert inner.calls == 2


def test_entries_are_bounded(holder: SnapshotHolder) -> None:
    inner, client, _ = replaying(holder, max_entries=4)
    headers = {"Authorization": "Bearer good"}
    for _round in range(2):
        for number in range(10):
            client.get(f"/repositories?n={number}", headers=headers)
    assert inner.calls == 20  # ten keys never fit in four entries
    client.get("/repositories?n=9", headers=headers)
    assert inner.calls == 20


def test_only_get_with_a_bearer_token_is_replayed(holder: SnapshotHolder) -> None:
    inner, client, observed = replaying(holder)
    for _ in range(2):
        client.get("/repositories", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        client.head("/repositories", headers={"Authorization": "Bearer good"})
    assert inner.calls == 4 and observed == []


def test_verified_tokens_expire_and_stay_bounded() -> None:
    now = [1000.0]
    tokens = VerifiedTokens(size=2, clock=lambda: now[0])
    tokens.add("a", "alice", 1010.0)
    tokens.add("b", "bob", 2000.0)
    assert tokens.subject("a") == "alice"
    now[0] = 1010.0
    assert tokens.subject("a") is None
    tokens.add("c", "carol", 2000.0)
    tokens.add("d", "dave", 2000.0)
    assert tokens.subject("b") is None and tokens.subject("d") == "dave"
