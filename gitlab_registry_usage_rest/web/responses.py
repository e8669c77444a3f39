"""Data responses: rendered once per snapshot, then validated (ETag, Last-Modified) and compressed.

The data changes once per refresh, so a document (for one resource, one set of query options and one
representation) is built and serialized on its first request and then only looked up. The cache
belongs to one snapshot: a new snapshot starts an empty one and the old one is released with it.
It is bounded by a byte budget (least recently used entries go first) so that clients asking for
many distinct combinations cannot grow it without limit.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import brotli
from flask import Response, jsonify, request
from werkzeug.http import http_date

from ..model import Snapshot
from . import hal
from .html import CONTENT_SECURITY_POLICY, render_page

# Below this, compressing costs more than it saves.
COMPRESS_MIN_BYTES = 1024
DEFAULT_BUDGET = 64 * 1024 * 1024
HAL_JSON = "application/hal+json"
RETRY_AFTER_SECONDS = 30
# Where a resource leaves a ``Replayable`` in the WSGI environ for the middleware to find.
ENVIRON_KEY = "gitlab_registry_usage_rest.replayable"


@dataclass
class Rendered:
    """One representation of one resource, with what conditional requests and encodings need."""

    body: bytes
    mimetype: str
    etag: str
    _encoded: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def encoded(self, encoding: str) -> bytes:
        """The body in ``encoding`` ("gzip" or "br"), compressed on first use and kept."""
        with self._lock:
            cached = self._encoded.get(encoding)
        if cached is None:
            cached = gzip.compress(self.body, 6, mtime=0) if encoding == "gzip" else brotli.compress(
                self.body, quality=5)
            with self._lock:
                self._encoded[encoding] = cached
        return cached

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(data) for data in self._encoded.values())


@dataclass(frozen=True, slots=True)
class Replayable:
    """Left by a resource: this response is the snapshot's answer to this request, for anyone allowed."""

    snapshot: Snapshot
    endpoint: str
    rendered: Rendered
    encoding: str | None  # the form of ``rendered`` sent: None for the plain body; unused for a 304


def make_etag(body: bytes) -> str:
    """A strong validator of the exact bytes (compressed forms get a suffix, as they are other bytes)."""
    return hashlib.blake2b(body, digest_size=12).hexdigest()


class RenderCache:
    """Rendered responses of the current snapshot, within a byte budget."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._entries: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, snapshot: Snapshot, key: Hashable, render: Callable[[], Rendered]) -> Rendered:
        """The cached rendering of ``key`` for ``snapshot``; built once, however many ask at the same time."""
        with self._lock:
            entry = self._lookup(snapshot, key)
            if entry is not None:
                return entry
            building = self._building.setdefault((id(snapshot), key), threading.Lock())
        with building:
            with self._lock:
                entry = self._lookup(snapshot, key)
            if entry is not None:
                return entry
            try:
                entry = render()
            finally:
                with self._lock:
                    self._building.pop((id(snapshot), key), None)
            with self._lock:
                if self._snapshot is snapshot and entry.size <= self._budget:
                    self._entries[key] = entry
                    self._trim()
            return entry

    def _lookup(self, snapshot: Snapshot, key: Hashable) -> Rendered | None:
        if self._snapshot is not snapshot:
            current = self._snapshot
            if current is not None and snapshot.timestamp < current.timestamp:
                # A slow request still holding the snapshot before: rendered for it alone, and the newer
                # snapshot's entries stay.
                return None
            # A new snapshot: everything rendered for the old one goes with it.
            self._snapshot = snapshot
            self._entries.clear()
            return None
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def _trim(self) -> None:
        total = sum(entry.size for entry in self._entries.values())
        while total > self._budget and self._entries:
            _, oldest = self._entries.popitem(last=False)
            total -= oldest.size

    @property
    def size(self) -> int:
        with self._lock:
            return sum(entry.size for entry in self._entries.values())


def json_error(status: int, message: str, key: str = "message") -> Response:
    response = jsonify({key: message})
    response.status_code = status
    return response


def wants_html() -> bool:
    return request.accept_mimetypes.best_match([HAL_JSON, "text/html"]) == "text/html"


def _render(document: dict[str, Any], title: str, html: bool) -> Rendered:
    if html:
        body = render_page(document, title).encode()
        return Rendered(body, "text/html", make_etag(body))
    # As flask-restful's output_json: json.dumps with default separators and a newline.
    body = (json.dumps(document) + "\n").encode()
    return Rendered(body, HAL_JSON, make_etag(body))


def respond(cache: RenderCache, snapshot: Snapshot | None, target: Hashable, options: hal.Options,
             build: Callable[[], dict[str, Any]], title: str) -> Response:
    """A data response: rendered once per snapshot, validated by ETag and Last-Modified, compressed.

    It depends only on the snapshot and the request's URL and ``Vary`` headers, so it is marked for
    ``ResponseReplay`` to send again to the same request.
    """
    html = wants_html()
    if snapshot is None:  # nothing collected yet: nothing worth caching or validating
        rendered = _render(build(), title, html)
        return Response(rendered.body, mimetype=rendered.mimetype)
    return send(cache, snapshot, (target, options, html), lambda: _render(build(), title, html))


def send(cache: RenderCache, snapshot: Snapshot, key: Hashable, render: Callable[[], Rendered],
         extra_headers: dict[str, str] | None = None) -> Response:
    """``respond`` for any representation: ``render`` builds it once per snapshot and ``key`` (which must name
    the representation), then it is validated, compressed and marked for replay as ``respond``'s are."""
    rendered = cache.get(snapshot, key, render)
    encoding = _encoding(rendered)
    headers = {
        "ETag": f'"{rendered.etag}{"-" + encoding if encoding else ""}"',
        "Last-Modified": http_date(snapshot.timestamp),
        # The data is per-user authorised: browsers may keep it but must revalidate; proxies must not share it.
        "Cache-Control": "private, no-cache",
        "Vary": "Accept, Accept-Encoding, Authorization",
        **(extra_headers or {}),
    }
    if rendered.mimetype == "text/html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    request.environ[ENVIRON_KEY] = Replayable(snapshot, request.endpoint or "", rendered, encoding)
    if _not_modified(rendered.etag, snapshot.timestamp):
        return Response(status=304, headers=headers)
    if encoding is None:
        return Response(rendered.body, mimetype=rendered.mimetype, headers=headers)
    response = Response(rendered.encoded(encoding), mimetype=rendered.mimetype, headers=headers)
    response.headers["Content-Encoding"] = encoding
    return response


def _encoding(rendered: Rendered) -> str | None:
    """brotli or gzip, as the client prefers (brotli on a tie), for bodies worth compressing."""
    if len(rendered.body) < COMPRESS_MIN_BYTES:
        return None
    accepted = request.accept_encodings
    best = max(("br", "gzip"), key=lambda encoding: accepted[encoding])
    return best if accepted[best] > 0 else None


def _not_modified(etag: str, timestamp: float) -> bool:
    """If-None-Match against any encoding of these bytes; otherwise If-Modified-Since."""
    if request.if_none_match:
        return any(request.if_none_match.contains_weak(etag + suffix) for suffix in ("", "-gzip", "-br"))
    since = request.if_modified_since
    return since is not None and int(timestamp) <= since.timestamp()
