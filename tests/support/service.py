"""Runs the service as a real process (cheroot or Werkzeug), as an administrator would start it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

from tests.support.registry import free_port


class ServiceProcess:
    """``python -m gitlab_registry_usage_rest ARGS`` with its output in a log file and a readiness poll."""

    def __init__(self, workdir: Path, args: list[str], *, port: int | None = None, prefix: str = "") -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.args = args
        self.prefix = prefix
        self.log_path = workdir / "service.log"
        self.url = f"http://127.0.0.1:{self.port}{prefix}"
        self.http = requests.Session()
        self.http.trust_env = False
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gitlab_registry_usage_rest", *self.args, "--port", str(self.port)],
            stdout=self._log_file, stderr=subprocess.STDOUT, cwd=self.workdir, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the service exited with {self._process.returncode}:\n{self.log()}")
            try:
                self.http.get(self.url + "/repositories", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"the service did not answer within {timeout}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.get(self.url + path, **kwargs)

    def login(self, username: str, password: str) -> dict[str, str]:
        response = self.get("/auth_token", auth=(username, password))
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['auth_token']}"}

    def wait_for_data(self, headers: dict[str, str], timeout: float = 30.0) -> float:
        """Poll ``/repositories`` until the first snapshot is served; returns its timestamp."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            timestamp = self.get("/repositories", headers=headers).json()["timestamp"]
            if timestamp is not None:
                return float(timestamp)
            time.sleep(0.1)
        raise RuntimeError(f"no data within {timeout}s:\n{self.log()}")

    def demo_password(self) -> str:
        match = re.search(r"password '([^']+)'", self.log())
        assert match, self.log()
        return match.group(1)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` and return at once (SIGHUP: refresh now)."""
        assert self._process is not None
        self._process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig`` and wait; returns the exit status and how long the process took to end."""
        assert self._process is not None
        started = time.monotonic()
        if self._process.poll() is None:
            self._process.send_signal(sig)
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self.http.close()
        if self._log_file is not None:
            self._log_file.close()
        return code, time.monotonic() - started

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop()
