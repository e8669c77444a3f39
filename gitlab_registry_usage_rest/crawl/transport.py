"""The crawl's HTTP/1.1 client: keep-alive connections per origin, and a few lines of Python per request.

A crawl is a hundred thousand small GETs, and the crawler's own CPU per request is what limits it (the
registry answers many times faster). Measured per request on this project's synthetic registry, one
keep-alive connection, CPU of the client: ``requests`` 535 µs, urllib3's ``HTTPConnectionPool.urlopen``
231 µs, ``http.client`` 136 µs (header validation on the way out, the ``email`` parser on the way back),
this module 46 µs. What it does is what the crawl needs and no more:

- ``GET`` and ``HEAD`` only (both idempotent, so every failure before a complete answer may be retried);
- per origin, a stack of idle keep-alive connections (at most ``pool_size`` kept); a kept connection that
  the server closed meanwhile is replaced at once, without counting as a retry;
- a timeout on every socket operation (connecting, each send and each receive), as ``requests`` has;
- retries, on connection errors and incomplete answers and on 429, 500, 502, 503 and 504: the first at once,
  then after ``backoff`` × 2, × 4, ... seconds, or after the answer's ``Retry-After`` (seconds or a date)
  capped at ``MAX_RETRY_AFTER``; when they run out, the last answer is returned, the last error raised;
- redirects followed only when asked (blobs, which registries send to object storage), at most
  ``MAX_REDIRECTS``, and never with the ``Authorization`` header to another origin;
- answers framed by ``Content-Length``, chunked or by the end of the connection, never more than
  ``max_body`` bytes read (``BodyTooLarge``, before reading when the length is announced); at most
  ``MAX_HEADERS`` header lines of at most ``MAX_LINE`` bytes each;
- TLS with certificate and host name verification against certifi's bundle (what ``requests`` used here);
  no proxies (as before: the crawler never took them from the environment).

Errors are ``TransportError`` whose ``kind`` names what went wrong in the words ``requests`` used
(``ConnectionError``, ``ConnectTimeout``, ``ReadTimeout``) or ``IncompleteRead``; messages never carry a header.
"""

from __future__ import annotations

import email.utils
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin

import certifi

