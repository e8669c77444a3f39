"""Manifest parsing: every kind a registry serves, and clear errors for everything else."""

from __future__ import annotations

import json

import pytest

from gitlab_registry_usage_rest.crawl.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ChildManifest,
    ImageManifest,
    IndexManifest,
    ManifestError,
    Schema1Manifest,
    is_digest,
    parse_manifest,
)

A, B, C = ("sha256:" + c * 64 for c in "abc")


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST, OCI_MANIFEST])
def test_image_manifest_lists_distinct_layers_with_sizes(media_type: str) -> None:
    body = encode({"schemaVersion": 2, "mediaType": media_type, "config": {"digest": C, "size": 7},
                   "layers": [{"digest": A, "size": 10}, {"digest": B, "size": 20}, {"digest": A, "size": 10}]})
    assert parse_manifest(body, media_type) == ImageManifest(media_type, ((A, 10), (B, 20)))


def test_oci_manifest_without_media_type_field_takes_the_header() -> None:
    body = encode({"schemaVersion": 2, "layers": [{"digest": A, "size": 1}]})
    assert parse_manifest(body, OCI_MANIFEST + "; charset=utf-8").media_type == OCI_MANIFEST


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST_LIST, OCI_INDEX])
def test_index_lists_platforms_and_marks_attestations(media_type: str) -> None:
    body = encode({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"digest": A, "size": 1, "mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": B, "size": 1, "mediaType": OCI_MANIFEST,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": C, "size": 1, "mediaType": OCI_MANIFEST, "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": A}},
    ]})
    assert parse_manifest(body, media_type) == IndexManifest(media_type, (
        ChildManifest(A, OCI_MANIFEST, "linux/amd64"),
        ChildManifest(B, OCI_MANIFEST, "linux/arm64/v8"),
        ChildManifest(C, OCI_MANIFEST, None),
    ))


def test_schema1_lists_blobs_without_sizes() -> None:
    body = encode({"schemaVersion": 1, "fsLayers": [{"blobSum": A}, {"blobSum": B}, {"blobSum": A}]})
    parsed = parse_manifest(body, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    assert isinstance(parsed, Schema1Manifest) and parsed.blobs == (A, B)


@pytest.mark.parametrize(
    "body",
    [
        b"{truncated",
        b"\xff\xfe",
        b"[]",
        encode({"schemaVersion": 2, "mediaType": "application/x-unknown"}),
        encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": {"digest": A}}),
        encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [{"digest": A, "size": "10"}]}),
        encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [{"digest": A, "size": -1}]}),
        encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [{"digest": A, "size": True}]}),
        encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [{"size": 3}]}),
        encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ["x"]}),
        encode({"schemaVersion": 1, "fsLayers": [{"blobSum": 3}]}),
    ],
    ids=["truncated", "not-utf8", "array", "unknown-type", "layers-not-list", "size-string", "size-negative",
         "size-bool", "no-digest", "child-not-object", "blobsum-not-string"],
)
def test_malformed_manifests_raise_manifest_error(body: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(body, OCI_MANIFEST)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("sha256:" + "0123456789abcdef" * 4, True),
        ("sha512:" + "f" * 128, True),
        ("sha384:" + "e" * 96, True),
        ("multihash+base58:" + "a" * 40, True),
        ("sha256:../../x", False),
        ("sha256:" + "a" * 64 + "?n=1", False),
        ("sha256:" + "a" * 64 + "#x", False),
        ("sha256:" + "a" * 32 + "/" + "a" * 31, False),
        ("sha256:" + "a" * 64 + "\n", False),
        ("sha256:" + "A" * 64, False),
        ("sha256:" + "a" * 129, False),
        ("SHA256:" + "a" * 64, False),
        (":" + "a" * 64, False),
        ("sha256:", False),
        ("a" * 64, False),
        (None, False),
        (64, False),
    ],
    ids=["sha256", "sha512", "sha384", "compound-algorithm", "dot-dot", "query", "fragment", "slash",
         "trailing-line-feed", "upper-case-hex", "too-long", "upper-case-algorithm", "no-algorithm", "no-hex",
         "no-colon", "none", "number"],
)
def test_digests_are_the_oci_grammar_with_hex(value: object, valid: bool) -> None:
    assert is_digest(value) is valid


@pytest.mark.parametrize("kind", ["layers", "manifests", "fsLayers"])
def test_a_descriptor_with_a_path_as_digest_is_a_manifest_error(kind: str) -> None:
    key = "blobSum" if kind == "fsLayers" else "digest"
    document = {"schemaVersion": 1 if kind == "fsLayers" else 2,
                "mediaType": OCI_INDEX if kind == "manifests" else OCI_MANIFEST,
                kind: [{key: "sha256:../../x", "size": 1}]}
    if kind == "fsLayers":
        del document["mediaType"]
    with pytest.raises(ManifestError, match=r"valid (digest|blobSum): 'sha256:\.\./\.\./x'"):
        parse_manifest(encode(document), None)
