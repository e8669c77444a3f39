"""The history endpoints: ``/history``, ``/repositories/<name>/history``, ``/groups/<path>/history``, and
``?window=`` (growth) on ``/repositories`` and ``/groups``.

Points come from the history file (``History``), read on the request thread's own connection; figures now
come from the snapshot. Windows: ``?since=`` and ``?until=`` take a duration back from now (``30d``, ``12h``,
``2 weeks``) or an ISO 8601 date or time (UTC unless it says otherwise); ``since`` defaults to 30 days.
``?window=7d`` ranks by growth: disk size in the snapshot minus the disk size in force one window before the
snapshot (a repository or group that did not exist then counts from zero), so the ranking belongs to the
snapshot and is rendered once per snapshot, as the other listings are.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from flask import Flask, Response, current_app, jsonify, request

from ..config import parse_timedelta
from ..growth import Point, days_until_full, growth_per_day
from ..history import GROUP, REPOSITORY, History
from ..model import Snapshot
from ..state import SnapshotHolder
from . import hal
from .humanize import iso_millis
from .resources import _raw_subpath, _token_required
from .responses import RenderCache, json_error, respond, wants_html
from .tokens import VerifiedTokens

DEFAULT_SINCE = datetime.timedelta(days=30)
MAX_DURATION = datetime.timedelta(days=100 * 366)
HISTORY = "history"
GROWTH_SORT_KEYS = (*hal.GROUP_SORT_KEYS, "growth")
# Growth figures kept per snapshot: (kind, window) -> name -> growth.
_GROWTH_CACHE_SIZE = 8

Document = dict[str, Any]


def parse_moment(args: Mapping[str, str], name: str, now: float, default: datetime.timedelta | None) -> float:
    """``?since=`` / ``?until=``: a duration back from ``now`` or an ISO date; seconds since the epoch."""
    text = args.get(name)
    if text is None:
        return now - (default or datetime.timedelta()).total_seconds()
    if len(text) > 64:
        raise hal.QueryError(f"{name} is too long")
    try:
        return now - _duration(text).total_seconds()
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise hal.QueryError(f"{name} must be a duration such as 30d, 12h, 2 weeks, or an ISO 8601 date such as "
                             "2026-01-31 or 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_window(args: Mapping[str, str]) -> datetime.timedelta | None:
    """``?window=7d``: the span growth is measured over; ``None`` when not asked."""
    text = args.get("window")
    if text is None:
        return None
    try:
        window = _duration(text[:64])
    except ValueError:
        raise hal.QueryError("window must be a duration such as 7d, 1h or 2 weeks") from None
    if window.total_seconds() <= 0:
        raise hal.QueryError("window must be longer than zero")
    return window


def _duration(text: str) -> datetime.timedelta:
    delta = parse_timedelta(text)
    if delta > MAX_DURATION:
        raise hal.QueryError(f"{text!r} is longer than a hundred years")
    return delta


def point_document(point: Point) -> Document:
    if point.gone:
        return {"timestamp": iso_millis(point.timestamp / 1000), "gone": True}
    return {"timestamp": iso_millis(point.timestamp / 1000), "size": point.size, "disk_size": point.disk_size,
            "unique_size": point.unique_size, "tag_count": point.tag_count}


def _trend(points: list[tuple[int, int]]) -> float | None:
    rate = growth_per_day(points)
    return None if rate is None else round(rate, 1)


class _GrowthCache:
    """Growth per name for the current snapshot's windows; a new snapshot starts an empty one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._entries: OrderedDict[tuple[int, int], dict[str, int]] = OrderedDict()

    def get(self, snapshot: Snapshot, key: tuple[int, int], compute: Callable[[], dict[str, int]]) -> dict[str, int]:
        with self._lock:
            if self._snapshot is not snapshot:
                self._snapshot, self._entries = snapshot, OrderedDict()
            found = self._entries.get(key)
        if found is None:
            found = compute()
            with self._lock:
                if self._snapshot is snapshot:
                    self._entries[key] = found
                    while len(self._entries) > _GROWTH_CACHE_SIZE:
                        self._entries.popitem(last=False)
        return found


