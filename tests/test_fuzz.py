"""Property-based fuzzing of every endpoint and query parameter: no input gets a 5xx, every body parses.

Hypothesis draws paths (names with slashes, percent signs, Unicode), query parameters (known and
unknown, any text), methods, Accept headers and credentials; the app runs with TESTING off.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from tests.support.webapp import FakeDirectory, make_config, sample_listing

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.one_of(
    st.sampled_from(["group/sub/project", "group/tags", "group", "broken", "nope", "tags", ""]),
    st.text(max_size=40),
)
segments = st.one_of(names.map(lambda name: quote(name, safe="")), names.map(lambda name: quote(name, safe="/")),
                     st.text(alphabet="%/2Ff.~-_azAZ09", max_size=20))
paths = st.one_of(
    st.just("/repositories"),
    st.builds(lambda repo: f"/repositories/{repo}", segments),
    st.builds(lambda repo: f"/repositories/{repo}/tags", segments),
    st.builds(lambda repo, tag: f"/repositories/{repo}/tags/{tag}", segments, segments),
    st.sampled_from(["/auth_token", "/health", "/metrics", "/", "/repositories/", "//repositories", "/openapi.json"]),
)
query_values = st.one_of(st.sampled_from(["true", "1", "2", "-1", "0", "yes", "name", "-size", "disk_size",
                                          "--size", "group/", "9" * 30]), st.text(max_size=12))
queries = st.dictionaries(
    st.one_of(st.sampled_from(["embed", "links", "sort", "limit", "offset", "prefix"]), st.text(max_size=8)),
    query_values, max_size=5,
)
accepts = st.sampled_from([None, "*/*", "application/hal+json", "application/json", "text/html",
                           "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", "image/png", "garbage;;q=x"])


@pytest.fixture
def client() -> FlaskClient:
    # Fresh data: /health would rightly answer 503 for stale data.
    app = create_app(make_config(), SnapshotHolder(build_snapshot(sample_listing(), time.time())), FakeDirectory())
    return app.test_client()


@pytest.fixture
def token(client: FlaskClient) -> str:
    credentials = base64.b64encode(b"alice:right").decode()
    return str(client.get("/auth_token", headers={"Authorization": f"Basic {credentials}"}).get_json()["auth_token"])


def check(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.data[:300])
    if response.status_code == 304 or not response.data:
        return
    if response.mimetype == "text/html":
        assert response.data.startswith(b"<!DOCTYPE html>")
    elif response.mimetype.startswith("text/plain"):  # the Prometheus exposition format
        assert b"gitlab_registry_usage" in response.data
    else:
        json.loads(response.data)


@SETTINGS
@given(path=paths, query=queries, accept=accepts, method=st.sampled_from(["GET", "GET", "GET", "HEAD", "POST",
                                                                         "OPTIONS", "DELETE"]),
       authorized=st.sampled_from(["token", "none", "garbage"]))
def test_no_request_gets_a_5xx_and_every_body_parses(
    client: FlaskClient, token: str, path: str, query: dict[str, str], accept: str | None, method: str,
    authorized: str,
) -> None:
    headers = {"Accept": accept} if accept else {}
    if authorized == "token":
        headers["Authorization"] = f"Bearer {token}"
    elif authorized == "garbage":
        headers["Authorization"] = "Bearer ..."
    url = path + ("?" + urlencode(query) if query else "")
    check(client.open(url, method=method, headers=headers))


@SETTINGS
@given(username=st.text(max_size=30), password=st.text(max_size=30),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_no_credentials_get_a_5xx(client: FlaskClient, username: str, password: str, raw: bytes | None) -> None:
    encoded = raw if raw is not None else f"{username}:{password}".encode("utf-8", "surrogatepass")
    headers = {"Authorization": "Basic " + base64.b64encode(encoded).decode()}
    response = client.get("/auth_token", headers=headers)
    assert response.status_code in (200, 401, 429)
    check(response)
