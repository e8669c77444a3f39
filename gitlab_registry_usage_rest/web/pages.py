"""The pages people read: login, the dashboard, a repository, a tag. Pure: snapshot in, HTML out.

Server-rendered, no script, nothing from other hosts: one inline style block allowed by its hash in
the page's Content-Security-Policy, pictures as inline SVG. Numbers are shown in IEC units with the
exact bytes in a ``title``; times as ages with the ISO time in a ``title``. Stable ``data-*``
attributes carry the raw values for scripts and tests. Every page shows at most a page of rows, and
its cost is linear in what the snapshot holds.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from ..cleanup import POLICY_PARAMETERS, CleanupResult, PolicyError, Scope
from ..model import GroupUsage, RepositoryUsage, Snapshot, TagUsage
from ..sizes import GroupTotals, covered, covered_disk_size, group_totals
from ..state import RefreshStatus
from . import hal, sparkline
from .html import content_security_policy
from .humanize import age, duration, iec, iso
from .treemap import Tile, group_repositories, layout

PAGE_ROWS = 50
TREEMAP_WIDTH, TREEMAP_HEIGHT = 1200.0, 560.0
SORT_COLUMNS = ("name", "size", "disk_size", "unique_size", "tags")
DEFAULT_SORT = "-disk_size"
MAX_ERRORS_SHOWN = 20

STYLE = (
    ":root{--ink:#1d232b;--muted:#5d6873;--line:#d9dee3;--bg:#f6f7f9;--accent:#2f5fd0}"
    "*{box-sizing:border-box}"
    "body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--ink);background:var(--bg)}"
    "header{display:flex;flex-wrap:wrap;align-items:center;gap:.5em 1em;padding:.6em 1.2em;background:#fff;"
    "border-bottom:1px solid var(--line)}"
    "header .brand{font-weight:600;color:var(--ink);text-decoration:none}"
    "nav.site{display:flex;flex-wrap:wrap;gap:.3em 1em}nav.site a{text-decoration:none}.site{margin-right:auto}"
    "header form{margin:0}main{max-width:1280px;margin:0 auto;padding:1em 1.2em 3em}"
    "h1{font-size:1.45em;margin:.3em 0 .2em}h2{font-size:1.12em;margin:1.6em 0 .5em}"
    "a{color:var(--accent)}nav.crumbs{color:var(--muted);font-size:.92em}nav.crumbs a{text-decoration:none}"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:.8em;margin:.8em 0}"
    ".card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.7em .9em}"
    ".card .label{color:var(--muted);font-size:.85em}.card .value{font-size:1.55em;font-weight:600}"
    ".status{color:var(--muted);margin:.3em 0}.status .bad{color:#b3261e;font-weight:600}"
    ".status .ok{color:#1b7f3b;font-weight:600}"
    "details{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.5em .9em;margin:.5em 0}"
    "details li{font-family:ui-monospace,monospace;font-size:.85em;overflow-wrap:anywhere}"
    ".picture{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.4em}"
    "svg{display:block;width:100%;height:auto}"
    "svg text{font-size:12px;fill:#10161c;pointer-events:none}svg .group-label{font-weight:700;font-size:13px}"
    "svg a:hover rect{opacity:.8}"
    ".table-wrap{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:8px}"
    "table{border-collapse:collapse;width:100%}th,td{padding:.4em .7em;border-bottom:1px solid var(--line);"
    "text-align:left;white-space:nowrap}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "th{background:#fafbfc;font-weight:600}th a{color:var(--ink);text-decoration:none}"
    "td.name{white-space:normal;overflow-wrap:anywhere;min-width:12em}code{font-size:.85em}"
    ".pager{display:flex;gap:1em;align-items:center;margin:.6em 0;color:var(--muted)}"
    "form.filter{display:flex;flex-wrap:wrap;gap:.4em;margin:.4em 0 .7em}"
    "input{font:inherit;padding:.35em .5em;border:1px solid #b9c1c9;border-radius:6px}"
    "button{font:inherit;padding:.35em .9em;border:1px solid var(--accent);border-radius:6px;background:var(--accent);"
    "color:#fff;cursor:pointer}button.link{background:none;border:none;color:var(--accent);padding:0;cursor:pointer}"
    ".login{max-width:360px;margin:8vh auto;background:#fff;border:1px solid var(--line);border-radius:10px;"
    "padding:1.4em 1.6em}.login label{display:block;margin:.7em 0 .2em}.login input{width:100%}"
    ".login button{margin-top:1.1em;width:100%}.message{color:#b3261e;margin:.6em 0 0}"
    ".muted{color:var(--muted)}.legend{color:var(--muted);font-size:.85em;margin:.3em 0}"
    "svg.share{display:inline-block;width:60px;height:8px;vertical-align:middle;margin-right:.3em}"
    "form.policy{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:.7em 1em;"
    "background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8em 1em;margin:.6em 0}"
    ".field label{display:block;font-weight:600;font-size:.9em;margin-bottom:.2em}.field input{width:100%}"
    ".field .hint{display:block;color:var(--muted);font-size:.8em;margin-top:.15em}"
    ".field-error{display:block;color:#b3261e;font-size:.85em;font-weight:600;margin-top:.2em}"
    "input[aria-invalid=true]{border-color:#b3261e;box-shadow:0 0 0 1px #b3261e}"
    ".field.submit{align-self:center}"
    ".verdict{font-size:1.2em;margin:.8em 0 .2em}"
    "td.tags{font-family:ui-monospace,monospace;font-size:.85em;white-space:normal;overflow-wrap:anywhere;"
    "min-width:16em}"
    "details.simulate summary{cursor:pointer;color:var(--accent)}"
    ".spark{padding:.3em .4em}svg.sparkline{height:60px}"
    "@media (max-width:600px){body{font-size:14px}main{padding:.6em}.card .value{font-size:1.25em}"
    "th,td{padding:.35em .45em}}"
)
# The login, logout and filter forms post to this origin only.
CONTENT_SECURITY_POLICY = content_security_policy(STYLE, form_action="'self'")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _bytes(size: int | None) -> str:
    """A size in IEC units, the exact bytes on hover."""
    if size is None:
        return '<span class="muted" title="could not be read">unknown</span>'
    return f'<span title="{size:,} bytes">{_e(iec(size))}</span>'


def _when(timestamp: float, now: float) -> str:
    stamp = iso(timestamp)
    return f'<time datetime="{stamp}" title="{stamp}">{_e(age(max(0.0, now - timestamp)))}</time>'


def _built(tag: TagUsage, now: float) -> str:
    """When the tag's image was built; unknown also for the 1970 or 1980 that reproducible builds record."""
    if tag.created is None:
        return ('<span class="muted" title="its image config records no time, or one before 2000 (reproducible '
                'builds write 1970 or 1980), or could not be read">unknown (none or before 2000)</span>')
    return _when(tag.created, now)


def _first_seen(tag: TagUsage, now: float) -> str:
    if tag.first_seen is None:
        return '<span class="muted">unknown</span>'
    return _when(tag.first_seen, now)


def _raw_time(timestamp: float | None) -> str:
    return "" if timestamp is None else repr(timestamp)


def _url(path: str, query: Mapping[str, str | None]) -> str:
    """``path`` with the query parameters that have a value."""
    shown = {key: value for key, value in query.items() if value}
    return path + ("?" + urlencode(shown) if shown else "")


def dashboard_path(base: str) -> str:
    return (base or "") + "/"


def groups_path(base: str) -> str:
    return hal.groups_path(base)


def _group_path(base: str, name: str) -> str:
    return hal.group_path(base, name)


def cleanup_path(base: str, group: str | None = None, repository: str | None = None) -> str:
    """The cleanup simulator for the whole registry, a group, or a repository."""
    if repository is not None:
        return hal.repository_cleanup_path(base, repository)
    if group is not None:
        return hal.group_cleanup_path(base, group)
    return hal.cleanup_path(base)


