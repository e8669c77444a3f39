"""The history endpoints: ``/history``, ``/repositories/<name>/history``, ``/groups/<path>/history``, and
``?window=`` (growth) on ``/repositories`` and ``/groups``.

Points come from the history file (``History``), read on the request thread's own connection; figures now
come from the snapshot. Windows: ``?since=`` and ``?until=`` take a duration back from now (``30d``, ``12h``,
``2 weeks``) or an ISO 8601 date or time (UTC unless it says otherwise); ``since`` defaults to 30 days.
``?window=7d`` ranks by growth: disk size in the snapshot minus the disk size in force one window before the
snapshot (a repository or group that did not exist then counts from zero), so the ranking belongs to the
snapshot and is rendered once per snapshot, as the other listings are (JSON, HTML, and CSV with a ``growth``
column). Every item's figure at the window's start comes from one ``History.state_at`` (a checkpoint and the
rows after it) and the series ids of the snapshot's items, looked up once per snapshot.

``PageHistory`` is what the pages show of the history (sparklines, the week's growers), handed to them
through ``browser.page_history``; the refresh thread reads the dashboard's once a snapshot is recorded
(``prepare_pages``).
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import logging
import operator
import sqlite3
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote, unquote

from flask import Flask, Response, current_app, jsonify, request

from ..config import parse_timedelta
from ..growth import Point, days_until_full, growth_per_day
from ..history import GROUP, REPOSITORY, History
from ..model import GroupUsage, RepositoryUsage, Snapshot
from ..state import SnapshotHolder
from . import export, hal, sparkline
from .browser import page_history, provide_page_history
from .humanize import iso_millis
from .resources import _raw_subpath, _token_required
from .responses import RenderCache, json_error, respond, wants_html
from .tokens import VerifiedTokens

DEFAULT_SINCE = datetime.timedelta(days=30)
TREND_DAYS = 30
WEEK = datetime.timedelta(days=7)
DAY = 86_400.0
MAX_DURATION = datetime.timedelta(days=100 * 366)
HISTORY = "history"
GROWTH_SORT_KEYS = (*hal.GROUP_SORT_KEYS, "growth")
# Growth figures kept per snapshot: (kind, window) -> name -> growth.
_GROWTH_CACHE_SIZE = 8
# A page of a growth ranking up to this far is picked from the items (heapq) instead of sorting them all.
PARTIAL_ORDER = 1000

Document = dict[str, Any]
log = logging.getLogger(__name__)


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


Item = RepositoryUsage | GroupUsage


class _Listing:
    """The items of one listing (the repositories, or the groups of one depth) of one snapshot, with what the
    growth over any window needs of them: their series ids in the history and their disk sizes now."""

    def __init__(self, items: Sequence[Item], numbers: list[int]) -> None:
        self.items = items
        self.numbers = numbers
        self.disks = [item.disk_size or 0 for item in items]
        self.unknown = [number for number, item in enumerate(items) if item.disk_size is None]
        self.top = max(numbers, default=0)


class GrowthTable:
    """Every item of one listing with its growth over one window (``state``: every series' disk size at the
    window's start, by id), for one snapshot; each order asked for is sorted once (racing threads may sort
    one order twice, equally).

    Linear, and in C but for the ids' lookup (once per snapshot): 100,000 repositories take milliseconds."""

    def __init__(self, listing: _Listing, state: array[int]) -> None:
        self.items = listing.items
        if len(state) <= listing.top:
            state = state + array("q", [-1]) * (listing.top + 1 - len(state))
        # Disk size now minus then; none then (-1, or id 0: never recorded) counts from zero.
        then = map(max, map(state.__getitem__, listing.numbers), itertools.repeat(0))
        grown = list(map(operator.sub, listing.disks, then))
        self.total = sum(grown) - sum(grown[number] for number in listing.unknown)
        self.grown = cast(list[int | None], grown)
        for number in listing.unknown:
            self.grown[number] = None  # its figures could not be read
        self._unknown = listing.unknown
        self._orders: dict[str, list[int]] = {}

    def order(self, sort: str | None) -> Sequence[int]:
        """The items' indices in ``sort``'s order (``-`` for descending; unknown values last, ties in listing
        order), as ``hal`` sorts its collections."""
        if sort is None:
            return range(len(self.items))
        found = self._orders.get(sort)
        if found is None:
            key = sort.lstrip("-")
            values: list[Any] = self.grown if key == "growth" else [getattr(item, key) for item in self.items]
            unknown = self._unknown if key == "growth" else [
                number for number, value in enumerate(values) if value is None]
            known: Sequence[int] = range(len(values))
            if unknown:
                missing = set(unknown)
                known = [number for number in known if number not in missing]
            value_of: Callable[[int], Any] = values.__getitem__
            found = self._orders[sort] = sorted(known, key=value_of, reverse=sort.startswith("-")) + list(unknown)
        return found


    def first(self, sort: str, count: int) -> list[int]:
        """The first ``count`` indices of ``order(sort)``; by growth, picked without sorting them all while
        the whole order is not needed (a page of the ranking, the dashboard's top ten)."""
        found = self._orders.get(sort)
        if found is not None or sort.lstrip("-") != "growth" or count > PARTIAL_ORDER:
            return list(self.order(sort)[:count])
        known: Sequence[int] = range(len(self.items))
        if self._unknown:
            missing = set(self._unknown)
            known = [number for number in known if number not in missing]
        # Equal to sorted(...)[:count], ties in listing order (as heapq documents).
        pick = heapq.nlargest if sort.startswith("-") else heapq.nsmallest
        value_of: Callable[[int], Any] = self.grown.__getitem__
        chosen = pick(count, known, key=value_of)
        return chosen + self._unknown[:count - len(chosen)]


