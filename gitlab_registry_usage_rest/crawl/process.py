"""The crawl in a long-lived child process, so its CPU work never competes with request threads for the GIL.

A crawl is thousands of HTTP requests made with ``requests``: Python work that, run in the serving
process, cut a cached endpoint from ~940 to ~115 requests/s during a refresh. Here the crawler lives in
a child process started with ``spawn`` (never ``fork``: the parent is multi-threaded) on the first
crawl and kept between crawls, so its caches (manifest digests for ``If-None-Match``, tokens) survive.

Only small messages cross the pipe: ``"crawl"`` one way; progress, request counts and at the end the
``Listing`` or the failure's ``"TypeName: message"`` the other way. The snapshot is still built in
the parent (``Refresher``): that is fast, and the child stays a plain crawler.

The child ends itself when the pipe reports end-of-file, which is what the parent's death looks like
from the child, even after SIGKILL or ``os._exit``: no child outlives the service.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol, runtime_checkable

from .. import logs
from ..model import Listing
from .base import Crawler, CrawlError, ProgressCallback

log = logging.getLogger(__name__)

RequestCounts = dict[str, int]


class CrawlerFactory(Protocol):
    """Builds the child's crawler; must pickle (a module-level function, or a ``functools.partial`` of one)."""

    def __call__(self, *, progress: ProgressCallback) -> Crawler: ...


@runtime_checkable
class CountsRequests(Protocol):
    """A crawler that counts its requests by outcome (the builtin one does, the library's does not)."""

    def request_counts(self) -> RequestCounts: ...


class CrawlerProcessError(CrawlError):
    """The child failed: its own ``"TypeName: message"``, or how the child process ended."""


@dataclass(slots=True)
class _Child:
    process: BaseProcess
    conn: Connection
    counts: RequestCounts = field(default_factory=dict)  # the latest the child sent


class ProcessCrawler:
    """A ``Crawler`` whose crawls run in a child process built by ``factory``; progress is passed on."""

    def __init__(
        self,
        factory: CrawlerFactory,
        progress: ProgressCallback | None = None,
        *,
        log_level: str = "INFO",
        log_format: str = "text",
        stop_timeout: float = 1.0,
    ) -> None:
        self._factory = factory
        self._progress = progress
        self._logging = (log_level, log_format)
        self._stop_timeout = stop_timeout
        self._crawling = threading.Lock()  # one crawl at a time; held while waiting for the child
        self._lock = threading.Lock()  # guards the fields below, only to read or swap them
        self._child: _Child | None = None
        self._ended: str | None = None  # why no crawl runs any more: "cancelled" or "closed"
        self._retired: Counter[str] = Counter()  # request counts of children that have exited

    @property
    def pid(self) -> int | None:
        """The child's process id, ``None`` before the first crawl and after close."""
        with self._lock:
            return None if self._child is None else self._child.process.pid

    def request_stats(self) -> RequestCounts:
        """Requests the children made so far, by outcome: as the last progress report or crawl left them."""
        with self._lock:
            counts = Counter(self._retired)
            if self._child is not None:
                counts.update(self._child.counts)
            return dict(counts)

    def crawl(self) -> Listing:
        with self._crawling:
            child = self._running_child()
            try:
                child.conn.send("crawl")
            except OSError:
                pass  # it has just died: the wait below reports how
            return self._result(child)

    def cancel(self) -> None:
        """End the child at once (at shutdown): a crawl in progress raises ``CrawlError("cancelled")``."""
        self._end("cancelled")

    def close(self) -> None:
        """Stop the child, waiting for a crawl in progress to give up; later crawls raise. Idempotent."""
        self._end("closed")
        with self._crawling:  # a crawl in progress ends as soon as its child is gone
            with self._lock:
                child = self._child
            if child is not None:
                self._retire(child)

    def _end(self, why: str) -> None:
        with self._lock:
            self._ended = self._ended or why
            child = self._child
        if child is not None:
            _stop(child.process, self._stop_timeout)

    def _running_child(self) -> _Child:
        with self._lock:
            ended, child = self._ended, self._child
        if ended is not None:
            raise CrawlError(ended)
        if child is not None and not child.process.is_alive():
            log.warning("crawler process %s exited with code %s between crawls; starting a new one",
                        child.process.pid, child.process.exitcode)
            self._retire(child)
            child = None
        if child is not None:
            return child
        child = self._spawn()
        with self._lock:
            ended = self._ended
            if ended is None:
                self._child = child
                return child
        # Cancelled while the child was starting: it must not outlive this call.
        _stop(child.process, self._stop_timeout)
        child.conn.close()
        raise CrawlError(ended)

    def _spawn(self) -> _Child:
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        process = context.Process(
            target=_child_main, args=(child_conn, self._factory, *self._logging), name="registry-crawler", daemon=True
        )
        try:
            process.start()
        except BaseException:
            conn.close()
            raise
        finally:
            # Only the child may hold its end: the parent sees the child's death as end-of-file on ``conn``.
            child_conn.close()
        log.info("crawler process %s started", process.pid)
        return _Child(process, conn)

    def _result(self, child: _Child) -> Listing:
        """Pass progress on until the child answers; raises if it fails or exits."""
        while True:
            ready = wait([child.conn, child.process.sentinel])
            if child.conn not in ready:
                break  # exited; whatever it had sent was read before
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "progress":
                if self._progress is not None:
                    self._progress(*message[1:])
            elif kind == "counts":
                with self._lock:
                    child.counts = message[1]
            elif kind == "listing":
                listing: Listing = message[1]
                return listing
            elif kind == "failed":
                raise CrawlerProcessError(message[1])
        child.process.join(self._stop_timeout)
        self._retire(child)
        with self._lock:
            ended = self._ended
        if ended is not None:
            raise CrawlError(ended)
        raise CrawlerProcessError(f"crawler process exited with code {child.process.exitcode}")

    def _retire(self, child: _Child) -> None:
        """Forget an exited child, keeping its request counts so the metric's counters never go back."""
        with self._lock:
            if self._child is not child:
                return
            self._retired.update(child.counts)
            self._child = None
        child.conn.close()


