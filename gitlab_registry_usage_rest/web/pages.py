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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from ..model import RepositoryUsage, Snapshot, TagUsage
from ..state import RefreshStatus
from . import hal
from .html import content_security_policy
from .humanize import age, duration, iec, iso
from .treemap import Tile, group_repositories, layout, top_level_group

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
    "header .brand{font-weight:600;color:var(--ink);text-decoration:none;margin-right:auto}"
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


def _page(title: str, base: str, body: str, user: str | None, api_view: str | None = None) -> str:
    """The frame every page shares: a header with the way home, the API view and logout."""
    tools = []
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
        try:
            page = max(1, min(int(args.get("page", "1")), 10**6))
        except ValueError:
            page = 1
        return cls(sort, args.get("prefix", "").strip().strip("/")[:1024], page)

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
    if not tiles:
        return '<p class="muted">No storage to show yet.</p>'
    figures = {repository.name: repository for repository in snapshot.repositories}
    # A tile along its group's top edge leaves the first line to the group's name.
    tops = {tile.path: tile.y for tile in tiles if tile.kind == "group"}
    parts = [f'<svg class="treemap" viewBox="0 0 {TREEMAP_WIDTH:g} {TREEMAP_HEIGHT:g}" role="img" '
             'aria-label="Disk usage by group and repository">']
    for tile in tiles:
        parts.append(_tile_svg(tile, base, figures, tops))
    parts.append("</svg>")
    return "".join(parts)


def _rect(tile: Tile, style: str) -> str:
    return (f'<rect x="{tile.x:.2f}" y="{tile.y:.2f}" width="{tile.w:.2f}" height="{tile.h:.2f}" {style}'
            f' data-kind="{tile.kind}" data-path="{_e(tile.path)}" data-bytes="{tile.size}"')


def _tile_svg(tile: Tile, base: str, figures: Mapping[str, RepositoryUsage], tops: Mapping[str, float]) -> str:
    if tile.kind == "group":
        href = _url(dashboard_path(base), {"prefix": tile.path})
        label = _fits(tile.path, tile.w, tile.h, 13)
        text = (f'<a href="{_e(href)}"><text class="group-label" x="{tile.x + 4:.2f}" y="{tile.y + 15:.2f}">'
                f"{_e(label)}</text></a>") if label else ""
        title = f"{tile.path}: {iec(tile.size)} on disk ({tile.size:,} bytes)"
        return (_rect(tile, 'fill="none" stroke="#fff" stroke-width="2.5" pointer-events="none"')
                + f"><title>{_e(title)}</title></rect>{text}")
    group = top_level_group(tile.path) if tile.kind == "repository" else tile.path
    hue = _hue(group)
    if tile.kind == "rest":
        what = f"{tile.count} more groups" if tile.path == "" else f"{tile.count} smaller repositories of {group}"
        href = _url(dashboard_path(base), {"prefix": tile.path or None, "sort": "-disk_size"})
        title = f"{what}: {iec(tile.size)} on disk ({tile.size:,} bytes)"
        fill = f'fill="hsl({hue},25%,86%)" stroke="#fff" stroke-width=".6"'
        label = _fits(what, tile.w, tile.h)
    else:
        repository = figures[tile.path]
        href = hal.repository_path(base, tile.path)
        title = (f"{tile.path}\ndisk size {iec(repository.disk_size)} ({repository.disk_size or 0:,} bytes)\n"
                 f"size {iec(repository.size)} · unique {iec(repository.unique_size)} · "
                 f"{len(repository.tags or ())} tags")
        fill = f'fill="hsl({hue},55%,{66 + (zlib.crc32(tile.path.encode("utf-8", "surrogatepass")) % 14)}%)" ' \
               'stroke="#fff" stroke-width=".6"'
        short = tile.path[len(group) + 1:] if tile.path.startswith(group + "/") else tile.path
        label = _fits(short, tile.w, tile.h)
    under_group_name = abs(tops.get(group, -1.0) - tile.y) < 0.01
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
        total_disk = sum(repository.disk_size or 0 for repository in repositories)
        total_size = sum(repository.size or 0 for repository in repositories)
        tag_count = sum(len(repository.tags or ()) for repository in repositories)
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
        # One sorted list per order asked for (SORT_COLUMNS x 2 at most); racing threads compute the same list.
        self._orders: dict[str, list[RepositoryUsage]] = {}

    def order(self, sort: str) -> list[RepositoryUsage]:
        ordered = self._orders.get(sort)
        if ordered is None:
            ordered = self._orders[sort] = sorted_repositories(self.snapshot.repositories, sort)
        return ordered


def dashboard_page(view: Dashboard, overview: Overview | None = None) -> str:
    """The dashboard; ``overview`` (of ``view.snapshot``) is what earlier requests already computed."""
    snapshot, base = view.snapshot, view.base
    if snapshot is None:
        return _page("Dashboard", base, "<h1>Registry usage</h1>" + _status(view), view.user,
                     hal.repositories_path(base) + "?view=api")
    if overview is None or overview.snapshot is not snapshot or overview.base != base:
        overview = Overview(snapshot, base)
    body = (
        "<h1>Registry usage</h1>" + overview.totals + _status(view)
        + "<h2>Where the disk goes</h2>"
        + '<p class="legend">Each rectangle is a repository, sized by its disk size (shared layers counted once), '
          "grouped by top-level group; hover for the figures, click to open.</p>"
        + f'<div class="picture">{overview.treemap}</div>'
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
        disk = sum(repository.disk_size or 0 for repository in matching)
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

def _crumbs(base: str, name: str, tag: str | None = None) -> str:
    """Dashboard / group / subgroup / project [/ tag]: each group links to the dashboard filtered by it."""
    home = dashboard_path(base)
    parts = [f'<a href="{_e(home)}">Dashboard</a>']
    segments = name.split("/")
    for depth in range(1, len(segments)):
        group = "/".join(segments[:depth])
        parts.append(f'<a href="{_e(_url(home, {"prefix": group}))}">{_e(segments[depth - 1])}</a>')
    last = segments[-1]
    parts.append(f'<a href="{_e(hal.repository_path(base, name))}">{_e(last)}</a>' if tag is not None else _e(last))
    if tag is not None:
        parts.append(_e(tag))
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


def repository_page(repository: RepositoryUsage, base: str, user: str | None, page: int = 1, *, now: float) -> str:
    """A repository: its figures, a bar per tag, and its tags as a table (a page at a time); ages as of ``now``."""
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
    body = [_crumbs(base, repository.name), f"<h1>{_e(repository.name)}</h1>", cards]
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