class _GrowthCache:
    """The growth tables of the current snapshot (per kind, depth and window start), and its listings' ids;
    a new snapshot starts afresh."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._listings: dict[tuple[int, int], _Listing] = {}
        self._entries: OrderedDict[tuple[int, int, int], GrowthTable] = OrderedDict()

    def get(self, snapshot: Snapshot, kind: int, depth: int, moment: int) -> GrowthTable:
        """``snapshot``'s growth since ``moment`` (ms) of the repositories (``kind`` REPOSITORY) or of the
        groups of ``depth``."""
        key = (kind, depth, moment)
        with self._lock:
            if self._snapshot is not snapshot:
                self._snapshot, self._listings, self._entries = snapshot, {}, OrderedDict()
            found = self._entries.get(key)
            listing = self._listings.get((kind, depth))
        if found is None:
            if listing is None:
                items: Sequence[Item] = hal.groups_at(snapshot, depth) if kind == GROUP else snapshot.repositories
                listing = _Listing(items, self._history.series_ids(kind, [item.name for item in items]))
            found = GrowthTable(listing, self._history.state_at(moment))
            with self._lock:
                if self._snapshot is snapshot:
                    self._listings[kind, depth] = listing
                    self._entries[key] = found
                    while len(self._entries) > _GROWTH_CACHE_SIZE:
                        self._entries.popitem(last=False)
        return found


class HistoryEndpoints:
    """What the history endpoints share: the snapshot, the history file, the token check."""

    def __init__(self, snapshots: SnapshotHolder, history: History | None, cache: RenderCache,
                 tokens: VerifiedTokens, clock: Callable[[], float], capacity: int | None,
                 growth: _GrowthCache | None) -> None:
        self._snapshots = snapshots
        self._history = history
        self._cache = cache
        self.tokens = tokens  # for _token_required
        self._clock = clock
        self._capacity = capacity
        self._growth = growth

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
        csv = export.wants_csv()
        missing = self._unavailable()
        if missing is not None:
            return missing
        assert self._growth is not None
        groups = request.endpoint == "groups"
        sort_keys = GROWTH_SORT_KEYS if groups else (*hal.SORT_KEYS, "growth")
        depth = hal.parse_depth(request.args) if groups else 1
        snapshot = self._snapshots.current()
        window_text = request.args["window"]
        if csv:
            selection = hal.parse_window(request.args, prefix_allowed=not groups, sort_keys=sort_keys)
            stem = f"{'groups' if groups else 'repositories'}-growth-{window_text}"
            columns = (*(export.GROUP_COLUMNS if groups else export.REPOSITORY_COLUMNS), "growth")
            if snapshot is None:
                return export.respond_csv(self._cache, None, None, columns, list, stem)
            table = self._growth.get(snapshot, GROUP if groups else REPOSITORY, depth,
                                     _window_start(snapshot, window))
            return export.respond_csv(self._cache, snapshot, ("growth", groups, depth, window, selection), columns,
                                      lambda: growth_rows(table, groups, selection), stem)
        options = hal.options_from(request.args, base=request.script_root, links_default=wants_html(),
                                   prefix_allowed=not groups, sort_keys=sort_keys)
        if snapshot is None:
            return respond(self._cache, None, None, options, lambda: {"timestamp": None}, "Growth")
        moment = _window_start(snapshot, window)
        table = self._growth.get(snapshot, GROUP if groups else REPOSITORY, depth, moment)
        key = ("growth", groups, depth, window)
        return respond(self._cache, snapshot, key, options,
                       lambda: growth_document(snapshot, table, groups, depth, window_text, moment, options),
                       "Growth")


def _window_start(snapshot: Snapshot, window: datetime.timedelta) -> int:
    """Where growth over ``window`` is measured from: one window before the snapshot (ms)."""
    return round((snapshot.timestamp - window.total_seconds()) * 1000)


def _selected(table: GrowthTable, window: hal.Window) -> tuple[list[int], int, list[int] | None]:
    """The indices of the items ``window`` shows (prefix, order, cut), how many it selects before the cut,
    and (with a prefix) all those it selects."""
    end = None if window.limit is None else window.offset + window.limit
    prefix = window.prefix
    if prefix is None:
        if end is not None and window.sort is not None:
            return table.first(window.sort, end)[window.offset:], len(table.items), None
        return list(table.order(window.sort)[window.offset:end]), len(table.items), None
    items = table.items
    selected = [number for number in table.order(window.sort) if items[number].name.startswith(prefix)]
    return selected[window.offset:end], len(selected), selected


def growth_rows(table: GrowthTable, groups: bool, window: hal.Window) -> list[export.Row]:
    """The CSV rows of a growth listing: the listing's columns, then ``growth``."""
    chosen, _, _ = _selected(table, window)
    items = [table.items[number] for number in chosen]
    rows = export.group_rows(items) if groups else export.repository_rows(items)  # type: ignore[arg-type]
    return [(*row, table.grown[number]) for row, number in zip(rows, chosen, strict=True)]


