"""The browser view of ``/repositories?embed=1``: HTML against JSON, and the old quadratic renderer.

    python3 -m bench.html [--repositories 1000 2000 10000] [--tags 10] [--runs 3] [--give-up 60]

For each size, a synthetic snapshot (bench.restart's: names as GitLab groups have them, ``--tags`` tags
per repository) and the document the HTML view renders for ``?embed=1`` without paging (links on), built
with ``web.hal``. Then, best of ``--runs``:

- ``json.dumps``: that document as the JSON API serializes it;
- ``old render``: ``render_page`` as it was (json2html, then one ``str.replace(marker, anchor, 1)`` per
  link over the whole page), copied below as ``old_render_page``; it runs in a child process that is
  stopped when one run takes longer than ``--give-up`` seconds;
- ``new render``: today's ``render_page`` of the same document (the bytes are checked to be the old ones);
- ``HTML page``: what an HTML request for ``/repositories?embed=1`` costs now, the capped document
  (``PAGE_SIZE`` items, with ``next``) built and rendered, against ``JSON response``, the whole JSON
  document built and serialized.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import html
import json
import multiprocessing
import queue
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from json2html import json2html

from bench.restart import synthetic_listing
from gitlab_registry_usage_rest.model import Snapshot
from gitlab_registry_usage_rest.sizes import build_snapshot
from gitlab_registry_usage_rest.web import hal
from gitlab_registry_usage_rest.web.html import _STYLE, PAGE_SIZE, render_page

TITLE = "Repositories"


# --- BASELINE: render_page before issue 11, copied unchanged (quadratic: one full-page replace per link) ---
def _old_mark_links(node: Any, marks: dict[str, str], nonce: str) -> Any:
    """Replace every ``href`` value by a unique marker that json2html passes through unchanged."""
    if isinstance(node, list):
        return [_old_mark_links(item, marks, nonce) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key == "href" and isinstance(value, str):
            marker = f"link{nonce}n{len(marks)}"
            marks[marker] = value
            result[key] = marker
        else:
            result[key] = _old_mark_links(value, marks, nonce)
    return result


def old_render_page(document: dict[str, Any], title: str) -> str:
    """A complete HTML page showing ``document`` as nested tables, with hrefs as anchors."""
    marks: dict[str, str] = {}
    marked = _old_mark_links(document, marks, secrets.token_hex(8))
    body = json2html.convert(json=marked, escape=True) if document else "<p>(no fields)</p>"
    for marker, href in marks.items():
        escaped = html.escape(href, quote=True)
        body = body.replace(marker, f'<a href="{escaped}">{escaped}</a>', 1)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
# --- end of the baseline ---


def best(function: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` calls, in seconds (garbage collected before each, off during it)."""
    times = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        finally:
            gc.enable()
    return min(times)


def _old_runs(document: dict[str, Any], runs: int, results: multiprocessing.Queue[tuple[float, str]]) -> None:
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        page = old_render_page(document, TITLE)
        results.put((time.perf_counter() - started, digest(page)))


def old_render(document: dict[str, Any], runs: int, give_up: float) -> tuple[float, str] | None:
    """Best seconds of the baseline and its page's digest, or None once one run took over ``give_up`` s."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[tuple[float, str]] = context.Queue()
    process = context.Process(target=_old_runs, args=(document, runs, results))
    process.start()
    try:
        measured = []
        for _ in range(runs):
            try:
                measured.append(results.get(timeout=give_up))
            except queue.Empty:  # this run took longer than ``give_up``: that is the result
                return None
        return min(seconds for seconds, _ in measured), measured[0][1]
    finally:
        process.terminate()
        process.join()


def digest(page: str) -> str:
    return hashlib.blake2b(page.encode(), digest_size=12).hexdigest()


def links(document: Any) -> int:
    if isinstance(document, list):
        return sum(links(item) for item in document)
    if isinstance(document, dict):
        return sum(1 if key == "href" else links(value) for key, value in document.items())
    return 0


def measure(snapshot: Snapshot, runs: int, give_up: float) -> dict[str, Any]:
    options = hal.Options(embed=1, links=True)
    document = hal.repositories_document(snapshot, options)
    new_page = render_page(document, TITLE)
    old = old_render(document, runs, give_up)
    capped = hal.paged(options, PAGE_SIZE)
    return {
        "links": links(document),
        "document": best(lambda: hal.repositories_document(snapshot, options), runs),
        "json": best(lambda: json.dumps(document), runs),
        "old": None if old is None else old[0],
        "same": None if old is None else old[1] == digest(new_page),
        "new": best(lambda: render_page(document, TITLE), runs),
        "page": best(lambda: render_page(hal.repositories_document(snapshot, capped), TITLE), runs),
        "response": best(lambda: json.dumps(hal.repositories_document(snapshot, options)), runs),
        "html_mib": len(new_page.encode()) / 2**20,
    }


def seconds(value: float | None, give_up: float) -> str:
    return f"> {give_up:.0f} (gave up)" if value is None else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, nargs="+", default=[1_000, 2_000, 10_000])
    parser.add_argument("--tags", type=int, default=10, help="tags per repository")
    parser.add_argument("--runs", type=int, default=3, help="the best of this many runs counts")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds one run of the old renderer may take")
    args = parser.parse_args(argv)
    print(f"/repositories?embed=1 (links on, as the HTML view has them), {args.tags} tags per repository, "
          f"best of {args.runs}; seconds", flush=True)
    columns = ("repos", "links", "HTML MiB", "document", "json.dumps", "old render", "new render", "new/json",
               "old/new", "same bytes", f"HTML page ({PAGE_SIZE})", "JSON response", "page/JSON")
    widths = (7, 7, 8, 8, 10, 16, 10, 8, 8, 10, 14, 13, 9)
    print("  ".join(f"{column:>{width}}" for column, width in zip(columns, widths, strict=True)), flush=True)
    for repositories in args.repositories:
        snapshot = build_snapshot(synthetic_listing(repositories, args.tags), time.time())
        row = measure(snapshot, args.runs, args.give_up)
        old = row["old"]
        cells = (
            f"{repositories:,}", f"{row['links']:,}", f"{row['html_mib']:.1f}", f"{row['document']:.3f}",
            f"{row['json']:.3f}", seconds(old, args.give_up), f"{row['new']:.3f}", f"{row['new'] / row['json']:.2f}x",
            f"> {args.give_up / row['new']:,.0f}x" if old is None else f"{old / row['new']:,.0f}x",
            "-" if row["same"] is None else "yes" if row["same"] else "NO",
            f"{row['page']:.4f}", f"{row['response']:.3f}", f"{row['page'] / row['response']:.3f}x",
        )
        print("  ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True)), flush=True)
    print("document: building the HAL document; json.dumps, old/new render: serializing it; HTML page: building "
          f"and rendering the capped page ({PAGE_SIZE} repositories and a next link), against JSON response: "
          "building and serializing the whole document.")


if __name__ == "__main__":
    main()
