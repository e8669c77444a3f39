"""Login brute-force limits, token algorithms, security headers, CORS origins, HTTPS and request limits."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import ipaddress
import json
import time
from pathlib import Path

import jwt as pyjwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient

from gitlab_registry_usage_rest.config import JwtConfig
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.state import SnapshotHolder
from gitlab_registry_usage_rest.web.app import create_app
from gitlab_registry_usage_rest.web.throttle import LoginThrottle
from tests.support.service import ServiceProcess
from tests.support.webapp import AUDIENCE, ISSUER, SECRET, FakeDirectory, basic, make_config, sample_listing


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


def client_for(directory: FakeDirectory, **general: object) -> FlaskClient:
    config = make_config(**general)
    app = create_app(config, SnapshotHolder(build_snapshot(sample_listing(), 1.0)), directory)
    return app.test_client()


def login(client: FlaskClient, password: str, address: str, user: str = "alice") -> int:
    return client.get("/auth_token", headers=basic(user, password), environ_base={"REMOTE_ADDR": address}).status_code


# --- brute force -------------------------------------------------------------------------------

def test_a_client_is_stopped_after_its_failures_even_with_the_right_password(directory: FakeDirectory) -> None:
    client = client_for(directory, login_max_failures=3)
    assert [login(client, "guess", "10.0.0.9", user) for user in ("alice", "bob", "carol")] == [401, 401, 401]
    calls = len(directory.calls)
    response = client.get("/auth_token", headers=basic("alice", "right"), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert response.status_code == 429
    assert response.get_json()["message"].startswith("Too many failed logins")
    assert 0 < int(response.headers["Retry-After"]) <= 600
    assert len(directory.calls) == calls, "the directory is not asked while the limit holds"


def test_others_failures_never_slow_a_successful_login(directory: FakeDirectory) -> None:
    client = client_for(directory, login_max_failures=3)
    # A distributed guesser: many addresses, one failure each, all against alice: once alice's limit is
    # reached, an address that already failed for her gets no second try.
    assert [login(client, "guess", f"10.0.1.{n}") for n in range(5)] == [401] * 5
    assert [login(client, "guess", f"10.0.1.{n}") for n in range(5)] == [429] * 5
    assert login(client, "right", "192.0.2.7") == 200, "alice, from her own address, is not slowed"


def test_the_limit_expires_after_the_window(directory: FakeDirectory) -> None:
    client = client_for(directory, login_max_failures=1, login_failure_window=datetime.timedelta(seconds=1))
    assert login(client, "guess", "10.0.2.1") == 401
    assert login(client, "right", "10.0.2.1") == 429
    deadline = time.monotonic() + 5
    while login(client, "right", "10.0.2.1") == 429:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert login(client, "right", "10.0.2.1") == 200


def test_user_names_count_without_case(directory: FakeDirectory) -> None:
    throttle = LoginThrottle(2, 600)
    throttle.failed("a", "Alice")
    throttle.failed("a", "ALICE")
    assert throttle.retry_after("a", "alice") is not None
    assert throttle.retry_after("b", "alice") is None


def test_a_browser_asking_without_credentials_is_not_a_failure(directory: FakeDirectory) -> None:
    client = client_for(directory, login_max_failures=1)
    for _ in range(3):
        assert client.get("/auth_token", environ_base={"REMOTE_ADDR": "10.0.3.1"}).status_code == 401
    assert login(client, "right", "10.0.3.1") == 200


# --- tokens ------------------------------------------------------------------------------------

def key_files(tmp_path: Path, algorithm: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / f"{algorithm}.key", tmp_path / f"{algorithm}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_asymmetric_tokens_verify_with_the_public_key_and_refuse_hs256(
    tmp_path: Path, directory: FakeDirectory, algorithm: str
) -> None:
    private, public = key_files(tmp_path, algorithm)
    config = make_config()
    config = dataclasses.replace(config, jwt=JwtConfig(secret_key="", algorithm=algorithm, private_key=private,
                                                       public_key=public))
    client = create_app(config, SnapshotHolder(build_snapshot(sample_listing(), 1.0)), directory).test_client()
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    assert pyjwt.get_unverified_header(token)["alg"] == algorithm
    claims = pyjwt.decode(token, Path(public).read_text(), algorithms=[algorithm], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "alice"
    assert client.get("/repositories", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # An HS256 token signed with the public key as secret: the classic algorithm-confusion forgery.
    forged = hs256(Path(public).read_bytes(), pyjwt.decode(token, options={"verify_signature": False}))
    assert client.get("/repositories", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def hs256(secret: bytes, claims: dict[str, object]) -> str:
    """Sign by hand: PyJWT itself refuses to use a public key as an HMAC secret."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{part(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{part(json.dumps(claims).encode())}"
    return f"{signing_input}.{part(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


