"""The built-in demo: a small sample registry and a one-user login, for trying the API without GitLab or LDAP.

It goes through the same API, JWT and snapshot code as a real installation; only the crawl and the
directory are replaced by the data and the password below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterator

from .config import Config, GeneralConfig, JwtConfig, LdapConfig, RegistryConfig
from .model import ImageListing, Listing, RepositoryListing, Snapshot
from .sizes import build_snapshot

DEMO_USER = "demo"

MB = 1024 * 1024

# Layers by name and size; images below list them bottom-up as a Dockerfile would build them.
_LAYERS = {
    "debian-base": 29 * MB + 123_456,
    "debian-slim": 27 * MB + 654_321,
    "ca-certificates": 310_882,
    "python-runtime": 49 * MB + 2_000,
    "python-3.12-runtime": 51 * MB + 7_000,
    "pip-deps-web": 18 * MB + 345,
    "pip-deps-web-v2": 19 * MB + 4_567,
    "frontend-assets": 6 * MB + 7_001,
    "frontend-assets-v1.1": 5 * MB + 999_333,
    "backend-app": 2 * MB + 5_050,
    "api-app": 1 * MB + 40_404,
    "etl-jobs": 3 * MB + 30_303,
    "torch-cpu": 180 * MB + 12_345,
    "model-weights-small": 95 * MB + 111,
    "model-weights-large": 410 * MB + 222,
    "gitlab-runner": 62 * MB + 4_444,
    "docs-html": 4 * MB + 808,
    "scanner-db": 120 * MB + 9_999,
    "scanner-bin": 38 * MB + 1_234,
    "legacy-app": 88 * MB + 7_777,
}

_REPOSITORIES: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...] | None], ...] = (
    ("infra/base/debian", (
        ("12", ("debian-base", "ca-certificates")),
        ("12-slim", ("debian-slim", "ca-certificates")),
    )),
    ("infra/base/python", (
        ("3.11", ("debian-slim", "ca-certificates", "python-runtime")),
        ("3.12", ("debian-slim", "ca-certificates", "python-3.12-runtime")),
    )),
    ("apps/web/frontend", (
        ("latest", ("debian-slim", "frontend-assets")),
        ("v1.2.0", ("debian-slim", "frontend-assets")),
        ("v1.1.0", ("debian-slim", "frontend-assets-v1.1")),
    )),
    ("apps/web/backend", (
        ("latest", ("debian-slim", "ca-certificates", "python-runtime", "pip-deps-web-v2", "backend-app")),
        ("v2.0.0", ("debian-slim", "ca-certificates", "python-runtime", "pip-deps-web-v2", "backend-app")),
        ("v1.9.3", ("debian-slim", "ca-certificates", "python-runtime", "pip-deps-web", "backend-app")),
    )),
    ("apps/api", (
        ("main", ("debian-slim", "ca-certificates", "python-3.12-runtime", "pip-deps-web-v2", "api-app")),
    )),
    ("data/pipelines/etl", (
        ("nightly", ("debian-slim", "ca-certificates", "python-runtime", "etl-jobs")),
    )),
    ("ml/models/tags", (
        ("small", ("debian-slim", "ca-certificates", "python-runtime", "torch-cpu", "model-weights-small")),
        ("large", ("debian-slim", "ca-certificates", "python-runtime", "torch-cpu", "model-weights-large")),
    )),
    ("tools/ci-runner", (
        ("v17", ("debian-base", "ca-certificates", "gitlab-runner")),
    )),
    ("docs/site", (
        ("latest", ("debian-slim", "docs-html")),
    )),
    ("security/scanner", (
        ("latest", ("debian-slim", "ca-certificates", "scanner-bin", "scanner-db")),
    )),
    ("legacy/app", (
        ("final", ("debian-base", "legacy-app")),
    )),
    # A repository whose tags could not be read: served without figures, as after a registry error.
    ("sandbox/alice/broken", None),
)


# How many days before the demo's start each image was built (tags on one manifest alike); None: a reproducible
# build that records 1970, which the crawler reports as no time at all.
_BUILT_DAYS_AGO: dict[tuple[str, str], float | None] = {
    ("infra/base/debian", "12"): 199.0,
    ("infra/base/debian", "12-slim"): 197.5,
    ("infra/base/python", "3.11"): 151.0,
    ("infra/base/python", "3.12"): 41.2,
    ("apps/web/frontend", "latest"): 3.1,
    ("apps/web/frontend", "v1.2.0"): 3.1,
    ("apps/web/frontend", "v1.1.0"): 64.0,
    ("apps/web/backend", "latest"): 1.2,
    ("apps/web/backend", "v2.0.0"): 1.2,
    ("apps/web/backend", "v1.9.3"): 97.4,
    ("apps/api", "main"): 0.3,
    ("data/pipelines/etl", "nightly"): 0.6,
    ("ml/models/tags", "small"): 120.0,
    ("ml/models/tags", "large"): 118.7,
    ("tools/ci-runner", "v17"): 30.0,
    ("docs/site", "latest"): 12.5,
    ("security/scanner", "latest"): 5.0,
    ("legacy/app", "final"): None,
}
DAY = 86400.0

# Continuous delivery, as most registries hold it: a build per merge to main, tagged with its commit, in two
# repositories, over the 60 days before the demo's start. Each build adds its own application layer on the shared
# stack, so a cleanup policy (say keep_n=5, older_than=30d) has old builds to delete and bytes to free.
_BUILDS = (
    ("apps/web/backend", ("debian-slim", "ca-certificates", "python-runtime", "pip-deps-web-v2"), 40, 1.5,
     2 * MB),
    ("apps/web/frontend", ("debian-slim",), 24, 2.5, 5 * MB),
)


def _builds() -> list[tuple[str, str, tuple[str, ...], int, float]]:
    """(repository, tag, layers, size of its own layer, days ago) of every generated build, newest first."""
    builds = []
    for repository, stack, count, every_days, size in _BUILDS:
        for number in range(count):
            commit = hashlib.sha1(f"{repository}#{number}".encode()).hexdigest()[:8]
            own = f"{repository}:build-{commit}"
            builds.append((repository, f"main-{commit}", (*stack, own), size + 7_919 * number,
                           0.8 + number * every_days))
    return builds


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def demo_listing(now: float) -> Listing:
    """A dozen repositories with shared base layers, nested names, a retag and one unreadable repository;
    images built over the 200 days before ``now``, one of them a reproducible build without a time, and two
    repositories with a build per commit over the last 60 days."""
    builds = _builds()
    repositories = []
    for name, tags in _REPOSITORIES:
        if tags is None:
            repositories.append(RepositoryListing(name, None))
            continue
        dated = [(tag, layers, _BUILT_DAYS_AGO[name, tag]) for tag, layers in tags]
        dated += [(tag, layers, days) for repository, tag, layers, _, days in builds if repository == name]
        images = tuple(
            ImageListing(
                tag=tag,
                layers=tuple(_digest(layer) for layer in layers),
                digest=_digest("manifest:" + "/".join(layers)),
                media_type="application/vnd.docker.distribution.manifest.v2+json",
                # Whole seconds, as image configs usually record them.
                created=None if days is None else float(round(now - days * DAY)),
            )
            for tag, layers, days in dated
        )
        repositories.append(RepositoryListing(name, images))
    sizes = {_digest(layer): size for layer, size in _LAYERS.items()}
    sizes.update((_digest(layers[-1]), size) for _, _, layers, size, _ in builds)
    return Listing(tuple(repositories), sizes, ("sandbox/alice/broken: its tags could not be read (demo)",))


HISTORY_DAYS = 90
HISTORY_FULL_DAYS = 7  # the default history_full_days: the last week has a point every two hours


def demo_history(now: float) -> Iterator[Snapshot]:
    """What refreshes would have recorded over the ``HISTORY_DAYS`` days before ``now``: the registry of
    ``demo_listing(now)`` as it was at each moment (an image from its build time on, a repository from its
    first image on), once a day, every two hours in the last week, and last the snapshot at ``now`` itself
    (the one the demo serves). The same ``now`` always gives the same history."""
    listing = demo_listing(now)
    moments = [now - day * DAY for day in range(HISTORY_DAYS, HISTORY_FULL_DAYS, -1)]
    moments += [now - hours * 3600.0 for hours in range(HISTORY_FULL_DAYS * 24, 0, -2)]
    for moment in moments:
        yield build_snapshot(_as_of(listing, moment), moment)
    yield build_snapshot(listing, now)


def _as_of(listing: Listing, moment: float) -> Listing:
    """The images of ``listing`` built by ``moment`` (one without a build time always); the repositories that
    had any, and those whose tags could not be read."""
    repositories = []
    for repository in listing.repositories:
        if repository.images is None:
            repositories.append(repository)
            continue
        images = tuple(image for image in repository.images if image.created is None or image.created <= moment)
        if images:
            repositories.append(dataclasses.replace(repository, images=images))
    return dataclasses.replace(listing, repositories=tuple(repositories))


class DemoAuthenticator:
    """Accepts exactly one user, ``demo``, with the password given at start."""

    def __init__(self, password: str) -> None:
        if not password:
            raise ValueError("the demo password must not be empty")
        self._password = password

    def authenticate(self, username: str, password: str) -> bool:
        return bool(password) and hmac.compare_digest(
            f"{username}\0{password}".encode(), f"{DEMO_USER}\0{self._password}".encode()
        )


def demo_config(port: int) -> Config:
    """A config for the demo: localhost only, a fresh random JWT secret every run."""
    return Config(
        # The storage the demo registry pretends to have, so that /history says when it is full.
        general=GeneralConfig(socket_host="127.0.0.1", socket_port=port, storage_capacity=2 * 1024**3),
        ldap=LdapConfig(),
        jwt=JwtConfig(secret_key=secrets.token_urlsafe(48)),
        registry=RegistryConfig(),
    )


def banner(url: str, password: str) -> str:
    """What the demo prints at start: the login and commands to try."""
    token = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"auth_token\"])'"
    return f"""
Demo service on {url} with a built-in sample registry (no GitLab, no LDAP needed).
Login: user {DEMO_USER!r}, password {password!r} (new at every start)

Try:
  TOKEN=$(curl -s -u {DEMO_USER}:{password} {url}/auth_token | {token})
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/repositories?embed=1'
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/repositories/apps%2Fweb%2Fbackend?embed=true&links=true'
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/repositories/apps%2Fweb%2Fbackend/tags/latest'
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/groups?embed=1'
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/cleanup?keep_n=5&older_than=30d'
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Accept: text/csv' '{url}/groups?depth=1'
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/history?since=90d'
  curl -s -H "Authorization: Bearer $TOKEN" '{url}/repositories?window=7d&sort=-growth&limit=5'
In a browser: open {url}/ and log in as {DEMO_USER}: the dashboard (with 90 days of generated history),
groups, the cleanup simulator, every repository's page.
Stop with Ctrl-C.
"""
