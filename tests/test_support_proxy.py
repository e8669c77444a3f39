"""Pins what tests.support.proxy does in front of the real registry, so fault-injection tests can trust it."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.client import HTTPConnection, IncompleteRead
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import SERVICE, GitLabTokenEndpoint
from tests.support.processes import free_port
from tests.support.proxy import FaultyProxy, delay, drop, garble, respond, truncate
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER, PushedRegistry
from tests.support.pusher import DOCKER_MANIFEST, Pusher, sha256_digest

pytestmark = pytest.mark.registry

ROOT = Path(__file__).resolve().parents[1]
REPO, TAG = "group/sub/project", "1.0"
MANIFEST_PATH = f"v2/{REPO}/manifests/{TAG}"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """Raw HTTP that ignores proxy settings, so nothing leaves 127.0.0.1; one per test, so connections count."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def proxy(registry: DistributionRegistry) -> Iterator[FaultyProxy]:
    with FaultyProxy(registry.url) as running:
        yield running


def bearer(gitlab: GitLabTokenEndpoint, *scopes: str) -> dict[str, str]:
    """Headers carrying a token fetched from the token endpoint directly, for requests sent through a proxy."""
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(
            gitlab.realm,
            params=[("service", SERVICE), *(("scope", scope) for scope in scopes)],
            auth=(REGISTRY_USER, REGISTRY_TOKEN),
            timeout=5,
        )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def manifest_headers(gitlab: GitLabTokenEndpoint, pushed: PushedRegistry) -> dict[str, str]:
    """Authorization and Accept for fetching the pushed ``group/sub/project:1.0`` as schema 2."""
    return {**bearer(gitlab, f"repository:{REPO}:pull", "registry:catalog:*"), "Accept": DOCKER_MANIFEST}


def test_unauthenticated_v2_passes_through_unchanged(
    http: requests.Session, proxy: FaultyProxy, registry: DistributionRegistry
) -> None:
    direct = http.get(registry.url + "v2/", timeout=5)
    proxied = http.get(proxy.url + "v2/", timeout=5)

    assert direct.status_code == 401
    assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content)
    for name in ("WWW-Authenticate", "Docker-Distribution-Api-Version", "Content-Type", "Content-Length"):
        assert proxied.headers[name] == direct.headers[name]
    assert proxy.log == [("GET", "/v2/", 401)]


def test_manifest_get_and_head_pass_through_with_digest_and_length(
    http: requests.Session, proxy: FaultyProxy, registry: DistributionRegistry, manifest_headers: dict[str, str]
) -> None:
    direct = http.get(registry.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)
    proxied = http.get(proxy.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)
    head = http.head(proxy.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)
    # The same connection again: a HEAD answered with a body would have desynchronised it.
    again = http.get(proxy.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)

    assert (direct.status_code, proxied.status_code, head.status_code, again.status_code) == (200, 200, 200, 200)
    assert proxied.content == again.content == direct.content
    assert head.content == b""
    for response in (proxied, head):
        assert response.headers["Docker-Content-Digest"] == direct.headers["Docker-Content-Digest"]
        assert response.headers["Content-Type"] == DOCKER_MANIFEST
        assert response.headers["Content-Length"] == str(len(direct.content))
    assert proxy.connections == 1


def test_token_from_gitlab_works_on_the_proxy_and_the_token_endpoint_can_be_proxied(
    http: requests.Session, proxy: FaultyProxy, gitlab: GitLabTokenEndpoint, pusher: Pusher, pushed: PushedRegistry
) -> None:
    challenge = http.get(proxy.url + "v2/_catalog", timeout=5)
    catalog = http.get(proxy.url + "v2/_catalog", headers=bearer(gitlab, "registry:catalog:*"), timeout=5)
    with FaultyProxy(gitlab.url) as token_proxy:
        issued = http.get(
            token_proxy.url + "jwt/auth",
            params={"service": SERVICE, "scope": "registry:catalog:*"},
            auth=(REGISTRY_USER, REGISTRY_TOKEN),
            timeout=5,
        )

    assert challenge.status_code == 401
    assert f'realm="{gitlab.realm}"' in challenge.headers["WWW-Authenticate"]
    assert catalog.status_code == 200
    assert catalog.json()["repositories"] == pusher.catalog()
    assert issued.status_code == 200
    proxied_token = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert http.get(proxy.url + "v2/_catalog", headers=proxied_token, timeout=5).status_code == 200