# --- headers, CORS -----------------------------------------------------------------------------

def test_every_response_carries_security_headers(directory: FakeDirectory) -> None:
    client = client_for(directory)
    for response in (client.get("/auth_token", headers=basic("alice", "right")), client.get("/repositories"),
                     client.get("/health"), client.get("/nothing")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_cors_origins_can_be_restricted(directory: FakeDirectory) -> None:
    client = client_for(directory, cors_origins=("https://dashboard.example.org",))
    token = client.get("/auth_token", headers=basic("alice", "right")).get_json()["auth_token"]
    headers = {"Authorization": f"Bearer {token}"}
    allowed = client.get("/repositories", headers={**headers, "Origin": "https://dashboard.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://dashboard.example.org"
    other = client.get("/repositories", headers={**headers, "Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in other.headers


# --- the real server: HTTPS, limits ------------------------------------------------------------

def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert, private = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, private


def test_https_with_limits_on_the_real_server(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = tmp_path / "tls.conf"
    config.write_text(
        f"[general]\ntls_cert = {cert}\ntls_key = {key}\nmax_request_header_size = 4096\ndata_file =\n"
        f"[jwt]\nsecret_key = {SECRET}\n"
        "[registry]\ngitlab_base_url = http://127.0.0.1:9/\nregistry_base_url = http://127.0.0.1:9/\n"
    )
    service = ServiceProcess(tmp_path, ["-c", str(config)])
    service.url = service.url.replace("http://", "https://")
    service.http.verify = str(cert)
    with service:
        health = service.get("/health")
        assert health.status_code == 503  # no data: the registry is unreachable
        assert health.headers["Strict-Transport-Security"].startswith("max-age=")
        assert health.headers["Server"] == "registry-usage"
        too_large = service.get("/repositories", headers={"X-Padding": "x" * 8000})
        assert too_large.status_code in (413, 431)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(service.url + "/health", timeout=5, verify=True)  # not trusted without our CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(service.url.replace("https://", "http://") + "/health", timeout=5)


BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_login_prompt_another_site_started_sets_no_cookie(site: str) -> None:
    """https://attacker:pw@service/auth_token from another site's page would log the visitor in as the attacker."""
    client = client_for(FakeDirectory())
    answer = client.get("/auth_token", headers={**basic("alice", "right"), "Accept": BROWSER, "Sec-Fetch-Site": site})
    assert answer.status_code == 403
    assert "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("site", ["none", "same-origin", None], ids=["typed", "own-page", "no-header"])
def test_a_login_prompt_the_person_started_sets_the_cookie(site: str | None) -> None:
    client = client_for(FakeDirectory())
    headers = {**basic("alice", "right"), "Accept": BROWSER}
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    answer = client.get("/auth_token", headers=headers)
    assert answer.status_code == 200 and "access_token_cookie=" in answer.headers["Set-Cookie"]
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_login_form_posted_without_its_origin_or_from_elsewhere_is_refused() -> None:
    client = client_for(FakeDirectory())
    form = {"username": "alice", "password": "right"}
    for headers in ({}, {"Origin": "null"}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/"}):
        answer = client.post("/login", data=form, headers=headers)
        assert answer.status_code == 403 and "Set-Cookie" not in answer.headers, headers
    own = client.post("/login", data=form, headers={"Origin": "http://localhost"})
    assert own.status_code == 303 and "HttpOnly" in own.headers["Set-Cookie"]
