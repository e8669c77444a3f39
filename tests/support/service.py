"""Runs the service as a real process (cheroot or Werkzeug), as an administrator would start it."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import requests

from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import ManagedProcess, free_port, inherited_environment, local_session, until
from tests.support.pushed import REGISTRY_TOKEN, REGISTRY_USER
from tests.support.slapd import Slapd

JWT_SECRET = "end-to-end-jwt-secret-" + "q" * 32


class ServiceProcess(ManagedProcess):
    """``python -m gitlab_registry_usage_rest ARGS`` with its output in a log file and a readiness poll."""

    name = "the service"

    def __init__(self, workdir: Path, args: list[str], *, port: int | None = None, prefix: str = "") -> None:
        super().__init__(workdir / "service.log")
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.args = args
        self.prefix = prefix
        self.url = f"http://127.0.0.1:{self.port}{prefix}"
        self.http = local_session()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gitlab_registry_usage_rest", *self.args, "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        return inherited_environment(PYTHONUNBUFFERED="1")

    def working_directory(self) -> Path:
        return self.workdir

    def ready(self) -> bool:
        try:
            self.http.get(self.url + "/repositories", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.get(self.url + path, **kwargs)

    def login(self, username: str, password: str) -> dict[str, str]:
        response = self.get("/auth_token", auth=(username, password))
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['auth_token']}"}

    def wait_for_data(self, headers: dict[str, str], timeout: float = 30.0) -> float:
        """Poll ``/repositories`` until the first snapshot is served; returns its timestamp."""
        return float(until(lambda: self.get("/repositories", headers=headers).json()["timestamp"],
                           "no data", timeout, self.log))

    def demo_password(self) -> str:
        match = re.search(r"password '([^']+)'", self.log())
        assert match, self.log()
        return match.group(1)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` and return at once (SIGHUP: refresh now)."""
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig`` and wait; returns the exit status and how long the process took to end."""
        result = super().stop(sig, timeout)
        self.http.close()
        return result


def service_config(
    workdir: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd, **overrides: str
) -> Path:
    """A config file as an administrator writes it, pointing at the test servers."""
    values = {
        "general": {"refresh_interval": "1 hour", "data_file": str(workdir / "snapshot.json")},
        "ldap": {"host": slapd.ldaps_url, "base_dn": slapd.base_dn, "valid_gid": slapd.valid_gid,
                 "ca_file": str(slapd.ca_file), "timeout": "5 seconds"},
        "jwt": {"secret_key": JWT_SECRET, "auth_token_expires": "1 hour"},
        "registry": {"gitlab_base_url": gitlab.url, "registry_base_url": registry.url,
                     "username": REGISTRY_USER, "access_token": REGISTRY_TOKEN},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        values[section][name] = value
    text = "".join(
        f"[{section}]\n" + "".join(f"{name} = {value}\n" for name, value in items.items()) + "\n"
        for section, items in values.items()
    )
    path = workdir / "gitlab_registry_usage_rest.conf"
    path.write_text(text)
    return path