def growth_document(snapshot: Snapshot, table: GrowthTable, groups: bool, depth: int, window_text: str,
                    moment: int, options: hal.Options) -> Document:
    """The listing with ``growth`` per item (disk size now minus then), sortable by it."""
    window = options.window
    path = hal.groups_path(options.base) if groups else hal.repositories_path(options.base)
    shown, total, selected = _selected(table, window)
    items = table.items
    if selected is None:
        total_growth = table.total
    else:
        total_growth = sum(grown for number in selected if (grown := table.grown[number]) is not None)
    document: Document = {
        "timestamp": snapshot.timestamp,
        "window": window_text,
        "since": iso_millis(moment / 1000),
        "total_growth": total_growth,
        ("group_count" if groups else "repository_count"): total,
    }
    inner = hal.Options(embed=max(options.embed - 1, 0), links=options.links, base=options.base,
                        page_size=options.page_size)
    if options.links:
        item_path = hal.group_path if groups else hal.repository_path
        links: Document = {"self": {"href": path}}
        links["items"] = [{"href": item_path(options.base, items[number].name), "title": items[number].name}
                          for number in shown]
        links.update(hal._paging_links(path, options, total, {"window": window_text,
                                                              "depth": None if depth == 1 else str(depth)}))
        document["_links"] = links
    embedded = []
    for number in shown:
        item = items[number]
        figures: Document = (hal.group_document(snapshot, item, inner) if isinstance(item, GroupUsage)
                             else hal.repository_document(item, inner))
        reserved: Document = {name: figures.pop(name) for name in ("_links", "_embedded") if name in figures}
        embedded.append({**figures, "growth": table.grown[number], **reserved})
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


