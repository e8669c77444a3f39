"""What every crawler promises: the contract between the crawl side and the refresh thread.

A crawler reads the whole registry into a ``Listing`` (pure data from ``model``); the refresh thread
turns that into a snapshot. Crawlers report progress through a ``ProgressCallback`` and fail with a
``CrawlError`` when nothing worth serving came out of a crawl.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..model import Listing

# (repositories done, repositories in all or None while the catalog is still being read, requests made)
ProgressCallback = Callable[[int, "int | None", int], None]


class CrawlError(Exception):
    """The crawl produced nothing worth serving (the catalog could not be read, or no repository could)."""


class Crawler(Protocol):
    """Reads the whole registry; raises on a failure that leaves nothing worth serving."""

    def crawl(self) -> Listing: ...

    def cancel(self) -> None:
        """Make a crawl in progress end soon (at shutdown)."""
