"""An HTTP server that answers with exactly the bytes a test gives: for framing, redirects and hang-ups that real
servers send only sometimes, byte for byte as the test wrote them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived: its request line, its header lines (names lower-cased) and its connection."""

    line: str
    headers: dict[str, str]
    connection: int


# What to send back for a request, and whether to hang up after it.
Answer = tuple[bytes, bool]


class ScriptedServer:
    """Listens on ``host``; ``answer(received)`` gives each request's raw answer. ``hold`` answers nothing."""

    def __init__(self, answer: Callable[[Received], Answer | None], host: str = "127.0.0.1") -> None:
        self._answer = answer
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self.received: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name=f"scripted-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # Shut down first: on Linux that wakes the accept() under way, which close() alone leaves listening.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock, number), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        buffer = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                line, *lines = head.decode("latin-1").split("\r\n")
                headers = {name.strip().lower(): value.strip()
                           for name, _, value in (each.partition(":") for each in lines)}
                received = Received(line, headers, number)
                with self._lock:
                    self.received.append(received)
                answer = self._answer(received)
                if answer is None:
                    continue  # held: the client waits until it gives up
                data, hang_up = answer
                try:
                    sock.sendall(data)
                except OSError:
                    return
                if hang_up:
                    return