MAX_RETRY_AFTER = 60.0
MAX_REDIRECTS = 10
MAX_INFORMATIONAL = 10
# More digits than any body has bytes; Python's int() refuses over 4,300 with a ValueError, not our error.
MAX_LENGTH_DIGITS = 18
MAX_HEADERS = 100
MAX_LINE = 65536
# Catalog pages, tag lists and manifests: the largest (a Distribution tag list, which is not paged, of a
# million tags) some 20 MiB.
MAX_BODY = 64 * 1024 * 1024
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Where urllib3 honoured Retry-After, so do we.
_RETRY_AFTER_STATUSES = frozenset({413, 429, 503})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NO_BODY = frozenset({204, 304})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986's unreserved and reserved characters and "%": what a request target may hold as it is (the rest is
# percent-encoded, as requests' requote_uri does), so that no space, CR or LF ever reaches the request line.
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class TransportError(Exception):
    """No complete answer: ``kind`` says what went wrong (``ConnectionError``, ``ReadTimeout``, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class BodyTooLarge(TransportError):
    """The answer is longer than the caller allows; ``announced`` is its ``Content-Length``, if it sent one."""

    def __init__(self, announced: int | None, limit: int) -> None:
        super().__init__("BodyTooLarge", f"more than {limit} bytes")
        self.announced = announced


@dataclass(slots=True)
class Response:
    """A complete answer: status, headers (names lower-cased, repeated ones joined by ``, ``), body, and the URL
    that answered (after redirects)."""

    status: int
    headers: dict[str, str]
    body: bytes
    url: str


class _Connection:
    __slots__ = ("sock", "reader")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb", 65536)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def quiet(self) -> bool:
        """Whether the kept connection holds nothing unasked: no byte left over from the last answer, none sent
        since. Else the next request would read them as its answer (an answer forged ahead, or a server's idle 408).
        """
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            if select.select([sock], [], [], 0)[0]:
                return False  # bytes or the end of the connection: either way not for the next request
            sock.settimeout(0)
            # Only what the reader buffered already: the socket has nothing, so the raw read does not wait.
            return not self.reader.peek(1)  # type: ignore[attr-defined]  # a BufferedReader ("rb", buffered)
        except ssl.SSLWantReadError:
            return True
        except (OSError, ValueError):
            return False


class _Stale(Exception):
    """A kept connection that the server had closed: nothing was answered, try a new one."""


class Transport:
    """Keep-alive HTTP/1.1 connections per origin, with the retries and bounds the module docstring lists."""

    def __init__(self, pool_size: int, retries: int = 3, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self._pool_size = max(pool_size, 1)
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        # (scheme, host, port) -> idle connections. list.append and list.pop are atomic, so no lock is taken
        # per request; the lock only guards creating a pool and closing them all.
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def close(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        with self._lock:
            self._closed = True
            pools, self._idle = list(self._idle.values()), {}
        for pool in pools:
            while pool:
                pool.pop().close()

    def request(self, method: str, url: str, headers: dict[str, str], timeout: float, *,
                follow_redirects: bool = False, max_body: int = MAX_BODY) -> Response:
        """The answer to ``method url``, after the retries; raises ``TransportError`` if none came."""
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name) or "\r" in value or "\n" in value:
                raise TransportError("InvalidHeader", f"header {name!r:.40} is not one we can send")
        errors = 0
        while True:
            try:
                response = self._follow(method, url, headers, timeout, follow_redirects, max_body)
            except BodyTooLarge:
                raise  # the same body next time
            except TransportError as error:
                errors += 1
                # A certificate that fails verification fails again: not worth four handshakes.
                if errors > self._retries or error.kind in ("InvalidURL", "SSLError"):
                    raise
                self._sleep(self._backoff_time(errors))
                continue
            if response.status not in RETRY_STATUSES or errors >= self._retries:
                return response
            errors += 1
            retry_after = self._retry_after(response) if response.status in _RETRY_AFTER_STATUSES else None
            self._sleep(self._backoff_time(errors) if retry_after is None else retry_after)

    def _backoff_time(self, errors: int) -> float:
        # urllib3's schedule: the first retry at once, then backoff * 2 ** (n - 1).
        return 0.0 if errors <= 1 else min(self._backoff * 2 ** (errors - 1), 120.0)

    def _retry_after(self, response: Response) -> float | None:
        value = response.headers.get("retry-after", "").strip()
        if not value:
            return None
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                return None
            seconds = when.timestamp() - self._clock()
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)

    def _follow(self, method: str, url: str, headers: dict[str, str], timeout: float, follow_redirects: bool,
                max_body: int) -> Response:
        origin = _split(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._once(method, origin, url, headers, timeout, max_body)
            location = response.headers.get("location")
            if not follow_redirects or response.status not in _REDIRECTS or not location:
                return response
            url = urljoin(url, location)
            moved = _split(url)
            if moved[:3] != origin[:3]:
                # Object storage signs its URLs itself; the registry's token is not for it.
                headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            origin = moved
            if response.status == 303:
                method = "GET" if method != "HEAD" else method
        raise TransportError("TooManyRedirects", f"more than {MAX_REDIRECTS} redirects")

    def _once(self, method: str, origin: tuple[str, str, int, str, str], url: str, headers: dict[str, str],
              timeout: float, max_body: int) -> Response:
        scheme, host, port, host_header, target = origin
        key = (scheme, host, port)
        lines = [f"{method} {quote(target, safe=_TARGET_SAFE)} HTTP/1.1\r\nHost: {host_header}\r\n"
                 "Accept-Encoding: identity\r\nUser-Agent: gitlab-registry-usage-rest\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1", "replace")
        pool = self._idle.get(key)
        if pool is None:
            with self._lock:
                pool = self._idle.setdefault(key, [])
        while True:
            try:
                connection = pool.pop()
            except IndexError:
                connection, reused = self._connect(scheme, host, port, timeout), False
            else:
                if not connection.quiet():
                    connection.close()
                    continue
                reused = True
            try:
                connection.sock.settimeout(timeout)
                response, reusable = self._exchange(connection, method, data, url, max_body, reused)
            except _Stale:
                connection.close()
                continue
            except BaseException:
                connection.close()
                raise
            if reusable and len(pool) < self._pool_size and not self._closed:
                pool.append(connection)
            else:
                connection.close()
            return response

    def _connect(self, scheme: str, host: str, port: int, timeout: float) -> _Connection:
        try:
            sock = socket.create_connection((host, port), timeout)
        except TimeoutError:
            raise TransportError("ConnectTimeout", f"connecting to {host}:{port} timed out "
                                                   f"(connect timeout={timeout})") from None
        except OSError as error:
            raise TransportError("ConnectionError", f"connecting to {host}:{port}: {_reason(error)}") from None
        except (UnicodeError, ValueError):  # a host name IDNA cannot encode (an empty or 64-character label)
            raise TransportError("InvalidURL", f"{host[:100]!r}: not a host name") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as error:
            sock.close()
            raise TransportError("SSLError", f"{host}:{port}: {_reason(error)}") from None
        except OSError as error:
            sock.close()
            raise TransportError("ConnectionError", f"{host}:{port}: {_reason(error)}") from None
        return _Connection(sock)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def _exchange(self, connection: _Connection, method: str, data: bytes, url: str, max_body: int,
                  reused: bool) -> tuple[Response, bool]:
        reader = connection.reader
        answered = False
        try:
            connection.sock.sendall(data)
            for _ in range(MAX_INFORMATIONAL + 1):
                status_line = reader.readline(MAX_LINE + 1)
                if not status_line:
                    if reused and not answered:
                        raise _Stale()
                    raise TransportError("ConnectionError", "the server closed the connection without an answer")
                answered = True
                version, status = _status(status_line)
                headers = _headers(reader)
                if not 100 <= status < 200 or status == 101:
                    break
            else:
                raise TransportError("ConnectionError", f"more than {MAX_INFORMATIONAL} informational answers")
            tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
            keep_alive = ("close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens) \
                and status != 101 and not ("transfer-encoding" in headers and "content-length" in headers)
            if method == "HEAD" or status in _NO_BODY or 100 <= status < 200:
                return Response(status, headers, b"", url), keep_alive
            encoding = headers.get("transfer-encoding", "").lower()
            if encoding:
                if encoding.rsplit(",", 1)[-1].strip() != "chunked":
                    return Response(status, headers, _until_closed(reader, max_body), url), False
                return Response(status, headers, _chunked(reader, max_body), url), keep_alive
            length = headers.get("content-length")
            if length is None:
                return Response(status, headers, _until_closed(reader, max_body), url), False
            size = _content_length(length)
            if size > max_body:
                raise BodyTooLarge(size, max_body)
            body = reader.read(size)
            if len(body) != size:
                raise TransportError("IncompleteRead", f"{len(body)} of {size} bytes, then the connection closed")
            return Response(status, headers, body, url), keep_alive
        except _Stale:
            raise
        except TimeoutError:
            raise TransportError("ReadTimeout", f"no answer in time (read timeout={connection.sock.gettimeout()})") \
                from None
        except ssl.SSLError as error:
            raise TransportError("SSLError", _reason(error)) from None
        except OSError as error:
            if reused and not answered and isinstance(error, (BrokenPipeError, ConnectionResetError)):
                raise _Stale() from None
            raise TransportError("ConnectionError", _reason(error)) from None


def _split(url: str) -> tuple[str, str, int, str, str]:
    """``(scheme, host, port, Host header, target)`` of an absolute http(s) URL."""
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in _DEFAULT_PORTS:
        raise TransportError("InvalidURL", f"{url[:100]!r}: not an http or https URL")
    end = min((index for index in (rest.find("/"), rest.find("?"), rest.find("#")) if index >= 0), default=len(rest))
    authority, target = rest[:end], rest[end:].partition("#")[0]
    target = target if target.startswith("/") else "/" + target
    if "@" in authority:
        raise TransportError("InvalidURL", "credentials in a URL are not sent")
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text[1:] if port_text.startswith(":") else port_text
        shown = f"[{host}]"
    else:
        host, _, port_text = authority.partition(":")
        shown = host
    if not host:
        raise TransportError("InvalidURL", f"{url[:100]!r}: no host")
    default = _DEFAULT_PORTS[scheme]
    if port_text and not (port_text.isdigit() and port_text.isascii() and len(port_text) <= 5
                          and 0 < int(port_text) < 65536):
        raise TransportError("InvalidURL", f"{url[:100]!r}: not a port")
    port = int(port_text) if port_text else default
    return scheme, host.lower(), port, shown if port == default else f"{shown}:{port}", target


def _status(line: bytes) -> tuple[str, int]:
    parts = line.split(None, 2)
    if len(line) > MAX_LINE or len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        raise TransportError("ConnectionError", f"not an HTTP status line: {line[:60]!r}")
    return parts[0].decode("ascii", "replace"), int(parts[1])


def _headers(reader: object) -> dict[str, str]:
    readline = reader.readline  # type: ignore[attr-defined]
    headers: dict[str, str] = {}
    last = ""
    for _ in range(MAX_HEADERS + 1):
        line = readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise TransportError("ConnectionError", "a header line longer than 64 KiB")
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise TransportError("IncompleteRead", "the connection closed within the headers")
        text = line.decode("latin-1")
        if text[0] in " \t" and last:  # an obsolete continuation line
            headers[last] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise TransportError("ConnectionError", f"not a header line: {text[:60]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    raise TransportError("ConnectionError", f"more than {MAX_HEADERS} header lines")


def _content_length(value: str) -> int:
    # Repeated Content-Length headers were joined; they must agree (RFC 9110, 8.6).
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1:
        raise TransportError("ConnectionError", f"conflicting Content-Length {value[:60]!r}")
    (single,) = values
    if not single.isdigit() or not single.isascii() or len(single) > MAX_LENGTH_DIGITS:
        raise TransportError("ConnectionError", f"invalid Content-Length {value[:60]!r}")
    return int(single)


def _chunked(reader: object, max_body: int) -> bytes:
    readline, read = reader.readline, reader.read  # type: ignore[attr-defined]
    body = bytearray()
    while True:
        line = readline(MAX_LINE + 1)
        if not line:
            raise TransportError("IncompleteRead", f"{len(body)} bytes, then the connection closed")
        size_text = line.split(b";", 1)[0].strip()
        if len(line) > MAX_LINE or not _CHUNK_SIZE.fullmatch(size_text):
            raise TransportError("ConnectionError", f"not a chunk size: {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > max_body:
            raise BodyTooLarge(None, max_body)
        chunk = read(size)
        if len(chunk) != size or read(2) != b"\r\n":
            raise TransportError("IncompleteRead", f"{len(body) + len(chunk)} bytes, then the connection closed")
        body += chunk
    _headers(reader)  # the trailer section, unused
    return bytes(body)


def _until_closed(reader: object, max_body: int) -> bytes:
    body = reader.read(max_body + 1)  # type: ignore[attr-defined]
    if len(body) > max_body:
        raise BodyTooLarge(None, max_body)
    return bytes(body)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