def _page(title: str, base: str, body: str, user: str | None, api_view: str | None = None) -> str:
    """The frame every page shares: a header with the way home, the API view and logout."""
    tools = []
    if user is not None:
        tools.append('<nav class="site" aria-label="Site">'
                     f'<a href="{_e(dashboard_path(base))}">Dashboard</a>'
                     f'<a href="{_e(groups_path(base))}">Groups</a>'
                     f'<a href="{_e(cleanup_path(base))}">Cleanup simulator</a></nav>')
    else:
        tools.append('<span class="site"></span>')
    if api_view is not None:
        tools.append(f'<a href="{_e(api_view)}">API view</a>')
    if user is not None:
        tools.append(f'<span class="muted">{_e(user)}</span>')
        tools.append(f'<form method="post" action="{_e((base or "") + "/logout")}">'
                     '<button class="link" type="submit" id="logout">Log out</button></form>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · registry usage</title><style>{STYLE}</style></head>\n<body>"
        f'<header><a class="brand" href="{_e(dashboard_path(base))}">Registry usage</a>{"".join(tools)}</header>\n'
        f"<main>{body}</main></body></html>\n"
    )


# --- login ---------------------------------------------------------------------------------------

def login_page(base: str, message: str | None = None, username: str = "") -> str:
    """The login form; it posts to ``/login`` (same directory, limits and audit log as ``/auth_token``)."""
    shown = f'<p class="message" role="alert">{_e(message)}</p>' if message else ""
    body = (
        f'<form id="login" class="login" method="post" action="{_e((base or "") + "/login")}">'
        "<h1>Log in</h1><p class=\"muted\">with your directory account</p>"
        '<label for="username">User name</label>'
        f'<input id="username" name="username" autocomplete="username" required value="{_e(username)}" autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        f'{shown}<button type="submit">Log in</button></form>'
    )
    return _page("Log in", base, body, None)


# --- the dashboard -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TableQuery:
    """What the repositories table shows: its order, group filter and page (from the query string)."""

    sort: str = DEFAULT_SORT
    prefix: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> TableQuery:
        """Forgiving, as links are: an unknown order or page falls back to the default."""
        sort = args.get("sort", DEFAULT_SORT)
        if sort.removeprefix("-") not in SORT_COLUMNS:
            sort = DEFAULT_SORT
        return cls(sort, args.get("prefix", "").strip().strip("/")[:1024], page_number(args))

    def args(self, **changes: str | int) -> dict[str, str | None]:
        values: dict[str, str | int] = {"sort": self.sort, "prefix": self.prefix, "page": self.page, **changes}
        return {
            "prefix": str(values["prefix"]) or None,
            "sort": None if values["sort"] == DEFAULT_SORT else str(values["sort"]),
            "page": None if values["page"] == 1 else str(values["page"]),
        }


def in_group(name: str, group: str) -> bool:
    """A GitLab group path covers the repository named so and everything below it."""
    return not group or name == group or name.startswith(group + "/")


def _sort_key(column: str) -> object:
    if column == "name":
        return lambda repository: repository.name
    if column == "tags":
        return lambda repository: len(repository.tags or ())
    return lambda repository: getattr(repository, column)


def sorted_repositories(repositories: Iterable[RepositoryUsage], sort: str) -> list[RepositoryUsage]:
    """Ordered by ``sort`` (``-`` for descending); unknown sizes always last, ties by name."""
    column = sort.removeprefix("-")
    key = _sort_key(column)
    items = list(repositories)
    known = [repository for repository in items if key(repository) is not None]  # type: ignore[operator]
    unknown = [repository for repository in items if key(repository) is None]  # type: ignore[operator]
    known.sort(key=lambda repository: repository.name)
    known.sort(key=key, reverse=sort.startswith("-"))  # type: ignore[arg-type]
    return known + sorted(unknown, key=lambda repository: repository.name)


def _hue(group: str) -> int:
    return zlib.crc32(group.encode("utf-8", "surrogatepass")) % 360


def _fits(text: str, width: float, height: float, size: float = 12.0) -> str | None:
    """``text`` cut to what fits in the box (about 0.6 em a character), or None if nothing useful does."""
    if height < size * 1.5 or width < size * 3:
        return None
    room = int((width - 8) / (size * 0.6))
    if room >= len(text):
        return text
    return text[: room - 1] + "…" if room >= 4 else None


def treemap_svg(snapshot: Snapshot, base: str) -> str:
    """Disk usage by top-level group and repository, as a squarified treemap of links."""
    groups = group_repositories((repository.name, repository.disk_size) for repository in snapshot.repositories)
    tiles = layout(groups, TREEMAP_WIDTH, TREEMAP_HEIGHT)
    return _treemap(tiles, snapshot, base, "", "Disk usage by group and repository")


def _treemap(tiles: Sequence[Tile], snapshot: Snapshot, base: str, root: str, label: str) -> str:
    """The SVG of laid-out tiles: repositories link to their pages, groups (by the band of their name) and the
    rest of a group to the group's page; ``root`` is the group whose page this is ("" for the dashboard)."""
    if not tiles:
        return '<p class="muted">No storage to show yet.</p>'
    # A tile along its group's top edge leaves the first line to the group's name.
    tops = {tile.path: tile.y for tile in tiles if tile.kind == "group"}
    parts = [f'<svg class="treemap" viewBox="0 0 {TREEMAP_WIDTH:g} {TREEMAP_HEIGHT:g}" role="img" '
             f'aria-label="{_e(label)}">']
    for tile in tiles:
        parts.append(_tile_svg(tile, base, snapshot, tops, root))
    parts.append("</svg>")
    return "".join(parts)


def _rect(tile: Tile, style: str) -> str:
    return (f'<rect x="{tile.x:.2f}" y="{tile.y:.2f}" width="{tile.w:.2f}" height="{tile.h:.2f}" {style}'
            f' data-kind="{tile.kind}" data-path="{_e(tile.path)}" data-bytes="{tile.size}"')


def _group_title(name: str, group: GroupUsage | None, size: int) -> str:
    """A group tile's tooltip: its disk size, what deleting it frees, what it holds."""
    if group is None:
        return f"{name}: {iec(size)} on disk ({size:,} bytes)"
    unique = "unknown" if group.unique_size is None else f"{iec(group.unique_size)} ({group.unique_size:,} bytes)"
    return (f"{name}\ndisk size {iec(group.disk_size)} ({group.disk_size:,} bytes)\n"
            f"deleting the group frees {unique}\n"
            f"{group.repository_count:,} repositories · {group.tag_count:,} tags · click to open")


def _relative(name: str, group: str | None) -> str:
    return name[len(group) + 1:] if group and name.startswith(group + "/") else name


def _tile_svg(tile: Tile, base: str, snapshot: Snapshot, tops: Mapping[str, float], root: str) -> str:
    if tile.kind == "group":
        group = snapshot.group(tile.path)
        href = _group_path(base, tile.path)
        title = _e(_group_title(tile.path, group, tile.size))
        label = _fits(_relative(tile.path, root), tile.w, tile.h, 13)
        # The outline lets clicks through to the repositories; the band along its top edge, where its name
        # stands, opens the group.
        band = min(18.0, tile.h / 2)
        text = (f'<text class="group-label" x="{tile.x + 4:.2f}" y="{tile.y + 15:.2f}">{_e(label)}</text>'
                if label else "")
        return (_rect(tile, 'fill="none" stroke="#fff" stroke-width="2.5" pointer-events="none"')
                + f"><title>{title}</title></rect>"
                + f'<a href="{_e(href)}" class="group-link"><rect class="band" x="{tile.x:.2f}" y="{tile.y:.2f}" '
                  f'width="{tile.w:.2f}" height="{band:.2f}" fill="#10161c" fill-opacity="0.06" '
                  f'data-group="{_e(tile.path)}"><title>{title}</title></rect>{text}</a>')
    group_of = tile.parent if tile.kind == "repository" else (tile.path or None)
    hue = _hue(group_of if group_of is not None else tile.path)
    if tile.kind == "rest":
        if tile.path == root:
            what = f"{tile.count} more {'groups' if not root else 'subgroups and repositories'}"
            href = groups_path(base) if not root else _group_path(base, root) + "#contents"
        else:
            what = f"{tile.count} smaller repositories of {_relative(tile.path, root)}"
            href = _group_path(base, tile.path)
        title = f"{what}: {iec(tile.size)} on disk ({tile.size:,} bytes)"
        fill = f'fill="hsl({hue},25%,86%)" stroke="#fff" stroke-width=".6"'
        label = _fits(what, tile.w, tile.h)
    else:
        repository = snapshot.repository(tile.path)
        href = hal.repository_path(base, tile.path)
        if repository is None:
            title = f"{tile.path}: {iec(tile.size)} on disk ({tile.size:,} bytes)"
        else:
            title = (f"{tile.path}\ndisk size {iec(repository.disk_size)} ({repository.disk_size or 0:,} bytes)\n"
                     f"size {iec(repository.size)} · unique {iec(repository.unique_size)} · "
                     f"{len(repository.tags or ())} tags")
        fill = f'fill="hsl({hue},55%,{66 + (zlib.crc32(tile.path.encode("utf-8", "surrogatepass")) % 14)}%)" ' \
               'stroke="#fff" stroke-width=".6"'
        label = _fits(_relative(tile.path, group_of if group_of is not None else root), tile.w, tile.h)
    under_group_name = group_of is not None and abs(tops.get(group_of, -1.0) - tile.y) < 0.01
    if under_group_name and tile.h < 40:
        label = None
    text = f'<text x="{tile.x + 4:.2f}" y="{tile.y + (30 if under_group_name else 15):.2f}">{_e(label)}</text>' \
        if label else ""
    return f'<a href="{_e(href)}">{_rect(tile, fill)}><title>{_e(title)}</title></rect>{text}</a>'


