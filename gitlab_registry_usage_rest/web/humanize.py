"""Numbers and times as people read them: IEC units, ages, ISO 8601. Pure."""

from __future__ import annotations

import datetime

_IEC = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def iec(size: int | None) -> str:
    """``1536`` -> ``1.5 KiB``: one decimal below 100 of a unit, none above; ``unknown`` for None."""
    if size is None:
        return "unknown"
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _IEC:
        value /= 1024
        shown = f"{value:.1f}" if value < 99.95 else f"{value:.0f}"
        if float(shown) < 1024 or unit == _IEC[-1]:
            return f"{shown.removesuffix('.0')} {unit}"
    raise AssertionError("unreachable")


def iso(timestamp: float) -> str:
    """UTC, to the second: ``2026-12-01T21:47:35Z``."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


# The last millisecond a datetime can show: the year 9999 ends there.
_LAST_MILLISECOND = 253402300799999


def iso_millis(timestamp: float) -> str:
    """UTC with the milliseconds where there are any: ``2023-06-15T10:34:56Z``, ``2023-06-15T10:34:56.789Z``."""
    seconds, millis = divmod(min(round(timestamp * 1000), _LAST_MILLISECOND), 1000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None).isoformat()
    return f"{moment}.{millis:03d}Z" if millis else f"{moment}Z"


def age(seconds: float) -> str:
    """How long ago, in the largest whole unit: ``just now``, ``4 minutes ago``, ``1 day ago``."""
    if seconds < 10:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """A short duration: ``0.4 s``, ``12 s``, ``3 min``, ``2.5 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
