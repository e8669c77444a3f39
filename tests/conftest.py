"""Session fixtures: real slapd, real Distribution registry, GitLab's token endpoint stand-in, pushed images."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint, TokenSigner
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry
from tests.support.pusher import PushedImage, Pusher

# Session fixtures: slapd (ldap_fixtures) and chromium (browser).
pytest_plugins = ["tests.support.ldap_fixtures", "tests.support.browser"]



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
