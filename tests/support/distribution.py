"""A real Docker Distribution registry (``docker-registry serve``) trusting the GitLab stand-in's tokens."""


import json
import logging
import os
import secrets
import signal
from http import HTTPStatus
from pathlib import Path
from typing import Any

import requests

from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import ManagedProcess, ProcessStartError, free_port, local_session

log = logging.getLogger(__name__)


class RegistryStartError(ProcessStartError):
    """``docker-registry`` did not come up; the message carries the end of its log."""


class DistributionRegistry(ManagedProcess):
    """A ``docker-registry serve`` process with its own storage, trusting the tokens of one token endpoint."""

    name = "docker-registry"
    start_error = RegistryStartError

    def __init__(
        self,
        workdir: Path,
        tokens: GitLabTokenEndpoint,
        *,
        catalog_max_entries: int | None = None,
        start_timeout_s: float = 20.0,
        executable: str = "docker-registry",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "registry.log", start_timeout=start_timeout_s)
        self.config_path = workdir / "config.yml"
        self._executable = executable
        self._session: requests.Session | None = None
        certificate = tokens.signer.write_certificate(workdir / "token-signer.pem")
        config: dict[str, Any] = {
            "version": "0.1",
            "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{free_port()}", "secret": secrets.token_hex(16)},
            "auth": {
                "token": {
                    "realm": tokens.realm,
                    "service": tokens.signer.audience,
                    "issuer": tokens.signer.issuer,
                    "rootcertbundle": str(certificate),
                }
            },
        }
        if catalog_max_entries is not None:
            config["catalog"] = {"maxentries": catalog_max_entries}
        # YAML is a superset of JSON: no YAML library is needed to write the config or to read it back.
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def port(self) -> int:
        """The port in the written config: the one place it is kept, so every restart listens on it again."""
        address: str = json.loads(self.config_path.read_text())["http"]["addr"]
        return int(address.rpartition(":")[2])

    @property
    def url(self) -> str:
        """The registry base URL with a trailing slash, as gitlab-registry-usage appends ``v2/...`` to it."""
        return f"http://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        return [self._executable, "serve", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        # REGISTRY_* variables override config keys, so none may leak in from the caller's environment.
        env = {name: value for name, value in os.environ.items() if not name.startswith("REGISTRY_")}
        env["OTEL_TRACES_EXPORTER"] = "none"
        return env

    def ready(self) -> bool:
        """``/v2/`` answers 401 once the registry serves (and asks for a token)."""
        if self._session is None:
            self._session = local_session()
        # Refused while it starts; unanswered if something else holds the port (it then exits, seen by the base).
        try:
            status = self._session.get(self.url + "v2/", timeout=1).status_code
        except (requests.ConnectionError, requests.Timeout):
            return False
        if status == HTTPStatus.UNAUTHORIZED:
            return True
        raise RegistryStartError(f"{self.url}v2/ answered {status} instead of 401: is token auth configured?")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Stop the process, killing it if it ignores SIGTERM; config and storage stay for a restart."""
        if self._session is not None:
            self._session.close()
            self._session = None
        return super().stop(sig, timeout)
