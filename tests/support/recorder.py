"""A host that should never be contacted: it answers every request and records who asked what, with which token."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the recorder saw it."""

    method: str
    path: str
    authorization: str | None


class RecordingServer:
    """Listens on ``host`` (another loopback address than the registry's: another origin) and answers
    ``200 {"repositories": [], "tags": []}`` to anything, so that a client that follows it would carry on."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._server = ThreadingHTTPServer((host, 0), partial(_RecordingHandler, self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"recorder-{self.port}", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, recorder: RecordingServer, *args: Any) -> None:
        self._recorder = recorder
        super().__init__(*args)

    def _answer(self) -> None:
        self._recorder.record(Recorded(self.command, self.path, self.headers.get("Authorization")))
        body = b'{"repositories": [], "tags": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Recorded above; the base class would write each request to stderr."""

