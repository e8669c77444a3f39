"""The browser view: a HAL document as an HTML page (json2html) whose links can be clicked."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from typing import Any

from json2html import json2html

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.2em 0}"
    "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}a{color:#0645ad}"
)
# The page runs no script and loads nothing; the only inline content is this style block, allowed by hash.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()}'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _mark_links(node: Any, marks: dict[str, str], nonce: str) -> Any:
    """Replace every ``href`` value by a unique marker that json2html passes through unchanged."""
    if isinstance(node, list):
        return [_mark_links(item, marks, nonce) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key == "href" and isinstance(value, str):
            marker = f"link{nonce}n{len(marks)}"
            marks[marker] = value
            result[key] = marker
        else:
            result[key] = _mark_links(value, marks, nonce)
    return result


def render_page(document: dict[str, Any], title: str) -> str:
    """A complete HTML page showing ``document`` as nested tables, with hrefs as anchors."""
    marks: dict[str, str] = {}
    marked = _mark_links(document, marks, secrets.token_hex(8))
    body = json2html.convert(json=marked, escape=True) if document else "<p>(no fields)</p>"
    for marker, href in marks.items():
        escaped = html.escape(href, quote=True)
        body = body.replace(marker, f'<a href="{escaped}">{escaped}</a>', 1)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
