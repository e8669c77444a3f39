"""pytest fixtures around ``tests.support.slapd``: import them into conftest.py (or a test module) to use them."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gitlab_registry_usage_rest.config import LdapConfig
from tests.support.slapd import Slapd


def ldap_config(server: Slapd) -> LdapConfig:
    """The service's LDAP settings for ``server`` as 0.3.3 knew them: ldaps, anonymous search, gidNumber match;
    with the fixture's CA and a short timeout."""
    return LdapConfig(host=server.ldaps_url, base_dn=server.base_dn, valid_gid=server.valid_gid,
                      ca_file=str(server.ca_file), timeout=2.0)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One running slapd for the session; a test that stops it must start it again."""
    with Slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture(scope="session")
def strict_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd that lets anonymous clients only bind: searching takes the ``reader`` service account."""
    with Slapd(tmp_path_factory.mktemp("strict-slapd"), anonymous_search=False) as server:
        yield server


@pytest.fixture
def unused_port() -> int:
    """A port on which nothing listens: connections to it are refused."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections the kernel accepts but nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]
