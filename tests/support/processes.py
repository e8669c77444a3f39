"""What every server the tests start shares: free ports, polling, and a managed-process base."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import requests

T = TypeVar("T")


def free_port() -> int:
    """A port on 127.0.0.1 that is free now, for servers whose URL must be known before they start."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different free ports: held open together so the kernel hands out different ones."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.create_server(("127.0.0.1", 0))) for _ in range(count)]
        return [sock.getsockname()[1] for sock in sockets]


def local_session() -> requests.Session:
    """A session that ignores proxy and netrc settings from the environment: test traffic stays on 127.0.0.1."""
    session = requests.Session()
    session.trust_env = False
    return session


def until(probe: Callable[[], T | None], what: str, timeout: float = 20.0, log: Callable[[], str] = str) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail with ``what`` (and ``log()``) at
    the deadline. Readiness is polled, never slept for."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s\n{log()}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not end within ``timeout``; returns once it has exited."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def running(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by whoever inherited it) does not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


class ProcessStartError(RuntimeError):
    """A server did not come up; the message carries why and the end of its log."""


class ManagedProcess:
    """A server process started by a fixture, shaped like werkzeug's ``DevServerClient``.

    Its output goes to ``log_path``; ``start()`` polls ``ready()`` until the deadline (noticing at once
    when the process exits) and leaves nothing running when it fails; ``stop()`` ends it for sure and
    may be followed by another ``start()`` on the same ports and data. Subclasses say what to run.
    """

    name = "server"
    start_error: type[Exception] = ProcessStartError

    def __init__(self, log_path: Path, *, start_timeout: float = 20.0) -> None:
        self.log_path = log_path
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # What to run: subclasses override these.
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The child's environment; None: this process's."""
        return None

    def working_directory(self) -> Path | None:
        return None

    def ready(self) -> bool:
        """Whether the server answers; raising ``self.start_error`` ends the wait at once."""
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, f"{self.name} is not running"
        return self._process

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or f"({self.name} wrote nothing)"

    def start(self) -> Self:
        if self._process is not None:
            raise self.start_error(f"{self.name} is already running")
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=self.environment(), cwd=self.working_directory(),
        )
        try:
            self._wait_until_ready(self._process)
        except BaseException:
            self.stop()  # whatever ended the wait, nothing half-started is left behind
            raise
        return self

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise self.start_error(
                    f"{self.name} did not answer within {self.start_timeout:g} s; last lines of {self.log_path}:\n"
                    f"{self.log_tail()}")
            # Waiting on the process paces the polling and notices at once if it exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                status = process.wait(timeout=0.05)
                raise self.start_error(
                    f"{self.name} exited with status {status}; last lines of {self.log_path}:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig``, wait (SIGKILL after ``timeout``); the exit status and how long it took to end."""
        process, self._process = self._process, None
        if process is None:
            return 0, 0.0
        started = time.monotonic()
        if process.poll() is None:
            process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code, time.monotonic() - started

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def inherited_environment(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` set."""
    return {**os.environ, **extra}
