"""Manifest parsing: every kind a registry serves, and clear errors for everything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gitlab_registry_usage_rest.crawl.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ChildManifest,
    ConfigError,
    ConfigRef,
    ImageManifest,
    IndexManifest,
    ManifestError,
    Schema1Manifest,
    config_created,
    is_digest,
    parse_created,
    parse_manifest,
)

A, B, C = ("sha256:" + c * 64 for c in "abc")


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize("media_type", [DOCKER_MANIFEST, OCI_MANIFEST])
def test_image_manifest_lists_distinct_layers_with_sizes(media_type: str) -> None:
    body = encode({"schemaVersion": 2, "mediaType": media_type, "config": {"digest": C, "size": 7},
                   "layers": [{"digest": A, "size": 10}, {"digest": B, "size": 20}, {"digest": A, "size": 10}]})
    assert parse_manifest(body, media_type) == ImageManifest(media_type, ((A, 10), (B, 20)), ConfigRef(C, 7))


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


# --- creation times ------------------------------------------------------------------------------

UTC_2024 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T00:00:00Z", UTC_2024),
        ("2024-01-01t00:00:00z", UTC_2024),
        ("2024-01-01 00:00:00Z", UTC_2024),
        ("2024-01-01T02:30:00+02:30", UTC_2024),
        ("2023-12-31T19:00:00-05:00", UTC_2024),
        ("2024-01-01T00:00:00.5Z", UTC_2024 + 0.5),
        ("2023-06-15T12:34:56.789+02:00",
         datetime(2023, 6, 15, 12, 34, 56, 789000, tzinfo=timezone(timedelta(hours=2))).timestamp()),
        ("2024-01-01T00:00:00.123456Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC).timestamp()),
        ("2024-01-01T00:00:00.123456789Z", UTC_2024 + 0.123456789),  # Go writes nanoseconds
        ("2024-01-01T00:00:00.1234567891234Z", UTC_2024 + 0.123456789),  # beyond: ignored
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC).timestamp()),  # a leap second
        ("2000-01-01T00:00:00Z", 946684800.0),
        ("1999-12-31T23:59:59.999Z", None),
        ("2000-01-01T00:30:00+01:00", None),  # 1999 in UTC
        ("1970-01-01T00:00:00Z", None),  # SOURCE_DATE_EPOCH=0
        ("1980-01-01T00:00:01Z", None),  # what some reproducible builds write (the zip epoch)
        ("0001-01-01T00:00:00Z", None),  # Go's zero time
        (None, None),
    ],
    ids=["zulu", "lower-case", "space", "positive-offset", "negative-offset", "fraction", "fraction-and-offset",
         "microseconds", "nanoseconds", "more-digits", "leap-second", "the-cut-off", "just-before", "before-in-utc",
         "1970", "1980", "go-zero-time", "absent"],
)
def test_created_is_read_as_rfc3339_into_a_utc_timestamp(value: object, expected: float | None) -> None:
    assert parse_created(value) == expected


@pytest.mark.parametrize(
    "value",
    ["2024-01-01T00:00:00", "2024-01-01", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z",
     "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+01:60", "١٩٧٠-01-01T00:00:00Z", "2024-01-01T00:00:00Z\n",
     "", 1704067200, ["2024-01-01T00:00:00Z"]],
    ids=["no-offset", "date-only", "month-13", "february-30", "hour-24", "offset-hours", "offset-minutes",
         "non-ascii-digits", "trailing-line-feed", "empty", "number", "list"],
)
def test_a_created_that_is_no_rfc3339_time_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="'created'"):
        parse_created(value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (encode({"created": "2024-01-01T00:00:00Z", "architecture": "amd64"}), UTC_2024),
        (encode({"architecture": "amd64"}), None),
        (encode({"created": None}), None),
    ],
    ids=["created", "absent", "null"],
)
def test_config_created_reads_the_top_level_created(body: bytes, expected: float | None) -> None:
    assert config_created(body) == expected


@pytest.mark.parametrize("body", [b"<garbled>", b"\xff", b"[]", encode({"created": "yesterday"})],
                         ids=["not-json", "not-utf8", "array", "not-a-time"])
def test_an_unreadable_config_is_a_config_error(body: bytes) -> None:
    with pytest.raises(ConfigError):
        config_created(body)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"mediaType": "application/vnd.docker.container.image.v1+json", "digest": C, "size": 7}, ConfigRef(C, 7)),
        ({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": C, "size": 7}, ConfigRef(C, 7)),
        ({"digest": C, "size": 7}, ConfigRef(C, 7)),
        ({"digest": C}, ConfigRef(C, None)),
        ({"digest": C, "size": True}, ConfigRef(C, None)),
        ({"digest": "sha256:../x", "size": 7}, ConfigRef("sha256:../x", 7)),  # refused when it would be requested
        ({"digest": 5, "size": 7}, ConfigRef("5", 7)),
        ({"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": C, "size": 7}, None),
        ({"mediaType": "application/vnd.oci.empty.v1+json", "digest": C, "size": 2}, None),
        ("sha256:x", None),
        (None, None),
    ],
    ids=["docker", "oci", "no-media-type", "no-size", "size-bool", "path-as-digest", "number-as-digest", "helm-chart",
         "oci-empty", "not-an-object", "absent"],
)
def test_an_image_manifest_names_its_config_and_a_bad_one_never_fails_the_manifest(
    config: object, expected: ConfigRef | None
) -> None:
    document: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [{"digest": A, "size": 1}]}
    if config is not None:
        document["config"] = config
    parsed = parse_manifest(encode(document), OCI_MANIFEST)
    assert isinstance(parsed, ImageManifest) and parsed.config == expected


def schema1_with(history: object) -> bytes:
    return encode({"schemaVersion": 1, "fsLayers": [{"blobSum": A}], "history": history})


@pytest.mark.parametrize(
    ("history", "created", "error"),
    [
        ([{"v1Compatibility": json.dumps({"created": "2024-01-01T00:00:00Z"})},
          {"v1Compatibility": json.dumps({"created": "2025-01-01T00:00:00Z"})}], UTC_2024, None),
        ([{"v1Compatibility": json.dumps({"id": "x"})}], None, None),
        ([], None, None),
        ([{"v1Compatibility": "{garbled"}], None, "not JSON"),
        ([{"v1Compatibility": json.dumps({"created": "yesterday"})}], None, "not an RFC 3339 time: 'yesterday'"),
        (["x"], None, "not a list of objects"),
        ([{}], None, "without 'v1Compatibility'"),
    ],
    ids=["first-entry-is-the-newest", "no-created", "no-history", "not-json", "not-a-time", "entry-not-object",
         "no-v1-compatibility"],
)
def test_schema1_takes_created_from_its_first_history_entry_and_keeps_its_blobs_when_that_fails(
    history: object, created: float | None, error: str | None
) -> None:
    parsed = parse_manifest(schema1_with(history), "application/vnd.docker.distribution.manifest.v1+prettyjws")
    assert isinstance(parsed, Schema1Manifest) and parsed.blobs == (A,)
    assert parsed.created == created
    if error is None:
        assert parsed.created_error is None
    else:
        assert error in (parsed.created_error or "")