def test_every_method_and_a_chunked_upload_go_through_with_locations_rewritten(
    http: requests.Session, proxy: FaultyProxy, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint
) -> None:
    repo = "proxy/upload"
    auth = bearer(gitlab, f"repository:{repo}:*")
    blob = Pusher.make_layer("through-the-proxy", 200_000)
    digest = sha256_digest(blob)
    blob_path = f"v2/{repo}/blobs/{digest}"

    started = http.post(proxy.url + f"v2/{repo}/blobs/uploads/", headers=auth, timeout=5)
    # A generator body makes requests send Transfer-Encoding: chunked, as docker push does.
    chunks = (blob[start : start + 16_384] for start in range(0, len(blob), 16_384))
    patched = http.patch(started.headers["Location"], data=chunks, headers=auth, timeout=5)
    finished = http.put(patched.headers["Location"], params={"digest": digest}, headers=auth, timeout=5)
    fetched = http.get(proxy.url + blob_path, headers=auth, timeout=5)
    stored = http.get(registry.url + blob_path, headers=auth, timeout=5).content
    deleted = http.delete(proxy.url + blob_path, headers=auth, timeout=5)

    assert (started.status_code, patched.status_code, finished.status_code) == (202, 202, 201)
    for upload in (started, patched):
        assert upload.headers["Location"].startswith(proxy.url + f"v2/{repo}/blobs/uploads/")
    assert finished.headers["Location"] == proxy.url + blob_path
    assert stored == blob
    assert (fetched.status_code, fetched.headers["Content-Length"], fetched.content) == (200, str(len(blob)), blob)
    assert deleted.status_code == 202
    assert http.head(registry.url + blob_path, headers=auth, timeout=5).status_code == 404
    assert [method for method, _, _ in proxy.log] == ["POST", "PATCH", "PUT", "GET", "DELETE"]


def test_respond_answers_the_given_times_then_forwards_again(
    http: requests.Session, proxy: FaultyProxy, manifest_headers: dict[str, str]
) -> None:
    proxy.add_rule(r"GET /v2/_catalog", respond(500, body=b"boom"), times=2)

    statuses = [http.get(proxy.url + "v2/_catalog", headers=manifest_headers, timeout=5) for _ in range(3)]

    assert [(r.status_code, r.content) for r in statuses[:2]] == [(500, b"boom"), (500, b"boom")]
    assert statuses[2].status_code == 200
    assert [outcome for _, _, outcome in proxy.log] == [500, 500, 200]
    assert proxy.connections == 1


def test_respond_answers_without_contacting_the_upstream(http: requests.Session, gitlab: GitLabTokenEndpoint) -> None:
    with FaultyProxy(gitlab.url) as token_proxy:
        token_proxy.add_rule(r"/jwt/auth", respond(429, {"Retry-After": "1"}))
        served_before = gitlab.requests
        answer = http.get(token_proxy.url + "jwt/auth", params={"service": SERVICE}, timeout=5)

    assert (answer.status_code, answer.headers["Retry-After"], answer.content) == (429, "1", b"")
    assert gitlab.requests == served_before
    assert token_proxy.log == [("GET", f"/jwt/auth?service={SERVICE}", 429)]


