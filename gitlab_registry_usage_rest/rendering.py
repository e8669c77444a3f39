"""Responses rendered once per snapshot: bytes, their ETag and their compressed forms, served from memory.

The data changes once per refresh, so a document (for one resource, one set of query options and one
representation) is built and serialized on its first request and then only looked up. The cache
belongs to one snapshot: a new snapshot starts an empty one and the old one is released with it.
It is bounded by a byte budget (least recently used entries go first) so that clients asking for
many distinct combinations cannot grow it without limit.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable

import brotli

from .model import Snapshot

# Below this, compressing costs more than it saves.
COMPRESS_MIN_BYTES = 1024
DEFAULT_BUDGET = 64 * 1024 * 1024


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
