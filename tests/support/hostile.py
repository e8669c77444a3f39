"""Crawlers whose answers a compromised crawler process could send: a pickle which, unpickled, runs a command;
config dates that are no dates."""

from __future__ import annotations

import os
import shlex
from typing import Any

from gitlab_registry_usage_rest.crawl.base import ProgressCallback
from gitlab_registry_usage_rest.model import Listing


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class CodeRunningCrawler:
    """Its ``crawl`` returns a ``Listing`` whose error, where a string belongs, is an object whose unpickling
    touches ``marker``."""

    def __init__(self, marker: str, progress: ProgressCallback | None = None) -> None:
        self._marker = marker

    def crawl(self) -> Listing:
        return Listing((), {}, errors=(_RunsCode(self._marker),))  # type: ignore[arg-type]

    def cancel(self) -> None:
        """Nothing to cancel."""


class WrongDatesCrawler:
    """Crawls nothing and hands out config dates that are no dates: a string where a time belongs."""

    def __init__(self, progress: ProgressCallback | None = None) -> None:
        self._progress = progress

    def crawl(self) -> Listing:
        return Listing((), {})

    def config_dates(self) -> dict[str, Any]:
        return {"sha256:" + "c" * 64: "1970-01-01"}

    def cancel(self) -> None:
        """Nothing to cancel."""
