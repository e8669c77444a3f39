"""A crawler that answers with a pickle which, unpickled, runs a command: what code running in a
compromised crawler process could send."""

from __future__ import annotations

import os
import shlex
from typing import Any

from gitlab_registry_usage_rest.crawl.base import ProgressCallback


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


class CodeRunningCrawler:
    """Its ``crawl`` returns, where a ``Listing`` belongs, an object whose unpickling touches ``marker``."""

    def __init__(self, marker: str, progress: ProgressCallback | None = None) -> None:
        self._marker = marker

    def crawl(self) -> Any:
        return _RunsCode(self._marker)

    def cancel(self) -> None:
        """Nothing to cancel."""
