"""Parsing image manifests of every kind a registry serves today. Pure: bytes in, frozen objects out.

- Docker schema 2 and OCI image manifests list their layers with sizes.
- Docker manifest lists and OCI image indexes list one manifest per platform (``docker buildx``
  pushes these by default), plus attestation manifests (platform ``unknown/unknown``).
- Docker schema 1 lists layer digests without sizes; their sizes come from blob HEAD requests.

An image's creation time is its config's ``created`` (``config_created``): schema 2 and OCI manifests name
their config blob (``ImageManifest.config``), schema 1 manifests carry it in their newest history entry.

Every digest is checked against the OCI grammar before anything uses it: child manifests and schema 1
blobs are fetched by digest, so a digest like ``sha256:../../x`` or one with ``?``, ``#`` or ``/`` would
otherwise steer a request, with the registry token, to another path of the registry.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# Every type we understand. A registry serves a manifest list or index as such only when the client
# names its type; otherwise it rewrites a list to its linux/amd64 child and refuses an OCI index.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED))

# The OCI image spec's digest: algorithm ":" encoded. Every algorithm registries use (sha256, sha384, sha512)
# encodes as lowercase hex, which also keeps the digest a single, inert URL path segment.
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-f0-9]{32,128}")

# An image config's types; a manifest whose config has another type is an artifact (a Helm chart, a signature
# or the OCI empty descriptor), whose config is no image config and has no creation time to read.
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})

# RFC 3339 date-time, as Go's time.RFC3339Nano writes it (up to nine fractional digits) and people read it.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))", re.ASCII)
# Earlier creation times are placeholders: reproducible builds write 1970 (SOURCE_DATE_EPOCH=0) or 1980, Go's zero
# time is year 1. They say the time is unknown, not that the image is old.
EARLIEST_CREATED = 946_684_800.0  # 2000-01-01T00:00:00Z

_IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
_INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
_SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})


class ManifestError(ValueError):
    """A manifest we cannot make sense of: not JSON, an unknown type, or fields missing or of the wrong type."""


class ConfigError(ValueError):
    """An image config, or a schema 1 history entry, whose creation time cannot be read."""


@dataclass(frozen=True, slots=True)
class ConfigRef:
    """The image config a manifest names: its digest as written (checked before any request) and declared size."""

    digest: str
    size: int | None


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """A single-platform image: its layers with their sizes, in manifest order, duplicates removed, and its config
    (``None`` when it has none, or one that is not an image config)."""

    media_type: str
    layers: tuple[tuple[str, int], ...]
    config: ConfigRef | None = None


@dataclass(frozen=True, slots=True)
class ChildManifest:
    """One entry of an index: which manifest, and for which platform (``None`` for an attestation)."""

    digest: str
    media_type: str
    platform: str | None


@dataclass(frozen=True, slots=True)
class IndexManifest:
    media_type: str
    children: tuple[ChildManifest, ...]


@dataclass(frozen=True, slots=True)
class Schema1Manifest:
    """Layer digests only; the sizes need one HEAD request per distinct blob. The creation time comes with the
    manifest (its newest history entry); ``created_error`` says why it could not be read, if it could not."""

    media_type: str
    blobs: tuple[str, ...]
    created: float | None = None
    created_error: str | None = None


Manifest = ImageManifest | IndexManifest | Schema1Manifest


def is_digest(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a digest as the OCI image spec writes them, e.g. ``sha256:`` and 64 hex digits."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def parse_manifest(body: bytes, content_type: str | None) -> Manifest:
    """Parse a manifest; the type comes from the body's ``mediaType`` if present, else the header."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise ManifestError(f"manifest is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ManifestError("manifest is not a JSON object")
    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip()
    media_type = declared if isinstance(declared, str) and declared else header
    if document.get("schemaVersion") == 1 or media_type in _SCHEMA1_TYPES:
        return _schema1(document)
    if media_type in _IMAGE_TYPES or (not media_type and "layers" in document):
        return ImageManifest(media_type or OCI_MANIFEST, _layers(document), _config(document))
    if media_type in _INDEX_TYPES or (not media_type and "manifests" in document):
        return IndexManifest(media_type or OCI_INDEX, _children(document))
    raise ManifestError(f"unsupported manifest type {media_type!r}")


