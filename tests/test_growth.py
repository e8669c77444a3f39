"""Growth arithmetic: least-squares trend, days until full, which points the history keeps, storage sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitlab_registry_usage_rest.config import parse_size
from gitlab_registry_usage_rest.growth import (
    DAY_MS,
    Point,
    at,
    closing,
    days_until_full,
    growth,
    growth_per_day,
    retained,
    thin_daily,
)

EPOCH = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS  # a UTC midnight
HOUR = DAY_MS // 24


def point(timestamp: int, disk: int) -> Point:
    return Point(timestamp, disk * 2, disk, disk // 2, 1)


def test_growth_per_day_of_a_straight_line_is_its_slope() -> None:
    line = [(EPOCH + day * DAY_MS, 1000 + 250 * day) for day in range(10)]
    assert growth_per_day(line) == pytest.approx(250)


def test_growth_per_day_fits_least_squares_through_noise() -> None:
    # Points (0, 0), (1, 3), (2, 2) days: slope = sum(dt*dv)/sum(dt^2) around the means = 1 per day.
    assert growth_per_day([(EPOCH, 0), (EPOCH + DAY_MS, 3), (EPOCH + 2 * DAY_MS, 2)]) == pytest.approx(1.0)


def test_growth_per_day_of_a_shrinking_registry_is_negative() -> None:
    assert growth_per_day([(EPOCH, 5000), (EPOCH + HOUR, 4000)]) == pytest.approx(-24_000)


@pytest.mark.parametrize("points", [[], [(EPOCH, 10)], [(EPOCH, 10), (EPOCH, 20)]],
                         ids=["none", "one", "one-moment"])
def test_growth_per_day_needs_two_distinct_times(points: list[tuple[float, float]]) -> None:
    assert growth_per_day(points) is None


@pytest.mark.parametrize(("disk", "rate", "capacity", "expected"), [
    (1000, 100.0, 2000, 10.0),
    (2000, 100.0, 2000, 0.0),
    (2500, -5.0, 2000, 0.0),
    (1000, 0.0, 2000, None),
    (1000, -100.0, 2000, None),
    (1000, None, 2000, None),
], ids=["growing", "full", "over-full-shrinking", "flat", "shrinking", "no-trend"])
def test_days_until_full(disk: int, rate: float | None, capacity: int, expected: float | None) -> None:
    assert days_until_full(disk, rate, capacity) == expected


def test_thin_daily_keeps_each_utc_days_last_point() -> None:
    points = [point(EPOCH + 1, 1), point(EPOCH + 23 * HOUR, 2), point(EPOCH + DAY_MS, 3),
              point(EPOCH + 3 * DAY_MS - 1, 4)]
    assert thin_daily(points) == [points[1], points[2], points[3]]


def test_retained_keeps_every_recent_point_then_one_a_day_then_the_base() -> None:
    now = EPOCH + 100 * DAY_MS
    base = point(EPOCH, 1)  # far before the horizon: the figures in force when the kept history starts
    older = point(EPOCH + DAY_MS, 2)  # before the horizon too, but the newer of the two is the base
    day_a, day_b = point(EPOCH + 95 * DAY_MS + HOUR, 3), point(EPOCH + 95 * DAY_MS + 2 * HOUR, 4)
    recent = [point(now - 2 * DAY_MS + HOUR, 5), point(now - 2 * DAY_MS + 2 * HOUR, 6)]
    kept = retained([base, older, day_a, day_b, *recent], now, full_days=3, days=30)
    assert kept == [older, day_b, *recent]


def test_retained_drops_a_closed_series_before_the_horizon() -> None:
    now = EPOCH + 100 * DAY_MS
    assert retained([point(EPOCH, 1), closing(EPOCH + DAY_MS)], now, full_days=3, days=30) == []


def test_retained_keeps_a_closing_point_inside_the_horizon() -> None:
    now = EPOCH + 10 * DAY_MS
    points = [point(EPOCH + DAY_MS, 1), closing(EPOCH + 2 * DAY_MS)]
    assert retained(points, now, full_days=3, days=30) == points


times = st.lists(st.integers(0, 60 * DAY_MS), max_size=40).map(sorted)


@given(times, st.integers(0, 20), st.integers(20, 50))
def test_retained_is_stable_under_repeated_pruning(offsets: list[int], full_days: int, days: int) -> None:
    """Pruning at an earlier moment and again later keeps what pruning once at the later moment keeps:
    the store prunes after every refresh."""
    points = [point(EPOCH + offset, n) for n, offset in enumerate(offsets)]
    now = EPOCH + 60 * DAY_MS
    early = retained(points, now - 5 * DAY_MS, full_days, days)
    assert retained(early, now, full_days, days) == retained(points, now, full_days, days)


def test_at_is_the_latest_point_not_after_the_moment() -> None:
    points = [point(EPOCH, 1), point(EPOCH + DAY_MS, 2), closing(EPOCH + 2 * DAY_MS)]
    assert at(points, EPOCH - 1) is None
    assert at(points, EPOCH + DAY_MS) == points[1]
    assert at(points, EPOCH + 3 * DAY_MS) is None


def test_growth_counts_a_series_that_did_not_exist_from_zero() -> None:
    assert growth(700, None) == 700
    assert growth(700, point(EPOCH, 500)) == 200


@pytest.mark.parametrize(("text", "expected"), [
    ("2 TiB", 2 * 1024**4),
    ("500 GB", 500 * 1000**3),
    ("1.1 TB", 1_100_000_000_000),
    ("1.5KiB", 1536),
    ("123456", 123456),
    ("7 b", 7),
], ids=["tib", "gb", "decimal-tb", "kib", "bytes", "b"])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "2 TiBs", "-1 GB", "0", "1e3", f"{2**63} B"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
