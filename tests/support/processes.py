"""Shared handling of the server processes the fixtures start."""

from __future__ import annotations

import subprocess
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")


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
