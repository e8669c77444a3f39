"""The builtin crawler: the whole registry, concurrently, reusing what earlier crawls learned.

Per crawl: the catalog (all pages), every repository's tags (all pages), one manifest request per
tag. A tag whose digest is unchanged since the last crawl is answered ``304 Not Modified`` and its
image is taken from the cache; child manifests of indexes and schema 1 blob sizes are addressed by
digest, hence immutable, and fetched once for the life of the process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..model import ImageListing, Listing, RepositoryListing
from .base import CrawlError, ProgressCallback
from .client import RegistryClient, RegistryError, RequestStats, TokenProvider, make_session
from .manifests import ImageManifest, IndexManifest, Manifest, ManifestError, Schema1Manifest, parse_manifest

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """What a tag points at, reduced to what the figures need: every layer of every platform."""

    digest: str
    media_type: str
    layers: tuple[tuple[str, int], ...]
    platforms: tuple[str, ...]
    children: tuple[str, ...] = ()


_CANCEL_CHECK_INTERVAL = 0.25
# Repositories per token request: one token for many scopes saves a round trip per repository.
TOKEN_BATCH = 25


class _Run:
    """What one crawl has learned so far, and how many repositories are complete."""

    def __init__(self) -> None:
        self.tags: dict[str, list[str]] = {}
        self.images: dict[tuple[str, str], ResolvedImage] = {}
        self.errors: dict[str, str] = {}
        self.done = 0
        self._remaining: dict[str, int] = {}

    def listed(self, repository: str, tags: list[str]) -> list[str]:
        """Record a repository's tags; returns them, each to be resolved."""
        self.tags[repository] = list(dict.fromkeys(tags))
        self._remaining[repository] = len(self.tags[repository])
        self.done += not self.tags[repository]
        return self.tags[repository]

    def resolved(self, repository: str, tag: str, image: ResolvedImage) -> None:
        self.images[(repository, tag)] = image
        self._remaining[repository] -= 1
        self.done += self._remaining[repository] == 0 and repository not in self.errors

    def failed(self, repository: str, error: Exception) -> None:
        """The first failure makes the whole repository unreadable (reported without figures)."""
        if repository not in self.errors:
            self.errors[repository] = f"{repository}: {error}"
            self.done += 1


