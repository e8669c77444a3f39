"""The floor under any cheroot service on this machine: a WSGI app that looks at nothing and answers fixed bytes.

    python3 -m bench.floor PORT THREADS

Same server settings as ours (threads, listen backlog, server name) and the same response headers as ours
sends for /repositories/<name>, so the difference between this and ours is what our application costs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi

BODY = b'{"name": "group5/project0500", "size": 3500000, "disk_size": 3100000, "unique_size": 100000}\n'
HEADERS = [
    ("Content-Type", "application/hal+json"), ("Content-Length", str(len(BODY))),
    ("ETag", '"0123456789abcdef01234567"'), ("Last-Modified", "Fri, 27 Nov 2026 00:00:00 GMT"),
    ("Cache-Control", "private, no-cache"), ("Vary", "Accept, Accept-Encoding, Authorization"),
    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
]


def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", list(HEADERS))
    return [BODY]


if __name__ == "__main__":
    server = wsgi.Server(("127.0.0.1", int(sys.argv[1])), app, numthreads=int(sys.argv[2]),
                         server_name="registry-usage", request_queue_size=1024)
    server.safe_start()
