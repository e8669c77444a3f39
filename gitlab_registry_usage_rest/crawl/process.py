"""The crawl in a long-lived child process, so its CPU work never competes with request threads for the GIL.

A crawl is thousands of HTTP requests made with ``requests``: Python work that, run in the serving
process, cut a cached endpoint from ~940 to ~115 requests/s during a refresh. Here the crawler lives in
a child process, a fresh interpreter (never ``fork``: the parent is multi-threaded), started on the first
crawl and kept between crawls, so its caches (manifest digests for ``If-None-Match``, tokens) survive.

Only small messages cross the pipe: ``"crawl"`` one way; progress, request counts, heartbeats and at the end the
listing or the failure's ``"TypeName: message"`` the other way. Before the listing, a builtin crawler's
config dates (digest -> creation time) come along when they changed, so the parent can keep them in the data
file and give them back to the next service's crawler. The snapshot is still built in
the parent (``Refresher``): that is fast, and the child stays a plain crawler.

**The listing comes in parts, digests once.** Pickled whole, 100,000 tags made a 32 MiB message, held at once
beside the listing on both sides, and every layer reference arrived as a string of its own (130 bytes, eight
per tag): a ``"part"`` message carries about ``PART_TAGS`` tags, each layer as a number, and the layers it
introduces (digest and size) once; a ``"listing"`` message ends it with the errors and warnings. The parent
rebuilds the ``Listing`` with one string per distinct digest (and per distinct tag name, media type, platform),
shared by every reference. Every message is tuples of strings and numbers: no class at all is unpickled.

The child ends itself when the pipe reports end-of-file, which is what the parent's death looks like
from the child, even after SIGKILL or ``os._exit``: no child outlives the service.

**Its environment is an allow-list.** The child parses manifests that any GitLab user can push, so it is the
part of the service most exposed to hostile input; it must not hold the JWT signing key, the LDAP bind
password or anything else the service was given in its environment. ``multiprocessing``'s ``spawn`` cannot
help here: it execs the child with the parent's whole ``environ``, and ``/proc/<pid>/environ`` shows a
process's initial environment whatever it later does to ``os.environ``. Reducing ``os.environ`` around the
start is no way out either: request and log threads run meanwhile, and C ``setenv``/``getenv`` race (a
crash, not just a wrong value); and overriding ``spawn``'s private launch code would break with the next
Python. So the child is started with ``subprocess.Popen(env=...)``, the public interface that sets a new
process's environment exactly, with a few lines of bootstrap that replace what ``spawn`` did: it takes the
parent's ``sys.path`` and then the pickled factory, log settings and heartbeat interval from the pipe
(passed as an inherited descriptor, ``pass_fds``). ``child_environment`` keeps only what a Python HTTP
client needs (``PATH``, ``HOME``, locale, ``TZ``, ``TMPDIR``, ``LD_LIBRARY_PATH``, ``PYTHON*``, the CA
bundle variables and the proxy variables for reaching the registry) and never a
``GITLAB_REGISTRY_USAGE_REST_*`` variable. The registry access token, which the child does need, comes in
the pickled factory's arguments.

**A child that does not answer is ended.** While a crawl runs, the child's worker sends a heartbeat every
few seconds from a thread of its own, besides the crawler's progress and request counts. If nothing at all
arrives within ``answer_timeout`` (a few times the request timeout), the child is stopped, frozen, or stuck
in C code that holds the interpreter lock (a regular expression or a decoder on hostile input): it is
killed, the crawl fails with ``CrawlerProcessError("crawler process did not answer within Ns; ended")`` and
the next crawl starts a new child. A crawler thread merely waiting on the network does not trip this (the
heartbeat goes on): that wait is bounded by the request timeouts, which both crawlers set on every request;
a healthy crawl may go minutes without a progress report (a long catalog, retries honouring
``Retry-After``), so silence from the crawler itself proves nothing.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import math
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol, runtime_checkable

from .. import logs
from ..model import ImageListing, Listing, RepositoryListing
from ..refresher import release_memory
from .base import Crawler, CrawlError, ProgressCallback

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0  # seconds between the child's heartbeats during a crawl, at most
PART_TAGS = 2_000  # tags per "part" message of a listing, about (whole repositories): a few hundred KiB

RequestCounts = dict[str, int]
ConfigDates = dict[str, float | None]
MAX_CONFIG_DATES = 100_000  # what the builtin crawler keeps at most

# What the child's environment may carry over from the parent's: what the interpreter, the locale, the clock,
# TLS and the way to the registry need; secrets never (the service's own variables do not match).
_INHERITED = frozenset({
    "PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
})
_INHERITED_PREFIXES = ("LC_", "PYTHON")
_OWN_PREFIX = "GITLAB_REGISTRY_USAGE_REST_"

# The child's first lines, stdlib only: the parent's import path first, so that the factory unpickles there
# as it would have here (the package itself may be importable only through it), then the child proper.
_BOOTSTRAP = """\
import sys
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
sys.path[:] = conn.recv()
from gitlab_registry_usage_rest.crawl.process import _child_main
_child_main(conn, *conn.recv())
"""


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` the crawler child is started with: an allow-list, never the service's own keys."""
    return {
        name: value for name, value in environ.items()
        if (name in _INHERITED or name.startswith(_INHERITED_PREFIXES)) and not name.startswith(_OWN_PREFIX)
    }


