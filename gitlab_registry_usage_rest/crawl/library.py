"""Crawler backed by the gitlab-registry-usage library (``GitLabRegistry``), the original's engine.

The library calls ``requests.get``/``head``/``delete`` without a timeout and has no parameter for one, so a
registry that accepts a connection and never answers would hold its crawl, and the crawler process, forever.
For the length of a crawl, its low-level module's ``requests`` is replaced by ``_TimedRequests``, which makes
the same calls with ``timeout``: the narrowest patch there is (``requests`` itself, and every other user of it
in the process, stay untouched), and one that the library's next version can make obsolete without harm.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import requests
from gitlab_registry_usage.registry import low_level_api
from gitlab_registry_usage.registry.high_level_api import GitLabRegistry

from ..model import ImageListing, Listing, RepositoryListing
from .base import ProgressCallback

# Library crawls in one process take turns: the patched module attribute is shared by all of them.
_patching = threading.Lock()


class _TimedRequests:
    """Stands in for the ``requests`` module in the library's low-level API: the same calls, with a timeout."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return requests.get(url, **self._timed(kwargs))

    def head(self, url: str, **kwargs: Any) -> requests.Response:
        return requests.head(url, **self._timed(kwargs))

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return requests.delete(url, **self._timed(kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(requests, name)  # anything else the library might use, unchanged

    def _timed(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"timeout": self._timeout, **kwargs}


@contextlib.contextmanager
def _request_timeout(timeout: float) -> Iterator[None]:
    """Every request the library makes meanwhile gives up after ``timeout`` seconds without an answer."""
    with _patching:
        original = low_level_api.requests
        low_level_api.requests = _TimedRequests(timeout)
        try:
            yield
        finally:
            low_level_api.requests = original


class LibraryCrawler:
    """Crawls with ``GitLabRegistry.update()`` and converts its dictionaries into a ``Listing``."""

    def __init__(self, gitlab_base_url: str, registry_base_url: str, username: str, access_token: str,
                 progress: ProgressCallback | None = None, *, timeout: float = 30.0) -> None:
        # ``progress`` is accepted as every crawler factory passes it, but the library reports none.
        self._args = (gitlab_base_url, registry_base_url, username, access_token)
        self._timeout = timeout

    def cancel(self) -> None:
        """The library cannot be interrupted; the refresh thread is a daemon and ends with the process."""

    def crawl(self) -> Listing:
        registry = GitLabRegistry(*self._args)
        with _request_timeout(self._timeout):
            registry.update()
        repositories = []
        errors = []
        for name in registry.registry_catalog:
            tag_layers = registry.repository_layers.get(name)
            if tag_layers is None:
                errors.append(f"{name}: its tags or manifests could not be read")
                repositories.append(RepositoryListing(name, None))
                continue
            images = tuple(ImageListing(tag, tuple(dict.fromkeys(layers))) for tag, layers in tag_layers.items())
            repositories.append(RepositoryListing(name, images))
        return Listing(tuple(repositories), dict(registry.layer_sizes), tuple(errors))