class HistoryEndpoints:
    """What the history endpoints share: the snapshot, the history file, the token check."""

    def __init__(self, snapshots: SnapshotHolder, history: History | None, cache: RenderCache,
                 tokens: VerifiedTokens, clock: Callable[[], float], capacity: int | None) -> None:
        self._snapshots = snapshots
        self._history = history
        self._cache = cache
        self.tokens = tokens  # for _token_required
        self._clock = clock
        self._capacity = capacity
        self._growth = _GrowthCache()

    def _unavailable(self) -> Response | None:
        if self._history is None:
            return json_error(404, "No history is kept: [general] history_file is empty, or there is no data_file")
        return None

    def _window(self) -> tuple[int, int, float]:
        now = self._clock()
        since = parse_moment(request.args, "since", now, DEFAULT_SINCE)
        until = parse_moment(request.args, "until", now, None)
        if since > until:
            raise hal.QueryError("since must not be after until")
        return round(since * 1000), round(until * 1000), now

    @_token_required
    def registry(self) -> Response:
        """``/history``: the registry's totals over time, with the trend and when the storage is full."""
        missing = self._unavailable()
        if missing is not None:
            return missing
        assert self._history is not None
        since, until, _ = self._window()
        totals = self._history.totals(since, until)
        rate = _trend([(point.timestamp, point.disk_size) for point in totals])
        document: Document = {
            "since": iso_millis(since / 1000), "until": iso_millis(until / 1000),
            "points": [{"timestamp": iso_millis(point.timestamp / 1000), "size": point.size,
                        "disk_size": point.disk_size, "repository_count": point.repository_count,
                        "tag_count": point.tag_count} for point in totals],
            "growth_per_day": rate,
        }
        if self._capacity is not None:
            document["storage_capacity"] = self._capacity
            document["days_until_full"] = None if not totals else _rounded(
                days_until_full(totals[-1].disk_size, rate, self._capacity))
        document["_links"] = {"self": {"href": f"{request.script_root}/{HISTORY}"}}
        return _no_cache(jsonify(document))

    def _series(self, kind: int, name: str, self_href: str) -> Response:
        assert self._history is not None
        since, until, _ = self._window()
        points = self._history.series(kind, name, since, until)
        # The first point may precede the window: its figures were in force when the window started.
        in_window = [(max(point.timestamp, since), point.disk_size or 0) for point in points]
        document: Document = {
            "name": name, "since": iso_millis(since / 1000), "until": iso_millis(until / 1000),
            "points": [point_document(point) for point in points],
            "growth_per_day": _trend(in_window) if len(points) > 1 else (0.0 if points else None),
            "_links": {"self": {"href": self_href}},
        }
        return _no_cache(jsonify(document))

    @_token_required
    def repository(self, path: str) -> Response:
        """``/repositories/<name>/history``; a repository itself named ``.../history`` is served as before."""
        name = _named(_raw_subpath(path + "/" + HISTORY), HISTORY)
        snapshot = self._snapshots.current()
        if name is None or (snapshot is not None and snapshot.repository(name) is None
                            and snapshot.repository(f"{name}/{HISTORY}") is not None):
            return _delegate("repositorypath", f"{path}/{HISTORY}")
        missing = self._unavailable()
        if missing is not None:
            return missing
        assert self._history is not None
        if (snapshot is None or snapshot.repository(name) is None) and not self._history.series(
                REPOSITORY, name, 0, 2**62):
            return json_error(404, f'The resource "{hal.repository_path("", name)}/{HISTORY}" does not exist')
        return self._series(REPOSITORY, name, f"{hal.repository_path(request.script_root, name)}/{HISTORY}")

    @_token_required
    def group(self, path: str) -> Response:
        """``/groups/<path>/history``: the group's figures over time (recorded per group, where they changed)."""
        name = _named(_raw_subpath(path + "/" + HISTORY, "groups"), HISTORY)
        snapshot = self._snapshots.current()
        if name is None or (snapshot is not None and snapshot.group(name) is None
                            and snapshot.group(f"{name}/{HISTORY}") is not None):
            return _delegate("grouppath", f"{path}/{HISTORY}")
        missing = self._unavailable()
        if missing is not None:
            return missing
        assert self._history is not None
        if (snapshot is None or snapshot.group(name) is None) and not self._history.series(GROUP, name, 0, 2**62):
            return json_error(404, f'The resource "/groups/{quote(name, safe="")}/{HISTORY}" does not exist')
        return self._series(GROUP, name, f"{request.script_root}/groups/{quote(name, safe='')}/{HISTORY}")

    def growth_listing(self) -> Response | None:
        """``/repositories?window=`` and ``/groups?window=``: the listing with each item's growth; ``None`` for
        any other request (the listing's own resource answers it)."""
        if request.endpoint not in ("repositories", "groups") or "window" not in request.args:
            return None
        return self._growth_listing()

    @_token_required
    def _growth_listing(self) -> Response:
        window = parse_window(request.args)
        assert window is not None
        missing = self._unavailable()
        if missing is not None:
            return missing
        assert self._history is not None
        groups = request.endpoint == "groups"
        sort_keys = GROWTH_SORT_KEYS if groups else (*hal.SORT_KEYS, "growth")
        options = hal.options_from(request.args, base=request.script_root, links_default=wants_html(),
                                   prefix_allowed=not groups, sort_keys=sort_keys)
        depth = hal.parse_depth(request.args) if groups else 1
        snapshot = self._snapshots.current()
        if snapshot is None:
            return respond(self._cache, None, None, options, lambda: {"timestamp": None}, "Growth")
        kind = GROUP if groups else REPOSITORY
        moment = round((snapshot.timestamp - window.total_seconds()) * 1000)
        history = self._history

        def growth() -> dict[str, int]:
            return history.disk_sizes_at(kind, moment)

        then = self._growth.get(snapshot, (kind, moment), growth)
        window_text = request.args["window"]
        key = ("growth", kind, depth, window.total_seconds())
        return respond(self._cache, snapshot, key, options,
                       lambda: growth_document(snapshot, then, groups, depth, window_text, moment, options),
                       "Growth")


