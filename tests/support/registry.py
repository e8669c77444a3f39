"""A real Docker Distribution registry behind a GitLab-style token endpoint, for integration tests.

The service under test gets bearer tokens from GitLab's ``/jwt/auth`` and reads the registry's ``/v2`` API, so tests
run both for real on 127.0.0.1: :class:`GitLabTokenEndpoint` issues tokens signed by a :class:`TokenSigner`,
:class:`DistributionRegistry` runs ``docker-registry`` trusting that signer, and :class:`Pusher` uploads images of
exactly known byte sizes, so assertions compare exact numbers.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Self
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.processes import stop_process

log = logging.getLogger(__name__)

ISSUER = "gitlab-issuer"
SERVICE = "container_registry"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# What the registry serves instead of a Docker schema 2 manifest fetched by tag without DOCKER_MANIFEST in Accept.
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
# Naming every type keeps the registry from rewriting what it serves (schema 1 conversion, manifest list to child).
ACCEPT_ANY_MANIFEST = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))

ImageFormat = Literal["docker", "oci"]

# GitLab grants an administrator asking for "*" on a repository these actions.
_WILDCARD_ACTIONS = ("pull", "push", "delete")
# A fixed creation time keeps config blobs, and so manifest digests, the same for the same layers.
_CREATED = "2024-01-01T00:00:00Z"


def free_port() -> int:
    """A port on 127.0.0.1 that is free now, for servers whose URL must be known before they start."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sha256_digest(data: bytes) -> str:
    """The content address the registry gives ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The ID the registry derives from a trusted key; a token's ``kid`` header must equal it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[start : start + 4] for start in range(0, len(encoded), 4))


def _local_session() -> requests.Session:
    """A session that ignores proxy and netrc settings from the environment: test traffic stays on 127.0.0.1."""
    session = requests.Session()
    session.trust_env = False
    return session


class TokenSigner:
    """Signs registry tokens as GitLab does, with a fresh key whose certificate the registry is told to trust."""

    def __init__(self, issuer: str = ISSUER, audience: str = SERVICE) -> None:
        self.issuer = issuer
        self.audience = audience
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = libtrust_key_id(self._key.public_key())

    def public_key(self) -> rsa.RSAPublicKey:
        """The verification key, for tests that decode issued tokens."""
        return self._key.public_key()

    def write_certificate(self, path: Path) -> Path:
        """Write a self-signed certificate of the signing key as PEM, for the registry's ``rootcertbundle``."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(self._key, hashes.SHA256())
        )
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def sign(self, subject: str, access: list[dict[str, Any]], lifetime_s: int = 300) -> str:
        """An RS256 JWT granting ``access`` to ``subject``, with GitLab's claims (``nbf`` 5 s before ``iat``)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime_s,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


def scope_to_access(scope: str) -> dict[str, Any]:
    """The access entry GitLab grants an administrator for one ``scope`` parameter."""
    kind, _, rest = scope.partition(":")
    # Repository names contain slashes but never colons, so the actions follow the last colon.
    name, _, actions = rest.rpartition(":")
    if kind not in ("registry", "repository") or not name or not actions:
        raise ValueError(f"malformed scope {scope!r}")
    granted = actions.split(",")
    if kind == "repository":
        expanded = (_WILDCARD_ACTIONS if action == "*" else (action,) for action in granted)
        granted = list(dict.fromkeys(action for actions in expanded for action in actions))
    return {"type": kind, "name": name, "actions": granted}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """The (username, password) of a ``Basic`` Authorization header, or None if there is none."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if colon else None