class PageHistory:
    """What the pages show of the history: disk size over the last ``TREND_DAYS`` days as a sparkline, and on
    the dashboard the repositories that grew most in the last 7 days (the dashboard's once per snapshot).

    Each sparkline ends with the snapshot's own figures: the snapshot is served before the refresh thread
    records it. A history that cannot be read costs the pages their sparklines (logged), never the page.
    """

    def __init__(self, history: History, growth: _GrowthCache) -> None:
        self._history = history
        self._growth = growth
        self._lock = threading.Lock()
        self._dashboard: tuple[Snapshot, sparkline.Trend | None, sparkline.Growers | None] | None = None

    def dashboard(self, snapshot: Snapshot) -> tuple[sparkline.Trend | None, sparkline.Growers | None]:
        """The registry's disk size over the last days and the week's biggest growers."""
        with self._lock:  # concurrent first requests after a refresh wait for one reading
            current = self._dashboard
            if current is not None and current[0] is snapshot:
                return current[1], current[2]
            try:
                since, until, begun = self._span(snapshot)
                # The rows before the span (one a day there) give the figure in force when it starts.
                totals = self._history.totals(round((since - 2 * DAY) * 1000), round(until * 1000))
                # Over a week, or from the history's start if younger (else everything "grew" by all it holds).
                week = _window_start(snapshot, WEEK)
                first = self._history.first_recorded()
                young = first is not None and week < first <= round(until * 1000)
                table = self._growth.get(snapshot, REPOSITORY, 1, first if young and first is not None else week)
            except sqlite3.Error as error:
                log.warning("the history file cannot be read, the dashboard shows no history: %s", error)
                return None, None
            points: list[tuple[float, int | None]] = [(row.timestamp / 1000, row.disk_size) for row in totals]
            trend = sparkline.Trend(since, until, _ending(points, snapshot.timestamp, snapshot.total_disk_size),
                                    begun)
            rows = []
            for number in table.first("-growth", sparkline.GROWERS):
                grown, repository = table.grown[number], table.items[number]
                if grown is None or grown <= 0 or repository.disk_size is None:
                    break
                rows.append(sparkline.Grower(repository.name, grown, repository.disk_size))
            growers = sparkline.Growers((first if young and first is not None else week) / 1000, tuple(rows), young)
            self._dashboard = (snapshot, trend, growers)
            return trend, growers

    def repository(self, snapshot: Snapshot, repository: RepositoryUsage) -> sparkline.Trend | None:
        """A repository's disk size over the last days."""
        return self._trend(snapshot, REPOSITORY, repository.name, repository.disk_size)

    def group(self, snapshot: Snapshot, group: GroupUsage) -> sparkline.Trend | None:
        """A group's disk size over the last days."""
        return self._trend(snapshot, GROUP, group.name, group.disk_size)

    def _trend(self, snapshot: Snapshot, kind: int, name: str, disk: int | None) -> sparkline.Trend | None:
        try:
            since, until, begun = self._span(snapshot)
            points = self._history.series(kind, name, round(since * 1000), round(until * 1000))
        except sqlite3.Error as error:
            log.warning("the history file cannot be read, the page shows no history: %s", error)
            return None
        steps: list[tuple[float, int | None]] = [(point.timestamp / 1000, point.disk_size) for point in points]
        return sparkline.Trend(since, until, tuple(steps) if disk is None else _ending(steps, snapshot.timestamp, disk),
                               begun)

    def _span(self, snapshot: Snapshot) -> tuple[float, float, bool]:
        """The sparklines' span: the last ``TREND_DAYS`` days, or from the history's start if it is younger
        (a line squeezed into the last minutes of 30 days would be no line)."""
        since, until = snapshot.timestamp - TREND_DAYS * DAY, snapshot.timestamp
        first = self._history.first_recorded()
        if first is not None and since < first / 1000 < until:
            return first / 1000, until, True
        return since, until, False


def prepare_pages(app: Flask, snapshot: Snapshot) -> None:
    """Read what ``app``'s pages show of ``snapshot``'s history now (the refresh thread, once it is recorded),
    so that no request waits for it: the dashboard's sparkline and growers, and the repositories' ids."""
    history = page_history(app)
    if history is not None:
        history.dashboard(snapshot)


def _ending(points: list[tuple[float, int | None]], moment: float, disk: int) -> tuple[tuple[float, int | None], ...]:
    """``points`` ending with the snapshot's own figure (unless recorded already)."""
    if points and points[-1][0] >= moment:
        return tuple(points)
    return (*points, (moment, disk))


def init_history(app: Flask, snapshots: SnapshotHolder, history: History | None, tokens: VerifiedTokens,
                 clock: Callable[[], float], capacity: int | None) -> None:
    """Register the history routes and the ``?window=`` growth listings on ``app``, and give its pages the
    history's sparklines (``browser.page_history``)."""
    growth = None if history is None else _GrowthCache(history)
    endpoints = HistoryEndpoints(snapshots, history, RenderCache(), tokens, clock, capacity, growth)
    if history is not None and growth is not None:
        provide_page_history(app, PageHistory(history, growth))
    app.add_url_rule(f"/{HISTORY}", "history", endpoints.registry)
    app.add_url_rule(f"/repositories/<path:path>/{HISTORY}", "repository_history", endpoints.repository)
    app.add_url_rule(f"/groups/<path:path>/{HISTORY}", "group_history", endpoints.group)
    app.before_request(endpoints.growth_listing)
