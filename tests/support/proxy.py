"""An HTTP/1.1 reverse proxy that injects faults and latency between a crawler and the registry or token endpoint.

Tests put a :class:`FaultyProxy` in front of the real servers and tell it, rule by rule, which requests to answer
itself (``respond``), to cut short (``truncate``), to corrupt (``garble``), to slow down (``delay``) or to hang up
on (``drop``); everything else is forwarded unchanged. ``latency`` delays every request, as a far-away server does.
Run as ``python -m tests.support.proxy --upstream URL`` it serves a benchmark from its own process.

Each client connection gets one thread (``ThreadingHTTPServer``) and that thread keeps one upstream connection
alive, so a crawler's keep-alive connections map one to one onto the registry's; no lock is held while waiting on
the upstream or sleeping, so the latency of concurrent requests overlaps as it would over a real network.
"""

from __future__ import annotations

import argparse
import collections
import email.message
import http.client
import json
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from tests.support.processes import free_port

log = logging.getLogger(__name__)

# Headers that describe one connection rather than the message (RFC 9110 section 7.6.1), plus the ones the proxy
# recomputes: it reads request bodies whole, so it frames them itself, and it already answered any Expect.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_RECOMPUTED_REQUEST_HEADERS = frozenset({"host", "content-length", "expect"})
# Errors that mean a kept-alive upstream connection was closed by the server while idle: worth one retry.
_STALE_UPSTREAM = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_COPY_CHUNK = 64 * 1024
_LOG_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer directly, without contacting the upstream."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Truncate:
    """Forward, then send the real headers but only the first ``keep_bytes`` of the body, and hang up."""

    keep_bytes: int


@dataclass(frozen=True, slots=True)
class Garble:
    """Forward, then replace the body with as many bytes of invalid JSON, keeping the headers."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Forward after an extra ``seconds``: a slow server."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the client connection without an answer."""


@dataclass(frozen=True, slots=True)
class PageTags:
    """Forward a ``tags/list`` request, then answer one page of ``page_size`` tags with a ``Link`` to the next,
    as GitLab's registry does with its metadata database (Distribution 2.8 always answers all tags at once)."""

    page_size: int


Action = Respond | Truncate | Garble | Delay | Drop | PageTags
# What the log records for a request: the status the client got, or the name of the fault that replaced it.
Outcome = int | str