@dataclass(frozen=True, slots=True)
class Dashboard:
    """Everything the dashboard shows, gathered by the resource."""

    snapshot: Snapshot | None
    refresh: RefreshStatus
    now: float
    base: str
    query: TableQuery
    user: str | None


def _status(view: Dashboard) -> str:
    """The data's age, the refresh state and the last crawl's errors."""
    snapshot, refresh, now = view.snapshot, view.refresh, view.now
    parts = []
    if snapshot is None:
        parts.append("No registry data yet: the first crawl is running.")
    else:
        parts.append(f"Data updated {_when(snapshot.timestamp, now)}.")
    if refresh.running:
        done, total = refresh.repositories_done, refresh.repositories_total
        progress = f" ({done:,} of {total:,} repositories)" if total else ""
        parts.append(f'<span class="ok">Refreshing now</span>{progress}.')
    elif refresh.succeeded is False:
        parts.append(f'<span class="bad">The last refresh failed</span>'
                     f'{" " + _when(refresh.started_at, now) if refresh.started_at else ""}; '
                     "the data shown is from the last one that worked.")
    elif refresh.succeeded and refresh.duration is not None:
        parts.append(f"The last refresh took {_e(duration(refresh.duration))}.")
    text = f'<p class="status" id="status">{" ".join(parts)}</p>'
    errors = snapshot.errors if snapshot is not None else ()
    if errors:
        items = "".join(f"<li>{_e(error)}</li>" for error in errors[:MAX_ERRORS_SHOWN])
        more = f"<li>… and {len(errors) - MAX_ERRORS_SHOWN} more (in the log)</li>" \
            if len(errors) > MAX_ERRORS_SHOWN else ""
        text += (f'<details id="crawl-errors"><summary>{len(errors)} repositor{"y" if len(errors) == 1 else "ies"}'
                 f" could not be read in the last crawl</summary><ul>{items}{more}</ul></details>")
    return text


