"""Session fixtures: real slapd, real Distribution registry, GitLab's token endpoint stand-in, pushed images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.registry import DistributionRegistry, GitLabTokenEndpoint, Pusher, PushedImage, TokenSigner
from tests.support.slapd import Slapd

pytest_plugins = ["tests.support.ldap_fixtures"]  # the session-scoped slapd fixture

REGISTRY_USER = "root"
REGISTRY_TOKEN = "glpat-end-to-end-tests"
JWT_SECRET = "end-to-end-jwt-secret-" + "q" * 32


@pytest.fixture(scope="session")
def gitlab() -> Iterator[GitLabTokenEndpoint]:
    with GitLabTokenEndpoint(TokenSigner(), REGISTRY_USER, REGISTRY_TOKEN) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, gitlab: GitLabTokenEndpoint) -> Iterator[DistributionRegistry]:
    with DistributionRegistry(tmp_path_factory.mktemp("registry"), gitlab) as running:
        yield running


@pytest.fixture(scope="session")
def pusher(registry: DistributionRegistry, gitlab: GitLabTokenEndpoint) -> Iterator[Pusher]:
    with Pusher(registry.url, gitlab.url, REGISTRY_USER, REGISTRY_TOKEN) as client:
        yield client


@dataclass(frozen=True)
class PushedRegistry:
    """What the tests pushed: every tag's layers, in the registry's own catalog and tag order."""

    tags: dict[str, dict[str, tuple[tuple[str, int], ...]]]


@pytest.fixture(scope="session")
def pushed(pusher: Pusher) -> PushedRegistry:
    """Schema 2 and OCI images sharing base layers, nested names, a repository named ``.../tags``,
    a tag named ``tags`` and two tags on one manifest."""
    layer = Pusher.make_layer
    base, certs = layer("debian-base", 3000), layer("ca-certificates", 500)
    images: list[PushedImage] = [
        pusher.push_image("base/debian", "12", [base, certs]),
        pusher.push_image("group/sub/project", "1.0", [base, certs, layer("app-1.0", 1234)]),
        pusher.push_image("group/sub/project", "latest", [base, certs, layer("app-2.0", 2345)]),
        pusher.push_image("group/tags", "v1", [base, layer("tags-v1", 777)]),
        pusher.push_image("group", "tags", [layer("solo", 99)]),
        pusher.push_image("other/app", "main", [base, layer("other", 4321)], media_type="oci"),
    ]
    pusher.tag_manifest("group/sub/project", "2.0", "latest")
    by_digest = {(image.repo, image.digest): image.layers for image in images}
    tags: dict[str, dict[str, tuple[tuple[str, int], ...]]] = {}
    for repo in pusher.catalog():
        tags[repo] = {}
        for tag in pusher.tags(repo):
            digest = pusher.get_manifest(repo, tag).digest
            tags[repo][tag] = by_digest[(repo, digest)]
    return PushedRegistry(tags)


def expected_figures(pushed: PushedRegistry) -> dict[str, dict[str, object]]:
    """Sizes computed the slow, obvious way from what was pushed: the meaning the original gives them."""
    order = [(repo, tag) for repo, tags in pushed.tags.items() for tag in tags]
    layer_sets = {key: dict(pushed.tags[key[0]][key[1]]) for key in order}
    owner: dict[str, tuple[str, str]] = {}
    for digest in {d for layers in layer_sets.values() for d in layers}:
        holders = [key for key in order if digest in layer_sets[key]]
        owner[digest] = min(holders, key=lambda key: (len(layer_sets[key]), order.index(key)))
    result: dict[str, dict[str, object]] = {}
    for repo, tags in pushed.tags.items():
        tag_figures = {
            tag: {
                "size": sum(layer_sets[(repo, tag)].values()),
                "disk_size": sum(size for d, size in layer_sets[(repo, tag)].items() if owner[d] == (repo, tag)),
            }
            for tag in tags
        }
        result[repo] = {
            "size": sum(f["size"] for f in tag_figures.values()),
            "disk_size": sum(f["disk_size"] for f in tag_figures.values()),
            "tags": tag_figures,
        }
    return result


def service_config(
    workdir: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd, **overrides: str
) -> Path:
    """A config file as an administrator writes it, pointing at the test servers."""
    values = {
        "general": {"refresh_interval": "1 hour", "data_file": str(workdir / "snapshot.json")},
        "ldap": {"host": slapd.ldaps_url, "base_dn": slapd.base_dn, "valid_gid": slapd.valid_gid,
                 "ca_file": str(slapd.ca_file), "timeout": "5 seconds"},
        "jwt": {"secret_key": JWT_SECRET, "auth_token_expires": "1 hour"},
        "registry": {"gitlab_base_url": gitlab.url, "registry_base_url": registry.url,
                     "username": REGISTRY_USER, "access_token": REGISTRY_TOKEN},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        values[section][name] = value
    text = "".join(
        f"[{section}]\n" + "".join(f"{name} = {value}\n" for name, value in items.items()) + "\n"
        for section, items in values.items()
    )
    path = workdir / "gitlab_registry_usage_rest.conf"
    path.write_text(text)
    return path