def _layers(document: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    layers = document.get("layers") or []
    if not isinstance(layers, list):
        raise ManifestError("'layers' is not a list")
    found: dict[str, int] = {}
    for layer in layers:
        digest, size = _descriptor(layer)
        found.setdefault(digest, size)
    return tuple(found.items())


def _config(document: dict[str, Any]) -> ConfigRef | None:
    """The config descriptor, unchecked: a bad one costs the image its creation time (reported), not its figures."""
    config = document.get("config")
    if not isinstance(config, dict):
        return None
    media_type = config.get("mediaType")
    if media_type and media_type not in _CONFIG_TYPES:
        return None
    digest, size = config.get("digest"), config.get("size")
    valid_size = isinstance(size, int) and not isinstance(size, bool) and size >= 0
    return ConfigRef(digest if isinstance(digest, str) else repr(digest), size if valid_size else None)


def _descriptor(entry: Any) -> tuple[str, int]:
    if not isinstance(entry, dict):
        raise ManifestError("a descriptor is not an object")
    digest, size = entry.get("digest"), entry.get("size")
    if not is_digest(digest):
        raise ManifestError(f"descriptor without a valid digest: {digest!r:.100}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"descriptor {digest} has no valid size: {size!r}")
    return digest, size


def _children(document: dict[str, Any]) -> tuple[ChildManifest, ...]:
    entries = document.get("manifests") or []
    if not isinstance(entries, list):
        raise ManifestError("'manifests' is not a list")
    children = []
    for entry in entries:
        digest, _ = _descriptor(entry)
        media_type = entry.get("mediaType")
        children.append(ChildManifest(digest, media_type if isinstance(media_type, str) else "", _platform(entry)))
    return tuple(children)


def _platform(entry: dict[str, Any]) -> str | None:
    """``os/architecture[/variant]``; ``None`` for buildx attestation manifests, which are not platforms."""
    annotations = entry.get("annotations")
    if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return None
    platform = entry.get("platform")
    if not isinstance(platform, dict):
        return "unknown"
    os_name, architecture = platform.get("os"), platform.get("architecture")
    if os_name == "unknown" and architecture == "unknown":
        return None
    parts = [str(os_name or "unknown"), str(architecture or "unknown")]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def _schema1(document: dict[str, Any]) -> Schema1Manifest:
    layers = document.get("fsLayers") or []
    if not isinstance(layers, list):
        raise ManifestError("'fsLayers' is not a list")
    blobs: dict[str, None] = {}
    for layer in layers:
        blob = layer.get("blobSum") if isinstance(layer, dict) else None
        if not is_digest(blob):
            raise ManifestError(f"fsLayer without a valid blobSum: {blob!r:.100}")
        blobs[blob] = None
    try:
        return Schema1Manifest(DOCKER_SCHEMA1_SIGNED, tuple(blobs), _schema1_created(document))
    except ConfigError as error:
        return Schema1Manifest(DOCKER_SCHEMA1_SIGNED, tuple(blobs), None, str(error))


def _schema1_created(document: dict[str, Any]) -> float | None:
    """The first history entry is the newest (the image's own config, as the schema 2 conversion writes it)."""
    history = document.get("history")
    if not history:
        return None
    if not isinstance(history, list) or not isinstance(history[0], dict):
        raise ConfigError("schema 1 'history' is not a list of objects")
    compatibility = history[0].get("v1Compatibility")
    if not isinstance(compatibility, str):
        raise ConfigError("schema 1 history entry without 'v1Compatibility'")
    return config_created(compatibility.encode())


def config_created(body: bytes) -> float | None:
    """An image config's ``created`` as a UNIX timestamp; ``None`` if absent or a placeholder before 2000."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ConfigError("not a JSON object")
    return parse_created(document.get("created"))


def parse_created(value: object) -> float | None:
    """An RFC 3339 time (fractional seconds and offset optional and any) as a UNIX timestamp; ``None`` for none
    (absent, or before 2000: reproducible builds' placeholders)."""
    if value is None:
        return None
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"'created' is not an RFC 3339 time: {value!r:.100}")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction, zulu, sign, offset_hours, offset_minutes = match.group(7, 8, 9, 10, 11)
    try:
        datetime(year, month, day, hour, minute, min(second, 59))  # checks the calendar; 60 is a leap second
    except ValueError:
        raise ConfigError(f"'created' is not a valid time: {value!r:.100}") from None
    offset = 0 if zulu else (1 if sign == "+" else -1) * (int(offset_hours) * 3600 + int(offset_minutes) * 60)
    if not zulu and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        raise ConfigError(f"'created' has no valid offset: {value!r:.100}")
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset
    # One division of exact integers: the nearest float, the same value datetime.timestamp() gives.
    timestamp = (seconds * 10**9 + int((fraction or "").ljust(9, "0"))) / 10**9
    return timestamp if timestamp >= EARLIEST_CREATED else None