def respond(status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Respond:
    """An action answering ``status`` itself, e.g. ``respond(429, {"Retry-After": "1"})``."""
    return Respond(status, tuple((headers or {}).items()), body)


def truncate(keep_bytes: int) -> Truncate:
    """An action cutting the upstream body after ``keep_bytes`` while announcing its full length."""
    return Truncate(keep_bytes)


def garble() -> Garble:
    """An action replacing the upstream body with invalid JSON of the same length."""
    return Garble()


def delay(seconds: float) -> Delay:
    """An action forwarding ``seconds`` late."""
    return Delay(seconds)


def drop() -> Drop:
    """An action hanging up without an answer."""
    return Drop()


def page_tags(page_size: int) -> PageTags:
    """An action paging ``tags/list`` answers by ``page_size``, following ``last`` from the query."""
    return PageTags(page_size)


def _tags_page(path: str, body: bytes, page_size: int) -> tuple[bytes, str | None]:
    """The page of the tag list ``body`` that ``path``'s ``last`` asks for, and the next page's link."""
    parts = urlsplit(path)
    last = parse_qs(parts.query).get("last", [""])[0]
    document = json.loads(body)
    tags = sorted(document.get("tags") or [])
    start = next((index for index, tag in enumerate(tags) if tag > last), len(tags)) if last else 0
    page = tags[start:start + page_size]
    link = None
    if start + page_size < len(tags):
        link = f'<{parts.path}?{urlencode({"n": page_size, "last": page[-1]})}>; rel="next"'
    return json.dumps({"name": document.get("name"), "tags": page}).encode(), link


def _garbled(length: int) -> bytes:
    """``length`` bytes that no JSON parser accepts (an empty body is not JSON either)."""
    return (b"<garbled>" * (length // 9 + 1))[:length]


@dataclass(slots=True)
class _Rule:
    pattern: re.Pattern[str]
    action: Action
    remaining: int | None  # None: forever


class _ProxyServer(ThreadingHTTPServer):
    # A benchmark opens all its connections at once; the default backlog of 5 would make some wait for SYN retries.
    request_queue_size = 128


class FaultyProxy:
    """A reverse proxy in front of ``upstream`` that forwards faithfully except where a rule injects a fault."""

    def __init__(self, upstream: str, *, latency: float = 0.0, port: int | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.path not in ("", "/") or parts.hostname is None:
            raise ValueError(f"upstream must be an http://host:port/ origin, not {upstream!r}")
        self.latency = latency
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self._upstream_netloc = parts.netloc
        self._timeout = timeout
        self._port = port or free_port()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        # Set by stop(): wakes threads sleeping a latency or delay, and tells late connections to hang up.
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._clients: set[socket.socket] = set()
        self._requests = 0
        self._connections = 0
        self._log: collections.deque[tuple[str, str, Outcome]] = collections.deque(maxlen=_LOG_LIMIT)

    @property
    def url(self) -> str:
        """The proxy's base URL with a trailing slash, to use wherever the upstream URL would go."""
        return f"http://127.0.0.1:{self._port}/"

    @property
    def requests(self) -> int:
        """How many requests the proxy has answered or dropped."""
        with self._lock:
            return self._requests

    @property
    def connections(self) -> int:
        """How many client connections the proxy has accepted, to check that clients keep them alive."""
        with self._lock:
            return self._connections

    @property
    def log(self) -> list[tuple[str, str, Outcome]]:
        """The last requests as (method, path with query, status or fault name), oldest first."""
        with self._lock:
            return list(self._log)

    def add_rule(self, pattern: str, action: Action, times: int | None = None) -> None:
        """Apply ``action`` to requests whose ``METHOD PATH?QUERY`` matches ``pattern``, ``times`` times or forever.

        Rules are tried in the order they were added, and the first one with uses left applies.
        """
        with self._lock:
            self._rules.append(_Rule(re.compile(pattern), action, times))

    def clear_rules(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._rules.clear()

    def start(self) -> None:
        """Listen and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"proxy {self.url} is already running")
        self._stopping.clear()
        self._server = _ProxyServer(("127.0.0.1", self._port), partial(_ProxyHandler, self))
        # A short poll interval makes stop() return at once instead of after up to the default half second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"proxy-{self._port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, hang up on every client connection and wait for their threads to finish."""
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._thread.join()
        with self._lock:
            self._stopping.set()
            clients = list(self._clients)
        for sock in clients:
            _hang_up(sock)
        # Joins every connection thread; one waiting on a slow upstream ends within the upstream timeout.
        self._server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accepted(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            self._clients.add(sock)
            late = self._stopping.is_set()
        if late:
            # Accepted just before stop() took its list of clients: nobody else will hang up on this one.
            _hang_up(sock)

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._clients.discard(sock)

    def _take_action(self, request: str) -> Action | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining != 0 and rule.pattern.search(request):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.action
        return None

    def _record(self, method: str, path: str, outcome: Outcome) -> None:
        # Recorded before the answer is written, so a client that has its answer also sees it counted.
        with self._lock:
            self._requests += 1
            self._log.append((method, path, outcome))

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _connect_upstream(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=self._timeout)

    def _rewrite_location(self, location: str) -> str:
        parts = urlsplit(location)
        if parts.scheme != "http" or parts.netloc != self._upstream_netloc:
            return location
        return urlunsplit(("http", f"127.0.0.1:{self._port}", parts.path, parts.query, parts.fragment))


def _hang_up(sock: socket.socket) -> None:
    """Shut a client socket down so the thread reading from it sees end of file; its handler then closes it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        log.debug("proxy client socket already closed")


class _ProxyHandler(BaseHTTPRequestHandler):
    """Serves one client connection: each request is answered by a rule or forwarded on this thread's upstream."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body would wait for the client's delayed ACK.
    disable_nagle_algorithm = True

    def __init__(self, proxy: FaultyProxy, *args: Any) -> None:
        # Set before the base constructor runs, because that handles the connection.
        self._proxy = proxy
        self._upstream: http.client.HTTPConnection | None = None
        super().__init__(*args)

    def setup(self) -> None:
        super().setup()
        self._proxy._accepted(self.connection)

    def finish(self) -> None:
        self._close_upstream()
        self._proxy._closed(self.connection)
        super().finish()

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError as error:
            # A client hanging up mid-request is routine for a proxy, not a server error worth a traceback.
            log.debug("proxy client %s went away: %s", self.client_address, error)

    def _serve(self) -> None:
        proxy = self._proxy
        body = self._read_body()
        action = proxy._take_action(f"{self.command} {self.path}")
        proxy._pause(proxy.latency)
        if isinstance(action, Drop):
            proxy._record(self.command, self.path, "drop")
            self.close_connection = True
            return
        if isinstance(action, Respond):
            proxy._record(self.command, self.path, action.status)
            self._answer(action.status, action.headers, action.body)
            return
        if isinstance(action, Delay):
            proxy._pause(action.seconds)
        try:
            response = self._forward(body)
        except (OSError, http.client.HTTPException) as error:
            self._close_upstream()
            proxy._record(self.command, self.path, HTTPStatus.BAD_GATEWAY)
            self._answer(HTTPStatus.BAD_GATEWAY, (("Content-Type", "text/plain"),), f"upstream: {error}\n".encode())
            return
        try:
            self._relay(response, action)
        except (OSError, http.client.HTTPException) as error:
            # Headers may be out already, so the only honest signal left is to hang up on both sides.
            log.debug("proxy relay of %s %s failed: %s", self.command, self.path, error)
            self.close_connection = True
        finally:
            if not response.isclosed():
                self._close_upstream()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        return None if length is None else self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        # docker push streams blob uploads this way; the proxy forwards them with a Content-Length instead.
        parts = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        # Trailer fields, if any, end with an empty line like the headers do.
        while self.rfile.readline().strip():
            continue
        return b"".join(parts)

    def _forward(self, body: bytes | None) -> http.client.HTTPResponse:
        skipped = _HOP_BY_HOP | _RECOMPUTED_REQUEST_HEADERS | _connection_tokens(self.headers)
        headers = {name: value for name, value in self.headers.items() if name.lower() not in skipped}
        headers["Host"] = self._proxy._upstream_netloc
        reused = self._upstream is not None
        try:
            return self._exchange(headers, body)
        except _STALE_UPSTREAM:
            if not reused:
                raise
            self._close_upstream()
        return self._exchange(headers, body)

    def _exchange(self, headers: dict[str, str], body: bytes | None) -> http.client.HTTPResponse:
        if self._upstream is None:
            self._upstream = self._proxy._connect_upstream()
        self._upstream.request(self.command, self.path, body, headers)
        return self._upstream.getresponse()

    def _relay(self, response: http.client.HTTPResponse, action: Action | None) -> None:
        proxy = self._proxy
        skipped = _HOP_BY_HOP | _connection_tokens(response.msg)
        headers = [
            (name, proxy._rewrite_location(value) if name.lower() == "location" else value)
            for name, value in response.getheaders()
            if name.lower() not in skipped
        ]
        bodiless = self.command == "HEAD" or response.status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED)
        length = response.getheader("Content-Length")
        if not isinstance(action, (Truncate, Garble, PageTags)) and (bodiless or length is not None):
            proxy._record(self.command, self.path, response.status)
            self._send_head(response.status, headers)
            # http.client reads nothing for HEAD, 204 and 304, and stops at Content-Length otherwise.
            while chunk := response.read(_COPY_CHUNK):
                self.wfile.write(chunk)
            return
        # A body without a length (chunked upstream) or one to tamper with is read whole, then sent with its length.
        body = response.read()
        if length is None and not bodiless:
            headers.append(("Content-Length", str(len(body))))
        if isinstance(action, PageTags) and response.status == HTTPStatus.OK:
            body, link = _tags_page(self.path, body, action.page_size)
            headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
            if link is not None:
                headers.append(("Link", link))
        if isinstance(action, Truncate):
            proxy._record(self.command, self.path, "truncate")
            self._send_head(response.status, headers)
            self.wfile.write(body[: action.keep_bytes])
            self.close_connection = True
        elif isinstance(action, Garble):
            proxy._record(self.command, self.path, "garble")
            self._send_head(response.status, headers)
            self.wfile.write(_garbled(len(body)))
        else:
            proxy._record(self.command, self.path, response.status)
            self._send_head(response.status, headers)
            self.wfile.write(body)

    def _answer(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers = (*headers, ("Content-Length", str(len(body))))
        self._send_head(status, headers)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_head(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        # send_response_only: the upstream's Date and Server pass through instead of being doubled by ours.
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def log_message(self, format: str, *args: Any) -> None:
        # The base class writes to stderr; route it to logging so pytest captures it with everything else.
        log.debug("proxy: " + format, *args)


def _connection_tokens(headers: email.message.Message) -> frozenset[str]:
    """Header names a ``Connection`` header lists: they too concern only this hop."""
    listed = ",".join(headers.get_all("Connection") or ())
    return frozenset(token.strip().lower() for token in listed.split(",") if token.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run a proxy until SIGTERM or SIGINT, announcing ``READY <url>`` on stdout once it listens."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.proxy", description=main.__doc__)
    parser.add_argument("--upstream", required=True, help="origin to forward to, e.g. http://127.0.0.1:5000/")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added before forwarding each request")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: a free one)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with FaultyProxy(args.upstream, latency=args.latency_ms / 1000, port=args.port) as proxy:
        # The parent process waits for this line: it is the readiness protocol, not a log message.
        sys.stdout.write(f"READY {proxy.url}\n")
        sys.stdout.flush()
        stop.wait()
        # Read by benchmarks that count the requests a crawl made.
        sys.stdout.write(f"REQUESTS {proxy.requests}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