class GitLabTokenEndpoint:
    """GitLab's ``/jwt/auth`` for one administrator: checks basic auth, then grants every scope asked for."""

    def __init__(self, signer: TokenSigner, username: str, access_token: str, *, lifetime_s: int = 300) -> None:
        self.signer = signer
        self.username = username
        self.lifetime_s = lifetime_s
        self._access_token = access_token
        self._port = free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests = 0

    @property
    def url(self) -> str:
        """The GitLab base URL with a trailing slash, as gitlab-registry-usage appends ``jwt/auth`` to it."""
        return f"http://127.0.0.1:{self._port}/"

    @property
    def realm(self) -> str:
        """The token URL the registry names in its ``WWW-Authenticate`` challenge."""
        return self.url + "jwt/auth"

    @property
    def requests(self) -> int:
        """How many requests the endpoint has answered, to check token caching."""
        with self._lock:
            return self._requests

    def start(self) -> None:
        """Listen and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"token endpoint {self.url} is already running")
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), partial(_TokenRequestHandler, self))
        # A short poll interval makes stop() return at once instead of after up to the default half second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="gitlab-token-endpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def answer(self, path: str, authorization: str | None) -> tuple[HTTPStatus, dict[str, str], dict[str, Any]]:
        """Status, extra headers and JSON body for one GET, as GitLab would send them."""
        with self._lock:
            self._requests += 1
        url = urlsplit(path)
        query = parse_qs(url.query)
        # GitLab answers 404 for a service it does not know.
        if url.path != "/jwt/auth" or query.get("service") != [SERVICE]:
            return HTTPStatus.NOT_FOUND, {}, {"message": "404 Not Found"}
        if _basic_credentials(authorization) != (self.username, self._access_token):
            message = "HTTP Basic: Access denied. The provided password or token is incorrect."
            return (
                HTTPStatus.UNAUTHORIZED,
                {"WWW-Authenticate": 'Basic realm="GitLab"'},
                {"errors": [{"code": "UNAUTHORIZED", "message": message}]},
            )
        try:
            access = [scope_to_access(scope) for scope in query.get("scope", [])]
        except ValueError as error:
            return HTTPStatus.BAD_REQUEST, {}, {"errors": [{"code": "INVALID_SCOPE", "message": str(error)}]}
        token = self.signer.sign(self.username, access, self.lifetime_s)
        issued_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        body = {"token": token, "access_token": token, "expires_in": self.lifetime_s, "issued_at": issued_at}
        return HTTPStatus.OK, {}, body


class _TokenRequestHandler(BaseHTTPRequestHandler):
    """Hands each GET to its :class:`GitLabTokenEndpoint` and writes the JSON answer."""

    def __init__(self, endpoint: GitLabTokenEndpoint, *args: Any) -> None:
        # Set before the base constructor runs, because that handles the request.
        self._endpoint = endpoint
        super().__init__(*args)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        status, headers, body = self._endpoint.answer(self.path, self.headers.get("Authorization"))
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        # The base class writes to stderr; route it to logging so pytest captures it with everything else.
        log.debug("token endpoint: " + format, *args)


class RegistryStartError(RuntimeError):
    """``docker-registry`` did not come up; the message carries the end of its log."""


class DistributionRegistry:
    """A ``docker-registry serve`` process with its own storage, trusting the tokens of one token endpoint."""

    def __init__(
        self,
        workdir: Path,
        tokens: GitLabTokenEndpoint,
        *,
        catalog_max_entries: int | None = None,
        start_timeout_s: float = 20.0,
        executable: str = "docker-registry",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self._start_timeout_s = start_timeout_s
        self._executable = executable
        self._process: subprocess.Popen[bytes] | None = None
        certificate = tokens.signer.write_certificate(workdir / "token-signer.pem")
        config: dict[str, Any] = {
            "version": "0.1",
            "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{free_port()}", "secret": secrets.token_hex(16)},
            "auth": {
                "token": {
                    "realm": tokens.realm,
                    "service": tokens.signer.audience,
                    "issuer": tokens.signer.issuer,
                    "rootcertbundle": str(certificate),
                }
            },
        }
        if catalog_max_entries is not None:
            config["catalog"] = {"maxentries": catalog_max_entries}
        # YAML is a superset of JSON: no YAML library is needed to write the config or to read it back.
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def port(self) -> int:
        """The port in the written config: the one place it is kept, so every restart listens on it again."""
        address: str = json.loads(self.config_path.read_text())["http"]["addr"]
        return int(address.rpartition(":")[2])

    @property
    def url(self) -> str:
        """The registry base URL with a trailing slash, as gitlab-registry-usage appends ``v2/...`` to it."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Start the process (again after :meth:`stop`: same port and storage) and wait until ``/v2/`` answers 401."""
        if self._process is not None:
            raise RuntimeError(f"registry {self.url} is already running")
        # REGISTRY_* variables override config keys, so none may leak in from the caller's environment.
        env = {name: value for name, value in os.environ.items() if not name.startswith("REGISTRY_")}
        env["OTEL_TRACES_EXPORTER"] = "none"
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [self._executable, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            self._wait_until_ready(self._process)
        except BaseException:
            # Whatever ended the wait, no half-started registry is left behind.
            self.stop()
            raise

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        with _local_session() as session:
            while True:
                if process.poll() is not None:
                    self._start_failed(f"docker-registry exited with status {process.returncode}")
                # Refused while it starts; unanswered if something else holds the port (it then exits, seen above).
                try:
                    status: int | None = session.get(self.url + "v2/", timeout=1).status_code
                except (requests.ConnectionError, requests.Timeout):
                    status = None
                if status == HTTPStatus.UNAUTHORIZED:
                    return
                if status is not None:
                    self._start_failed(f"{self.url}v2/ answered {status} instead of 401: is token auth configured?")
                if time.monotonic() > deadline:
                    self._start_failed(f"{self.url}v2/ did not answer within {self._start_timeout_s:g} s")
                time.sleep(0.05)

    def _start_failed(self, reason: str) -> NoReturn:
        lines = self.log_path.read_text(errors="replace").splitlines()[-30:]
        raise RegistryStartError(f"{reason}; last lines of {self.log_path}:\n" + "\n".join(lines))

    def stop(self) -> None:
        """Stop the process, killing it if it ignores SIGTERM; config and storage stay for a restart."""
        if self._process is None:
            return
        stop_process(self._process)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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


class RegistryError(RuntimeError):
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
        self._session = _local_session()
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
            raise RegistryError(response, (HTTPStatus.OK,))
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
            raise RegistryError(response, expected)
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
    ) -> PushedImage:
        """Push a Docker schema 2 or OCI image of ``layers`` (in that order) under ``tag``."""
        return self._push_image(repo, tag, layers, _MEDIA_TYPES[media_type], platform, config_extra or {})

    def _push_image(
        self,
        repo: str,
        tag: str | None,
        layers: Sequence[bytes],
        media_types: _MediaTypes,
        platform: Platform,
        config_extra: Mapping[str, Any],
    ) -> PushedImage:
        config = {
            **platform.as_json(),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
            # Exactly one history entry per layer and none marked empty_layer: the registry converts schema 2 to
            # schema 1 with one fsLayer per history entry, adding its gzipped empty tar for each empty_layer one.
            "history": [{"created": _CREATED, "created_by": f"layer {number}"} for number in range(len(layers))],
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
        images: Sequence[PushedImage | tuple[Platform, Sequence[bytes]]],
        *,
        media_type: ImageFormat = "oci",
        attestation: bool = False,
    ) -> PushedIndex:
        """Push a multi-platform OCI index or Docker manifest list under ``tag``, its new children by digest only.

        ``images`` are images already in ``repo`` or (platform, layers) to push in ``media_type``'s format. With
        ``attestation``, each image also gets a buildx-style attestation manifest listed as platform unknown/unknown.
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
            for child, statement in zip(children, attestations)
        ]
        raw = json.dumps({"schemaVersion": 2, "mediaType": media_types.index, "manifests": entries}, indent=3).encode()
        digest = self._put_manifest(repo, tag, media_types.index, raw)
        return PushedIndex(repo, tag, digest, media_types.index, children, attestations)

    def _index_child(
        self, repo: str, image: PushedImage | tuple[Platform, Sequence[bytes]], media_types: _MediaTypes
    ) -> PushedImage:
        if not isinstance(image, PushedImage):
            platform, layers = image
            return self._push_image(repo, None, layers, media_types, platform, {})
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
