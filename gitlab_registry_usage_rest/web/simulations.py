"""The cleanup-policy simulator behind ``/cleanup``, ``/groups/<path>/cleanup`` and ``/repositories/<name>/cleanup``.

``Simulations`` keeps the ``CleanupIndex`` of the snapshot being served (built on the first request that needs it,
once, and dropped when a request finds a newer snapshot served), so a request costs one simulation: linear in the
(tag, layer) pairs in scope. It also keeps the last few results, so that the JSON, the CSV and each page of the
HTML view of one policy share one simulation. Every policy is evaluated at the snapshot's own time (the data's
time, not the request's), so one query has one answer in every representation and for as long as the snapshot
is served, and caching it is exact.

A request still holding a snapshot that a refresh has replaced never builds an index for it (which would evict
the new one and hold the old snapshot's memory): it gets ``Superseded`` and answers again from the new snapshot.

``parse_request`` holds the rules for a request's parameters and ``check_simulable`` those for its data;
``cleanup_document`` is the answer as HAL.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from ..cleanup import (
    POLICY_PARAMETERS,
    CleanupIndex,
    CleanupResult,
    Policy,
    PolicyError,
    Scope,
    cleanup_input,
    parse_policy,
)
from ..model import Snapshot
from . import hal
from .humanize import iso_millis

# Scope comes from the path; these are refused rather than ignored, so that nobody believes a cleanup of the
# whole registry was scoped.
SCOPE_PARAMETERS = ("group", "repository")
# What else a cleanup endpoint reads: ``format=csv``, ``view=api`` (the API view in a browser), ``page`` (of the
# page people read). Anything else is refused: ``?keepn=5`` must not silently mean "delete everything".
OTHER_PARAMETERS = ("format", "view", "page")
ALLOWED_PARAMETERS = (*POLICY_PARAMETERS, *OTHER_PARAMETERS)
MAX_NAMED = 5  # unknown parameters named in one message
# Results kept per snapshot: a whole-registry result holds a reference per deleted tag, so only a few.
MAX_RESULTS = 16
Query = tuple[tuple[str, str], ...]

OLD_DATA_FILE = ("This data was read from an older data file: the layers a cleanup frees are unknown until the "
                 "next refresh")


class Superseded(Exception):
    """The snapshot a request holds is no longer the one served: answer again from the current one."""


class Unavailable(Exception):
    """The snapshot cannot answer this simulation until a refresh (503 with Retry-After); ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Simulations:
    """The cleanup index of the snapshot being served (``current``: the snapshot holder's), shared by every request
    thread."""

    def __init__(self, current: Callable[[], Snapshot | None]) -> None:
        self._served = current
        self._lock = threading.Lock()
        self._current: tuple[Snapshot, CleanupIndex] | None = None
        self._results: OrderedDict[tuple[Scope, Query], CleanupResult] = OrderedDict()

    def index(self, snapshot: Snapshot) -> CleanupIndex:
        """``snapshot``'s index; ``Superseded`` if another snapshot is served by now (nothing is built for it),
        ``ValueError`` if it has no layer table (see ``check_simulable``)."""
        with self._lock:
            current = self._current
            if current is not None and current[0] is snapshot:
                return current[1]
            if snapshot is not self._served():
                raise Superseded()
            # The old index (and through it the old snapshot) goes before the new one is built, not after.
            self._current = None
            self._results.clear()
            # Built under the lock: concurrent first requests after a refresh wait for one build, not do many.
            index = CleanupIndex(cleanup_input(snapshot))
            self._current = (snapshot, index)
            return index

    def result(self, snapshot: Snapshot, policy: Policy, scope: Scope, query: Query) -> CleanupResult:
        """What ``policy`` (``query``: its parameters as written, see ``parse_request``) deletes in ``scope``,
        evaluated at the snapshot's time; simulated on the first request for it, then kept while the snapshot is
        served. ``Superseded`` as ``index``."""
        index = self.index(snapshot)
        key = (scope, query)
        with self._lock:
            known = self._results.get(key) if self._current is not None and self._current[1] is index else None
            if known is not None:
                self._results.move_to_end(key)
                return known
        result = index.simulate(policy, snapshot.timestamp, scope)
        with self._lock:
            if self._current is not None and self._current[1] is index:
                self._results[key] = result
                while len(self._results) > MAX_RESULTS:
                    self._results.popitem(last=False)
        return result