def _cards(items: Sequence[tuple[str, str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card" {attrs}><div class="label">{_e(label)}</div><div class="value">{value}</div></div>'
        for label, value, attrs in items) + "</div>"


class Overview:
    """What the dashboard shows of one snapshot whoever looks: the totals, the treemap, the repositories in
    each order. Built once per snapshot (and ``base``); a request then only filters and cuts out a page."""

    def __init__(self, snapshot: Snapshot, base: str) -> None:
        self.snapshot = snapshot
        self.base = base
        repositories = snapshot.repositories
        total_disk, total_size, tag_count = snapshot.total_disk_size, snapshot.total_size, snapshot.tag_count
        self.totals = (
            f'<section id="totals" data-total-disk-size="{total_disk}" data-total-size="{total_size}" '
            f'data-repository-count="{len(repositories)}" data-tag-count="{tag_count}">'
            + _cards([
                ("Disk used", _bytes(total_disk), 'id="total-disk-size"'),
                ("Sum of tag sizes", _bytes(total_size), 'id="total-size"'),
                ("Repositories", f"{len(repositories):,}", 'id="repository-count"'),
                ("Tags", f"{tag_count:,}", 'id="tag-count"'),
            ]) + "</section>"
        )
        self.treemap = treemap_svg(snapshot, base)
        self.groups = _largest_groups(snapshot, base, total_disk)
        # One sorted list per order asked for (SORT_COLUMNS x 2 at most); racing threads compute the same list.
        self._orders: dict[str, list[RepositoryUsage]] = {}

    def order(self, sort: str) -> list[RepositoryUsage]:
        ordered = self._orders.get(sort)
        if ordered is None:
            ordered = self._orders[sort] = sorted_repositories(self.snapshot.repositories, sort)
        return ordered


DASHBOARD_GROUPS = 10


def _largest_groups(snapshot: Snapshot, base: str, total_disk: int) -> str:
    """The dashboard's groups section: the largest top-level groups, the way to all groups and to the simulator."""
    top = sorted_groups(snapshot.top_level_groups(), "-disk_size")
    rows = "".join(
        f'<tr data-group="{_e(group.name)}" data-disk-size="{group.disk_size}">'
        f'<td class="name"><a href="{_e(_group_path(base, group.name))}">{_e(group.name)}</a></td>'
        f'<td class="num">{_bytes(group.disk_size)}</td><td class="num">{_bytes(group.unique_size)}</td>'
        f'<td class="num">{group.repository_count:,}</td><td class="num">{group.tag_count:,}</td>'
        f'<td class="num">{_share(group.disk_size, total_disk)}</td></tr>'
        for group in top[:DASHBOARD_GROUPS])
    if not rows:
        return ""
    shown = "" if len(top) <= DASHBOARD_GROUPS else f"The largest {DASHBOARD_GROUPS} of "
    return (f'<section id="groups-section"><h2>Groups</h2><p class="legend">{shown}{len(top):,} top-level groups. '
            f'<a id="all-groups" href="{_e(groups_path(base))}">All groups, at any depth</a> · '
            f'<a id="simulate" href="{_e(cleanup_path(base))}">Simulate a cleanup policy</a></p>'
            '<div class="table-wrap"><table id="top-groups"><thead><tr><th>Group</th><th class="num">Disk size</th>'
            '<th class="num">Deleting it frees</th><th class="num">Repositories</th><th class="num">Tags</th>'
            f'<th class="num">Share of disk</th></tr></thead><tbody>{rows}</tbody></table></div></section>')


def dashboard_page(view: Dashboard, overview: Overview | None = None, trend: sparkline.Trend | None = None,
                   growers: sparkline.Growers | None = None) -> str:
    """The dashboard; ``overview`` (of ``view.snapshot``) is what earlier requests already computed; ``trend``
    and ``growers`` what the history says (None: no history kept)."""
    snapshot, base = view.snapshot, view.base
    if snapshot is None:
        return _page("Dashboard", base, "<h1>Registry usage</h1>" + _status(view), view.user,
                     hal.repositories_path(base) + "?view=api")
    if overview is None or overview.snapshot is not snapshot or overview.base != base:
        overview = Overview(snapshot, base)
    body = (
        "<h1>Registry usage</h1>" + overview.totals + _status(view)
        + sparkline.trend_section(trend, "Disk used") + sparkline.growers_section(growers, base)
        + "<h2>Where the disk goes</h2>"
        + '<p class="legend">Each rectangle is a repository, sized by its disk size (shared layers counted once), '
          "grouped by top-level group; hover for the figures, click to open a repository, or a group's name band "
          "to open the group.</p>"
        + f'<div class="picture">{overview.treemap}</div>'
        + overview.groups
        + _repository_table(overview, view.query, base)
    )
    return _page("Dashboard", base, body, view.user, hal.repositories_path(base) + "?view=api")


def _repository_table(overview: Overview, query: TableQuery, base: str) -> str:
    home = dashboard_path(base)
    ordered = [repository for repository in overview.order(query.sort) if in_group(repository.name, query.prefix)]
    matching = ordered
    pages = max(1, -(-len(ordered) // PAGE_ROWS))
    page = min(query.page, pages)
    shown = ordered[(page - 1) * PAGE_ROWS: page * PAGE_ROWS]
    heading = f"Repositories in {_e(query.prefix)}" if query.prefix else "Largest repositories"
    scope = ""
    if query.prefix:
        disk = covered_disk_size(overview.snapshot, query.prefix)
        scope = (f'<p class="muted" id="scope" data-disk-size="{disk}">{len(matching):,} repositories, '
                 f'{_bytes(disk)} on disk. <a href="{_e(_url(home, query.args(prefix="", page=1)))}">'
                 "Show all</a></p>")
    form = (f'<form class="filter" method="get" action="{_e(home)}">'
            f'<input name="prefix" placeholder="group or group/subgroup" value="{_e(query.prefix)}" '
            'aria-label="Group">'
            + (f'<input type="hidden" name="sort" value="{_e(query.sort)}">' if query.sort != DEFAULT_SORT else "")
            + '<button type="submit">Filter</button></form>')
    headers = []
    for column, label in (("name", "Repository"), ("size", "Size"), ("disk_size", "Disk size"),
                          ("unique_size", "Unique size"), ("tags", "Tags")):
        # A second click on the column in force turns its order around.
        descending = column != "name"
        current = query.sort.removeprefix("-") == column
        target = (column if query.sort.startswith("-") else "-" + column) if current else \
            ("-" + column if descending else column)
        arrow = (" ▼" if query.sort.startswith("-") else " ▲") if current else ""
        css = "" if column == "name" else ' class="num"'
        headers.append(f'<th{css}><a href="{_e(_url(home, query.args(sort=target, page=1)))}">'
                       f"{label}{arrow}</a></th>")
    rows = []
    for repository in shown:
        rows.append(
            f'<tr data-repository="{_e(repository.name)}" data-disk-size="{repository.disk_size or 0}">'
            f'<td class="name"><a href="{_e(hal.repository_path(base, repository.name))}">'
            f"{_e(repository.name)}</a></td>"
            f'<td class="num">{_bytes(repository.size)}</td><td class="num">{_bytes(repository.disk_size)}</td>'
            f'<td class="num">{_bytes(repository.unique_size)}</td>'
            f'<td class="num">{"" if repository.tags is None else len(repository.tags)}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="5" class="muted">No repository in this group.</td></tr>')
    pager = _pager(home, query, page, pages, len(ordered), len(shown))
    return (f"<h2>{heading}</h2>{scope}{form}"
            f'<div class="table-wrap"><table id="repositories"><thead><tr>{"".join(headers)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{pager}')


def _pager(path: str, query: TableQuery, page: int, pages: int, total: int, shown: int) -> str:
    if total <= PAGE_ROWS:
        return f'<div class="pager">{total:,} repositories</div>'
    first = (page - 1) * PAGE_ROWS + 1
    links = [f"{first:,}–{first + shown - 1:,} of {total:,}"]
    if page > 1:
        links.insert(0, f'<a rel="prev" href="{_e(_url(path, query.args(page=page - 1)))}">← Previous</a>')
    if page < pages:
        links.append(f'<a rel="next" href="{_e(_url(path, query.args(page=page + 1)))}">Next →</a>')
    return f'<div class="pager">{" ".join(links)}</div>'


# --- a repository and a tag ----------------------------------------------------------------------

def _crumbs(base: str, name: str, tag: str | None = None, last: str | None = None) -> str:
    """Dashboard / group / subgroup / project [/ tag | / last]: each group links to its group page."""
    parts = [f'<a href="{_e(dashboard_path(base))}">Dashboard</a>']
    segments = name.split("/")
    for depth in range(1, len(segments)):
        group = "/".join(segments[:depth])
        parts.append(f'<a href="{_e(_group_path(base, group))}">{_e(segments[depth - 1])}</a>')
    tail = tag if tag is not None else last
    shown = segments[-1]
    parts.append(f'<a href="{_e(hal.repository_path(base, name))}">{_e(shown)}</a>' if tail is not None
                 else f'<span aria-current="page">{_e(shown)}</span>')
    if tail is not None:
        parts.append(f'<span aria-current="page">{_e(tail)}</span>')
    return '<nav class="crumbs" aria-label="Breadcrumbs">' + " / ".join(parts) + "</nav>"


def _tag_bars(repository: RepositoryUsage, tags: Sequence[TagUsage], base: str) -> str:
    """A bar per tag: its disk size, with the unique part (what deleting it frees) darker."""
    if not tags:
        return ""
    scale = max(max(tag.disk_size for tag in tags), 1)
    row, label_width, width = 22, 180.0, 1000.0
    height = row * len(tags) + 6
    parts = [f'<svg class="bars" viewBox="0 0 {width:g} {height}" role="img" '
             'aria-label="Disk size and unique size per tag">']
    for index, tag in enumerate(tags):
        y = 3 + index * row
        disk = (width - label_width - 110) * tag.disk_size / scale
        unique = (width - label_width - 110) * min(tag.unique_size, tag.disk_size) / scale
        name = _fits(tag.name, label_width, 20) or "…"
        parts.append(
            f'<a href="{_e(hal.tag_path(base, repository.name, tag.name))}">'
            f'<text x="0" y="{y + 14}">{_e(name)}</text>'
            f'<rect class="disk" x="{label_width:g}" y="{y + 2}" width="{disk:.2f}" height="14" fill="#9fb7ec" '
            f'data-tag="{_e(tag.name)}" data-bytes="{tag.disk_size}"><title>{_e(tag.name)}: disk size '
            f'{_e(iec(tag.disk_size))} ({tag.disk_size:,} bytes)</title></rect>'
            f'<rect class="unique" x="{label_width:g}" y="{y + 2}" width="{unique:.2f}" height="14" fill="#2f5fd0" '
            f'data-tag="{_e(tag.name)}" data-bytes="{tag.unique_size}"><title>{_e(tag.name)}: deleting it frees '
            f'{_e(iec(tag.unique_size))} ({tag.unique_size:,} bytes)</title></rect>'
            f'<text x="{label_width + disk + 6:.2f}" y="{y + 14}">{_e(iec(tag.disk_size))}</text></a>')
    parts.append("</svg>")
    return '<div class="picture">' + "".join(parts) + "</div>"


_MEDIA_TYPES = {
    "application/vnd.docker.distribution.manifest.v2+json": "Docker",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker list",
    "application/vnd.docker.distribution.manifest.v1+json": "Docker v1",
    "application/vnd.docker.distribution.manifest.v1+prettyjws": "Docker v1",
    "application/vnd.oci.image.manifest.v1+json": "OCI",
    "application/vnd.oci.image.index.v1+json": "OCI index",
}


def _media_type(media_type: str | None) -> str:
    """A manifest's kind in a word or two, the full media type on hover (the tags table is wide enough)."""
    if not media_type:
        return ""
    return f'<span title="{_e(media_type)}">{_e(_MEDIA_TYPES.get(media_type, media_type))}</span>'


def _short_digest(digest: str | None) -> str:
    if digest is None:
        return '<span class="muted">unknown</span>'
    algorithm, _, value = digest.partition(":")
    return f'<code title="{_e(digest)}">{_e(algorithm)}:{_e(value[:12])}</code>'


def repository_page(repository: RepositoryUsage, base: str, user: str | None, page: int = 1, *, now: float,
                    trend: sparkline.Trend | None = None) -> str:
    """A repository: its figures, its disk size over time (``trend``, from the history), a bar per tag, and its
    tags as a table (a page at a time); ages as of ``now``."""
    tags = sorted(repository.tags or (), key=lambda tag: (-tag.disk_size, tag.name))
    pages = max(1, -(-len(tags) // PAGE_ROWS))
    page = max(1, min(page, pages))
    shown = tags[(page - 1) * PAGE_ROWS: page * PAGE_ROWS]
    cards = _cards([
        ("Disk size", _bytes(repository.disk_size), f'data-disk-size="{repository.disk_size or 0}"'),
        ("Size", _bytes(repository.size), ""),
        ("Deleting it frees", _bytes(repository.unique_size), ""),
        ("Tags", "unknown" if repository.tags is None else f"{len(repository.tags):,}", ""),
    ])
    body = [_crumbs(base, repository.name), f"<h1>{_e(repository.name)}</h1>", cards,
            sparkline.trend_section(trend, "Disk size"),
            '<details class="simulate" id="simulate"><summary>Simulate a cleanup policy for this repository</summary>'
            + _cleanup_form(cleanup_path(base, repository=repository.name), {}) + "</details>"]
    if repository.tags is None:
        body.append('<p class="status"><span class="bad">Its tags could not be read in the last crawl</span>; '
                    "see the crawl errors on the dashboard.</p>")
    else:
        body.append("<h2>Tags by disk size</h2>"
                    '<p class="legend">Light: the tag\'s disk size; dark: what deleting it would free.</p>')
        body.append(_tag_bars(repository, shown, base))
        rows = []
        for tag in shown:
            rows.append(
                f'<tr data-tag="{_e(tag.name)}" data-disk-size="{tag.disk_size}" '
                f'data-created="{_raw_time(tag.created)}" data-first-seen="{_raw_time(tag.first_seen)}">'
                f'<td class="name"><a href="{_e(hal.tag_path(base, repository.name, tag.name))}">{_e(tag.name)}</a>'
                f'</td><td class="num">{_bytes(tag.size)}</td><td class="num">{_bytes(tag.disk_size)}</td>'
                f'<td class="num">{_bytes(tag.unique_size)}</td><td>{_short_digest(tag.digest)}</td>'
                f'<td>{_media_type(tag.media_type)}</td><td>{_e(", ".join(tag.platforms))}</td>'
                f'<td>{_built(tag, now)}</td><td>{_first_seen(tag, now)}</td></tr>')
        path = hal.repository_path(base, repository.name)
        pager = ""
        if pages > 1:
            links = [f"page {page} of {pages}"]
            if page > 1:
                links.insert(0, f'<a rel="prev" href="{_e(_url(path, {"page": str(page - 1)}))}">← Previous</a>')
            if page < pages:
                links.append(f'<a rel="next" href="{_e(_url(path, {"page": str(page + 1)}))}">Next →</a>')
            pager = f'<div class="pager">{" ".join(links)}</div>'
        body.append(
            '<h2>Tags</h2><div class="table-wrap"><table id="tags"><thead><tr><th>Tag</th><th class="num">Size</th>'
            '<th class="num">Disk size</th><th class="num">Unique size</th><th>Digest</th><th>Media type</th>'
            '<th>Platforms</th><th>Created</th><th>First seen</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{pager}')
    api = hal.repository_path(base, repository.name) + "?view=api"
    return _page(repository.name, base, "".join(body), user, api)


def tag_page(repository: RepositoryUsage, tag: TagUsage, base: str, user: str | None, *, now: float) -> str:
    """A tag: its figures and what it points at; ages as of ``now``."""
    cards = _cards([
        ("Disk size", _bytes(tag.disk_size), f'data-disk-size="{tag.disk_size}"'),
        ("Size (what a pull transfers)", _bytes(tag.size), ""),
        ("Deleting it frees", _bytes(tag.unique_size), ""),
    ])
    facts = [("Digest", f'<code>{_e(tag.digest)}</code>' if tag.digest else '<span class="muted">unknown</span>'),
             ("Media type", f"<code>{_e(tag.media_type)}</code>" if tag.media_type else
              '<span class="muted">unknown</span>'),
             ("Platforms", _e(", ".join(tag.platforms)) or '<span class="muted">a single platform</span>'),
             ("Created", _built(tag, now)),
             ("First seen", _first_seen(tag, now))]
    table = "".join(f"<tr><th>{label}</th><td class=\"name\">{value}</td></tr>" for label, value in facts)
    body = (_crumbs(base, repository.name, tag.name) + f"<h1>{_e(repository.name)}:{_e(tag.name)}</h1>" + cards
            + f'<div class="table-wrap"><table id="tag" data-created="{_raw_time(tag.created)}" '
              f'data-first-seen="{_raw_time(tag.first_seen)}">{table}</table></div>')
    api = hal.tag_path(base, repository.name, tag.name) + "?view=api"
    return _page(f"{repository.name}:{tag.name}", base, body, user, api)


# --- groups --------------------------------------------------------------------------------------

GROUP_SORT_COLUMNS = ("name", "disk_size", "size", "unique_size", "repositories", "tags")
TAGS_SHOWN = 8


def page_number(args: Mapping[str, str]) -> int:
    """``?page=`` as links carry it: a whole number from 1 to a million, else the first page."""
    try:
        return max(1, min(int(args.get("page", "1")), 10**6))
    except ValueError:
        return 1


@dataclass(frozen=True, slots=True)
class GroupQuery:
    """What the groups table shows: the depth of its groups, their order and the page (from the query string)."""

    depth: int = 1
    sort: str = DEFAULT_SORT
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> GroupQuery:
        """Forgiving, as links are: an unknown order, depth or page falls back to the default."""
        sort = args.get("sort", DEFAULT_SORT)
        if sort.removeprefix("-") not in GROUP_SORT_COLUMNS:
            sort = DEFAULT_SORT
        try:
            depth = max(1, min(int(args.get("depth", "1")), hal.MAX_DEPTH))
        except ValueError:
            depth = 1
        return cls(depth, sort, page_number(args))

    def args(self, **changes: str | int) -> dict[str, str | None]:
        values: dict[str, str | int] = {"depth": self.depth, "sort": self.sort, "page": self.page, **changes}
        return {
            "depth": None if values["depth"] == 1 else str(values["depth"]),
            "sort": None if values["sort"] == DEFAULT_SORT else str(values["sort"]),
            "page": None if values["page"] == 1 else str(values["page"]),
        }


def _group_key(column: str) -> Callable[[GroupUsage], object]:
    if column == "name":
        return lambda group: group.name
    if column == "repositories":
        return lambda group: group.repository_count
    if column == "tags":
        return lambda group: group.tag_count
    return lambda group: getattr(group, column)


def sorted_groups(groups: Iterable[GroupUsage], sort: str) -> list[GroupUsage]:
    """Ordered by ``sort`` (``-`` for descending); unknown unique sizes last, ties by name."""
    key = _group_key(sort.removeprefix("-"))
    items = sorted(groups, key=lambda group: group.name)
    known = [group for group in items if key(group) is not None]
    known.sort(key=key, reverse=sort.startswith("-"))  # type: ignore[arg-type]
    return known + [group for group in items if key(group) is None]


def _depth(name: str) -> int:
    return name.count("/") + 1


def _sized(repositories: Iterable[RepositoryUsage]) -> list[tuple[str, int]]:
    """The treemap's leaves: each repository with bytes on disk (unknown and zero sizes have no area)."""
    return [(repository.name, repository.disk_size) for repository in repositories if repository.disk_size]


def _sort_links(columns: Sequence[tuple[str, str]], sort: str, href: Callable[[str], str]) -> str:
    """Column headers that sort the table; a second click on the column in force turns its order around."""
    headers = []
    for column, label in columns:
        if not column:
            headers.append(f'<th class="num">{label}</th>')
            continue
        current = sort.removeprefix("-") == column
        target = (column if sort.startswith("-") else "-" + column) if current else \
            ("-" + column if column != "name" else column)
        arrow = (" ▼" if sort.startswith("-") else " ▲") if current else ""
        css = "" if column == "name" else ' class="num"'
        headers.append(f'<th{css}><a href="{_e(href(target))}">{label}{arrow}</a></th>')
    return "".join(headers)


def _share(part: int, whole: int) -> str:
    """A share of the registry's disk: a percentage and a small bar (an SVG, as the CSP allows no style)."""
    fraction = part / whole if whole else 0.0
    return (f'<svg class="share" viewBox="0 0 100 8" aria-hidden="true"><rect width="100" height="8" fill="#e4e8ee"/>'
            f'<rect width="{100 * fraction:.2f}" height="8" fill="#2f5fd0"/></svg> {fraction:.1%}')


def _simple_pager(href: Callable[[int], str], page: int, pages: int, total: int, shown: int, noun: str,
                  counted: str | None = None) -> str:
    """Previous and next links around a page of rows; ``counted`` says how many there are in all."""
    if total <= PAGE_ROWS:
        return f'<div class="pager">{counted or f"{total:,} {noun}"}</div>'
    first = (page - 1) * PAGE_ROWS + 1
    links = [f"{first:,}–{first + shown - 1:,} of {total:,} {noun}"]
    if page > 1:
        links.insert(0, f'<a rel="prev" href="{_e(href(page - 1))}">← Previous</a>')
    if page < pages:
        links.append(f'<a rel="next" href="{_e(href(page + 1))}">Next →</a>')
    return f'<div class="pager">{" ".join(links)}</div>'


def _count(number: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number:,} {noun if number == 1 else plural}"


def _window(items: Sequence[object], page: int) -> tuple[int, int, int]:
    """The page actually shown (the last one when asked past it), the page count, and the first index."""
    pages = max(1, -(-len(items) // PAGE_ROWS))
    page = min(max(1, page), pages)
    return page, pages, (page - 1) * PAGE_ROWS


def _data_age(snapshot: Snapshot, now: float) -> str:
    return f'<p class="status" id="status">Data updated {_when(snapshot.timestamp, now)}.</p>'


def _no_data(title: str, base: str, user: str | None, api: str) -> str:
    return _page(title, base, f"<h1>{_e(title)}</h1>"
                 '<p class="status" id="status">No registry data yet: the first crawl is running.</p>', user, api)


def _group_crumbs(base: str, name: str | None, last: str | None = None) -> str:
    """Dashboard / Groups / group / subgroup [/ last]: each group links to its own page, the current one not."""
    parts = [f'<a href="{_e(dashboard_path(base))}">Dashboard</a>']
    if name is None and last is None:
        parts.append('<span aria-current="page">Groups</span>')
    else:
        parts.append(f'<a href="{_e(groups_path(base))}">Groups</a>')
    if name is not None:
        segments = name.split("/")
        for depth in range(1, len(segments) + 1):
            if depth == len(segments) and last is None:
                parts.append(f'<span aria-current="page">{_e(segments[-1])}</span>')
            else:
                parts.append(f'<a href="{_e(_group_path(base, "/".join(segments[:depth])))}">'
                             f"{_e(segments[depth - 1])}</a>")
    if last is not None:
        parts.append(f'<span aria-current="page">{_e(last)}</span>')
    return '<nav class="crumbs" aria-label="Breadcrumbs">' + " / ".join(parts) + "</nav>"


class GroupsOverview:
    """What the groups page shows of one snapshot whoever looks: per depth asked for, its groups, their treemap
    and their orders. Built once per snapshot (and ``base``, e.g. by ``browser.Overviews``); a request then only
    cuts out a page. Racing threads may compute the same entry; both results are equal."""

    def __init__(self, snapshot: Snapshot, base: str) -> None:
        self.snapshot = snapshot
        self.base = base
        self.total_disk = snapshot.total_disk_size
        self.deepest = max((_depth(group.name) for group in snapshot.groups), default=1)
        self._groups: dict[int, list[GroupUsage]] = {}
        self._totals: dict[int, GroupTotals] = {}
        self._treemaps: dict[int, str] = {}
        self._orders: dict[tuple[int, str], list[GroupUsage]] = {}

    def groups(self, depth: int) -> list[GroupUsage]:
        """The groups of ``depth`` path segments, by name."""
        found = self._groups.get(depth)
        if found is None:
            found = self._groups[depth] = [group for group in self.snapshot.groups if _depth(group.name) == depth]
        return found

    def totals(self, depth: int) -> GroupTotals:
        """What the groups of ``depth`` cover together (they do not overlap)."""
        found = self._totals.get(depth)
        if found is None:
            found = self._totals[depth] = group_totals(self.groups(depth))
        return found

    def treemap(self, depth: int) -> str:
        """The groups of ``depth``, each filled with the repositories it covers."""
        found = self._treemaps.get(depth)
        if found is None:
            snapshot = self.snapshot
            members = {group.name: _sized(covered(snapshot, group.name)) for group in self.groups(depth)}
            tiles = layout(members, TREEMAP_WIDTH, TREEMAP_HEIGHT)
            found = self._treemaps[depth] = _treemap(tiles, snapshot, self.base, "", "Disk usage by group")
        return found

    def order(self, depth: int, sort: str) -> list[GroupUsage]:
        found = self._orders.get((depth, sort))
        if found is None:
            found = self._orders[depth, sort] = sorted_groups(self.groups(depth), sort)
        return found


def groups_page(snapshot: Snapshot | None, base: str, user: str | None, query: Mapping[str, str], *,
                now: float, overview: GroupsOverview | None = None) -> str:
    """The groups at one depth (top-level by default, ``?depth=N``): totals, a treemap, a sortable table.
    ``overview`` (of ``snapshot``) is what earlier requests already computed."""
    view = GroupQuery.from_args(query)
    path = groups_path(base)
    api = _url(path, {"depth": None if view.depth == 1 else str(view.depth), "view": "api"})
    if snapshot is None:
        return _no_data("Groups", base, user, api)
    if overview is None or overview.snapshot is not snapshot or overview.base != base:
        overview = GroupsOverview(snapshot, base)
    total_disk = overview.total_disk
    at_depth = overview.groups(view.depth)
    totals = overview.totals(view.depth)
    covered_disk, covered_repositories = totals.disk_size, totals.repository_count
    heading = "Top-level groups" if view.depth == 1 else f"Groups at depth {view.depth}"
    cards = _cards([
        ("Disk used by the registry", _bytes(total_disk), 'id="total-disk-size"'),
        (heading, f"{len(at_depth):,}", 'id="group-count"'),
        ("Their disk size", _bytes(covered_disk), 'id="groups-disk-size"'),
        ("Repositories in them", f"{covered_repositories:,} of {len(snapshot.repositories):,}",
         'id="repository-count"'),
    ])
    depths = []
    for depth in range(1, min(overview.deepest, hal.MAX_DEPTH) + 1):
        label = "top level" if depth == 1 else f"depth {depth}"
        if depth == view.depth:
            depths.append(f'<strong aria-current="true">{label}</strong>')
        else:
            depths.append(f'<a href="{_e(_url(path, view.args(depth=depth, page=1)))}">{label}</a>')
    body = [
        _group_crumbs(base, None), f"<h1>{heading}</h1>",
        f'<section id="totals" data-total-disk-size="{total_disk}" data-group-count="{len(at_depth)}" '
        f'data-groups-disk-size="{covered_disk}">{cards}</section>',
        _data_age(snapshot, now),
        f'<p class="legend">Show groups at: {" · ".join(depths)}</p>',
        "<h2>Where the disk goes</h2>",
        '<p class="legend">Each outlined rectangle is a group, sized by its disk size, filled with the repositories '
        "it covers; click a group's name band to open the group, a repository to open it.</p>",
        f'<div class="picture">{overview.treemap(view.depth)}</div>',
    ]
    ordered = overview.order(view.depth, view.sort)
    page, pages, first = _window(ordered, view.page)
    shown = ordered[first:first + PAGE_ROWS]
    headers = _sort_links([("name", "Group"), ("disk_size", "Disk size"), ("size", "Size"),
                           ("unique_size", "Deleting it frees"), ("repositories", "Repositories"),
                           ("tags", "Tags"), ("", "Share of disk")],
                          view.sort, lambda target: _url(path, view.args(sort=target, page=1)))
    rows = [
        f'<tr data-group="{_e(group.name)}" data-disk-size="{group.disk_size}" data-size="{group.size}" '
        f'data-unique-size="{"" if group.unique_size is None else group.unique_size}" '
        f'data-repository-count="{group.repository_count}" data-tag-count="{group.tag_count}">'
        f'<td class="name"><a href="{_e(_group_path(base, group.name))}">{_e(group.name)}</a></td>'
        f'<td class="num">{_bytes(group.disk_size)}</td><td class="num">{_bytes(group.size)}</td>'
        f'<td class="num">{_bytes(group.unique_size)}</td><td class="num">{group.repository_count:,}</td>'
        f'<td class="num">{group.tag_count:,}</td><td class="num">{_share(group.disk_size, total_disk)}</td></tr>'
        for group in shown]
    if not rows:
        rows.append('<tr><td colspan="7" class="muted">No group at this depth.</td></tr>')
    csv = _url(path, {"depth": None if view.depth == 1 else str(view.depth), "format": "csv"})
    body.append(
        f'<h2>{heading}</h2><p class="legend">Disk sizes of groups at one depth add up to what they cover; '
        "&ldquo;deleting it frees&rdquo; counts only the layers no repository outside the group uses. "
        f'<a id="csv" href="{_e(csv)}" download>Download as CSV</a> · '
        f'<a href="{_e(cleanup_path(base))}">Simulate a cleanup policy</a></p>'
        f'<div class="table-wrap"><table id="groups"><thead><tr>{headers}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
        + _simple_pager(lambda number: _url(path, view.args(page=number)), page, pages, len(ordered), len(shown),
                        "groups"))
    return _page("Groups", base, "".join(body), user, api)


def _cleanup_form(action: str | None, values: Mapping[str, str], error: PolicyError | None = None,
                  defaults: bool = True) -> str:
    """GitLab's four policy fields, as a GET form; ``defaults`` fills in GitLab's usual policy where nothing was
    asked yet."""
    fields = (
        ("keep_n", "Keep the newest", "10", "tags per repository (the newest by creation time)", "numeric"),
        ("older_than", "Delete only tags older than", "90d", "a duration: 7d, 14d, 90d, 2 weeks, 1 month", "text"),
        ("name_regex", "Delete tags matching", ".*", "RE2, anchored as GitLab does (\\A…\\z, not grouped: "
         "a|b means starts with a or ends with b)", "text"),
        ("name_regex_keep", "Keep tags matching", "", "RE2, anchored alike; wins over the above, e.g. "
         "(main|release-.*)", "text"),
    )
    asked = any(name in values for name in POLICY_PARAMETERS)
    # Without an action, a browser sends the form to the page's own address.
    target = "" if action is None else f' action="{_e(action)}"'
    parts = [f'<form class="policy" method="get"{target} id="cleanup-form">']
    for name, label, default, hint, mode in fields:
        value = values.get(name, "") if asked or not defaults else default
        invalid = error is not None and error.parameter == name
        described = f"{name}-hint" + (f" {name}-error" if invalid else "")
        message = (f'<span class="field-error" id="{name}-error" role="alert">{_e(error.message)}</span>'
                   if invalid and error is not None else "")
        parts.append(
            f'<div class="field"><label for="{name}">{label}</label>'
            f'<input id="{name}" name="{name}" value="{_e(value[:MAX_FIELD])}" inputmode="{mode}" '
            f'placeholder="{_e(default or "none")}" maxlength="{MAX_FIELD}" aria-describedby="{described}"'
            f"{INVALID if invalid else ''}>"
            f'<span class="hint" id="{name}-hint">{_e(hint)}</span>{message}</div>')
    parts.append('<div class="field submit"><button type="submit">Simulate</button></div></form>')
    return "".join(parts)


MAX_FIELD = 1000
INVALID = ' aria-invalid="true"'


class GroupOverview:
    """What a group's page shows of one snapshot whoever looks: its cards, its treemap (a walk over every
    repository it covers) and its subgroups and direct repositories in order. Built once per snapshot, group and
    ``base`` (``resources.GroupOverviews`` keeps the latest few); a request then only cuts out a page of rows."""

    def __init__(self, snapshot: Snapshot, group: GroupUsage, base: str) -> None:
        self.snapshot, self.group, self.base = snapshot, group, base
        self.cards = _cards([
            ("Disk size", _bytes(group.disk_size), f'id="group-disk-size" data-disk-size="{group.disk_size}"'),
            ("Size (sum of tag sizes)", _bytes(group.size), f'id="group-size" data-size="{group.size}"'),
            ("Deleting this group frees", _bytes(group.unique_size),
             f'id="group-unique-size" data-unique-size="{"" if group.unique_size is None else group.unique_size}"'),
            ("Repositories", f"{group.repository_count:,}",
             f'id="group-repository-count" data-repository-count="{group.repository_count}"'),
            ("Tags", f"{group.tag_count:,}", f'id="group-tag-count" data-tag-count="{group.tag_count}"'),
            ("Share of the registry's disk", _share(group.disk_size, snapshot.total_disk_size), ""),
        ])
        subgroups = [child for name in group.subgroups if (child := snapshot.group(name)) is not None]
        repositories = [repository for name in group.repositories
                        if (repository := snapshot.repository(name)) is not None]
        members = {child.name: _sized(covered(snapshot, child.name)) for child in subgroups}
        tiles = layout(members, TREEMAP_WIDTH, TREEMAP_HEIGHT, leaves=dict(_sized(repositories)), root=group.name)
        self.treemap = _treemap(tiles, snapshot, base, group.name, f"Disk usage in {group.name}")
        subgroups.sort(key=lambda child: (-child.disk_size, child.name))
        self.subgroup_count, self.repository_count = len(subgroups), len(repositories)
        self.listed: list[GroupUsage | RepositoryUsage] = [*subgroups, *sorted_repositories(repositories,
                                                                                             "-disk_size")]


def group_page(snapshot: Snapshot, group: GroupUsage, base: str, user: str | None, query: Mapping[str, str], *,
               now: float, overview: GroupOverview | None = None, trend: sparkline.Trend | None = None) -> str:
    """A group: its figures, a treemap of its subgroups and direct repositories, both as a table, and the way
    to simulate a cleanup policy on it. ``overview`` (of ``snapshot``, ``group`` and ``base``) is what earlier
    requests already computed."""
    if overview is None or overview.snapshot is not snapshot or overview.group is not group or \
            overview.base != base:
        overview = GroupOverview(snapshot, group, base)
    path = _group_path(base, group.name)
    listed = overview.listed
    page, pages, first = _window(listed, page_number(query))
    rows = []
    for item in listed[first:first + PAGE_ROWS]:
        if isinstance(item, GroupUsage):
            rows.append(
                f'<tr data-group="{_e(item.name)}" data-disk-size="{item.disk_size}">'
                f'<td class="name"><a href="{_e(_group_path(base, item.name))}">{_e(_relative(item.name, group.name))}'
                '/</a></td><td>subgroup</td>'
                f'<td class="num">{_bytes(item.disk_size)}</td><td class="num">{_bytes(item.size)}</td>'
                f'<td class="num">{_bytes(item.unique_size)}</td><td class="num">{item.repository_count:,}</td>'
                f'<td class="num">{item.tag_count:,}</td></tr>')
        else:
            rows.append(
                f'<tr data-repository="{_e(item.name)}" data-disk-size="{item.disk_size or 0}">'
                f'<td class="name"><a href="{_e(hal.repository_path(base, item.name))}">'
                f'{_e(_relative(item.name, group.name))}</a></td><td>repository</td>'
                f'<td class="num">{_bytes(item.disk_size)}</td><td class="num">{_bytes(item.size)}</td>'
                f'<td class="num">{_bytes(item.unique_size)}</td><td class="num">1</td>'
                f'<td class="num">{"" if item.tags is None else f"{len(item.tags):,}"}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="7" class="muted">Nothing in this group.</td></tr>')
    body = [
        _group_crumbs(base, group.name), f"<h1>{_e(group.name)}</h1>",
        f'<section id="group" data-group="{_e(group.name)}">{overview.cards}</section>', _data_age(snapshot, now),
        sparkline.trend_section(trend, "Disk size"),
        _unreadable(group.unreadable_repositories, "in this group", "they add nothing to its figures, and",
                    "what deleting this group frees"),
        "<h2>Where its disk goes</h2>",
        '<p class="legend">Subgroups (outlined, filled with their repositories) and the group\'s own repositories, '
        "sized by disk size; click to open.</p>",
        f'<div class="picture">{overview.treemap}</div>',
        f'<h2 id="contents">Subgroups and repositories</h2>'
        f'<div class="table-wrap"><table id="contents-table"><thead><tr><th>Name</th><th>Kind</th>'
        '<th class="num">Disk size</th><th class="num">Size</th><th class="num">Deleting it frees</th>'
        '<th class="num">Repositories</th><th class="num">Tags</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
        + _simple_pager(lambda number: _url(path, {"page": str(number)}) + "#contents", page, pages, len(listed),
                        len(rows), "subgroups and repositories",
                        f"{_count(overview.subgroup_count, 'subgroup')} and "
                        f"{_count(overview.repository_count, 'repository')} directly in this group"),
        '<h2 id="cleanup">Simulate a cleanup policy for this group</h2>'
        '<p class="legend">What GitLab\'s cleanup policy would delete in every repository of the group, and what '
        "garbage collection would then free. Nothing is deleted.</p>",
        _cleanup_form(cleanup_path(base, group=group.name), {}),
    ]
    return _page(group.name, base, "".join(body), user, path + "?view=api")


# --- the cleanup simulator -----------------------------------------------------------------------

def _scope_of(result: CleanupResult | None, scope: Scope | None) -> tuple[str | None, str | None] | None:
    """The group and the repository simulated on; None where neither the result nor the caller says."""
    known = scope if scope is not None else result.scope if result is not None else None
    return None if known is None else (known.group, known.repository)


def _tag_list(tags: Sequence[str]) -> str:
    shown = ", ".join(_e(tag) for tag in tags[:TAGS_SHOWN])
    more = len(tags) - TAGS_SHOWN
    rest = f' <span class="muted">and {more:,} more</span>' if more > 0 else ""
    return f'<td class="name tags">{shown}{rest}</td>'


def cleanup_page(snapshot: Snapshot | None, result: CleanupResult | None, error: PolicyError | None,
                 query: Mapping[str, str], base: str, user: str | None, *, now: float,
                 scope: Scope | None = None) -> str:
    """The cleanup-policy simulator: the policy form and, with a ``result``, what the policy would delete and
    free; with an ``error``, its message beside the field it names. ``scope`` says what the page simulates on
    (without it, the result's; with neither, the form is sent to the page's own address)."""
    known = _scope_of(result, scope)
    group, repository = known if known is not None else (None, None)
    path = cleanup_path(base, group, repository)
    policy_args = {key: query[key] for key in POLICY_PARAMETERS if key in query}
    api = _url(path, {**policy_args, "view": "api"})
    if repository is not None:
        where, crumbs = f"repository {repository}", _crumbs(base, repository, None, "Cleanup simulation")
    elif group is not None:
        where, crumbs = f"group {group}", _group_crumbs(base, group, "Cleanup simulation")
    else:
        where = "the whole registry" if known is not None else ""
        crumbs = (f'<nav class="crumbs" aria-label="Breadcrumbs"><a href="{_e(dashboard_path(base))}">Dashboard</a>'
                  ' / <span aria-current="page">Cleanup simulation</span></nav>')
    if snapshot is None:
        return _no_data("Cleanup simulation", base, user, api)
    heading = "Cleanup policy simulation" + (f": {_e(where)}" if where else "")
    body = [crumbs, f"<h1>{heading}</h1>", _data_age(snapshot, now),
            '<p class="legend">GitLab\'s rules, per repository: never <code>latest</code>; only tags matching '
            "&ldquo;delete&rdquo; and not &ldquo;keep&rdquo;; the newest <em>n</em> by creation time stay (a tag "
            "without a known creation time counts as the newest, as GitLab sorts it); of the rest, those older than "
            "the given age go (a tag without a known creation time only without an age limit). Nothing is deleted "
            "here.</p>"]
    if error is not None and error.parameter not in POLICY_PARAMETERS:
        body.append(f'<p class="message" role="alert" id="cleanup-error">{_e(error.parameter)}: '
                    f"{_e(error.message)}</p>")
    body.append(_cleanup_form(path if known is not None else None, query, error))
    if result is not None and error is None:
        body.append(_cleanup_result(result, base, path, query))
    return _page("Cleanup simulation", base, "".join(body), user, api if known is not None else None)


def _policy_text(result: CleanupResult) -> str:
    """The policy as the simulator understood it, in words."""
    policy = result.policy
    parts = [f"delete tags matching <code>{_e(policy.name_regex)}</code>"]
    if policy.name_regex_keep:
        parts.append(f"but keep those matching <code>{_e(policy.name_regex_keep)}</code>")
    if policy.keep_n is not None:
        parts.append(f"keep the newest {policy.keep_n:,} per repository")
    if policy.older_than is not None:
        seconds = int(policy.older_than.total_seconds())
        parts.append(f'only those older than <span title="{seconds:,} seconds">{_e(policy.older_than_text or "")}'
                     "</span>")
    return '<p class="muted" id="policy">Policy: ' + "; ".join(parts) + "; never <code>latest</code>.</p>"


def _unreadable(count: int, where: str, consequence: str, figures: str) -> str:
    """A warning that ``count`` repositories ``where`` have no figures, so ``figures`` may be overstated."""
    if not count:
        return ""
    return (f'<p class="message" id="unreadable" data-unreadable-repositories="{count}">'
            f"{_count(count, 'repository')} {_e(where)} could not be read in the last crawl: {_e(consequence)} "
            f"their layers, unknown here, may be shared with what is counted, so {_e(figures)} may be overstated."
            "</p>")


def _unknown_ages(result: CleanupResult) -> str:
    """The tags kept only because their creation time is unknown, in one sentence (none: nothing)."""
    count = result.tags_created_unknown
    if not count:
        return ""
    return (f'<p class="message" id="created-unknown">{_count(count, "tag")} would go but for an unknown creation '
            "time, which older_than never deletes: reproducible builds record 1970, which this service shows as "
            "unknown, while GitLab without its metadata database reads 1970 and would delete such tags under "
            "older_than.</p>")


def _cleanup_result(result: CleanupResult, base: str, path: str, query: Mapping[str, str]) -> str:
    policy_args: dict[str, str | None] = {key: query[key] for key in POLICY_PARAMETERS if key in query}
    own_sum = result.own_freed_size
    if result.freed_size > own_sum:
        together = (f"Here that is {_bytes(result.freed_size - own_sum)} more than the sum of what each "
                    f"repository's deletions free alone ({_bytes(own_sum)}): layers shared by deleted tags of several "
                    "repositories.")
    else:
        together = "Here it equals the sum of what each repository's deletions free alone."
    summary = (
        f'<section id="cleanup-result" data-tags-deleted="{result.tags_deleted}" '
        f'data-repositories-affected="{result.repositories_affected}" data-freed-size="{result.freed_size}" '
        f'data-tags-in-scope="{result.tags_in_scope}" data-repositories-in-scope="{result.repositories_in_scope}" '
        f'data-own-freed-size="{own_sum}" data-tags-created-unknown="{result.tags_created_unknown}" '
        f'data-unreadable-repositories="{result.unreadable_repositories}">'
        f'<p class="verdict">Would delete <strong>{result.tags_deleted:,}</strong> tag'
        f'{"" if result.tags_deleted == 1 else "s"} in <strong>{result.repositories_affected:,}</strong> '
        f'repositor{"y" if result.repositories_affected == 1 else "ies"} and free '
        f'<strong>{_bytes(result.freed_size)}</strong>.</p>'
        + _policy_text(result)
        + f'<p class="muted" id="evaluated-at" data-evaluated-at="{result.evaluated_at!r}">Ages are measured from '
        f'the data\'s time, <time datetime="{iso(result.evaluated_at)}">{iso(result.evaluated_at)}</time>, so this '
        "answer stays the same until the next refresh.</p>"
        + f'<p class="muted">Of {result.tags_in_scope:,} tags in {result.repositories_in_scope:,} repositories in '
        "scope. Freed space is counted set-wise across the whole registry, as garbage collection frees it: a layer "
        "is freed when every tag that references it, in any repository, is deleted, so a tag sharing its manifest "
        "or layers with a kept tag frees none of them, and deletions in several repositories together can free "
        f"more than the sum of each repository's alone. {together}</p>"
        + _unreadable(result.unreadable_repositories, "in scope", "nothing is deleted there, and", "freed sizes")
        + f"{_unknown_ages(result)}</section>")
    page, pages, first = _window(result.repositories, page_number(query))
    shown = result.repositories[first:first + PAGE_ROWS]
    rows = [
        f'<tr data-repository="{_e(entry.name)}" data-freed-size="{entry.freed_size}" '
        f'data-tags-deleted="{entry.tags_deleted}">'
        f'<td class="name"><a href="{_e(hal.repository_path(base, entry.name))}">{_e(entry.name)}</a></td>'
        f'<td class="num">{entry.tags_deleted:,}</td><td class="num">{_bytes(entry.freed_size)}</td>'
        f"{_tag_list(entry.tags)}</tr>"
        for entry in shown]
    if not rows:
        rows.append('<tr><td colspan="4" class="muted">This policy deletes nothing here.</td></tr>')
    csv = _url(path, {**policy_args, "format": "csv"})
    return (
        summary + f'<h2>Affected repositories</h2><p class="legend">Largest first by what each repository\'s own '
        f'deletions free. <a id="csv" href="{_e(csv)}" download>Download as CSV</a></p>'
        '<div class="table-wrap"><table id="cleanup-repositories"><thead><tr><th>Repository</th>'
        '<th class="num">Tags deleted</th><th class="num">Its deletions free</th><th>Tags deleted (newest first)</th>'
        f'</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        + _simple_pager(lambda number: _url(path, {**policy_args, "page": str(number)}), page, pages,
                        len(result.repositories), len(shown), "repositories affected"))
