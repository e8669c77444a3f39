"""CSV exports of ``/repositories``, ``/groups``, ``/groups/<path>`` (every repository the group covers) and the
cleanup answers, for spreadsheets and chargeback scripts.

Asked for with ``Accept: text/csv``, or ``?format=csv`` (a link on a page cannot set a header). One header row whose
columns are named as the JSON fields, then one row per item, every item rather than a page (unless ``limit`` or
``offset`` are given). Bytes are integers, unknown figures empty cells; Python's ``csv`` module quotes as RFC 4180
requires (lines end in CRLF). Rendered once per snapshot and query through the render cache, as JSON is.

Spreadsheet formula injection (OWASP "CSV Injection"): a text cell that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return would be run as a formula by Excel or LibreOffice, and names come from whoever may push;
such a cell gets a leading apostrophe, which spreadsheets show as text. Numbers are written as they are.

A cleanup CSV has one row per affected repository, with that repository's own ``freed_size``: what its deletions
alone free. Their sum can be less than what all the deletions free together (a layer shared by deleted tags of
several repositories): that set-wise total is the JSON answer's ``freed_size``, and has no row here.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Hashable, Iterable, Sequence

from flask import Response, request

from ..cleanup import CleanupResult
from ..model import GroupUsage, RepositoryUsage, Snapshot
from .hal import QueryError
from .responses import HAL_JSON, RenderCache, Rendered, make_etag, send

CSV = "text/csv"
REPOSITORY_COLUMNS = ("name", "size", "disk_size", "unique_size", "tag_count")
GROUP_COLUMNS = ("name", "size", "disk_size", "unique_size", "repository_count", "tag_count")
CLEANUP_COLUMNS = ("name", "freed_size", "tags_deleted", "tags")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILENAME = 100

Cell = str | int | None
Row = Sequence[Cell]


def wants_csv() -> bool:
    """``?format=csv``, or an ``Accept`` header preferring CSV to HAL and HTML. ``QueryError`` for another format."""
    form = request.args.get("format")
    if form is not None:
        if form != "csv":
            raise QueryError("format must be csv (JSON and HTML are chosen by the Accept header)")
        return True
    return request.accept_mimetypes.best_match([HAL_JSON, "text/html", CSV]) == CSV


def cell(value: Cell) -> str | int:
    """One value as written: ``None`` empty, numbers as they are, text defused against formula injection."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_body(columns: Sequence[str], rows: Iterable[Row]) -> bytes:
    """The header row and the rows, as UTF-8 CSV."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue().encode()


def filename(stem: str) -> str:
    """A download name that needs no quoting in any header or file system: ``team-a/web`` -> ``team-a_web.csv``."""
    safe = _UNSAFE_IN_FILENAME.sub("_", stem).strip("._") or "export"
    return safe[:MAX_FILENAME] + ".csv"


def respond_csv(cache: RenderCache, snapshot: Snapshot | None, key: Hashable, columns: Sequence[str],
                rows: Callable[[], Iterable[Row]], stem: str) -> Response:
    """A CSV download, rendered once per snapshot and ``key`` (the resource and its query)."""
    headers = {"Content-Disposition": f'attachment; filename="{filename(stem)}"'}

    def render() -> Rendered:
        body = csv_body(columns, rows())
        return Rendered(body, CSV, make_etag(body))

    if snapshot is None:  # nothing collected yet: the header row alone, not cached
        return Response(render().body, mimetype=CSV, headers=headers)
    return send(cache, snapshot, ("csv", key), render, headers)


def repository_rows(repositories: Iterable[RepositoryUsage]) -> list[Row]:
    return [(repository.name, repository.size, repository.disk_size, repository.unique_size,
             None if repository.tags is None else len(repository.tags)) for repository in repositories]


def group_rows(groups: Iterable[GroupUsage]) -> list[Row]:
    return [(group.name, group.size, group.disk_size, group.unique_size, group.repository_count, group.tag_count)
            for group in groups]


def cleanup_rows(result: CleanupResult) -> list[Row]:
    """One row per affected repository with its own freed size (not the set-wise total, see the module), its
    deleted tags separated by spaces (tag names cannot hold one)."""
    return [(entry.name, entry.freed_size, entry.tags_deleted, " ".join(entry.tags)) for entry in result.repositories]