def parse_request(args: Mapping[str, str], *, form: bool = False) -> tuple[Policy, Query]:
    """The policy in a request's arguments and its query (the policy parameters as written, in a fixed order: the
    self link's query and the cache key); ``PolicyError`` naming a bad, misplaced or unknown parameter.

    An empty policy parameter is refused (``name_regex=`` is not GitLab's default), except from the page's form
    (``form``), which sends all four fields: there one left empty means no such rule."""
    for name in SCOPE_PARAMETERS:
        if name in args:
            raise PolicyError(name, "the scope is the path: /groups/<path>/cleanup or /repositories/<name>/cleanup")
    unknown = [name for name in args if name not in ALLOWED_PARAMETERS]
    if unknown:
        shown = [name[:40] for name in unknown[:MAX_NAMED]]
        also = f" (also unknown: {', '.join(shown[1:])}{', …' if len(unknown) > MAX_NAMED else ''})" \
            if len(unknown) > 1 else ""
        raise PolicyError(shown[0], f"unknown parameter{also}; the cleanup endpoints take "
                                    f"{', '.join(ALLOWED_PARAMETERS)}")
    asked = {name: value for name, value in args.items() if value or name not in POLICY_PARAMETERS} if form \
        else args
    return parse_policy(asked), tuple((name, asked[name]) for name in POLICY_PARAMETERS if name in asked)


def policy_asked(args: Mapping[str, str]) -> bool:
    """Whether a request names any policy parameter (the page shows the form alone until one does)."""
    return any(name in args for name in POLICY_PARAMETERS)


def check_simulable(snapshot: Snapshot, scope: Scope) -> None:
    """``Unavailable`` where the snapshot cannot say what a cleanup in ``scope`` does: it has no layers (read from
    an older data file), or the scope is one repository whose tags could not be read in the last crawl."""
    if snapshot.layers is None:
        raise Unavailable(OLD_DATA_FILE)
    if scope.repository is not None:
        repository = snapshot.repository(scope.repository)
        if repository is not None and repository.tags is None:
            raise Unavailable(f"The tags of {scope.repository} could not be read in the last crawl: what a cleanup "
                              "would delete there is unknown until a crawl reads them")


def cleanup_document(snapshot: Snapshot, result: CleanupResult, path: str, query: Query,
                     base: str, limit: int | None = None) -> hal.Document:
    """The simulator's answer: the policy as understood, when it was evaluated (the snapshot's time), the scope,
    the totals and one item per affected repository (largest ``freed_size`` first). ``limit`` cuts the items and
    each item's tag list, for pages people read."""
    return {
        "timestamp": snapshot.timestamp,
        "evaluated_at": iso_millis(result.evaluated_at),
        "policy": result.policy.describe(),
        "scope": result.scope.describe(),
        "repositories_in_scope": result.repositories_in_scope,
        "unreadable_repositories": result.unreadable_repositories,
        "tags_in_scope": result.tags_in_scope,
        "tags_deleted": result.tags_deleted,
        "repositories_affected": result.repositories_affected,
        "freed_size": result.freed_size,
        "tags_created_unknown": result.tags_created_unknown,
        "_links": {"self": {"href": path + ("?" + urlencode(query) if query else "")}},
        "_embedded": {"items": [
            {
                "name": entry.name,
                "freed_size": entry.freed_size,
                "tags_deleted": entry.tags_deleted,
                "tags": list(entry.tags[:limit]),
                "_links": {"self": {"href": hal.repository_path(base, entry.name)}},
            }
            for entry in result.repositories[:limit]
        ]},
    }
