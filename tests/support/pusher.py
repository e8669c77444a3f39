"""Pushing images of exactly known byte sizes without docker, so tests compare exact numbers."""


import hashlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from tests.support.gitlab_stand_in import SERVICE
from tests.support.processes import local_session

log = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# What the registry serves instead of a Docker schema 2 manifest fetched by tag without DOCKER_MANIFEST in Accept.
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
# Naming every type keeps the registry from rewriting what it serves (schema 1 conversion, manifest list to child).
ACCEPT_ANY_MANIFEST = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))

ImageFormat = Literal["docker", "oci"]

# A fixed creation time keeps config blobs, and so manifest digests, the same for the same layers. It is written in
# the history entries only: a config without a top-level ``created`` has no creation time, unless a test gives one.
_CREATED = "2024-01-01T00:00:00Z"


def sha256_digest(data: bytes) -> str:
    """The content address the registry gives ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class _MediaTypes:
    manifest: str
    index: str
    config: str
    layer: str


_MEDIA_TYPES: dict[ImageFormat, _MediaTypes] = {
    "docker": _MediaTypes(
        manifest=DOCKER_MANIFEST,
        index=DOCKER_MANIFEST_LIST,
        config="application/vnd.docker.container.image.v1+json",
        layer="application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    "oci": _MediaTypes(
        manifest=OCI_MANIFEST,
        index=OCI_INDEX,
        config="application/vnd.oci.image.config.v1+json",
        layer="application/vnd.oci.image.layer.v1.tar+gzip",
    ),
}
# buildx stores attestations as OCI images whose single layer is an in-toto statement.
_ATTESTATION_MEDIA_TYPES = _MediaTypes(
    manifest=OCI_MANIFEST,
    index=OCI_INDEX,
    config="application/vnd.oci.image.config.v1+json",
    layer="application/vnd.in-toto+json",
)


@dataclass(frozen=True, slots=True)
class Platform:
    """Where an image runs, as its config and an index entry state it."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def as_json(self) -> dict[str, str]:
        """The ``platform`` object of an index entry (the same keys an image config carries)."""
        fields = {"architecture": self.architecture, "os": self.os}
        return fields if self.variant is None else {**fields, "variant": self.variant}


@dataclass(frozen=True, slots=True)
class PushedImage:
    """What :meth:`Pusher.push_image` uploaded, so tests can assert exact digests and byte counts."""

    repo: str
    tag: str | None  # None for a manifest pushed by digest only, such as an index child
    digest: str
    media_type: str
    size: int  # bytes of the manifest itself
    platform: Platform
    config_digest: str
    config_size: int
    layers: tuple[tuple[str, int], ...]  # (digest, size) in manifest order

    @property
    def distinct_layer_size(self) -> int:
        """Bytes of the image's layers counting each digest once: what a pull transfers besides config and manifest."""
        return sum(dict(self.layers).values())


# What an index lists: an image already pushed, or one to push: (platform, layers) or (platform, layers, created).
IndexEntry = PushedImage | tuple[Platform, Sequence[bytes]] | tuple[Platform, Sequence[bytes], str]


