"""The history on the pages: a sparkline of disk size over time, and the dashboard's "grew most this week".

Pure: figures in, HTML out (the resources read the history file and pass the figures in, as ``Trend`` and
``Grower``). A sparkline is inline SVG with presentation attributes only (the pages' Content-Security-Policy
allows no inline style or script), drawn as steps: a recorded figure holds until the next one, as the
history keeps it. At most ``MAX_POINTS`` steps are drawn, whatever the history holds: the value in force at
the end of each of that many equal slices of the span. Names are escaped wherever they appear.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from . import hal
from .humanize import iec, iso

MAX_POINTS = 300
WIDTH, HEIGHT = 600.0, 60.0
PAD = 4.0  # the line's distance from the top and the bottom
GROWERS = 10
# The history keeps milliseconds: a point this much after ``until`` is the refresh that ends the span.
RESOLUTION = 0.001

# (seconds since the epoch, bytes); None: the series was gone from then on.
Step = tuple[float, int | None]


@dataclass(frozen=True, slots=True)
class Trend:
    """A series' disk size from ``since`` to ``until`` (seconds): ``points`` in time order, each in force until
    the next; the first may lie before ``since`` (the figure in force when the span starts). ``begun``: the
    span starts where the history does, being younger than the span asked for."""

    since: float
    until: float
    points: tuple[Step, ...]
    begun: bool = False


@dataclass(frozen=True, slots=True)
class Grower:
    """A repository that grew over the week: its growth and its disk size now."""

    name: str
    growth: int
    disk_size: int


@dataclass(frozen=True, slots=True)
class Growers:
    """The repositories that grew most since ``since`` (seconds): 7 days ago, or where the history began
    (``begun``) if that was later."""

    since: float
    rows: tuple[Grower, ...]
    begun: bool = False


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _bytes(size: int) -> str:
    return f'<span title="{size:,} bytes">{_e(iec(size))}</span>'


def _signed(size: int) -> str:
    sign = "+" if size > 0 else "−" if size < 0 else "±"
    return f'<span title="{size:+,} bytes">{sign}{_e(iec(abs(size)))}</span>'


def steps(trend: Trend) -> list[Step]:
    """The trend's points within its span: the one in force at ``since`` (moved to ``since``), then each
    later one, and at most ``MAX_POINTS`` of them (the last value of each equal slice of the span)."""
    since, until = trend.since, max(trend.until, trend.since)
    inside: list[Step] = []
    for moment, value in trend.points:
        if moment > until + RESOLUTION:
            break
        moment = min(moment, until)
        if moment <= since:
            inside = [(since, value)]
        else:
            inside.append((moment, value))
    if len(inside) <= MAX_POINTS:
        return inside
    span = (until - since) or 1.0
    sliced: dict[int, Step] = {}
    for moment, value in inside:
        # Each slice keeps its last value, at the slice's first moment that saw a change.
        number = min(int((moment - since) / span * MAX_POINTS), MAX_POINTS - 1)
        first = sliced.get(number)
        sliced[number] = (moment if first is None else first[0], value)
    return list(sliced.values())


def sparkline_svg(trend: Trend, label: str) -> str:
    """The trend as a step line over its span, with an area below it; empty without two points to draw
    (a single refresh is no trend). ``label`` says what it shows, for screen readers and on hover."""
    drawn = steps(trend)
    known = [value for _, value in drawn if value is not None]
    if len(drawn) < 2 or not known:
        return ""
    since, until = trend.since, max(trend.until, trend.since + 1.0)
    low, high = min(known), max(known)

    def x(moment: float) -> float:
        return (moment - since) / (until - since) * WIDTH

    def y(value: int) -> float:
        if high == low:
            return HEIGHT / 2
        return PAD + (high - value) / (high - low) * (HEIGHT - 2 * PAD)

    segments: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for number, (moment, value) in enumerate(drawn):
        end = drawn[number + 1][0] if number + 1 < len(drawn) else until
        if value is None:  # gone: a gap until it comes back
            if current:
                segments.append(current)
            current = []
            continue
        current += [(x(moment), y(value)), (x(end), y(value))]
    if current:
        segments.append(current)
    first, last = known[0], known[-1]
    summary = (f"{label}: from {iec(first)} to {iec(last)} ({'+' if last >= first else '−'}{iec(abs(last - first))}), "
               f"{iso(since)} to {iso(trend.until)}; lowest {iec(low)}, highest {iec(high)}")
    parts = [f'<svg class="sparkline" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" preserveAspectRatio="none" role="img" '
             f'aria-label="{_e(summary)}" data-points="{len(drawn)}" data-first="{first}" data-last="{last}" '
             f'data-low="{low}" data-high="{high}"><title>{_e(summary)}</title>']
    for segment in segments:
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in segment)
        area = f"{segment[0][0]:.1f},{HEIGHT:g} {line} {segment[-1][0]:.1f},{HEIGHT:g}"
        parts.append(f'<polygon points="{area}" fill="#dfe7fa"/>'
                     f'<polyline points="{line}" fill="none" stroke="#2f5fd0" stroke-width="2" '
                     'vector-effect="non-scaling-stroke" stroke-linejoin="round"/>')
    parts.append("</svg>")
    return "".join(parts)


def trend_section(trend: Trend | None, what: str, section_id: str = "trend") -> str:
    """A heading, the sparkline and a line of figures (change over the span); ``None``: no history kept."""
    if trend is None:
        return ""
    days = max(1, round((trend.until - trend.since) / 86400))
    span = f"since {iso(trend.since)[:10]}, when the history began" if trend.begun else f"over the last {days} days"
    heading = f"<h2>{_e(what)} {_e(span)}</h2>"
    picture = sparkline_svg(trend, f"{what} {span}")
    if not picture:
        return (f'<section id="{_e(section_id)}">{heading}<p class="legend">The history starts with this '
                "refresh: the next ones draw the line.</p></section>")
    drawn = [(moment, value) for moment, value in steps(trend) if value is not None]
    (start, first), last = drawn[0], drawn[-1][1]
    values = [value for _, value in drawn]
    return (f'<section id="{_e(section_id)}">{heading}<div class="picture spark">{picture}</div>'
            f'<p class="legend">From {_bytes(first)} on {_day(start)} to {_bytes(last)} on {_day(trend.until)}: '
            f"{_signed(last - first)}; lowest {_bytes(min(values))}, highest {_bytes(max(values))}.</p></section>")


def _day(moment: float) -> str:
    stamp = iso(moment)
    return f'<time datetime="{stamp}" title="{stamp}">{stamp[:10]}</time>'


def growers_section(growers: Growers | None, base: str) -> str:
    """The dashboard's "grew most this week": the repositories with the largest growth over 7 days (or since
    the history began, if later), linked."""
    if growers is None:
        return ""
    rows = "".join(
        f'<tr data-repository="{_e(grower.name)}" data-growth="{grower.growth}">'
        f'<td class="name"><a href="{_e(hal.repository_path(base, grower.name))}">{_e(grower.name)}</a></td>'
        f'<td class="num">{_signed(grower.growth)}</td><td class="num">{_bytes(grower.disk_size)}</td></tr>'
        for grower in growers.rows[:GROWERS])
    since = f"on {_day(growers.since)}, when the history began" if growers.begun else "7 days ago"
    if not rows:
        quiet = f"since {_day(growers.since)}, when the history began" if growers.begun else "in the last 7 days"
        rows = f'<tr><td colspan="3" class="muted">No repository grew {quiet}.</td></tr>'
    return ('<section id="growth-section"><h2>Grew most this week</h2><p class="legend">Disk size now minus '
            f"{since} (a repository new since then counts from zero).</p>"
            '<div class="table-wrap"><table id="growers"><thead><tr><th>Repository</th><th class="num">Growth</th>'
            f'<th class="num">Disk size</th></tr></thead><tbody>{rows}</tbody></table></div></section>')
