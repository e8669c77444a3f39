"""Replaying data responses without Flask: the answer to a request seen before is sent again as it was.

Dashboards and scripts poll the same URLs with the same headers, and between refreshes the answer
cannot change. Flask, Flask-RESTful, Flask-CORS and the header parsing cost several times more than
the lookup in the render cache they lead to, so this WSGI middleware remembers, per snapshot, the
status and headers of each data response, keyed like an HTTP cache keys on ``Vary``: the request
line and the headers the answer depends on. Authorization is checked instead of keyed: the data is
the same for everyone who may see it, and a token counts only if this process has verified it
before (see ``tokens``) and it has not expired. Anything else goes to Flask.

Bodies are not copied: an entry points weakly at the ``Rendered`` of the render cache, so the render
cache's byte budget stays the only memory bound, and an entry whose rendering was evicted is
answered by Flask again. Entries belong to one snapshot and go with it.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import Snapshot
from .responses import ENVIRON_KEY, Rendered, Replayable
from .tokens import VerifiedTokens

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MAX_ENTRIES = 4096
# The request line and every header a data response depends on (besides Authorization).
_KEY_FIELDS = (
    "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "RAW_URI", "wsgi.url_scheme",
    "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_ORIGIN",
)

# Counts and logs one request: method, path (decoded), endpoint, status, seconds, user.
RequestObserver = Callable[[str, str, str, int, float, str], None]


@dataclass(frozen=True, slots=True)
class _Entry:
    status: str
    status_code: int
    headers: tuple[tuple[str, str], ...]
    endpoint: str
    rendered: weakref.ref[Rendered]
    encoding: str | None

    def body(self) -> bytes | None:
        """The bytes to send again; None once the render cache has let go of them."""
        rendered = self.rendered()
        if rendered is None:
            return None
        if self.status_code == 304:
            return b""
        return rendered.body if self.encoding is None else rendered.encoded(self.encoding)


class ResponseReplay:
    """WSGI middleware in front of the Flask app that answers repeated data requests from memory."""

    def __init__(self, app: WSGIApplication, snapshots: Callable[[], Snapshot | None], tokens: VerifiedTokens,
                 observe: RequestObserver, max_entries: int = MAX_ENTRIES) -> None:
        self._app = app
        self._snapshots = snapshots
        self._tokens = tokens
        self._observe = observe
        self._max_entries = max_entries
        # Swapped whole when the snapshot changes, so readers need no lock.
        self._current: tuple[Snapshot | None, dict[tuple[Any, ...], _Entry]] = (None, {})

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if environ["REQUEST_METHOD"] != "GET" or not authorization.startswith("Bearer "):
            return self._app(environ, start_response)
        started = time.perf_counter()
        key = tuple(environ.get(name) for name in _KEY_FIELDS)
        snapshot = self._snapshots()
        owner, entries = self._current
        entry = entries.get(key) if owner is snapshot and snapshot is not None else None
        if entry is not None:
            body = entry.body()
            user = self._tokens.subject(authorization[7:]) if body is not None else None
            if body is not None and user is not None:
                start_response(entry.status, list(entry.headers))
                self._observe("GET", _decoded_path(environ), entry.endpoint, entry.status_code,
                              time.perf_counter() - started, user)
                return [body]
        return self._record(key, environ, start_response)

    def _record(self, key: tuple[Any, ...], environ: WSGIEnvironment,
                start_response: StartResponse) -> Iterable[bytes]:
        """Let Flask answer, and keep what it says if a resource marked the answer as replayable."""
        answered: list[Any] = []

        def recording(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered[:] = [status, headers]
            return start_response(status, headers, exc_info)

        result = self._app(environ, recording)
        replayable = environ.get(ENVIRON_KEY)
        if isinstance(replayable, Replayable) and answered:
            status, headers = answered
            code = int(status.split(" ", 1)[0])
            if code in (200, 304):
                self._remember(key, replayable, _Entry(status, code, tuple(headers), replayable.endpoint,
                                                       weakref.ref(replayable.rendered), replayable.encoding))
        return result

    def _remember(self, key: tuple[Any, ...], replayable: Replayable, entry: _Entry) -> None:
        owner, entries = self._current
        if owner is not replayable.snapshot:
            if replayable.snapshot is not self._snapshots():
                return  # answered from a snapshot already replaced
            owner, entries = self._current = (replayable.snapshot, {})
        if len(entries) >= self._max_entries:
            entries.clear()  # many distinct header combinations: start over rather than track recency
        entries[key] = entry


def _decoded_path(environ: WSGIEnvironment) -> str:
    """``PATH_INFO`` as Werkzeug's ``request.path`` shows it (WSGI strings carry bytes as latin-1)."""
    raw = environ.get("PATH_INFO") or ""
    return "/" + raw.encode("latin-1", "replace").decode("utf-8", "replace").lstrip("/")

