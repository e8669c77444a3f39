"""The browser view: a HAL document as an HTML page of nested tables whose links can be clicked."""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

# The most items of a collection one page lists, of the requested one and of each one embedded in it (the
# JSON API has no such cap): the rest is reached through the page's HAL ``next`` and ``prev`` links.
PAGE_SIZE = 100

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.2em 0}"
    "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}a{color:#0645ad}"
)


def content_security_policy(style: str, form_action: str = "'none'") -> str:
    """A page that runs no script and loads nothing: its one inline style block is allowed by its hash."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; frame-ancestors 'none'; base-uri 'none'; "
            f"form-action {form_action}")


CONTENT_SECURITY_POLICY = content_security_policy(_STYLE)


def render_page(document: dict[str, Any], title: str) -> str:
    """A complete HTML page showing ``document`` as nested tables, with hrefs as anchors."""
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body><h1>{escape(title)}</h1>\n",
    ]
    if document:
        _write(document, parts)
    else:
        parts.append("<p>(no fields)</p>")
    parts.append("\n</body></html>\n")
    return "".join(parts)


# The tables are json2html 1.3.0's, byte for byte (clubbing on, values escaped), written in one pass with
# each ``href`` as an anchor where it stands. json2html itself cannot do that: marking the hrefs and then
# replacing each marker with ``str.replace(marker, anchor, 1)`` rescanned the page once per link, which
# made a page of 10,000 repositories take minutes. Every part is appended to one list and joined once.
_TABLE = '<table border="1">'


def _write(node: Any, parts: list[str]) -> None:
    kind = type(node)
    if kind is dict:
        if node:  # json2html writes nothing at all for an empty object or list
            parts.append(_TABLE)
            for key, value in node.items():
                parts.append(f"<tr><th>{_text(key)}</th><td>")
                _cell(key, value, parts)
                parts.append("</td></tr>")
            parts.append("</table>")
    elif kind is list or kind is tuple:
        if not node:
            return
        columns = _columns(node)
        if columns is None:
            parts.append("<ul>")
            for item in node:
                parts.append("<li>")
                _write(item, parts)
                parts.append("</li>")
            parts.append("</ul>")
            return
        head = "</th><th>".join([_text(column) for column in columns])
        parts.append(f"{_TABLE}<thead><tr><th>{head}</th></tr></thead><tbody>")
        for row in node:
            parts.append("<tr>")
            for column in columns:
                parts.append("<td>")
                _cell(column, row[column], parts)
                parts.append("</td>")
            # Objects without keys: json2html still writes one empty cell in each row.
            parts.append("</tr>" if columns else "<td></td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append(_text(node))


def _cell(key: Any, value: Any, parts: list[str]) -> None:
    """What a table cell holds: an ``href`` as a link, other text escaped, containers as tables or lists."""
    kind = type(value)
    if kind is str:
        text = escape(value)
        parts.append(f'<a href="{text}">{text}</a>' if key == "href" else text)
    elif kind is dict or kind is list or kind is tuple:
        _write(value, parts)
    else:
        parts.append(str(value))


def _text(value: Any) -> str:
    # Numbers, booleans and None as Python writes them (json2html's rule). Unlike json2html, column
    # headers are escaped too, which changes none of our keys.
    return escape(value) if type(value) is str else str(value)


def _columns(items: list[Any] | tuple[Any, ...]) -> list[Any] | None:
    """json2html's clubbing: objects that all have the first one's keys are the rows of one table."""
    first = items[0]
    if type(first) is not dict:
        return None
    keys = first.keys()
    for item in items:
        if type(item) is not dict or item.keys() != keys:
            return None
    return list(keys)
