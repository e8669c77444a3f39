"""Shared state between the refresh thread and request threads: the current snapshot and refresh status.

The lock is held only to swap or copy a reference, never while crawling or serving, so a request
never waits for a refresh and a refresh never waits for a request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from .model import Snapshot


class SnapshotHolder:
    """The one mutable reference to the snapshot being served; each request reads it once."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = snapshot

    def current(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot

    def replace(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot


@dataclass(frozen=True)
class RefreshStatus:
    """What the last (or running) refresh did, for logs now and for health and metrics endpoints."""

    running: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    succeeded: bool | None = None
    # The whole message, for the log: it may name repositories, registry URLs and token scopes.
    error: str | None = None
    # What /health may show of it: the exception's type, which names nothing of the registry.
    error_kind: str | None = None
    last_success: float | None = None
    refreshes: int = 0
    failures: int = 0
    repositories_done: int = 0
    repositories_total: int | None = None
    requests: int = 0


class RefreshState:
    """Thread-safe holder of the latest ``RefreshStatus``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = RefreshStatus()

    def current(self) -> RefreshStatus:
        with self._lock:
            return self._status

    def started(self, at: float) -> None:
        with self._lock:
            self._status = replace(
                self._status, running=True, started_at=at, repositories_done=0, repositories_total=None, requests=0
            )

    def progress(self, done: int, total: int | None, requests: int) -> None:
        with self._lock:
            self._status = replace(self._status, repositories_done=done, repositories_total=total, requests=requests)

    def finished(self, at: float, error: str | None, error_kind: str | None = None) -> None:
        """The refresh ended: ``error`` is None on success; ``error_kind`` defaults to ``"error"`` on failure."""
        if error is None:
            error_kind = None
        elif error_kind is None:
            error_kind = "error"
        with self._lock:
            status = self._status
            self._status = replace(
                status,
                running=False,
                finished_at=at,
                duration=at - (status.started_at or at),
                succeeded=error is None,
                error=error,
                error_kind=error_kind,
                last_success=at if error is None else status.last_success,
                refreshes=status.refreshes + 1,
                failures=status.failures + (error is not None),
            )
