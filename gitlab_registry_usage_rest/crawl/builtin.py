"""The builtin crawler: the whole registry, concurrently, reusing what earlier crawls learned.

Per crawl: the catalog (all pages), every repository's tags (all pages), one manifest request per
tag. A tag whose digest is unchanged since the last crawl is answered ``304 Not Modified`` and its
image is taken from the cache; child manifests of indexes and schema 1 blob sizes are addressed by
digest, hence immutable, and fetched once for the life of the process.

Where the registry has GitLab's metadata database (``GET /gitlab/v1/`` answers 200; asked once at the start
of each crawl, and logged), tags are listed through GitLab's API instead, a thousand per request with their
digests: a tag at a digest already resolved costs no request at all, any other is fetched by digest (and
verified as by tag), and the tag's ``published`` comes from there. The figures are the same either way.

A tag's creation time is its image config's ``created`` (for an index, the newest of its platforms'),
which costs one blob GET per distinct config digest: configs are immutable too, so their dates are
cached by digest (``config_dates()`` hands them out, ``known_configs`` takes them back after a
restart). A config that cannot be read leaves that tag's ``created`` unknown and adds a warning
naming the repository, tag and digest; it never costs the repository its figures. Warnings are kept
apart from the errors, which each name a repository without figures (``/health`` counts them).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..model import ImageListing, Listing, RepositoryListing
from .base import CrawlError, ProgressCallback
from .client import (
    MAX_CONFIG_SIZE,
    FetchedManifest,
    RegistryClient,
    RegistryError,
    RequestStats,
    TagDetail,
    TokenProvider,
    make_session,
)
from .manifests import (
    ConfigError,
    ConfigRef,
    ImageManifest,
    IndexManifest,
    Manifest,
    ManifestError,
    Schema1Manifest,
    config_created,
    is_digest,
    parse_manifest,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What a tag points at, reduced to what the figures need: every layer of every platform, and where its
    creation time comes from: the configs of its platforms (attestations excluded) and, for schema 1, the
    manifest itself (``created``, or why it could not be read in ``created_error``)."""

    digest: str
    media_type: str
    layers: tuple[tuple[str, int], ...]
    platforms: tuple[str, ...]
    children: tuple[str, ...] = ()
    configs: tuple[ConfigRef, ...] = ()
    created: float | None = None
    created_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Unreadable:
    """A config whose verified bytes hold no readable creation time: remembered, so it is reported, not re-read."""

    reason: str


@dataclass(frozen=True, slots=True)
class _Tag:
    """A tag resolved in this crawl: its image, its creation time, and why that is unknown if it could not be read."""

    image: ResolvedImage
    created: float | None
    warning: str | None
    published: float | None = None


@dataclass(frozen=True, slots=True)
class _Listed:
    """A repository's tags (each once, in listing order), those resolved without a request (GitLab's API gave a
    digest already resolved), and those left for tasks of their own: by name (registry API v2), or by digest."""

    tags: list[str]
    resolved: list[tuple[str, _Tag]]
    pending: list[str] | list[TagDetail]


_CANCEL_CHECK_INTERVAL = 0.25
# Tags resolved per task, one after the other: a future and its callback per tag cost the crawl more CPU than the
# tag's request; a repository of many tags still spreads over the threads, in tasks of this many.
TAGS_PER_TASK = 32
# Repositories per token request: one token for many scopes saves a round trip per repository.
TOKEN_BATCH = 25
# Config dates kept, at most: about 150 bytes each (the digest string is shared with the cached images).
MAX_CONFIGS = 100_000


class _Run:
    """What one crawl has learned so far, and how many repositories are complete."""

    def __init__(self) -> None:
        self.tags: dict[str, list[str]] = {}
        self.images: dict[tuple[str, str], _Tag] = {}
        self.errors: dict[str, str] = {}
        self.done = 0
        self._remaining: dict[str, int] = {}

    def listed(self, repository: str, tags: list[str]) -> list[str]:
        """Record a repository's tags; returns them, each to be resolved."""
        self.tags[repository] = list(dict.fromkeys(tags))
        self._remaining[repository] = len(self.tags[repository])
        self.done += not self.tags[repository]
        return self.tags[repository]

    def resolved(self, repository: str, tag: str, image: _Tag) -> None:
        self.images[(repository, tag)] = image
        self._remaining[repository] -= 1
        self.done += self._remaining[repository] == 0 and repository not in self.errors

    def failed(self, repository: str, error: Exception) -> None:
        """The first failure makes the whole repository unreadable (reported without figures)."""
        if repository not in self.errors:
            self.errors[repository] = f"{repository}: {error}"
            self.done += 1


