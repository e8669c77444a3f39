"""Growth arithmetic over recorded figures: the trend, when a volume is full, and which points are kept.

Pure: points go in, numbers and lists come out; the history store (``history``) and the history endpoints
call these with what they read. Times are integer milliseconds since the epoch (UTC), as the store keeps them.

A ``Point`` is a series' figures from one refresh on; a series is the registry's totals, one repository or
one group. The store writes a point only where a series' figures changed, so a series holds its last
point's figures until its next point (they are implied, not repeated). A point whose ``size`` is ``None``
closes the series: the repository (or group) was gone from that refresh on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

DAY_MS = 86_400_000
DAY_SECONDS = 86_400.0


class Point(NamedTuple):
    """One series' figures from ``timestamp`` (ms) on; ``size`` ``None``: gone from then on."""

    timestamp: int
    size: int | None
    disk_size: int | None
    unique_size: int | None
    tag_count: int | None

    @property
    def gone(self) -> bool:
        return self.size is None


def closing(timestamp: int) -> Point:
    """The point that says a series is gone from ``timestamp`` on."""
    return Point(timestamp, None, None, None, None)


def growth_per_day(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(timestamp ms, bytes)`` points, in bytes per day; ``None`` without two
    distinct times (no trend can be drawn through one moment)."""
    count = len(points)
    if count < 2:
        return None
    # Centred on the means: the sums of squares of raw epoch milliseconds would lose the slope to rounding.
    mean_t = sum(t for t, _ in points) / count
    mean_v = sum(v for _, v in points) / count
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return slope * DAY_MS


def days_until_full(disk_size: int, growth: float | None, capacity: int) -> float | None:
    """Days until ``disk_size`` growing by ``growth`` bytes a day reaches ``capacity``: ``0.0`` when it is
    there already, ``None`` when it does not grow (it never fills at that rate) or the trend is unknown."""
    if disk_size >= capacity:
        return 0.0
    if growth is None or growth <= 0:
        return None
    return (capacity - disk_size) / growth


def utc_day(timestamp: int) -> int:
    """The UTC day (days since the epoch) a millisecond time falls on."""
    return timestamp // DAY_MS


def thin_daily(points: Iterable[Point]) -> list[Point]:
    """The last point of each UTC day, in time order (``points`` in time order): what a series' figures
    were at the end of each day it changed on."""
    kept: list[Point] = []
    for point in points:
        if kept and utc_day(kept[-1].timestamp) == utc_day(point.timestamp):
            kept[-1] = point
        else:
            kept.append(point)
    return kept


def retained(points: Sequence[Point], now: int, full_days: int, days: int) -> list[Point]:
    """The points of one series (in time order) that the history keeps at ``now``.

    Every point of the last ``full_days``; before that the last point of each UTC day, back to ``days``
    before ``now`` (the horizon); of the points before the horizon, the latest (the figures in force when
    the kept history starts), unless it closes the series.
    """
    cutoff, horizon = now - full_days * DAY_MS, now - days * DAY_MS
    older = thin_daily(point for point in points if point.timestamp < cutoff)
    recent = [point for point in points if point.timestamp >= cutoff]
    before = [point for point in older if point.timestamp < horizon]
    base = [] if not before or before[-1].gone else before[-1:]
    return base + [point for point in older if point.timestamp >= horizon] + recent


def at(points: Sequence[Point], timestamp: int) -> Point | None:
    """The point in force at ``timestamp`` (the latest not after it); ``None`` before the first or once gone."""
    found: Point | None = None
    for point in points:
        if point.timestamp > timestamp:
            break
        found = point
    return None if found is None or found.gone else found


def growth(now_disk_size: int, then: Point | None) -> int:
    """Disk size now minus then; a series that did not exist then counts from zero."""
    if then is None or then.disk_size is None:
        return now_disk_size
    return now_disk_size - then.disk_size
