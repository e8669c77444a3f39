"""The demo's generated history: 90 days of the sample registry as it grew, the same for the same start, served
with sparklines from the first start, from a temporary file the demo removes when it stops."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from gitlab_registry_usage_rest.demo import HISTORY_DAYS, demo_history, demo_listing
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.processes import inherited_environment
from tests.support.service import ServiceProcess

NOW = 1_800_000_000.0
DAY = 86_400.0


def figures(now: float) -> list[tuple[float, tuple[tuple[str, int | None], ...]]]:
    return [(snapshot.timestamp, tuple((repository.name, repository.disk_size) for repository in snapshot.repositories))
            for snapshot in demo_history(now)]


def test_the_demo_history_is_the_same_for_the_same_start_and_ends_with_the_served_snapshot() -> None:
    history = figures(NOW)
    assert history == figures(NOW)
    moments = [moment for moment, _ in history]
    assert moments == sorted(moments) and moments[0] == NOW - HISTORY_DAYS * DAY and moments[-1] == NOW
    served = build_snapshot(demo_listing(NOW), NOW)
    assert history[-1][1] == tuple((repository.name, repository.disk_size) for repository in served.repositories)
    assert sum(1 for moment in moments if moment >= NOW - 7 * DAY) >= 7 * 12, "every two hours in the last week"


def test_in_the_demo_history_images_appear_when_they_were_built_and_the_registry_grows() -> None:
    totals = []
    for snapshot in demo_history(NOW):
        for repository in snapshot.repositories:
            assert all(tag.created is None or tag.created <= snapshot.timestamp for tag in repository.tags or ())
        totals.append(snapshot.total_disk_size)
    assert totals == sorted(totals), "the demo registry only grows"
    assert totals[-1] - totals[0] > 100 * 2**20, "enough to draw"


class DemoProcess(ServiceProcess):
    """The demo, with its temporary files in a folder the test can look into."""

    def __init__(self, workdir: Path, tmpdir: Path) -> None:
        super().__init__(workdir, ["--demo"])
        self.tmpdir = tmpdir

    def environment(self) -> dict[str, str]:
        return inherited_environment(PYTHONUNBUFFERED="1", TMPDIR=str(self.tmpdir))


def test_the_demo_serves_90_days_of_history_and_sparklines_at_first_start(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with DemoProcess(tmp_path, temporary) as demo:
        headers = demo.login("demo", demo.demo_password())
        body = demo.get("/history?since=91d", headers=headers).json()
        first, last = body["points"][0], body["points"][-1]
        assert len({point["timestamp"][:10] for point in body["points"]}) >= HISTORY_DAYS, "a point every day"
        assert last["disk_size"] > first["disk_size"]
        assert body["growth_per_day"] > 0 and body["days_until_full"] > 0, "the demo has a storage capacity"
        assert [path.name for path in temporary.iterdir()][0].startswith("registry-usage-demo-")
        growth = demo.get("/repositories?window=7d&sort=-growth&limit=3", headers=headers).json()
        assert growth["_embedded"]["items"][0]["growth"] > 0
        # A person's browser: the login form, then the dashboard and a repository page with their sparklines.
        answer = demo.http.post(demo.url + "/login", data={"username": "demo", "password": demo.demo_password()},
                                headers={"Origin": demo.url, "Accept": "text/html"}, timeout=10)
        assert answer.status_code == 200 and "Registry usage" in answer.text
        for path in ("/", "/repositories/apps%2Fweb%2Fbackend", "/groups/apps"):
            page = demo.get(path, headers={"Accept": "text/html"}).text
            assert re.search(r'<svg class="sparkline"[^>]*data-points="\d+"', page), path
            assert "<polyline points=" in page, path
        code, _ = demo.stop(signal.SIGTERM)
        assert code == 0
    assert list(temporary.iterdir()) == [], "the demo leaves nothing behind"
