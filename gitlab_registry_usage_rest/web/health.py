"""The ``/health`` document: is there data, how old is it, and how did the last refresh go. Pure.

``/health`` is public, so it says how many repositories could not be read and what kind of error
ended the last refresh, never which repositories, registry URLs or token scopes were involved: the
refresh log has those.
"""

from __future__ import annotations

from typing import Any

from ..model import Snapshot
from ..state import RefreshStatus


def health(snapshot: Snapshot | None, refresh: RefreshStatus, now: float, max_age: float) -> tuple[int, dict[str, Any]]:
    """The status code (200, or 503 without data or with data older than ``max_age``) and the body."""
    age = None if snapshot is None else max(0.0, now - snapshot.timestamp)
    if snapshot is None:
        status = "no data"
    elif age is not None and age > max_age:
        status = "stale"
    else:
        status = "ok"
    refresh_document: dict[str, Any] = {
        "running": refresh.running,
        "last_started": refresh.started_at,
        "last_duration_seconds": refresh.duration,
        "last_outcome": None if refresh.succeeded is None else ("success" if refresh.succeeded else "failure"),
        # The exception's type only: its message may name repositories, URLs and token scopes.
        "last_error": refresh.error_kind,
        "last_success": refresh.last_success,
        "refreshes": refresh.refreshes,
        "failures": refresh.failures,
    }
    if refresh.running:
        refresh_document["progress"] = {
            "repositories_done": refresh.repositories_done,
            "repositories_total": refresh.repositories_total,
            "requests": refresh.requests,
        }
    document = {
        "status": status,
        "timestamp": None if snapshot is None else snapshot.timestamp,
        "age_seconds": None if age is None else round(age, 3),
        "max_age_seconds": max_age,
        # Repositories the crawl behind this data could not read (one error each): the count only, as
        # their names and errors are in the refresh log. Counted without walking the snapshot.
        "unreadable_repositories": None if snapshot is None else len(snapshot.errors),
        "refresh": refresh_document,
    }
    return (200 if status == "ok" else 503), document
