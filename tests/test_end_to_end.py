"""The service as a process, on the real registry (through GitLab's token protocol) and the real slapd.

Expected sizes are computed by the test from the bytes it pushed; the service must serve exactly those.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.pushed import PushedRegistry, expected_figures
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd

pytestmark = [pytest.mark.registry, pytest.mark.slapd]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    registry: DistributionRegistry,
    gitlab: GitLabTokenEndpoint,
    slapd: Slapd,
    pushed: PushedRegistry,
) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("service")
    config = service_config(workdir, registry, gitlab, slapd, general__server_prefix="/registry-usage")
    with ServiceProcess(workdir, ["-c", str(config)], prefix="/registry-usage") as process:
        yield process


@pytest.fixture(scope="module")
def alice(service: ServiceProcess, slapd: Slapd) -> dict[str, str]:
    user = slapd.users["alice"]
    headers = service.login(user.uid, user.password)
    service.wait_for_data(headers)
    return headers


def test_every_figure_equals_what_was_pushed(
    service: ServiceProcess, alice: dict[str, str], pushed: PushedRegistry
) -> None:
    body = service.get("/repositories?embed=true", headers=alice).json()
    served = {
        item["name"]: {
            "size": item["size"],
            "disk_size": item["disk_size"],
            "tags": {
                tag["name"]: {"size": tag["size"], "disk_size": tag["disk_size"]}
                for tag in item["_embedded"]["related"]["_embedded"]["items"]
            },
        }
        for item in body["_embedded"]["items"]
    }
    assert served == expected_figures(pushed)
    assert list(served) == list(pushed.tags), "repositories follow the catalog order"
    for repo, tags in pushed.tags.items():
        assert list(served[repo]["tags"]) == list(tags), "tags follow the order tags/list returned"


def test_two_tags_on_one_manifest_share_their_disk_size(service: ServiceProcess, alice: dict[str, str]) -> None:
    latest = service.get("/repositories/group%2Fsub%2Fproject/tags/latest", headers=alice).json()
    retag = service.get("/repositories/group%2Fsub%2Fproject/tags/2.0", headers=alice).json()
    assert latest["size"] == retag["size"]
    assert sorted([latest["disk_size"], retag["disk_size"]])[0] == 0


@pytest.mark.parametrize(
    ("path", "expected_self"),
    [
        ("/repositories/group%2Ftags", "/registry-usage/repositories/group%2Ftags"),
        ("/repositories/group%2Ftags/tags/v1", "/registry-usage/repositories/group%2Ftags/tags/v1"),
        ("/repositories/group/tags/tags/v1", "/registry-usage/repositories/group%2Ftags/tags/v1"),
        ("/repositories/group/tags", "/registry-usage/repositories/group/tags"),
        ("/repositories/group/tags/tags", "/registry-usage/repositories/group%2Ftags/tags"),
        ("/repositories/group%2Fsub%2Fproject/tags", "/registry-usage/repositories/group%2Fsub%2Fproject/tags"),
        ("/repositories/group/sub/project/tags/1.0", "/registry-usage/repositories/group%2Fsub%2Fproject/tags/1.0"),
    ],
)
def test_encoded_slashes_survive_cheroot_and_the_prefix(
    service: ServiceProcess, alice: dict[str, str], path: str, expected_self: str
) -> None:
    response = service.get(path + "?links=true", headers=alice)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/hal+json"
    assert response.json()["_links"]["self"]["href"] == expected_self


def test_links_are_followable(service: ServiceProcess, alice: dict[str, str]) -> None:
    """Walk every link from /repositories: each one answers 200 on the real server."""
    base = service.url.removesuffix("/registry-usage")
    seen, queue = set(), ["/registry-usage/repositories"]
    while queue:
        href = queue.pop()
        if href in seen:
            continue
        seen.add(href)
        response = service.http.get(base + href + "?links=true", headers=alice, timeout=10)
        assert response.status_code == 200, href
        for links in response.json()["_links"].values():
            for link in links if isinstance(links, list) else [links]:
                queue.append(link["href"])
    assert len(seen) > 15


def test_unknown_repository_is_404_json(service: ServiceProcess, alice: dict[str, str]) -> None:
    response = service.get("/repositories/group%2Fnope", headers=alice)
    assert response.status_code == 404
    assert response.json() == {"message": 'The resource "/repositories/group%2Fnope" does not exist'}


def test_login_refusals_over_real_ldap(service: ServiceProcess, slapd: Slapd) -> None:
    alice, bob = slapd.users["alice"], slapd.users["bob"]
    for auth in [(alice.uid, "wrong"), (bob.uid, bob.password), (alice.uid, ""), ("*", alice.password)]:
        response = service.get("/auth_token", auth=auth)
        assert response.status_code == 401, auth[0]
        assert response.json() == {"message": "Invalid credentials"}


def test_token_errors_are_401_on_the_real_server(service: ServiceProcess) -> None:
    assert service.get("/repositories").json() == {"msg": "Missing Authorization Header"}
    response = service.get("/repositories", headers={"Authorization": "Bearer x.y.z"})
    assert response.status_code == 401


def test_browser_page_links_to_each_repository(service: ServiceProcess, alice: dict[str, str]) -> None:
    response = service.get("/repositories", headers={**alice, "Accept": "text/html"})
    assert response.headers["Content-Type"].startswith("text/html")
    assert '<a href="/registry-usage/repositories/group%2Fsub%2Fproject">' in response.text


def test_sigterm_stops_the_service_within_seconds(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd
) -> None:
    config = service_config(tmp_path, registry, gitlab, slapd)
    for sig in (signal.SIGTERM, signal.SIGINT):
        process = ServiceProcess(tmp_path, ["-c", str(config)]).start()
        code, seconds = process.stop(sig)
        assert code == 0, process.log()
        assert seconds < 5


def test_directory_down_is_503_and_recovers_without_restart(service: ServiceProcess, slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    slapd.stop()
    try:
        response = service.get("/auth_token", auth=(alice.uid, alice.password))
        assert response.status_code == 503
        assert response.json() == {"message": "The login directory cannot be reached; try again later"}
        assert int(response.headers["Retry-After"]) > 0
    finally:
        slapd.start()
    assert service.get("/auth_token", auth=(alice.uid, alice.password)).status_code == 200