def growth_document(snapshot: Snapshot, then: Mapping[str, int], groups: bool, depth: int, window_text: str,
                    moment: int, options: hal.Options) -> Document:
    """The listing with ``growth`` per item (disk size now minus then), sortable by it."""
    items: list[Any]
    if groups:
        items = hal.groups_at(snapshot, depth)
        path = hal.groups_path(options.base)
    else:
        prefix = options.window.prefix
        items = [repo for repo in snapshot.repositories if prefix is None or repo.name.startswith(prefix)]
        path = hal.repositories_path(options.base)
    grown = {item.name: (item.disk_size - then.get(item.name, 0)) if item.disk_size is not None else None
             for item in items}
    window = options.window
    if window.sort is not None:
        key = window.sort.lstrip("-")

        def value(item: Any) -> Any:
            return grown[item.name] if key == "growth" else getattr(item, key)

        known = [item for item in items if value(item) is not None]
        unknown = [item for item in items if value(item) is None]
        known.sort(key=value, reverse=window.sort.startswith("-"))
        items = known + unknown
    total = len(items)
    end = None if window.limit is None else window.offset + window.limit
    shown = items[window.offset:end]
    document: Document = {
        "timestamp": snapshot.timestamp,
        "window": window_text,
        "since": iso_millis(moment / 1000),
        "total_growth": sum(value for value in grown.values() if value is not None),
        ("group_count" if groups else "repository_count"): total,
    }
    inner = hal.Options(embed=max(options.embed - 1, 0), links=options.links, base=options.base,
                        page_size=options.page_size)
    if options.links:
        item_path = hal.group_path if groups else hal.repository_path
        links: Document = {"self": {"href": path}}
        links["items"] = [{"href": item_path(options.base, item.name), "title": item.name} for item in shown]
        links.update(hal._paging_links(path, options, total, {"window": window_text,
                                                              "depth": None if depth == 1 else str(depth)}))
        document["_links"] = links
    embedded = []
    item: Any
    for item in shown:
        figures: Document = (hal.group_document(snapshot, item, inner) if groups
                             else hal.repository_document(item, inner))
        reserved: Document = {name: figures.pop(name) for name in ("_links", "_embedded") if name in figures}
        embedded.append({**figures, "growth": grown[item.name], **reserved})
    document["_embedded"] = {"items": embedded}
    return document


def _named(raw: str, suffix: str) -> str | None:
    """The name before an unencoded ``/<suffix>`` of a raw path; ``None`` when the path does not end so."""
    head, slash, tail = raw.rpartition("/")
    if not slash or tail != suffix or not head:
        return None
    try:
        name = unquote(head, errors="strict")
    except UnicodeDecodeError:
        return None
    if not name or not all(name.split("/")):
        return None
    return name


def _delegate(endpoint: str, path: str) -> Response:
    """Answer as the resource at ``endpoint`` would: a name that itself ends in ``/history`` is theirs."""
    answer: Any = current_app.view_functions[endpoint](path=path)
    return current_app.make_response(answer)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _no_cache(response: Response) -> Response:
    # Points arrive after the snapshot is served; a client must never keep an older answer.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def init_history(app: Flask, snapshots: SnapshotHolder, history: History | None, tokens: VerifiedTokens,
                 clock: Callable[[], float], capacity: int | None) -> None:
    """Register the history routes and the ``?window=`` growth listings on ``app``."""
    endpoints = HistoryEndpoints(snapshots, history, RenderCache(), tokens, clock, capacity)
    app.add_url_rule(f"/{HISTORY}", "history", endpoints.registry)
    app.add_url_rule(f"/repositories/<path:path>/{HISTORY}", "repository_history", endpoints.repository)
    app.add_url_rule(f"/groups/<path:path>/{HISTORY}", "group_history", endpoints.group)
    app.before_request(endpoints.growth_listing)
