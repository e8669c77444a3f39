"""The refresh thread: crawl, compute every figure, swap the snapshot in; keep serving the last good one.

The original blocked start-up for a whole crawl and its refresh thread died on the first error. Here
the service serves at once, every figure is computed in this thread (never on a request thread), and
a failed refresh is logged with its cause and tried again at the next interval.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import re
import threading
import time
from collections.abc import Callable

from .crawl.base import Crawler
from .model import Snapshot
from .sizes import build_snapshot
from .state import RefreshState, SnapshotHolder

log = logging.getLogger(__name__)


# "CrawlerProcessError: CrawlError: the catalog ...": exception type names, each followed by ": ".
_TYPE_NAMES = re.compile(r"(?:[A-Z][A-Za-z0-9_]*(?:Error|Exception): )+")


def error_kind(error: BaseException) -> str:
    """The type of a refresh failure, for the public /health: the innermost exception type named, never
    the message (which may carry repository names, URLs and token scopes).

    The crawler's child process sends its exception as ``"TypeName: message"``, which the parent wraps
    once more; the child's type is the one that says what went wrong.
    """
    kind = type(error).__name__
    match = _TYPE_NAMES.match(str(error))
    if match is not None:
        kind = match.group(0).split(": ")[-2]
    return kind


def release_memory() -> None:
    """After a refresh, hand what the old snapshot and the listing took back to the system.

    The refresh frees hundreds of thousands of objects at once; glibc's malloc keeps freed memory in its arenas
    (one per thread that allocated) unless asked to trim, so without this the service's RSS stays at its
    refresh peak. No ``gc.collect()``: snapshots and listings hold no cycles (reference counting frees them),
    and a full collection walks every object of the snapshot with the interpreter lock held, a pause for every
    request thread; ``ctypes`` releases the lock for the trim.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; ``None`` on other C libraries (musl, macOS), which need no such call."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Refresher:
    """Runs ``crawler`` every ``interval`` seconds in a thread of its own and publishes the result."""

    def __init__(
        self,
        crawler: Crawler,
        snapshots: SnapshotHolder,
        state: RefreshState,
        interval: float,
        clock: Callable[[], float] = time.time,
        on_snapshot: Callable[[Snapshot], object] | None = None,
    ) -> None:
        self._crawler = crawler
        self._on_snapshot = on_snapshot
        self._snapshots = snapshots
        self._state = state
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """One refresh; ``False`` if it failed, in which case the previous snapshot stays."""
        started = self._clock()
        self._state.started(started)
        log.info("refresh started")
        try:
            # The served snapshot is the previous one: tags still at their digest keep their first_seen. The
            # listing is never bound here, so it is gone before the data file and the history are written.
            snapshot = build_snapshot(self._crawler.crawl(), timestamp=self._clock(),
                                      previous=self._snapshots.current())
        except Exception as error:  # any failure must leave the last good snapshot served
            message = f"{type(error).__name__}: {error}"
            self._state.finished(self._clock(), message, error_kind(error))
            log.error("refresh failed after %.1fs, keeping the previous data: %s", self._clock() - started, message)
            log.debug("refresh failure details", exc_info=True)
            return False
        self._snapshots.replace(snapshot)
        self._state.finished(self._clock(), None)
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)  # the data file: written after the data is served and counted
        release_memory()
        tags = sum(len(repository.tags or ()) for repository in snapshot.repositories)
        requests = self._state.current().requests
        seconds = self._clock() - started
        # One indented line per error, each error an argument of its own: the text log escapes arguments
        # (a registry's names could carry a line feed), not the line breaks written here.
        log.info(
            "refresh done in %.1fs: %d repositories, %d tags, %d requests, %d errors" + "\n  %s" * len(snapshot.errors),
            seconds, len(snapshot.repositories), tags, requests, len(snapshot.errors), *snapshot.errors,
            extra={"fields": {"event": "refresh", "duration_seconds": round(seconds, 3),
                              "repositories": len(snapshot.repositories), "tags": tags, "requests": requests,
                              "errors": list(snapshot.errors), "warnings": len(snapshot.warnings)}},
        )
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            remaining = self._interval - (time.monotonic() - started)
            self._wake.wait(max(0.0, remaining))
            self._wake.clear()

    def trigger(self) -> None:
        """Start the next refresh now instead of at the end of the interval (SIGHUP)."""
        log.info("refresh requested")
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="refresher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """End the thread, cancelling a crawl in progress where the crawler can be cancelled."""
        self._stop.set()
        self._wake.set()
        self._crawler.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