class BuiltinCrawler:
    """Crawls with ``client`` using up to ``concurrency`` requests in flight."""

    def __init__(
        self,
        client: RegistryClient,
        concurrency: int = 8,
        progress: ProgressCallback | None = None,
        progress_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._concurrency = concurrency
        self._progress = progress
        self._progress_interval = progress_interval
        self._clock = clock
        # Immutable by digest, so valid forever; pruned to what the last crawl used.
        self._images: dict[str, ResolvedImage] = {}
        self._children: dict[str, ImageManifest] = {}
        self._blob_sizes: dict[str, int] = {}
        self._tag_digests: dict[tuple[str, str], str] = {}
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
    ) -> BuiltinCrawler:
        """A crawler with its own pooled session, sized for ``concurrency`` requests in flight."""
        session, stats = make_session(concurrency, retries), RequestStats()
        tokens = TokenProvider(session, gitlab_base_url, username, access_token, timeout, stats)
        client = RegistryClient(registry_base_url, tokens, session, timeout, stats)
        return cls(client, concurrency, progress, progress_interval)

    def request_counts(self) -> dict[str, int]:
        """Requests made so far by outcome, for logs and (through the crawler process) the metrics."""
        return self._client.stats.snapshot()

    def close(self) -> None:
        self._client.close()

    def cancel(self) -> None:
        """Abandon the crawl in progress (at shutdown): queued requests are dropped, it raises CrawlError."""
        self._cancelled.set()

    def crawl(self) -> Listing:
        started, requests_before = self._clock(), self._client.stats.total
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
        completed: queue.SimpleQueue[tuple[Future[Any], str, str | None]] = queue.SimpleQueue()

        def submit(name: str, tag: str | None, work: Callable[..., Any], *args: str) -> None:
            future = pool.submit(work, *args)
            future.add_done_callback(lambda done: completed.put((done, name, tag)))

        try:
            for first in range(0, len(catalog), TOKEN_BATCH):
                pool.submit(self._client.prefetch_tokens, catalog[first:first + TOKEN_BATCH])
            for name in catalog:
                submit(name, None, self._client.tags, name)
            outstanding, last_report = len(catalog), started
            while outstanding:
                if self._cancelled.is_set():
                    raise CrawlError("cancelled")
                try:
                    future, name, tag = completed.get(timeout=_CANCEL_CHECK_INTERVAL)
                except queue.Empty:
                    continue
                outstanding -= 1
                try:
                    result = future.result()
                except (RegistryError, ManifestError) as error:
                    run.failed(name, error)
                else:
                    if tag is None:
                        for each in run.listed(name, result):
                            submit(name, each, self._resolve_tag, name, each)
                            outstanding += 1
                    else:
                        run.resolved(name, tag, result)
                now = self._clock()
                if now - last_report >= self._progress_interval or not outstanding:
                    self._report(run.done, len(catalog), started, requests_before)
                    last_report = now
        finally:
            # On cancellation, drop what is queued; what is in flight ends with its own timeout.
            pool.shutdown(wait=not self._cancelled.is_set(), cancel_futures=True)

        if catalog and len(run.errors) == len(catalog):
            raise CrawlError(f"no repository could be read; the first error: {next(iter(run.errors.values()))}")
        return self._listing(catalog, run.tags, run.images, run.errors)

    def _listing(self, catalog: list[str], tags: dict[str, list[str]],
                 images: dict[tuple[str, str], ResolvedImage], errors: dict[str, str]) -> Listing:
        repositories = []
        layer_sizes: dict[str, int] = {}
        for name in catalog:
            if name in errors:
                repositories.append(RepositoryListing(name, None))
                continue
            listed = []
            for tag in tags[name]:
                image = images[(name, tag)]
                layer_sizes.update(image.layers)
                listed.append(ImageListing(
                    tag=tag,
                    layers=tuple(digest for digest, _ in image.layers),
                    digest=image.digest,
                    media_type=image.media_type,
                    platforms=image.platforms,
                ))
            repositories.append(RepositoryListing(name, tuple(listed)))
        self._prune(images)
        return Listing(tuple(repositories), layer_sizes, tuple(errors[name] for name in catalog if name in errors))

    def _prune(self, images: dict[tuple[str, str], ResolvedImage]) -> None:
        """Forget what no tag uses any more, so the caches follow the registry instead of growing."""
        used = {image.digest: image for image in images.values()}
        children = {child for image in used.values() for child in image.children}
        layers = {layer for image in used.values() for layer, _ in image.layers}
        self._tag_digests = {key: image.digest for key, image in images.items()}
        self._images = used
        self._children = {digest: child for digest, child in self._children.items() if digest in children}
        self._blob_sizes = {digest: size for digest, size in self._blob_sizes.items() if digest in layers}

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

    def _resolve_tag(self, repository: str, tag: str) -> ResolvedImage:
        known = self._tag_digests.get((repository, tag))
        fetched = self._client.manifest(repository, tag, known_digest=known if known in self._images else None)
        if fetched is None:
            assert known is not None
            return self._images[known]
        cached = self._images.get(fetched.digest)
        if cached is not None:
            return cached
        manifest = parse_manifest(fetched.body, fetched.content_type)
        image = self._resolve(repository, fetched.digest, manifest)
        self._images[fetched.digest] = image
        return image

    def _resolve(self, repository: str, digest: str, manifest: Manifest) -> ResolvedImage:
        if isinstance(manifest, ImageManifest):
            return ResolvedImage(digest, manifest.media_type, manifest.layers, ())
        if isinstance(manifest, Schema1Manifest):
            sizes = tuple((blob, self._blob_size(repository, blob)) for blob in manifest.blobs)
            return ResolvedImage(digest, manifest.media_type, sizes, ())
        # A multi-platform tag holds the union of its platforms' layers (attestations included).
        union: dict[str, int] = {}
        platforms = []
        for child in manifest.children:
            for layer, size in self._child(repository, child.digest).layers:
                union.setdefault(layer, size)
            if child.platform is not None:
                platforms.append(child.platform)
        children = tuple(child.digest for child in manifest.children)
        return ResolvedImage(digest, manifest.media_type, tuple(union.items()), tuple(platforms), children)

    def _child(self, repository: str, digest: str) -> ImageManifest:
        cached = self._children.get(digest)
        if cached is not None:
            return cached
        fetched = self._client.manifest(repository, digest)
        assert fetched is not None
        manifest = parse_manifest(fetched.body, fetched.content_type)
        if isinstance(manifest, IndexManifest):
            raise ManifestError(f"index {digest} nests another index, which registries do not push")
        if isinstance(manifest, Schema1Manifest):
            manifest = ImageManifest(manifest.media_type, tuple(
                (blob, self._blob_size(repository, blob)) for blob in manifest.blobs))
        self._children[digest] = manifest
        return manifest

    def _blob_size(self, repository: str, blob: str) -> int:
        size = self._blob_sizes.get(blob)
        if size is None:
            size = self._client.blob_size(repository, blob)
            self._blob_sizes[blob] = size
        return size