class CrawlerFactory(Protocol):
    """Builds the child's crawler; must pickle (a module-level function, or a ``functools.partial`` of one)."""

    def __call__(self, *, progress: ProgressCallback) -> Crawler: ...


@runtime_checkable
class CountsRequests(Protocol):
    """A crawler that counts its requests by outcome (the builtin one does, the library's does not)."""

    def request_counts(self) -> RequestCounts: ...


@runtime_checkable
class KeepsConfigDates(Protocol):
    """A crawler that caches image config dates by digest (the builtin one does)."""

    def config_dates(self) -> ConfigDates: ...


class CrawlerProcessError(CrawlError):
    """The child failed: its own ``"TypeName: message"``, or how the child process ended."""


@dataclass(slots=True)
class _Child:
    process: subprocess.Popen[bytes]
    conn: Connection
    counts: RequestCounts = field(default_factory=dict)  # the latest the child sent


class ProcessCrawler:
    """A ``Crawler`` whose crawls run in a child process built by ``factory``; progress is passed on.

    A child that sends nothing, not even a heartbeat, for ``answer_timeout`` seconds during a crawl is killed.
    """

    def __init__(
        self,
        factory: CrawlerFactory,
        progress: ProgressCallback | None = None,
        *,
        log_level: str = "INFO",
        log_format: str = "text",
        stop_timeout: float = 1.0,
        answer_timeout: float = 120.0,
    ) -> None:
        if answer_timeout <= 0:
            raise ValueError(f"answer_timeout must be positive, not {answer_timeout!r}")
        self._factory = factory
        self._progress = progress
        self._logging = (log_level, log_format)
        self._stop_timeout = stop_timeout
        self._answer_timeout = answer_timeout
        # Several heartbeats per answer_timeout, so that one late beat is never taken for a hang.
        self._heartbeat = min(HEARTBEAT_INTERVAL, answer_timeout / 5)
        self._crawling = threading.Lock()  # one crawl at a time; held while waiting for the child
        self._lock = threading.Lock()  # guards the fields below, only to read or swap them
        self._child: _Child | None = None
        self._ended: str | None = None  # why no crawl runs any more: "cancelled" or "closed"
        self._retired: Counter[str] = Counter()  # request counts of children that have exited
        self._config_dates: Mapping[str, float | None] = PackedConfigDates({})  # the latest any child sent

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

    def config_dates(self) -> Mapping[str, float | None]:
        """The config dates the last child sent (after its crawl), to keep across restarts; empty before."""
        with self._lock:
            return self._config_dates

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
        if child is not None and child.process.poll() is not None:
            log.warning("crawler process %s exited with code %s between crawls; starting a new one",
                        child.process.pid, child.process.returncode)
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
        conn, child_conn = multiprocessing.Pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(child_conn.fileno())],
                stdin=subprocess.DEVNULL, env=child_environment(os.environ), pass_fds=(child_conn.fileno(),),
            )
        except BaseException:
            conn.close()
            raise
        finally:
            # Only the child may hold its end: the parent sees the child's death as end-of-file on ``conn``.
            child_conn.close()
        child = _Child(process, conn)
        try:
            conn.send(sys.path)
            conn.send((self._factory, *self._logging, self._heartbeat))
        except BaseException:
            # An unpicklable factory, or a child that died at once: nothing half-started is kept.
            _stop(process, self._stop_timeout)
            conn.close()
            raise
        log.info("crawler process %s started", process.pid)
        return child

    def _result(self, child: _Child) -> Listing:
        """Pass progress on until the child answers; raises if it fails, exits or stays silent too long."""
        parts = _ListingParts()
        while True:
            if not child.conn.poll(self._answer_timeout):
                self._end_silent(child)
            try:
                data = child.conn.recv_bytes()
            except (EOFError, OSError):
                break  # exited; whatever it had sent was read before
            message = _from_child(data)
            kind = message[0]
            if kind == "progress":
                if self._progress is not None:
                    self._progress(*message[1:])
            elif kind == "counts":
                with self._lock:
                    child.counts = message[1]
            elif kind == "configs":
                dates = PackedConfigDates(_config_dates(message))
                with self._lock:
                    self._config_dates = dates
            elif kind == "part":
                parts.add(message)
            elif kind == "listing":
                return parts.listing(message)
            elif kind == "failed":
                raise CrawlerProcessError(message[1])
            # "alive": a heartbeat, which has done its work by arriving
        _join(child.process, self._stop_timeout)
        self._retire(child)
        self._raise_if_ended()
        raise CrawlerProcessError(f"crawler process exited with code {child.process.returncode}")

    def _end_silent(self, child: _Child) -> None:
        """Kill a child that has sent nothing, not even a heartbeat, for ``answer_timeout``; always raises."""
        self._raise_if_ended()  # cancelled or closed meanwhile: the child is being stopped already
        log.error("crawler process %s did not answer within %gs; killing it", child.process.pid,
                  self._answer_timeout)
        # SIGKILL at once: a stopped process would keep a SIGTERM pending, a stuck one might ignore it.
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        _join(child.process, self._stop_timeout)
        self._retire(child)
        self._raise_if_ended()
        raise CrawlerProcessError(f"crawler process did not answer within {self._answer_timeout:g}s; ended")

    def _raise_if_ended(self) -> None:
        with self._lock:
            ended = self._ended
        if ended is not None:
            raise CrawlError(ended)

    def _retire(self, child: _Child) -> None:
        """Forget an exited child, keeping its request counts so the metric's counters never go back."""
        with self._lock:
            if self._child is not child:
                return
            self._retired.update(child.counts)
            self._child = None
        child.conn.close()


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    if not _join(process, timeout):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        _join(process, timeout)


