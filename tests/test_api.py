"""The HTTP API through Flask's test client with TESTING off: shapes, auth, errors, browser view.

Documents are compared whole against literals: they are the contract with existing clients.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt as pyjwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gitlab_registry_usage_rest.model import Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from tests.support.webapp import (
    AUDIENCE,
    ISSUER,
    SECRET,
    TIMESTAMP,
    DirectoryDown,
    FakeDirectory,
    basic,
    bearer,
    get_json,
    make_config,
    sample_listing,
)

SEEN = "2018-03-23T09:14:47.702Z"  # TIMESTAMP: every tag of the one snapshot was first seen in it


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(build_snapshot(sample_listing(), TIMESTAMP))


@pytest.fixture
def app(holder: SnapshotHolder, directory: FakeDirectory) -> Flask:
    app = create_app(make_config(), holder, directory, unavailable=(DirectoryDown,))
    assert not app.testing
    return app


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


@pytest.fixture
def auth(client: FlaskClient) -> dict[str, str]:
    return bearer(client)


# --- login -------------------------------------------------------------------------------------

def test_auth_token_returns_a_jwt_for_valid_credentials(client: FlaskClient) -> None:
    response = client.get("/auth_token", headers=basic("alice", "right"))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["auth_token"]
    claims = pyjwt.decode(body["auth_token"], SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [{}, basic("alice", "wrong"), basic("mallory", "right"), {"Authorization": "Basic !!!"}],
    ids=["no-credentials", "wrong-password", "unknown-user", "malformed-header"],
)
def test_auth_token_refusal_is_401_json_with_basic_challenge(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/auth_token", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": "Invalid credentials"}
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_directory_down_is_503_not_500(client: FlaskClient, directory: FakeDirectory) -> None:
    directory.down = True
    response = client.get("/auth_token", headers=basic("alice", "right"))
    assert response.status_code == 503
    assert response.get_json() == {"message": "The login directory cannot be reached; try again later"}
    assert int(response.headers["Retry-After"]) > 0
    assert b"127.0.0.1" not in response.data


# --- tokens ------------------------------------------------------------------------------------



def forge(secret: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    """A token as the service issues it, with whatever claims the test changes."""
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    payload = {"sub": "alice", "iat": now, "nbf": now, "exp": now + 600, "type": "access", "jti": "x",
               "fresh": False, "iss": ISSUER, "aud": AUDIENCE, **claims}
    return pyjwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=algorithm)


def unsigned_token() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': 'alice', 'type': 'access', 'exp': 2**40})}."


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing Authorization Header"),
        ({"Authorization": "Bearer not.a.token"}, None),
        ({"Authorization": "Bearer abc"}, "Not enough segments"),
        ({"Authorization": f"Bearer {forge(secret='another-secret-' + 'z' * 40)}"}, "Signature verification failed"),
        ({"Authorization": f"Bearer {forge(exp=1000, iat=900, nbf=900)}"}, "Token has expired"),
        ({"Authorization": f"Bearer {unsigned_token()}"}, None),
        ({"Authorization": "Token abc"}, None),
        ({"Authorization": f"Bearer {forge(aud='another-service')}"}, "Audience doesn't match"),
        ({"Authorization": f"Bearer {forge(aud=None)}"}, 'Token is missing the "aud" claim'),
        ({"Authorization": f"Bearer {forge(iss='someone-else')}"}, "Invalid issuer"),
        ({"Authorization": f"Bearer {forge(secret=SECRET * 2, algorithm='HS512')}"},
         "The specified alg value is not allowed"),
        ({"Authorization": f"Bearer {forge(type='refresh')}"}, None),
    ],
    ids=["missing", "garbage", "one-segment", "wrong-secret", "expired", "alg-none", "wrong-scheme",
         "wrong-audience", "no-audience", "wrong-issuer", "other-algorithm", "refresh-type"],
)
@pytest.mark.parametrize("url", ["/repositories", "/repositories/group%2Ftags", "/repositories/group/tags/tags/v1"])
def test_every_token_problem_is_401_json(
    client: FlaskClient, url: str, headers: dict[str, str], message: str | None
) -> None:
    response = client.get(url, headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["msg"]
    if message is not None:
        assert body["msg"] == message


# --- documents ---------------------------------------------------------------------------------

TOTALS = {"total_size": 435, "total_disk_size": 135, "repository_count": 4, "tag_count": 4}


def test_repositories_without_parameters_is_the_timestamp_and_totals(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/repositories", headers=auth)
    assert response.mimetype == "application/hal+json"
    assert response.data == (
        b'{"timestamp": 1521796487.7021387, "total_size": 435, "total_disk_size": 135, '
        b'"repository_count": 4, "tag_count": 4}\n'
    )


def test_repositories_with_links(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories?links=true", auth) == {
        "timestamp": TIMESTAMP,
        **TOTALS,
        "_links": {
            "self": {"href": "/repositories"},
            "items": [
                {"href": "/repositories/group%2Fsub%2Fproject", "title": "group/sub/project"},
                {"href": "/repositories/group%2Ftags", "title": "group/tags"},
                {"href": "/repositories/group", "title": "group"},
                {"href": "/repositories/broken", "title": "broken"},
            ],
        },
    }


def test_repositories_embedded_one_level(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories?embed=1", auth) == {
        "timestamp": TIMESTAMP,
        **TOTALS,
        "_embedded": {"items": [
            {"name": "group/sub/project", "size": 230, "disk_size": 30, "unique_size": 30},
            {"name": "group/tags", "size": 105, "disk_size": 5, "unique_size": 5},
            {"name": "group", "size": 100, "disk_size": 100, "unique_size": 0},
            {"name": "broken", "size": None, "disk_size": None, "unique_size": None},
        ]},
    }


def test_repositories_embedded_fully(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/repositories?embed=true", auth)
    first = body["_embedded"]["items"][0]
    assert first == {
        "name": "group/sub/project", "size": 230, "disk_size": 30, "unique_size": 30,
        "_embedded": {"related": {"_embedded": {"items": [
            {"name": "1.0", "size": 110, "disk_size": 10, "unique_size": 10, "created": None, "first_seen": SEEN},
            {"name": "latest", "size": 120, "disk_size": 20, "unique_size": 20, "created": None, "first_seen": SEEN},
        ]}}},
    }
    assert body["_embedded"]["items"][3] == {"name": "broken", "size": None, "disk_size": None, "unique_size": None}


def test_embed_depth_two_stops_at_the_tags_collection(client: FlaskClient, auth: dict[str, str]) -> None:
    body = get_json(client, "/repositories?embed=2", auth)
    assert body["_embedded"]["items"][1]["_embedded"] == {"related": {}}


def test_repository_with_links_and_embedded_tags(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories/group%2Ftags?embed=true&links=true", auth) == {
        "name": "group/tags", "size": 105, "disk_size": 5, "unique_size": 5,
        "_links": {
            "self": {"href": "/repositories/group%2Ftags"},
            "collection": {"href": "/repositories"},
            "related": {"href": "/repositories/group%2Ftags/tags", "title": "tags"},
        },
        "_embedded": {"related": {
            "_links": {
                "self": {"href": "/repositories/group%2Ftags/tags"},
                "up": {"href": "/repositories/group%2Ftags"},
                "items": [{"href": "/repositories/group%2Ftags/tags/v1", "title": "v1"}],
            },
            "_embedded": {"items": [{
                "name": "v1", "size": 105, "disk_size": 5, "unique_size": 5, "created": None, "first_seen": SEEN,
                "_links": {
                    "self": {"href": "/repositories/group%2Ftags/tags/v1"},
                    "collection": {"href": "/repositories/group%2Ftags/tags"},
                },
            }]},
        }},
    }


def test_tags_collection_has_no_fields_of_its_own(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories/group%2Fsub%2Fproject/tags", auth) == {}


def test_tag_self_link_is_the_tags_own_path(client: FlaskClient, auth: dict[str, str]) -> None:
    assert get_json(client, "/repositories/group%2Fsub%2Fproject/tags/1.0?links=1", auth) == {
        "name": "1.0", "size": 110, "disk_size": 10, "unique_size": 10, "created": None, "first_seen": SEEN,
        "_links": {
            "self": {"href": "/repositories/group%2Fsub%2Fproject/tags/1.0"},
            "collection": {"href": "/repositories/group%2Fsub%2Fproject/tags"},
        },
    }


def test_repository_whose_tags_failed_has_null_figures_and_no_tag_links(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    assert get_json(client, "/repositories/broken?links=true&embed=true", auth) == {
        "name": "broken", "size": None, "disk_size": None, "unique_size": None,
        "_links": {"self": {"href": "/repositories/broken"}, "collection": {"href": "/repositories"}},
    }
    assert get_json(client, "/repositories/broken/tags?links=true", auth) == {
        "_links": {"self": {"href": "/repositories/broken/tags"}, "up": {"href": "/repositories/broken"}},
    }


PROJECT_FIGURES = {"name": "group/sub/project", "size": 230, "disk_size": 30, "unique_size": 30}
V1_FIGURES = {"name": "v1", "size": 105, "disk_size": 5, "unique_size": 5, "created": None, "first_seen": SEEN}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/repositories/group/sub/project", PROJECT_FIGURES),
        ("/repositories/group%2Fsub%2Fproject", PROJECT_FIGURES),
        ("/repositories/group%2fsub%2fproject", PROJECT_FIGURES),
        ("/repositories/group/tags", {}),
        ("/repositories/group%2Ftags", {"name": "group/tags", "size": 105, "disk_size": 5, "unique_size": 5}),
        ("/repositories/group%2Ftags/tags", {}),
        ("/repositories/group/tags/tags/v1", V1_FIGURES),
        ("/repositories/group%2Ftags/tags/v1", V1_FIGURES),
        ("/repositories/group/tags/tags", {}),
        ("/repositories/group/tags/tags?links=1", None),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_names_with_slashes_and_tags_resolve_to_the_right_resource(
    client: FlaskClient, auth: dict[str, str], url: str, expected: dict[str, Any] | None
) -> None:
    body = get_json(client, url, auth)
    if expected is None:  # the tags collection of "group/tags", not the tag "tags" of "group"
        assert body["_links"]["self"] == {"href": "/repositories/group%2Ftags/tags"}
    else:
        assert body == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/repositories/group%2Fnope", 'The resource "/repositories/group%2Fnope" does not exist'),
        ("/repositories/group/nope", 'The resource "/repositories/group%2Fnope" does not exist'),
        ("/repositories/group%2Ftags/tags/v2", 'The resource "/repositories/group%2Ftags/tags/v2" does not exist'),
        ("/repositories/nope/tags", 'The resource "/repositories/nope/tags" does not exist'),
        ("/repositories/broken/tags/x", 'The resource "/repositories/broken/tags/x" does not exist'),
    ],
)
def test_unknown_resources_are_404_json_naming_the_path(
    client: FlaskClient, auth: dict[str, str], url: str, message: str
) -> None:
    response = client.get(url, headers=auth)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": message}


@pytest.mark.parametrize(
    "url",
    ["/repositories/%FF%FE", "/repositories/a//b", "/repositories/a/", "/repositories/%00", "/repositories/..%2F..",
     "/repositories/" + "a" * 10000, "/repositories?embed=" + "9" * 5000, "/repositories?embed=%00&links=%FF"],
    ids=["bad-utf8", "empty-segment", "trailing-slash", "nul", "dotdot", "long", "huge-embed", "junk-query"],
)
def test_hostile_paths_never_give_a_500(client: FlaskClient, auth: dict[str, str], url: str) -> None:
    response = client.get(url, headers=auth)
    assert response.status_code in (200, 404)
    json.loads(response.data)


def test_unknown_route_and_wrong_method_are_json(client: FlaskClient, auth: dict[str, str]) -> None:
    missing = client.get("/nothing-here", headers=auth)
    assert (missing.status_code, missing.mimetype) == (404, "application/json")
    wrong = client.post("/repositories", headers=auth)
    assert wrong.status_code == 405
    assert "message" in json.loads(wrong.data)


# --- before the first crawl -------------------------------------------------------------------

def test_before_the_first_snapshot_repositories_has_a_null_timestamp(directory: FakeDirectory) -> None:
    app = create_app(make_config(), SnapshotHolder(), directory)
    client = app.test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = client.get("/repositories?embed=true&links=true", headers=headers)
    assert response.get_json() == {"timestamp": None, "_links": {"self": {"href": "/repositories"}}}
    waiting = client.get("/repositories/group", headers=headers)
    assert waiting.status_code == 503
    assert int(waiting.headers["Retry-After"]) > 0
    assert "message" in waiting.get_json()


def test_each_request_sees_the_snapshot_current_when_it_started(
    client: FlaskClient, auth: dict[str, str], holder: SnapshotHolder
) -> None:
    holder.replace(build_snapshot(Listing((RepositoryListing("new", ()),), {}), 5.0))
    assert get_json(client, "/repositories?embed=1", auth) == {
        "timestamp": 5.0, "total_size": 0, "total_disk_size": 0, "repository_count": 1, "tag_count": 0,
        "_embedded": {"items": [{"name": "new", "size": 0, "disk_size": 0, "unique_size": 0}]},
    }


# --- prefix, CORS, browser ---------------------------------------------------------------------

def test_links_carry_the_server_prefix(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/repositories/group%2Ftags?links=1", headers=auth,
                          base_url="http://localhost/registry-usage/")
    assert response.get_json()["_links"] == {
        "self": {"href": "/registry-usage/repositories/group%2Ftags"},
        "collection": {"href": "/registry-usage/repositories"},
        "related": {"href": "/registry-usage/repositories/group%2Ftags/tags", "title": "tags"},
    }


def test_cors_allows_any_origin_as_the_original(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/repositories", headers={**auth, "Origin": "https://dashboard.example.org"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://dashboard.example.org"
    assert client.get("/repositories", headers=auth).headers["Access-Control-Allow-Origin"] == "*"


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_browser_gets_an_html_page_with_clickable_links(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/repositories", headers={**auth, "Accept": BROWSER_ACCEPT})
    assert response.mimetype == "text/html"
    page = response.data.decode()
    assert page.startswith("<!DOCTYPE html>")
    assert '<a href="/repositories/group%2Fsub%2Fproject">' in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_curl_default_accept_gets_json(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.get("/repositories", headers={**auth, "Accept": "*/*"}).mimetype == "application/hal+json"


def test_html_view_escapes_names(directory: FakeDirectory) -> None:
    hostile = Listing((RepositoryListing('x"><script>alert(1)</script>', ()),), {})
    app = create_app(make_config(), SnapshotHolder(build_snapshot(hostile, 1.0)), directory)
    client = app.test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    page = client.get("/repositories?links=1", headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
    assert b"<script>" not in page.data


def test_browser_login_sets_a_cookie_that_only_the_html_view_accepts(client: FlaskClient) -> None:
    login = client.get("/auth_token", headers={**basic("alice", "right"), "Accept": BROWSER_ACCEPT})
    assert login.status_code == 200 and login.mimetype == "text/html"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/repositories/group%2Ftags", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and b"group/tags" in page.data
    # A script or curl (no HTML in Accept) must still present the bearer header.
    assert client.get("/repositories/group%2Ftags").status_code == 401


class HangingDirectory(FakeDirectory):
    """A directory that accepts the connection and answers only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.waiting = threading.Semaphore(0)

    def authenticate(self, username: str, password: str) -> bool:
        if username == "slow":
            self.waiting.release()
            self.release.wait(30)
        return super().authenticate(username, password)


def test_logins_waiting_on_the_directory_never_hold_more_than_half_the_threads(holder: SnapshotHolder) -> None:
    directory = HangingDirectory()
    app = create_app(make_config(threads=4), holder, directory)
    token = app.test_client().get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    with ThreadPoolExecutor(2) as pool:
        hanging = [pool.submit(app.test_client().get, "/auth_token", headers=basic("slow", "x")) for _ in range(2)]
        for _ in hanging:
            assert directory.waiting.acquire(timeout=10)
        refused = app.test_client().get("/auth_token", headers=basic("alice", "right"))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert "login directory" in refused.get_json()["message"]
        data = app.test_client().get("/repositories", headers={"Authorization": f"Bearer {token}"})
        assert data.status_code == 200
        directory.release.set()
        assert [future.result().status_code for future in hanging] == [401, 401]
    assert app.test_client().get("/auth_token", headers=basic("alice", "right")).status_code == 200