def test_first_matching_rule_with_uses_left_applies_to_method_path_and_query(
    http: requests.Session, proxy: FaultyProxy
) -> None:
    proxy.add_rule(r"^GET /v2/\?n=1$", respond(503), times=1)
    proxy.add_rule(r"\?n=1", respond(504))
    proxy.add_rule(r"^POST ", respond(418))

    first, second = (http.get(proxy.url + "v2/", params={"n": 1}, timeout=5) for _ in range(2))
    posted = http.post(proxy.url + "v2/", timeout=5)
    unmatched = http.get(proxy.url + "v2/", timeout=5)
    proxy.clear_rules()
    cleared = http.get(proxy.url + "v2/", params={"n": 1}, timeout=5)

    assert [r.status_code for r in (first, second, posted, unmatched, cleared)] == [503, 504, 418, 401, 401]


def test_truncate_announces_the_full_length_then_hangs_up_after_keep_bytes(
    http: requests.Session, proxy: FaultyProxy, registry: DistributionRegistry, manifest_headers: dict[str, str]
) -> None:
    full = http.get(registry.url + MANIFEST_PATH, headers=manifest_headers, timeout=5).content
    proxy.add_rule(r"/manifests/", truncate(10), times=2)

    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        http.get(proxy.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)
    connection = HTTPConnection(urlsplit(proxy.url).netloc, timeout=5)
    try:
        connection.request("GET", "/" + MANIFEST_PATH, headers=manifest_headers)
        with connection.getresponse() as response, pytest.raises(IncompleteRead) as cut:
            response.read()
    finally:
        connection.close()

    assert response.getheader("Content-Length") == str(len(full))
    assert (cut.value.partial, cut.value.expected) == (full[:10], len(full) - 10)
    assert [outcome for _, _, outcome in proxy.log] == ["truncate", "truncate"]
    assert proxy.connections == 2


def test_garble_keeps_headers_and_length_but_the_body_is_not_json(
    http: requests.Session, proxy: FaultyProxy, registry: DistributionRegistry, manifest_headers: dict[str, str]
) -> None:
    direct = http.get(registry.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)
    proxy.add_rule(r"/manifests/", garble(), times=1)

    garbled = http.get(proxy.url + MANIFEST_PATH, headers=manifest_headers, timeout=5)

    assert garbled.status_code == 200
    assert len(garbled.content) == len(direct.content)
    assert garbled.content != direct.content
    for name in ("Content-Type", "Content-Length", "Docker-Content-Digest"):
        assert garbled.headers[name] == direct.headers[name]
    with pytest.raises(json.JSONDecodeError):
        json.loads(garbled.content)
    assert http.get(proxy.url + MANIFEST_PATH, headers=manifest_headers, timeout=5).content == direct.content


def test_drop_hangs_up_without_an_answer(http: requests.Session, proxy: FaultyProxy) -> None:
    proxy.add_rule(r"GET /v2/", drop(), times=1)

    with pytest.raises(requests.ConnectionError):
        http.get(proxy.url + "v2/", timeout=5)
    after = http.get(proxy.url + "v2/", timeout=5)

    assert after.status_code == 401
    assert proxy.log == [("GET", "/v2/", "drop"), ("GET", "/v2/", 401)]
    assert (proxy.requests, proxy.connections) == (2, 2)


def test_delay_forwards_late(http: requests.Session, proxy: FaultyProxy) -> None:
    proxy.add_rule(r"GET /v2/", delay(0.3), times=1)

    started = time.monotonic()
    delayed = http.get(proxy.url + "v2/", timeout=5)
    elapsed = time.monotonic() - started

    assert delayed.status_code == 401
    assert elapsed >= 0.3
    assert proxy.log == [("GET", "/v2/", 401)]


def test_latency_delays_every_request(http: requests.Session, registry: DistributionRegistry) -> None:
    with FaultyProxy(registry.url, latency=0.1) as slow:
        elapsed = []
        for _ in range(3):
            started = time.monotonic()
            assert http.get(slow.url + "v2/", timeout=5).status_code == 401
            elapsed.append(time.monotonic() - started)

    assert min(elapsed) >= 0.1