def _stop(process: BaseProcess, timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    if process.exitcode is not None:
        return
    process.terminate()
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join(timeout)


def _child_main(conn: Connection, factory: CrawlerFactory, log_level: str, log_format: str) -> None:
    """The child: reads commands until end-of-file, which means the parent is gone or closed the pipe."""
    # Ctrl-C and SIGHUP reach the whole process group; the parent decides when the child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.configure(log_level, log_format)
    worker = _Worker(_Channel(conn), factory)
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            logs.flush()
            os._exit(0)  # not sys.exit: a crawl thread may still wait for a request's timeout
        if command == "crawl":
            worker.request()
        else:
            log.warning("crawler process: unknown command %r ignored", command)


class _Channel:
    """The child's end of the pipe: progress comes from crawler threads, so sends take turns."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._lock:
            try:
                self._conn.send(message)
            except OSError:
                os._exit(0)  # the parent is gone: nobody wants this crawl any more


class _Worker:
    """Crawls in a thread of its own, so the main thread keeps watching the pipe for the parent's end."""

    def __init__(self, channel: _Channel, factory: CrawlerFactory) -> None:
        self._channel = channel
        self._factory = factory
        self._crawler: Crawler | None = None  # kept between crawls, with its caches
        # A queue, not a thread per crawl: the parent may ask again before the last crawl's thread has ended.
        self._requests: queue.SimpleQueue[None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="crawl-main", daemon=True).start()

    def request(self) -> None:
        self._requests.put(None)

    def _run(self) -> None:
        while True:
            self._requests.get()
            self._crawl()

    def _crawl(self) -> None:
        try:
            if self._crawler is None:
                self._crawler = self._factory(progress=self._report)
            listing = self._crawler.crawl()
            logs.flush()  # the crawl's lines before the parent's "refresh done"
            self._send_counts()
            self._channel.send("listing", listing)
        except Exception as error:  # every failure goes to the parent, which keeps the last data
            log.debug("crawl failure details", exc_info=True)
            logs.flush()
            self._send_counts()
            self._channel.send("failed", f"{type(error).__name__}: {error}")

    def _report(self, done: int, total: int | None, requests: int) -> None:
        self._channel.send("progress", done, total, requests)
        self._send_counts()

    def _send_counts(self) -> None:
        if isinstance(self._crawler, CountsRequests):
            self._channel.send("counts", self._crawler.request_counts())