class _ChildAnswers(pickle.Unpickler):
    """Unpickles what the child sends, refusing every class.

    The child parses manifests anyone who may push can write; if code ever ran there, a plain pickle
    would let it run code here too, where the JWT key and the LDAP password are. Its messages are
    tuples of strings, numbers and dicts (the listing too, in parts): nothing needs a class.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the crawler process sent a {module}.{name}, which is refused")


class _Unreadable(CrawlerProcessError):
    def __init__(self) -> None:
        super().__init__("the crawler process sent an unreadable listing")


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Unreadable()
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if type(value) is not float or not math.isfinite(value):
        raise _Unreadable()
    return value


def _tuple(value: Any, length: int | None = None) -> tuple[Any, ...]:
    if type(value) is not tuple or length is not None and len(value) != length:
        raise _Unreadable()
    return value


class _ListingParts:
    """The parent's end of a listing in parts: checked (the child is not to be trusted) and rebuilt with one
    string per distinct digest, tag name, media type and platform."""

    def __init__(self) -> None:
        self._digests: list[str] = []  # layer number -> digest
        self._sizes: dict[str, int] = {}
        self._repositories: list[RepositoryListing] = []
        self._shared: dict[str, str] = {}  # one string for each value

    def _share(self, value: str) -> str:
        return self._shared.setdefault(value, value)

    def add(self, message: tuple[Any, ...]) -> None:
        """A ``("part", ((digest, size), ...), ((name, None | ((tag, (layer, ...), digest, media type,
        (platform, ...), created, published), ...)), ...))`` message."""
        _, layers, repositories = _tuple(message, 3)
        for layer in _tuple(layers):
            digest, size = _tuple(layer, 2)
            if type(size) is not int or size < 0 or _text(digest) in self._sizes:
                raise _Unreadable()
            self._digests.append(digest)
            self._sizes[digest] = size
        digests, share = self._digests, self._share
        for repository in _tuple(repositories):
            name, images = _tuple(repository, 2)
            if images is None:
                self._repositories.append(RepositoryListing(_text(name), None))
                continue
            listed = []
            for image in _tuple(images):
                tag, numbers, digest, media_type, platforms, created, published = _tuple(image, 7)
                references = []
                for number in _tuple(numbers):
                    if type(number) is not int or not 0 <= number < len(digests):
                        raise _Unreadable()
                    references.append(digests[number])
                listed.append(ImageListing(
                    tag=share(_text(tag)), layers=tuple(references), digest=_optional_text(digest),
                    media_type=None if media_type is None else share(_text(media_type)),
                    platforms=tuple(share(_text(platform)) for platform in _tuple(platforms)),
                    created=_time(created), published=_time(published),
                ))
            self._repositories.append(RepositoryListing(_text(name), tuple(listed)))

    def listing(self, message: tuple[Any, ...]) -> Listing:
        """The whole listing, given its last message: ``("listing", (error, ...), (warning, ...))``."""
        _, errors, warnings = _tuple(message, 3)
        return Listing(tuple(self._repositories), self._sizes, tuple(_text(error) for error in _tuple(errors)),
                       tuple(_text(warning) for warning in _tuple(warnings)))


def _listing_messages(listing: Listing, part_tags: int = PART_TAGS) -> Iterator[tuple[Any, ...]]:
    """The child's end: ``listing`` as ``"part"`` messages of about ``part_tags`` tags, then ``"listing"``."""
    numbers: dict[str, int] = {}
    sizes = listing.layer_sizes
    layers: list[tuple[str, int]] = []
    repositories: list[tuple[str, tuple[Any, ...] | None]] = []
    tags = 0
    for repository in listing.repositories:
        images = None
        if repository.images is not None:
            images = tuple((image.tag, _numbers(image.layers, numbers, sizes, layers), image.digest,
                            image.media_type, image.platforms, image.created, image.published)
                           for image in repository.images)
            tags += len(images)
        repositories.append((repository.name, images))
        if tags >= part_tags:
            yield ("part", tuple(layers), tuple(repositories))
            layers, repositories, tags = [], [], 0
    # Sizes of layers no tag references (none, from the builtin crawler), so the listing arrives exactly as it was.
    layers += ((digest, size) for digest, size in sizes.items() if digest not in numbers)
    if layers or repositories:
        yield ("part", tuple(layers), tuple(repositories))
    yield ("listing", tuple(listing.errors), tuple(listing.warnings))