def test_latency_of_concurrent_connections_overlaps(registry: DistributionRegistry) -> None:
    def one_request(url: str) -> int:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(url, timeout=5).status_code

    with FaultyProxy(registry.url, latency=0.25) as slow, ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        statuses = list(pool.map(one_request, [slow.url + "v2/"] * 8))
        elapsed = time.monotonic() - started

    assert statuses == [401] * 8
    # Serialised, eight requests would take 2 s; overlapped, one latency plus overhead.
    assert 0.25 <= elapsed < 1.0


def test_session_keeps_one_connection_alive_for_sequential_requests(
    http: requests.Session, proxy: FaultyProxy
) -> None:
    statuses = [http.get(proxy.url + "v2/", timeout=5).status_code for _ in range(20)]

    assert statuses == [401] * 20
    assert (proxy.requests, proxy.connections) == (20, 1)


class PathEcho(ThreadingHTTPServer):
    """An upstream answering each GET with its path, counting connections; it can hang up after every answer
    without saying so, as a server does when it closes a kept-alive connection that has been idle too long."""

    def __init__(self, hang_up_after_each_answer: bool) -> None:
        super().__init__(("127.0.0.1", 0), _PathEchoHandler)
        self.hang_up_after_each_answer = hang_up_after_each_answer
        self.connections = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        # Runs on the serving thread, which accepts one connection at a time: no lock needed.
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _PathEchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PathEcho

    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = self.server.hang_up_after_each_answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the base class writes every request to stderr."""


@contextmanager
def path_echo(hang_up_after_each_answer: bool) -> Iterator[PathEcho]:
    server = PathEcho(hang_up_after_each_answer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("hang_up", [False, True], ids=["kept-alive", "closed-while-idle"])
def test_upstream_connection_is_reused_and_renewed_once_the_upstream_closed_it(
    http: requests.Session, hang_up: bool
) -> None:
    with path_echo(hang_up) as upstream, FaultyProxy(upstream.url) as proxy:
        bodies = [http.get(proxy.url + f"n/{number}", timeout=5).content for number in range(5)]

    assert bodies == [f"/n/{number}".encode() for number in range(5)]
    assert (proxy.connections, upstream.connections) == (1, 5 if hang_up else 1)


def test_unreachable_upstream_answers_bad_gateway(http: requests.Session) -> None:
    with FaultyProxy(f"http://127.0.0.1:{free_port()}/") as dangling:
        answer = http.get(dangling.url + "v2/", timeout=5)

    assert answer.status_code == 502
    assert dangling.log == [("GET", "/v2/", 502)]


def test_stop_hangs_up_on_idle_keep_alive_clients(http: requests.Session, registry: DistributionRegistry) -> None:
    with FaultyProxy(registry.url) as short_lived:
        assert http.get(short_lived.url + "v2/", timeout=5).status_code == 401
        started = time.monotonic()
    # The session still holds its connection open; stop() must not wait for the client to close it.
    assert time.monotonic() - started < 2


@contextmanager
def proxy_process(upstream: str, latency_ms: float = 0.0) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m tests.support.proxy`` as a benchmark runs it: yields its URL once it printed READY."""
    command = [sys.executable, "-m", "tests.support.proxy", "--upstream", upstream, "--latency-ms", str(latency_ms)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], 10)
            line = process.stdout.readline() if readable else ""
            assert line.startswith("READY http://127.0.0.1:"), f"no READY line within 10 s, got {line!r}"
            yield line.split()[1], process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_command_line_proxy_serves_until_sigterm(http: requests.Session, registry: DistributionRegistry) -> None:
    with proxy_process(registry.url, latency_ms=50) as (url, process):
        started = time.monotonic()
        answer = http.get(url + "v2/", timeout=5)
        elapsed = time.monotonic() - started
        assert url.endswith("/")

    assert (answer.status_code, process.returncode) == (401, 0)
    assert elapsed >= 0.05
