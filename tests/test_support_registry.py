"""Pins what tests.support.registry builds against the real docker-registry, so other tests can trust its numbers."""

from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from gitlab_registry_usage.registry.high_level_api import GitLabRegistry

from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import SERVICE, GitLabTokenEndpoint, TokenSigner
from tests.support.pusher import (
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
    Platform,
    PushedImage,
    Pusher,
    PushError,
)

USER = "root"
ACCESS_TOKEN = "glpat-registry-tests"
# What gitlab-registry-usage 0.3.3 sends: no Docker type, so the registry serves schema 2 images as schema 1.
LIBRARY_ACCEPT = "application/vnd.oci.image.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
EMPTY_GZIPPED_TAR = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    """Raw HTTP for what Pusher hides; ignores proxy settings so nothing leaves 127.0.0.1."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def tokens() -> Iterator[GitLabTokenEndpoint]:
    with GitLabTokenEndpoint(TokenSigner(), USER, ACCESS_TOKEN) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tokens: GitLabTokenEndpoint) -> Iterator[DistributionRegistry]:
    with DistributionRegistry(tmp_path_factory.mktemp("registry"), tokens) as running:
        yield running


@pytest.fixture(scope="module")
def pusher(registry: DistributionRegistry, tokens: GitLabTokenEndpoint) -> Iterator[Pusher]:
    with Pusher(registry.url, tokens.url, USER, ACCESS_TOKEN) as client:
        yield client


def test_registry_accepts_only_tokens_of_the_trusted_key(
    http: requests.Session, registry: DistributionRegistry, tokens: GitLabTokenEndpoint
) -> None:
    access = [{"type": "registry", "name": "catalog", "actions": ["*"]}]

    def catalog_status(signer: TokenSigner) -> int:
        headers = {"Authorization": f"Bearer {signer.sign(USER, access)}"}
        return http.get(registry.url + "v2/_catalog", headers=headers, timeout=5).status_code

    assert catalog_status(tokens.signer) == 200
    assert catalog_status(TokenSigner()) == 401


@pytest.mark.parametrize(
    "auth",
    [None, (USER, "wrong-token"), ("someone-else", ACCESS_TOKEN)],
    ids=["missing", "wrong-token", "wrong-user"],
)
def test_token_endpoint_refuses_wrong_credentials(
    http: requests.Session, tokens: GitLabTokenEndpoint, auth: tuple[str, str] | None
) -> None:
    response = http.get(
        tokens.realm,
        params={"client_id": "docker", "service": SERVICE, "scope": "registry:catalog:*"},
        auth=auth,
        timeout=5,
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_token_endpoint_grants_every_scope_asked_for(http: requests.Session, tokens: GitLabTokenEndpoint) -> None:
    served_before = tokens.requests
    response = http.get(
        tokens.realm,
        params=[
            ("client_id", "docker"),
            ("service", SERVICE),
            ("scope", "registry:catalog:*"),
            ("scope", "repository:group/sub/project:*"),
            ("scope", "repository:group/tags:pull"),
        ],
        auth=(USER, ACCESS_TOKEN),
        timeout=5,
    )
    body = response.json()
    claims = jwt.decode(body["token"], tokens.signer.public_key(), algorithms=["RS256"], audience=SERVICE)
    assert (response.status_code, body["access_token"], body["expires_in"]) == (200, body["token"], 300)
    assert jwt.get_unverified_header(body["token"])["kid"] == tokens.signer.kid
    assert (claims["iss"], claims["sub"], claims["nbf"], claims["exp"]) == (
        "gitlab-issuer",
        USER,
        claims["iat"] - 5,
        claims["iat"] + 300,
    )
    assert claims["access"] == [
        {"type": "registry", "name": "catalog", "actions": ["*"]},
        {"type": "repository", "name": "group/sub/project", "actions": ["pull", "push", "delete"]},
        {"type": "repository", "name": "group/tags", "actions": ["pull"]},
    ]
    assert tokens.requests == served_before + 1


def test_pushed_schema2_manifest_lists_the_pushed_layer_sizes(pusher: Pusher) -> None:
    layers = [pusher.make_layer("sizes-a", 1000), pusher.make_layer("sizes-b", 2500)]

    image = pusher.push_image("group/sizes", "v1", layers)
    manifest = pusher.get_manifest("group/sizes", "v1", DOCKER_MANIFEST)

    assert (manifest.media_type, manifest.digest) == (DOCKER_MANIFEST, image.digest)
    assert [(layer["digest"], layer["size"]) for layer in manifest.json()["layers"]] == list(image.layers)
    assert [size for _, size in image.layers] == [1000, 2500]


def test_schema2_fetched_like_gitlab_registry_usage_becomes_schema1_with_one_fslayer_per_layer(pusher: Pusher) -> None:
    image = pusher.push_image("group/schema1", "v1", [pusher.make_layer("s1-a", 10), pusher.make_layer("s1-b", 20)])

    manifest = pusher.get_manifest("group/schema1", "v1", LIBRARY_ACCEPT)

    assert manifest.media_type == DOCKER_SCHEMA1_SIGNED
    # Schema 1 lists layers top-most first.
    fs_layers = [layer["blobSum"] for layer in manifest.json()["fsLayers"]]
    assert fs_layers == [digest for digest, _ in reversed(image.layers)]


def test_schema1_conversion_adds_the_empty_tar_for_empty_layer_history(pusher: Pusher) -> None:
    history = [{"created_by": "ENV A=1", "empty_layer": True}, {"created_by": "COPY . /"}]
    image = pusher.push_image("group/envs", "v1", [pusher.make_layer("envs", 10)], config_extra={"history": history})

    manifest = pusher.get_manifest("group/envs", "v1", LIBRARY_ACCEPT)

    assert [layer["blobSum"] for layer in manifest.json()["fsLayers"]] == [image.layers[0][0], EMPTY_GZIPPED_TAR]


def test_retag_and_delete_in_a_repository_named_tags(pusher: Pusher) -> None:
    image = pusher.push_image("group/tags", "v1", [pusher.make_layer("tags", 10)])

    assert pusher.tag_manifest("group/tags", "latest", "v1") == image.digest
    assert sorted(pusher.tags("group/tags")) == ["latest", "v1"]

    pusher.delete_manifest("group/tags", image.digest)
    assert pusher.tags("group/tags") == []


def test_oci_index_with_attestations_is_served_only_to_clients_accepting_indexes(pusher: Pusher) -> None:
    arm64 = Platform(architecture="arm64", variant="v8")
    index = pusher.push_index(
        "multi/app",
        "v1",
        [(Platform(), [pusher.make_layer("amd64", 30)]), (arm64, [pusher.make_layer("arm64", 40)])],
        attestation=True,
    )

    fetched = pusher.get_manifest("multi/app", "v1", OCI_INDEX)
    entries = fetched.json()["manifests"]
    assert (fetched.media_type, fetched.digest) == (OCI_INDEX, index.digest)
    assert [(entry["digest"], entry["platform"]) for entry in entries] == [
        (index.images[0].digest, {"architecture": "amd64", "os": "linux"}),
        (index.images[1].digest, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        (index.attestations[0].digest, {"architecture": "unknown", "os": "unknown"}),
        (index.attestations[1].digest, {"architecture": "unknown", "os": "unknown"}),
    ]
    assert [entry["annotations"]["vnd.docker.reference.digest"] for entry in entries[2:]] == [
        image.digest for image in index.images
    ]
    with pytest.raises(PushError) as refused:
        pusher.get_manifest("multi/app", "v1", OCI_MANIFEST)
    assert refused.value.status == 404
    assert "MANIFEST_UNKNOWN" in refused.value.body


def test_catalog_follows_link_pages_of_maxentries(tmp_path: Path, tokens: GitLabTokenEndpoint) -> None:
    names = [f"paged/repo{number}" for number in range(7)]
    with (
        DistributionRegistry(tmp_path, tokens, catalog_max_entries=3) as registry,
        Pusher(registry.url, tokens.url, USER, ACCESS_TOKEN) as client,
    ):
        for name in names:
            client.push_image(name, "v1", [client.make_layer("paged", 10)])

        assert client.catalog_pages() == [names[0:3], names[3:6], names[6:7]]


def test_gitlab_registry_usage_reports_the_distinct_pushed_layer_sizes(
    tmp_path: Path, tokens: GitLabTokenEndpoint
) -> None:
    # The library fetches schema 2 images as schema 1 and HEADs each blobSum (OCI ones keep their sizes). The figures
    # match only because Pusher writes one non-empty history entry per layer: an empty_layer entry would add the
    # 32-byte empty tar (see above). A registry of its own, as the library crawls the whole catalog.
    with (
        DistributionRegistry(tmp_path, tokens) as registry,
        Pusher(registry.url, tokens.url, USER, ACCESS_TOKEN) as client,
    ):
        base, app, tools, twice = (
            client.make_layer(seed, size)
            for seed, size in [("base", 3000), ("app", 700), ("tools", 1234), ("twice", 55)]
        )
        pushed: list[PushedImage] = [
            client.push_image("group/base", "v1", [base]),
            client.push_image("group/base", "v2", [base, app]),
            client.push_image("group/sub/project", "latest", [base, tools]),
            client.push_image("group/sub/project", "twice", [base, twice, twice]),
            client.push_image("group/tags", "oci", [app, tools], media_type="oci"),
        ]
        usage = GitLabRegistry(tokens.url, registry.url, USER, ACCESS_TOKEN)
        usage.update()

    expected: dict[str, dict[str, int]] = {}
    for image in pushed:
        assert image.tag is not None
        expected.setdefault(image.repo, {})[image.tag] = image.distinct_layer_size
    assert usage.tag_sizes == expected
    assert expected["group/sub/project"] == {"latest": 4234, "twice": 3055}
