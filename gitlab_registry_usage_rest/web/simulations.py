"""The cleanup-policy simulator behind ``/cleanup``, ``/groups/<path>/cleanup`` and ``/repositories/<name>/cleanup``.

``Simulations`` keeps the ``CleanupIndex`` of the current snapshot (built on the first request that needs it, once,
and replaced with the snapshot), so a request costs one simulation: linear in the (tag, layer) pairs in scope. It
also keeps the last few results, so that the JSON, the CSV and each page of the HTML view of one policy share one
simulation. ``cleanup_document`` is the answer as HAL.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import urlencode

from ..cleanup import CleanupIndex, CleanupResult, Policy, PolicyError, Scope, cleanup_input, parse_policy
from ..model import Snapshot
from . import hal

# The query parameters of a policy, in the order self links and cache keys list them.
POLICY_PARAMETERS = ("keep_n", "older_than", "name_regex", "name_regex_keep")
# Scope comes from the path; these would be read by ``cleanup.parse_scope``, and are refused rather than ignored,
# so that nobody believes a cleanup of the whole registry was scoped.
_SCOPE_PARAMETERS = ("group", "repository")
# Results kept per snapshot: a whole-registry result holds a reference per deleted tag, so only a few.
MAX_RESULTS = 16
Query = tuple[tuple[str, str], ...]


class Simulations:
    """The cleanup index of one snapshot (the latest asked for), shared by every request thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: tuple[Snapshot, CleanupIndex] | None = None
        self._results: OrderedDict[tuple[Scope, Query], CleanupResult] = OrderedDict()

    def index(self, snapshot: Snapshot) -> CleanupIndex:
        """``snapshot``'s index; ``ValueError`` if it has no layer table (see ``has_layers``)."""
        with self._lock:
            current = self._current
            if current is not None and current[0] is snapshot:
                return current[1]
            # Built under the lock: concurrent first requests after a refresh wait for one build, not do many.
            index = CleanupIndex(cleanup_input(snapshot))
            self._current = (snapshot, index)
            self._results.clear()
            return index

    def result(self, snapshot: Snapshot, policy: Policy, scope: Scope, query: Query, now: float) -> CleanupResult:
        """What ``policy`` (``query``: its parameters as written, ``policy_query``) deletes in ``scope``; simulated
        at ``now`` on the first request for it in this snapshot, then kept while the snapshot is served."""
        index = self.index(snapshot)
        key = (scope, query)
        with self._lock:
            known = self._results.get(key) if self._current is not None and self._current[1] is index else None
            if known is not None:
                self._results.move_to_end(key)
                return known
        result = index.simulate(policy, now, scope)
        with self._lock:
            if self._current is not None and self._current[1] is index:
                self._results[key] = result
                while len(self._results) > MAX_RESULTS:
                    self._results.popitem(last=False)
        return result


def has_layers(snapshot: Snapshot) -> bool:
    """Whether the snapshot can be simulated on: one read from an older data file kept no layers."""
    return snapshot.layers is not None


def parse_request(args: Mapping[str, str]) -> Policy:
    """The policy in a request's arguments; ``PolicyError`` naming the bad parameter."""
    for name in _SCOPE_PARAMETERS:
        if name in args:
            raise PolicyError(name, "the scope is the path: /groups/<path>/cleanup or /repositories/<name>/cleanup")
    return parse_policy(args)


def policy_query(args: Mapping[str, str]) -> Query:
    """The policy parameters given, as written, in a fixed order: the self link's query and the cache key."""
    return tuple((name, args[name]) for name in POLICY_PARAMETERS if name in args)


def cleanup_document(snapshot: Snapshot, result: CleanupResult, path: str, query: Query,
                     base: str, limit: int | None = None) -> hal.Document:
    """The simulator's answer: the policy as understood, the scope, the totals and one item per affected repository
    (largest ``freed_size`` first). ``limit`` cuts the items and each item's tag list, for pages people read."""
    return {
        "timestamp": snapshot.timestamp,
        "policy": result.policy.describe(),
        "scope": result.scope.describe(),
        "repositories_in_scope": result.repositories_in_scope,
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