def _numbers(digests: Iterable[str], numbers: dict[str, int], sizes: Mapping[str, int],
             layers: list[tuple[str, int]]) -> tuple[int, ...]:
    """The layer numbers of ``digests``, numbering (and adding to ``layers``) those not seen before."""
    found = []
    for digest in digests:
        number = numbers.get(digest)
        if number is None:
            number = numbers[digest] = len(numbers)
            layers.append((digest, sizes[digest]))
        found.append(number)
    return tuple(found)


def _from_child(data: bytes) -> tuple[Any, ...]:
    """One message of the child's, checked: a tuple whose first item says what it is."""
    try:
        message = _ChildAnswers(io.BytesIO(data)).load()
    # A refused class, or bytes that are no pickle (what pickle raises for those): the child is not to be trusted.
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, KeyError, TypeError,
            ValueError) as error:
        raise CrawlerProcessError(f"the crawler process sent an unreadable message: {error}") from None
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise CrawlerProcessError("the crawler process sent an unreadable message")
    return message


def _config_dates(message: tuple[Any, ...]) -> ConfigDates:
    """A ``("configs", {digest: time or None})`` message's dates, checked: the child is not to be trusted."""
    dates = message[1] if len(message) == 2 else None
    if (not isinstance(dates, dict) or len(dates) > MAX_CONFIG_DATES
            or not all(isinstance(digest, str) and (created is None or type(created) is float
                                                    and math.isfinite(created))
                       for digest, created in dates.items())):
        raise CrawlerProcessError("the crawler process sent unreadable config dates")
    return dates


