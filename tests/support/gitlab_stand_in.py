"""GitLab's token endpoint (``/jwt/auth``) as a stand-in that follows GitLab's published behaviour.

The registry trusts tokens that :class:`TokenSigner` signs (RS256, with the libtrust ``kid`` it derives
from the key); :class:`GitLabTokenEndpoint` hands them out to one administrator, as GitLab does.
"""


import base64
import binascii
import datetime
import hashlib
import json
import logging
import threading
import time
import uuid
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.processes import free_port

log = logging.getLogger(__name__)

ISSUER = "gitlab-issuer"
SERVICE = "container_registry"

# GitLab grants an administrator asking for "*" on a repository these actions.
_WILDCARD_ACTIONS = ("pull", "push", "delete")


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The ID the registry derives from a trusted key; a token's ``kid`` header must equal it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[start : start + 4] for start in range(0, len(encoded), 4))


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
        now = datetime.datetime.now(datetime.UTC)
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
        issued_at = datetime.datetime.now(datetime.UTC).isoformat()
        body = {"token": token, "access_token": token, "expires_in": self.lifetime_s, "issued_at": issued_at}
        return HTTPStatus.OK, {}, body


class _TokenRequestHandler(BaseHTTPRequestHandler):
    """Hands each GET to its :class:`GitLabTokenEndpoint` and writes the JSON answer."""

    def __init__(self, endpoint: GitLabTokenEndpoint, *args: Any) -> None:
        # Set before the base constructor runs, because that handles the request.
        self._endpoint = endpoint
        super().__init__(*args)

    def do_GET(self) -> None:
        status, headers, body = self._endpoint.answer(self.path, self.headers.get("Authorization"))
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The base class writes to stderr; route it to logging so pytest captures it with everything else.
        log.debug("token endpoint: " + format, *args)
