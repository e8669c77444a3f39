"""Building the Flask application for tests: a config, a sample listing and a stand-in directory.

The directory is faked only at this level, where the web layer is under test; the real one (slapd)
is exercised in test_auth, test_auth_directories and end to end.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from flask.testing import FlaskClient

from gitlab_registry_usage_rest.config import Config, GeneralConfig, JwtConfig, LdapConfig, RegistryConfig
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing

ISSUER = AUDIENCE = "gitlab-registry-usage-rest"
SECRET = "test-secret-" + "k" * 40
TIMESTAMP = 1521796487.7021387


class DirectoryDown(Exception):
    pass


class FakeDirectory:
    """Stands in for LDAP at this level only; the real directory is exercised in test_auth and end to end."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.down = False

    def authenticate(self, username: str, password: str) -> bool:
        self.calls.append(username)
        if self.down:
            raise DirectoryDown("ldaps://127.0.0.1:1 unreachable")
        return (username, password) == ("alice", "right")


def sample_listing() -> Listing:
    def image(tag: str, *layers: str) -> ImageListing:
        return ImageListing(tag, layers)

    return Listing(
        (
            RepositoryListing("group/sub/project", (image("1.0", "base", "app1"), image("latest", "base", "app2"))),
            RepositoryListing("group/tags", (image("v1", "base", "t1"),)),
            RepositoryListing("group", (image("tags", "base"),)),
            RepositoryListing("broken", None),
        ),
        {"base": 100, "app1": 10, "app2": 20, "t1": 5},
    )


def make_config(**general: Any) -> Config:
    return Config(
        general=GeneralConfig(**general),
        ldap=LdapConfig(),
        jwt=JwtConfig(secret_key=SECRET, auth_token_expires=datetime.timedelta(hours=1)),
        registry=RegistryConfig(),
    )


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(client: FlaskClient, user: str = "alice", password: str = "right") -> dict[str, str]:
    """The header a client sends after logging in through ``/auth_token`` (FakeDirectory's users)."""
    token = client.get("/auth_token", headers=basic(user, password)).get_json()["auth_token"]
    return {"Authorization": f"Bearer {token}"}


def get_json(client: FlaskClient, url: str, headers: dict[str, str], status: int = 200) -> Any:
    """``url``'s JSON body, after checking its status."""
    response = client.get(url, headers=headers)
    assert response.status_code == status, response.data
    return json.loads(response.data)