class PackedConfigDates(Mapping[str, float | None]):
    """Config dates as the parent keeps them between crawls: each sha256 digest as its 32 bytes and its time as a
    double (NaN: unknown), in two flat buffers; 40 bytes a date instead of about 190 in a dict of objects
    (100,000 dates: 4 MiB, not 19). Other digests, if any, stay in a small dict. Looking one up is a linear search
    in C: what the data file and the next crawler need is the iteration, in order."""

    def __init__(self, dates: Mapping[str, float | None]) -> None:
        packed, created = bytearray(), array("d")
        others: dict[str, float | None] = {}
        for digest, when in dates.items():
            raw = _sha256_bytes(digest)
            if raw is None:
                others[digest] = when
            else:
                packed += raw
                created.append(math.nan if when is None else when)
        self._digests, self._created, self._others = bytes(packed), created, others

    def __len__(self) -> int:
        return len(self._created) + len(self._others)

    def __iter__(self) -> Iterator[str]:
        for number in range(len(self._created)):
            yield "sha256:" + self._digests[32 * number:32 * number + 32].hex()
        yield from self._others

    def __getitem__(self, digest: str) -> float | None:
        raw = _sha256_bytes(digest)
        if raw is None:
            return self._others[digest]
        found = self._digests.find(raw)
        while found >= 0 and found % 32:
            found = self._digests.find(raw, found + 1)
        if found < 0:
            raise KeyError(digest)
        when = self._created[found // 32]
        return None if math.isnan(when) else when


def _sha256_bytes(digest: str) -> bytes | None:
    """The 32 bytes of a ``sha256:`` digest in lowercase hex (as registries write them), else ``None``."""
    if len(digest) != 71 or not digest.startswith("sha256:"):
        return None
    try:
        raw = bytes.fromhex(digest[7:])
    except ValueError:
        return None
    return raw if raw.hex() == digest[7:] else None


def _join(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` for the process to exit (reaping it); whether it has."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _child_main(conn: Connection, factory: CrawlerFactory, log_level: str, log_format: str,
                heartbeat: float) -> None:
    """The child: reads commands until end-of-file, which means the parent is gone or closed the pipe."""
    # Ctrl-C and SIGHUP reach the whole process group; the parent decides when the child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.configure(log_level, log_format)
    worker = _Worker(_Channel(conn), factory, heartbeat)
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

    def __init__(self, channel: _Channel, factory: CrawlerFactory, heartbeat: float) -> None:
        self._channel = channel
        self._factory = factory
        self._heartbeat = heartbeat
        self._crawler: Crawler | None = None  # kept between crawls, with its caches
        self._sent_dates: int | None = None  # a fingerprint of the dates sent: sent again only when they changed
        # A queue, not a thread per crawl: the parent may ask again before the last crawl's thread has ended.
        self._requests: queue.SimpleQueue[None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="crawl-main", daemon=True).start()

    def request(self) -> None:
        self._requests.put(None)

    def _run(self) -> None:
        while True:
            self._requests.get()
            with self._beating():
                outcome = self._crawl()
            # After the last heartbeat: nothing of this crawl is left in the pipe behind its answer.
            self._send_counts()
            if outcome[0] == "listing":
                self._send_config_dates()  # before the listing, so the parent has them when its crawl returns
                self._send_listing(outcome[1])
            else:
                self._channel.send(*outcome)
            # The listing is the crawler's to keep (or not) until the next crawl, not this thread's.
            del outcome
            gc.collect()  # nobody waits on the child between crawls
            release_memory()

    def _send_listing(self, listing: Listing) -> None:
        try:
            # A part at a time: never the whole listing twice, nor its pickle beside it.
            for message in _listing_messages(listing):
                self._channel.send(*message)
        except Exception as error:  # a listing that is not one (a crawler's bug): the parent drops the parts
            log.debug("listing failure details", exc_info=True)
            self._channel.send("failed", f"{type(error).__name__}: {error}")

    def _crawl(self) -> tuple[str, Any]:
        try:
            if self._crawler is None:
                self._crawler = self._factory(progress=self._report)
            listing = self._crawler.crawl()
            logs.flush()  # the crawl's lines before the parent's "refresh done"
            return ("listing", listing)
        except Exception as error:  # every failure goes to the parent, which keeps the last data
            log.debug("crawl failure details", exc_info=True)
            logs.flush()
            return ("failed", f"{type(error).__name__}: {error}")

    @contextlib.contextmanager
    def _beating(self) -> Iterator[None]:
        """Heartbeats while the crawl runs, from a thread of its own: they stop only if the whole process does."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self._heartbeat):
                self._channel.send("alive")

        thread = threading.Thread(target=beat, name="crawl-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _report(self, done: int, total: int | None, requests: int) -> None:
        self._channel.send("progress", done, total, requests)
        self._send_counts()

    def _send_config_dates(self) -> None:
        if isinstance(self._crawler, KeepsConfigDates):
            dates = self._crawler.config_dates()
            # A hash, not a copy: 100,000 dates kept twice in the child cost it a dict of 5 MiB for a comparison.
            fingerprint = hash(tuple(dates.items()))
            if fingerprint != self._sent_dates:
                self._channel.send("configs", dates)
                self._sent_dates = fingerprint

    def _send_counts(self) -> None:
        if isinstance(self._crawler, CountsRequests):
            self._channel.send("counts", self._crawler.request_counts())
