"""The process as started from the command line: the demo, Werkzeug debug mode, a busy port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from gitlab_registry_usage_rest.server import PIECE, in_pieces
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.proxy import FaultyProxy, delay
from tests.support.pushed import PushedRegistry
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd


def test_demo_serves_the_sample_registry_through_the_real_api(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path, ["--demo"]) as demo:
        headers = demo.login("demo", demo.demo_password())
        body = demo.get("/repositories?embed=1", headers=headers).json()
        names = [item["name"] for item in body["_embedded"]["items"]]
        assert len(names) >= 12 and "ml/models/tags" in names
        assert demo.get("/repositories/ml/models/tags", headers=headers).status_code == 200
        assert demo.get("/auth_token", auth=("demo", "wrong")).status_code == 401
        assert "curl" in demo.log()
        code, seconds = demo.stop(signal.SIGINT)
        assert code == 0 and seconds < 5


def test_the_listen_backlog_takes_a_burst_of_new_connections(tmp_path: Path) -> None:
    """cheroot's default backlog of 5 drops SYNs of a burst, costing each dropped client a one-second retry."""
    with ServiceProcess(tmp_path, ["--demo"]) as demo:
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{demo.port}"], capture_output=True, text=True,
                                   check=True).stdout.split()
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert int(listening[2]) == min(1024, somaxconn)  # Send-Q of a listening socket: its backlog


@pytest.mark.registry
@pytest.mark.slapd
def test_debug_mode_runs_werkzeug_with_prefix_and_encoded_slashes(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd, general__debug="True",
                            general__server_prefix="/usage")
    with ServiceProcess(tmp_path, ["-c", str(config)], prefix="/usage") as service:
        alice = slapd.users["alice"]
        headers = service.login(alice.uid, alice.password)
        service.wait_for_data(headers)
        response = service.get("/repositories/group%2Ftags/tags/v1?links=1", headers=headers)
        assert response.headers["Server"].startswith("Werkzeug")
        assert response.json()["_links"]["self"] == {"href": "/usage/repositories/group%2Ftags/tags/v1"}
        repository = service.get("/repositories/group%2Ftags", headers=headers).json()
        assert repository["name"] == "group/tags"
        assert service.get("/repositories/group/tags", headers=headers).json() == {}


@pytest.mark.registry
@pytest.mark.slapd
def test_sigterm_during_a_crawl_stops_within_five_seconds(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    with FaultyProxy(registry.url) as slow:
        slow.add_rule("/manifests/", delay(60))
        config = service_config(tmp_path, registry, gitlab, slapd, registry__registry_base_url=slow.url)
        process = ServiceProcess(tmp_path, ["-c", str(config)]).start()
        # Once every tag list is in, the manifest requests are under way (and held by the proxy).
        deadline = time.monotonic() + 20
        while sum("/tags/list" in entry[1] for entry in slow.log) < len(pushed.tags):
            assert time.monotonic() < deadline, process.log()
            time.sleep(0.05)
        code, seconds = process.stop()
        assert (code, seconds < 5) == (0, True), process.log()
        assert "CrawlError: cancelled" in process.log()


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gitlab_registry_usage_rest", "--demo", "--port", str(port)],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--version"], ["--print-default-config"], ["--help"]])
def test_console_script_and_module_agree(args: list[str]) -> None:
    module = subprocess.run([sys.executable, "-m", "gitlab_registry_usage_rest", *args],
                            capture_output=True, text=True, timeout=30)
    script = subprocess.run(["gitlab-registry-usage-rest", *args], capture_output=True, text=True, timeout=30)
    assert module.returncode == script.returncode == 0
    assert module.stdout.replace("__main__.py", "gitlab-registry-usage-rest") == script.stdout


def test_big_bodies_go_out_in_pieces_whole_and_in_order() -> None:
    big = bytes(range(256)) * (3 * PIECE // 256 + 7)
    closed = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append(True)

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(len(big)))])
        return Body([b"", big, b"tail"])

    chunks = list(in_pieces(app)(EnvironBuilder("/repositories").get_environ(), _ignore_start))
    assert max(len(chunk) for chunk in chunks) == PIECE and all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == big + b"tail"
    assert closed == [True]  # the app's iterable is closed, as WSGI requires


def _ignore_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
    return lambda data: None