class BuiltinCrawler:
    """Crawls with ``client`` using up to ``concurrency`` requests in flight.

    ``known_configs`` (config digest -> creation time, as ``config_dates()`` returned them before a restart)
    spares the config requests of images already seen; at most ``max_configs`` dates are kept.
    """

    def __init__(
        self,
        client: RegistryClient,
        concurrency: int = 8,
        progress: ProgressCallback | None = None,
        progress_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        known_configs: Mapping[str, float | None] | None = None,
        max_configs: int = MAX_CONFIGS,
        max_config_size: int = MAX_CONFIG_SIZE,
    ) -> None:
        self._client = client
        self._concurrency = concurrency
        self._progress = progress
        self._progress_interval = progress_interval
        self._clock = clock
        # Immutable by digest, so valid forever; pruned to what the last crawl used.
        self._images: dict[str, ResolvedImage] = {}
        self._children: dict[str, ResolvedImage] = {}
        self._blob_sizes: dict[str, int] = {}
        self._layers: dict[tuple[str, int], tuple[str, int]] = {}  # each cached image's layers, one object each
        self._tag_digests: dict[tuple[str, str], str] = {}
        # Manifest digests being fetched for a tag GitLab's API listed, so that tags sharing one ask once.
        self._manifests_lock = threading.Lock()
        self._manifest_fetching: dict[str, threading.Lock] = {}
        # Config digest -> creation time; failed reads are not kept, so the next crawl tries again.
        self._max_configs = max_configs
        self._max_config_size = max_config_size
        self._configs: dict[str, float | None | _Unreadable] = {}
        self._configs_lock = threading.Lock()
        self._config_fetching: dict[str, threading.Lock] = {}
        for digest, created in (known_configs or {}).items():
            if len(self._configs) >= max_configs:
                break
            if is_digest(digest) and (created is None or isinstance(created, float | int)
                                      and not isinstance(created, bool) and math.isfinite(created)):
                self._configs[digest] = None if created is None else float(created)
        self._cancelled = threading.Event()

    @classmethod
    def connect(
        cls,
        registry_base_url: str,
        gitlab_base_url: str,
        username: str,
        access_token: str,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        progress: ProgressCallback | None = None,
        progress_interval: float = 10.0,
        retries: int = 3,
        known_configs: Mapping[str, float | None] | None = None,
    ) -> BuiltinCrawler:
        """A crawler with its own pooled session, sized for ``concurrency`` requests in flight."""
        session, stats = make_session(concurrency, retries), RequestStats()
        tokens = TokenProvider(session, gitlab_base_url, username, access_token, timeout, stats)
        client = RegistryClient(registry_base_url, tokens, session, timeout, stats)
        return cls(client, concurrency, progress, progress_interval, known_configs=known_configs)

    def request_counts(self) -> dict[str, int]:
        """Requests made so far by outcome, for logs and (through the crawler process) the metrics."""
        return self._client.stats.snapshot()

    @property
    def config_requests(self) -> int:
        """Config blob GETs made so far (also counted, by outcome, in ``request_counts``)."""
        return self._client.config_requests

    def config_dates(self) -> dict[str, float | None]:
        """The creation time of every config the last crawl used, by digest: to keep across restarts and give
        back as ``known_configs``. Configs whose creation time could not be read are left out (read again)."""
        with self._configs_lock:
            return {digest: created for digest, created in self._configs.items()
                    if not isinstance(created, _Unreadable)}

    def close(self) -> None:
        self._client.close()

    def cancel(self) -> None:
        """Abandon the crawl in progress (at shutdown): queued requests are dropped, it raises CrawlError."""
        self._cancelled.set()

    def crawl(self) -> Listing:
        started, requests_before = self._clock(), self._client.stats.total
        # Decided once per crawl: a registry that gains (or loses) its metadata database is used as it is now.
        gitlab_v1, reason = self._client.gitlab_v1_available()
        if gitlab_v1:
            log.info("crawl: listing tags through GitLab's metadata-database API: %s", reason)
        else:
            log.info("crawl: listing tags through the registry API v2: %s", reason)
        catalog: list[str] = []
        try:
            for page in self._client.catalog():
                if self._cancelled.is_set():
                    raise CrawlError("cancelled")
                catalog.extend(page)
        except RegistryError as error:
            raise CrawlError(f"the catalog could not be read: {error}") from None
        catalog = list(dict.fromkeys(catalog))
        run = _Run()
        pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="crawl")
        # Completed work arrives through a queue: waiting on the set of pending futures instead costs
        # time proportional to that set at every completion, quadratic over a large registry.
        completed: queue.SimpleQueue[tuple[Future[Any], str]] = queue.SimpleQueue()

        def submit(name: str, work: Callable[..., Any], *args: object) -> None:
            future = pool.submit(work, *args)
            future.add_done_callback(lambda done: completed.put((done, name)))

        try:
            for first in range(0, len(catalog), TOKEN_BATCH):
                pool.submit(self._client.prefetch_tokens, catalog[first:first + TOKEN_BATCH])
            for name in catalog:
                submit(name, self._list_repository, name, gitlab_v1)
            outstanding, last_report = len(catalog), started
            while outstanding:
                if self._cancelled.is_set():
                    raise CrawlError("cancelled")
                try:
                    future, name = completed.get(timeout=_CANCEL_CHECK_INTERVAL)
                except queue.Empty:
                    continue
                outstanding -= 1
                try:
                    result = future.result()
                except (RegistryError, ManifestError) as error:
                    run.failed(name, error)
                else:
                    if isinstance(result, _Listed):
                        run.listed(name, result.tags)
                        for first in range(0, len(result.pending), TAGS_PER_TASK):
                            submit(name, self._resolve_tags, name, result.pending[first:first + TAGS_PER_TASK])
                            outstanding += 1
                        result = result.resolved
                    for each, resolved in result:
                        run.resolved(name, each, resolved)
                now = self._clock()
                if now - last_report >= self._progress_interval or not outstanding:
                    self._report(run.done, len(catalog), started, requests_before)
                    last_report = now
        finally:
            # On cancellation, drop what is queued; what is in flight ends with its own timeout.
            pool.shutdown(wait=not self._cancelled.is_set(), cancel_futures=True)

        if catalog and len(run.errors) == len(catalog):
            raise CrawlError(f"no repository could be read; the first error: {next(iter(run.errors.values()))}")
        listing = self._listing(catalog, run.tags, run.images, run.errors)
        if listing.warnings:
            # One argument per warning: the text log escapes arguments, which carry the registry's names.
            log.warning("%d tags without a creation time:" + "\n  %s" * len(listing.warnings),
                        len(listing.warnings), *listing.warnings)
        return listing

    def _listing(self, catalog: list[str], tags: dict[str, list[str]],
                 images: dict[tuple[str, str], _Tag], errors: dict[str, str]) -> Listing:
        repositories = []
        layer_sizes: dict[str, int] = {}
        warnings = []
        for name in catalog:
            if name in errors:
                repositories.append(RepositoryListing(name, None))
                continue
            listed = []
            for tag in tags[name]:
                resolved = images[(name, tag)]
                image = resolved.image
                layer_sizes.update(image.layers)
                listed.append(ImageListing(
                    tag=tag,
                    layers=tuple(digest for digest, _ in image.layers),
                    digest=image.digest,
                    media_type=image.media_type,
                    platforms=image.platforms,
                    created=resolved.created,
                    published=resolved.published,
                ))
                if resolved.warning is not None:
                    warnings.append(resolved.warning)
            repositories.append(RepositoryListing(name, tuple(listed)))
        self._prune({key: resolved.image for key, resolved in images.items()})
        return Listing(tuple(repositories), layer_sizes, tuple(errors[name] for name in catalog if name in errors),
                       tuple(warnings))

    def _prune(self, images: dict[tuple[str, str], ResolvedImage]) -> None:
        """Forget what no tag uses any more, so the caches follow the registry instead of growing."""
        used = {image.digest: image for image in images.values()}
        children = {child for image in used.values() for child in image.children}
        layers = {layer for image in used.values() for layer, _ in image.layers}
        configs = {config.digest for image in used.values() for config in image.configs}
        self._tag_digests = {key: image.digest for key, image in images.items()}
        self._images = used
        self._children = {digest: child for digest, child in self._children.items() if digest in children}
        self._blob_sizes = {digest: size for digest, size in self._blob_sizes.items() if digest in layers}
        self._layers = {layer: layer for image in used.values() for layer in image.layers}
        with self._configs_lock:
            self._configs = {digest: created for digest, created in self._configs.items() if digest in configs}

    def _report(self, done: int, total: int, started: float, requests_before: int) -> None:
        requests = self._client.stats.total - requests_before
        elapsed = max(self._clock() - started, 1e-9)
        if self._progress is not None:
            self._progress(done, total, requests)
        eta = (total - done) * elapsed / done if done else float("nan")
        log.info(
            "crawl progress: %d/%d repositories, %d requests, %.0f requests/s, ETA %s",
            done, total, requests, requests / elapsed, "unknown" if eta != eta else f"{eta:.0f}s",
        )

    def _list_repository(self, repository: str, gitlab_v1: bool) -> _Listed:
        """A repository's tags; those that need a request are left for tasks queued after every listing, so that
        the tag lists come first, as the progress reports count them."""
        if not gitlab_v1:
            tags = list(dict.fromkeys(self._client.tags(repository)))
            return _Listed(tags, [], tags)
        # GitLab's tag list: every tag at a digest already resolved is resolved from the cache.
        details = self._client.tag_details(repository)
        resolved, unseen = [], []
        for detail in details:
            image = self._images.get(detail.digest)
            if image is None:
                unseen.append(detail)
            else:
                resolved.append((detail.name, self._tag(repository, detail.name, image, detail.published)))
        return _Listed([detail.name for detail in details], resolved, unseen)

    def _resolve_tags(self, repository: str, tags: list[str] | list[TagDetail]) -> list[tuple[str, _Tag]]:
        """Tags of one repository, one after the other: by name, or (listed by GitLab's API) by digest."""
        resolved = []
        for tag in tags:
            if self._cancelled.is_set():
                raise CrawlError("cancelled")
            if isinstance(tag, str):
                resolved.append((tag, self._resolve_tag(repository, tag)))
            else:
                resolved.append((tag.name, self._resolve_detail(repository, tag)))
        return resolved

    def _resolve_tag(self, repository: str, tag: str) -> _Tag:
        return self._tag(repository, tag, self._resolve_image(repository, tag))

    def _resolve_detail(self, repository: str, detail: TagDetail) -> _Tag:
        """A tag GitLab's API listed at a digest not resolved before: its manifest, fetched by that digest."""
        return self._tag(repository, detail.name, self._image_by_digest(repository, detail.digest), detail.published)

    def _image_by_digest(self, repository: str, digest: str) -> ResolvedImage:
        """The image of a manifest digest: cached, being fetched for another tag (then waited for), or fetched now."""
        while True:
            with self._manifests_lock:
                image = self._images.get(digest)
                if image is not None:
                    return image
                fetching = self._manifest_fetching.get(digest)
                if fetching is None:
                    self._manifest_fetching[digest] = fetching = _held()
                    break
            # Tags pushed together share a digest: one request serves them all. If it fails, this tag tries itself.
            _wait(fetching)
        try:
            fetched = self._client.manifest(repository, digest)
            assert fetched is not None
            if fetched.digest != digest and fetched.digest.partition(":")[0] == digest.partition(":")[0]:
                raise RegistryError(f"manifest {repository}@{digest}: the registry served {fetched.digest}")
            return self._image(repository, fetched)
        finally:
            with self._manifests_lock:
                del self._manifest_fetching[digest]
            fetching.release()

    def _tag(self, repository: str, tag: str, image: ResolvedImage, published: float | None = None) -> _Tag:
        created, warning = self._created(repository, image)
        return _Tag(image, created, None if warning is None else f"{repository}:{tag}: created unknown: {warning}",
                    published)

    def _resolve_image(self, repository: str, tag: str) -> ResolvedImage:
        known = self._tag_digests.get((repository, tag))
        fetched = self._client.manifest(repository, tag, known_digest=known if known in self._images else None)
        if fetched is None:
            assert known is not None
            return self._images[known]
        return self._image(repository, fetched)

    def _image(self, repository: str, fetched: FetchedManifest) -> ResolvedImage:
        """The image of a manifest just fetched: from the cache if its digest was resolved before."""
        cached = self._images.get(fetched.digest)
        if cached is not None:
            return cached
        manifest = parse_manifest(fetched.body, fetched.content_type)
        image = self._resolve(repository, fetched.digest, manifest)
        # One (digest, size) pair per distinct layer, shared by every image that has it, not one per reference:
        # parsed anew from each manifest, 100,000 tags of 8 layers kept over 100 MiB of copies.
        layers = tuple(self._layers.setdefault(layer, layer) for layer in image.layers)
        image = dataclasses.replace(image, layers=layers, media_type=sys.intern(image.media_type))
        self._images[fetched.digest] = image
        return image

    def _resolve(self, repository: str, digest: str, manifest: Manifest) -> ResolvedImage:
        if isinstance(manifest, ImageManifest):
            own = () if manifest.config is None else (manifest.config,)
            return ResolvedImage(digest, manifest.media_type, manifest.layers, (), configs=own)
        if isinstance(manifest, Schema1Manifest):
            sizes = tuple((blob, self._blob_size(repository, blob)) for blob in manifest.blobs)
            return ResolvedImage(digest, manifest.media_type, sizes, (), created=manifest.created,
                                 created_error=manifest.created_error)
        # A multi-platform tag holds the union of its platforms' layers (attestations included), and was created
        # when its newest platform was (attestations, which are no platform, excluded).
        union: dict[str, int] = {}
        platforms = []
        configs: dict[ConfigRef, None] = {}
        inline: list[float] = []
        inline_error = None
        for child in manifest.children:
            resolved = self._child(repository, child.digest)
            for layer, size in resolved.layers:
                union.setdefault(layer, size)
            if child.platform is not None:
                platforms.append(child.platform)
                configs.update(dict.fromkeys(resolved.configs))
                inline.extend([resolved.created] if resolved.created is not None else [])
                inline_error = inline_error or resolved.created_error
        children = tuple(child.digest for child in manifest.children)
        return ResolvedImage(digest, manifest.media_type, tuple(union.items()), tuple(platforms), children,
                             tuple(configs), max(inline, default=None), inline_error)

    def _child(self, repository: str, digest: str) -> ResolvedImage:
        cached = self._children.get(digest)
        if cached is not None:
            return cached
        fetched = self._client.manifest(repository, digest)
        assert fetched is not None
        manifest = parse_manifest(fetched.body, fetched.content_type)
        if isinstance(manifest, IndexManifest):
            raise ManifestError(f"index {digest} nests another index, which registries do not push")
        child = self._resolve(repository, digest, manifest)
        self._children[digest] = child
        return child

    def _created(self, repository: str, image: ResolvedImage) -> tuple[float | None, str | None]:
        """The image's creation time (the newest of its platforms'), or why it is unknown."""
        if image.created_error is not None:
            return None, image.created_error
        dates = [] if image.created is None else [image.created]
        for config in image.configs:
            try:
                created = self._config_created(repository, config)
            except (RegistryError, ConfigError) as error:
                # Unknown, rather than the newest of the others: this one may be the newest.
                return None, str(error)
            if created is not None:
                dates.append(created)
        return max(dates, default=None), None

    def _config_created(self, repository: str, config: ConfigRef) -> float | None:
        """A config's creation time: cached, being read by another thread (then waited for), or read now."""
        known = self._configs.get(config.digest, _UNKNOWN)  # one dict lookup is atomic: no lock for a cached date
        if known is not _UNKNOWN and not isinstance(known, _Unreadable):
            return known  # type: ignore[return-value]
        while True:
            with self._configs_lock:
                if config.digest in self._configs:
                    known = self._configs[config.digest]
                    if isinstance(known, _Unreadable):
                        raise ConfigError(f"config {repository}@{config.digest}: {known.reason}")
                    return known
                fetching = self._config_fetching.get(config.digest)
                if fetching is None:
                    self._config_fetching[config.digest] = fetching = _held()
                    break
            # Another tag shares this config: its answer serves both. If that read fails, this tag tries itself.
            _wait(fetching)
        try:
            return self._read_config(repository, config)
        finally:
            with self._configs_lock:
                del self._config_fetching[config.digest]
            fetching.release()

    def _read_config(self, repository: str, config: ConfigRef) -> float | None:
        if config.size is not None and config.size > self._max_config_size and is_digest(config.digest):
            # The manifest says so; the digest would not match any smaller body. Refused without a request.
            raise ConfigError(f"config {repository}@{config.digest}: {config.size} bytes, more than the "
                              f"{self._max_config_size} a config may have; not read")
        # Transport and verification failures raise here and are not remembered: they may pass.
        body = self._client.config_blob(repository, config.digest, self._max_config_size)
        try:
            created: float | None | _Unreadable = config_created(body)
        except ConfigError as error:
            created = _Unreadable(str(error))  # verified bytes: as unreadable next time, so not read again
        with self._configs_lock:
            if len(self._configs) < self._max_configs:
                # When full, new dates are not kept rather than old ones evicted: crawls walk the registry in the
                # same order every time, and an LRU would evict exactly what the next crawl is about to need.
                self._configs[config.digest] = created
        if isinstance(created, _Unreadable):
            raise ConfigError(f"config {repository}@{config.digest}: {created.reason}")
        return created

    def _blob_size(self, repository: str, blob: str) -> int:
        size = self._blob_sizes.get(blob)
        if size is None:
            size = self._client.blob_size(repository, blob)
            self._blob_sizes[blob] = size
        return size


_UNKNOWN = object()


def _held() -> threading.Lock:
    """A marker for work in flight: held until it ends, so that others wait for it by taking it (a lock is much
    cheaper to make than an Event)."""
    lock = threading.Lock()
    lock.acquire()
    return lock


def _wait(marker: threading.Lock) -> None:
    with marker:
        pass
