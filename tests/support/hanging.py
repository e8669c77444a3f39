"""A crawler that really hangs its process, for the tests of the crawler child's watchdog."""

from __future__ import annotations

import re

from gitlab_registry_usage_rest.crawl.base import ProgressCallback
from gitlab_registry_usage_rest.model import Listing


class InterpreterLockHog:
    """Crawls by running a regular expression that backtracks for years inside C code, which holds the
    interpreter lock all the while: every other thread of the process, its heartbeat too, stands still.

    What hostile input meeting a slow path of a parser looks like; pass the class itself as the factory.
    """

    def __init__(self, *, progress: ProgressCallback | None = None) -> None:
        self._progress = progress

    def crawl(self) -> Listing:
        re.fullmatch(r"(a+)+b", "a" * 64)  # 2**64 ways to split the a's, each tried before giving up
        raise AssertionError("the regular expression cannot have finished")

    def cancel(self) -> None:
        """Nothing can interrupt it; only ending the process does."""