@dataclass(frozen=True, slots=True)
class PushedIndex:
    """What :meth:`Pusher.push_index` uploaded: the index and the manifests it lists."""

    repo: str
    tag: str
    digest: str
    media_type: str
    images: tuple[PushedImage, ...]
    attestations: tuple[PushedImage, ...]  # one per image, in the same order


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest as the registry served it."""

    media_type: str
    digest: str
    raw: bytes

    def json(self) -> dict[str, Any]:
        """The parsed manifest."""
        content: dict[str, Any] = json.loads(self.raw)
        return content


class PushError(RuntimeError):
    """The registry or token endpoint answered a step of a push or fetch with an unexpected status."""

    def __init__(self, response: requests.Response, expected: Sequence[int]) -> None:
        self.status = response.status_code
        self.body = response.text
        wanted = " or ".join(map(str, expected))
        super().__init__(
            f"{response.request.method} {response.url} answered {self.status}, expected {wanted}: {self.body[:500]}"
        )


class Pusher:
    """Pushes and inspects images over the registry API with GitLab tokens, as docker and buildx would: no daemon."""

    def __init__(
        self, registry_url: str, gitlab_url: str, username: str, access_token: str, *, timeout: float = 10.0
    ) -> None:
        self._registry_url = registry_url
        self._token_url = gitlab_url + "jwt/auth"
        self._credentials = (username, access_token)
        self._timeout = timeout
        self._session = local_session()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, monotonic time to renew it)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @staticmethod
    def make_layer(seed: str, size: int) -> bytes:
        """``size`` pseudo-random bytes fixed by ``seed``, so the same seed makes the same layer in any repository."""
        return random.Random(seed).randbytes(size)

    def token(self, scope: str) -> str:
        """A bearer token for ``scope`` from the token endpoint, reused until shortly before it expires."""
        cached = self._tokens.get(scope)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        response = self._session.get(
            self._token_url,
            params={"client_id": "docker", "service": SERVICE, "scope": scope},
            auth=self._credentials,
            timeout=self._timeout,
        )
        if response.status_code != HTTPStatus.OK:
            raise PushError(response, (HTTPStatus.OK,))
        body = response.json()
        # Renewing early keeps a token from expiring between the requests of one push.
        self._tokens[scope] = (body["token"], time.monotonic() + body["expires_in"] - 10)
        token: str = body["token"]
        return token

    def _call(
        self,
        method: str,
        url: str,
        scope: str,
        expected: Sequence[int],
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        response = self._session.request(
            method,
            urljoin(self._registry_url, url),
            data=data,
            headers={"Authorization": f"Bearer {self.token(scope)}", **(headers or {})},
            timeout=self._timeout,
        )
        if response.status_code not in expected:
            raise PushError(response, expected)
        return response

    def push_blob(self, repo: str, data: bytes) -> str:
        """Upload ``data`` to ``repo`` in one request unless it is there already; return its digest."""
        digest = sha256_digest(data)
        scope = _repository_scope(repo)
        if self._call("HEAD", f"v2/{repo}/blobs/{digest}", scope, (200, 404)).status_code == HTTPStatus.OK:
            return digest
        started = self._call("POST", f"v2/{repo}/blobs/uploads/", scope, (202,))
        # The Location may be absolute or relative, and carries the upload state in its query string.
        location = urljoin(self._registry_url, started.headers["Location"])
        separator = "&" if urlsplit(location).query else "?"
        self._call(
            "PUT",
            location + separator + urlencode({"digest": digest}),
            scope,
            (201,),
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    def _put_manifest(self, repo: str, reference: str | None, media_type: str, raw: bytes) -> str:
        """PUT manifest bytes under a tag, or under their own digest if ``reference`` is None; return the digest."""
        digest = sha256_digest(raw)
        self._call(
            "PUT",
            f"v2/{repo}/manifests/{reference or digest}",
            _repository_scope(repo),
            (201,),
            data=raw,
            headers={"Content-Type": media_type},
        )
        return digest

    def push_image(
        self,
        repo: str,
        tag: str,
        layers: Sequence[bytes],
        *,
        media_type: ImageFormat = "docker",
        platform: Platform = Platform(),
        config_extra: Mapping[str, Any] | None = None,
        created: str | None = None,
    ) -> PushedImage:
        """Push a Docker schema 2 or OCI image of ``layers`` (in that order) under ``tag``.

        ``created`` (an RFC 3339 string, written as given) becomes the config's ``created`` and every history
        entry's; without it the config has no ``created`` and its bytes are what they always were.
        """
        return self._push_image(repo, tag, layers, _MEDIA_TYPES[media_type], platform, config_extra or {}, created)

    def _push_image(
        self,
        repo: str,
        tag: str | None,
        layers: Sequence[bytes],
        media_types: _MediaTypes,
        platform: Platform,
        config_extra: Mapping[str, Any],
        created: str | None = None,
    ) -> PushedImage:
        config = {
            **({} if created is None else {"created": created}),
            **platform.as_json(),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
            # Exactly one history entry per layer and none marked empty_layer: the registry converts schema 2 to
            # schema 1 with one fsLayer per history entry, adding its gzipped empty tar for each empty_layer one.
            "history": [{"created": created or _CREATED, "created_by": f"layer {number}"}
                        for number in range(len(layers))],
            **config_extra,
        }
        config_raw = json.dumps(config).encode()
        config_digest = self.push_blob(repo, config_raw)
        layer_refs = tuple((self.push_blob(repo, layer), len(layer)) for layer in layers)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_types.manifest,
            "config": {"mediaType": media_types.config, "digest": config_digest, "size": len(config_raw)},
            "layers": [
                {"mediaType": media_types.layer, "digest": digest, "size": size} for digest, size in layer_refs
            ],
        }
        raw = json.dumps(manifest, indent=3).encode()
        return PushedImage(
            repo=repo,
            tag=tag,
            digest=self._put_manifest(repo, tag, media_types.manifest, raw),
            media_type=media_types.manifest,
            size=len(raw),
            platform=platform,
            config_digest=config_digest,
            config_size=len(config_raw),
            layers=layer_refs,
        )

    def push_index(
        self,
        repo: str,
        tag: str,
        images: Sequence[IndexEntry],
        *,
        media_type: ImageFormat = "oci",
        attestation: bool = False,
    ) -> PushedIndex:
        """Push a multi-platform OCI index or Docker manifest list under ``tag``, its new children by digest only.

        ``images`` are images already in ``repo`` or (platform, layers) or (platform, layers, created) to push in
        ``media_type``'s format. With ``attestation``, each image also gets a buildx-style attestation manifest
        listed as platform unknown/unknown.
        """
        media_types = _MEDIA_TYPES[media_type]
        children = tuple(self._index_child(repo, image, media_types) for image in images)
        entries = [
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": child.size,
                "platform": child.platform.as_json(),
            }
            for child in children
        ]
        attestations = tuple(self._push_attestation(repo, child) for child in children) if attestation else ()
        entries += [
            {
                "mediaType": statement.media_type,
                "digest": statement.digest,
                "size": statement.size,
                "annotations": {
                    "vnd.docker.reference.digest": child.digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
                "platform": statement.platform.as_json(),
            }
            for child, statement in zip(children, attestations, strict=False)  # no attestations: none
        ]
        raw = json.dumps({"schemaVersion": 2, "mediaType": media_types.index, "manifests": entries}, indent=3).encode()
        digest = self._put_manifest(repo, tag, media_types.index, raw)
        return PushedIndex(repo, tag, digest, media_types.index, children, attestations)

    def _index_child(self, repo: str, image: IndexEntry, media_types: _MediaTypes) -> PushedImage:
        if not isinstance(image, PushedImage):
            platform, layers, *created = image
            return self._push_image(repo, None, layers, media_types, platform, {}, *created)
        # An index can only list manifests of its own repository.
        if image.repo != repo:
            raise ValueError(f"image {image.digest} is in {image.repo!r}, not in {repo!r}")
        return image

    def _push_attestation(self, repo: str, subject: PushedImage) -> PushedImage:
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": f"pkg:docker/{repo}", "digest": {"sha256": subject.digest.removeprefix("sha256:")}}],
            "predicate": {},
        }
        layer = json.dumps(statement).encode()
        unknown = Platform(os="unknown", architecture="unknown")
        return self._push_image(repo, None, [layer], _ATTESTATION_MEDIA_TYPES, unknown, {})

    def get_manifest(self, repo: str, reference: str, accept: str = ACCEPT_ANY_MANIFEST) -> FetchedManifest:
        """Fetch a manifest by tag or digest; the ``Accept`` header decides what the registry serves."""
        response = self._call(
            "GET", f"v2/{repo}/manifests/{reference}", _repository_scope(repo), (200,), headers={"Accept": accept}
        )
        headers = response.headers
        return FetchedManifest(headers["Content-Type"], headers["Docker-Content-Digest"], response.content)

    def tag_manifest(self, repo: str, new_tag: str, digest_or_tag: str) -> str:
        """Point ``new_tag`` at an existing manifest, as ``docker buildx imagetools create`` does; return its digest."""
        manifest = self.get_manifest(repo, digest_or_tag)
        return self._put_manifest(repo, new_tag, manifest.media_type, manifest.raw)

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest; the registry also drops the tags that point at it."""
        self._call("DELETE", f"v2/{repo}/manifests/{digest}", _repository_scope(repo), (202,))

    def tags(self, repo: str) -> list[str]:
        """The tags of ``repo`` in the registry's storage order (unsorted)."""
        response = self._call("GET", f"v2/{repo}/tags/list", _repository_scope(repo), (200,))
        tags: list[str] = response.json()["tags"] or []
        return tags

    def catalog_pages(self) -> list[list[str]]:
        """The repository names page by page, following ``Link: <...>; rel="next"``."""
        pages = []
        url: str | None = "v2/_catalog"
        while url is not None:
            response = self._call("GET", url, "registry:catalog:*", (200,))
            pages.append(response.json()["repositories"] or [])
            url = response.links.get("next", {}).get("url")
        return pages

    def catalog(self) -> list[str]:
        """All repository names, sorted as the registry pages them."""
        return [name for page in self.catalog_pages() for name in page]


def _repository_scope(repo: str) -> str:
    return f"repository:{repo}:*"
