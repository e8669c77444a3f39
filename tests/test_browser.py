"""The browser pages in a real browser (Debian's chromium through Playwright), as a person uses them.

The service runs as a process on the test registry (with the session's pushed images) and the test
slapd; the browser logs in through the form, reads the dashboard, clicks, and logs out. Expected
figures come from what was pushed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page

from tests.support.browser import log_in as log_in_form
from tests.support.browser import screenshot
from tests.support.distribution import DistributionRegistry
from tests.support.expected import Expected, Policy
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.pushed import PushedRegistry, expected_figures
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd, make_ca

pytestmark = [pytest.mark.registry, pytest.mark.slapd]

PREFIXES = ["", "/registry-usage"]


@pytest.fixture(scope="module", params=PREFIXES, ids=["root", "server_prefix"])
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    registry: DistributionRegistry,
    gitlab: GitLabTokenEndpoint,
    slapd: Slapd,
    pushed: PushedRegistry,
) -> Iterator[ServiceProcess]:
    prefix: str = request.param
    workdir = tmp_path_factory.mktemp("browser")
    overrides = {"general__server_prefix": prefix} if prefix else {}
    config = service_config(workdir, registry, gitlab, slapd, **overrides)
    with ServiceProcess(workdir, ["-c", str(config)], prefix=prefix) as process:
        user = slapd.users["alice"]
        process.wait_for_data(process.login(user.uid, user.password))
        yield process


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield opened
    finally:
        opened.close()


def log_in(page: Page, service: ServiceProcess, slapd: Slapd, password: str | None = None) -> None:
    user = slapd.users["alice"]
    log_in_form(page, service.url, user.uid, user.password if password is None else password)


def test_login_through_the_form_shows_the_dashboard_with_the_pushed_totals(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry, tmp_path: Path
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.wait_for_selector("#totals")
    assert page.url == service.url + "/"
    figures = expected_figures(pushed)
    totals = page.locator("#totals")
    assert totals.get_attribute("data-total-disk-size") == str(sum(int(str(f["disk_size"])) for f in figures.values()))
    assert totals.get_attribute("data-repository-count") == str(len(figures))
    assert "updated" in page.inner_text("#status")
    rows = page.locator("tr[data-repository]")
    served = {rows.nth(i).get_attribute("data-repository"): rows.nth(i).get_attribute("data-disk-size")
              for i in range(rows.count())}
    assert served == {name: str(f["disk_size"]) for name, f in figures.items()}
    screenshot(page, tmp_path, "dashboard")


def test_a_wrong_password_shows_the_form_again_with_a_message(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd
) -> None:
    page = context.new_page()
    with page.expect_response(lambda response: response.url.endswith("/login")) as answer:
        log_in(page, service, slapd, password="wrong")
    assert answer.value.status == 401
    assert page.locator("form#login").count() == 1
    assert "Invalid" in page.inner_text("form#login")
    assert not [cookie for cookie in context.cookies() if cookie["name"] == "access_token_cookie"]


def _treemap_boxes(page: Page) -> dict[str, Any]:
    boxes: dict[str, Any] = page.evaluate("""() => {
        const svg = document.querySelector('svg.treemap').getBoundingClientRect();
        const rects = [...document.querySelectorAll('svg.treemap rect[data-path]')].map(rect => {
            const box = rect.getBoundingClientRect();
            return {kind: rect.dataset.kind, path: rect.dataset.path, bytes: Number(rect.dataset.bytes),
                    x: box.x - svg.x, y: box.y - svg.y, w: box.width, h: box.height};
        });
        return {width: svg.width, height: svg.height, rects};
    }""")
    return boxes


def test_treemap_rectangles_lie_inside_do_not_overlap_and_are_proportional_to_bytes(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    boxes = _treemap_boxes(page)
    leaves = [rect for rect in boxes["rects"] if rect["kind"] != "group"]
    groups = [rect for rect in boxes["rects"] if rect["kind"] == "group"]
    figures = expected_figures(pushed)
    assert {rect["path"]: rect["bytes"] for rect in leaves} == {
        name: f["disk_size"] for name, f in figures.items() if f["disk_size"]}
    assert {rect["path"] for rect in groups} == {name.split("/")[0] for name, f in figures.items() if f["disk_size"]}
    width, height = boxes["width"], boxes["height"]
    total_bytes = sum(rect["bytes"] for rect in leaves)
    for rect in boxes["rects"]:
        assert rect["x"] >= -0.5 and rect["y"] >= -0.5, rect
        assert rect["x"] + rect["w"] <= width + 0.5 and rect["y"] + rect["h"] <= height + 0.5, rect
        share = rect["bytes"] / total_bytes
        assert rect["w"] * rect["h"] == pytest.approx(share * width * height, rel=0.01, abs=2.0), rect
    for siblings in (leaves, groups):
        for i, first in enumerate(siblings):
            for second in siblings[i + 1:]:
                across = min(first["x"] + first["w"], second["x"] + second["w"]) - max(first["x"], second["x"])
                down = min(first["y"] + first["h"], second["y"] + second["h"]) - max(first["y"], second["y"])
                # Coordinates are written to 1/100 of a unit: neighbours may share that much of an edge.
                assert min(across, down) < 0.05, (first, second)


def _tags_on_page(page: Page) -> set[str]:
    page.wait_for_selector("table#tags")
    rows = page.locator("tr[data-tag]")
    return {str(rows.nth(i).get_attribute("data-tag")) for i in range(rows.count())}


def test_clicking_a_repository_in_the_treemap_opens_its_page_with_the_pushed_tags(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry, tmp_path: Path
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.click('svg.treemap rect[data-path="group/sub/project"]')
    assert _tags_on_page(page) == set(pushed.tags["group/sub/project"])
    assert page.url == service.url + "/repositories/group%2Fsub%2Fproject"
    screenshot(page, tmp_path, "repository")


def test_clicking_a_repository_in_the_table_opens_its_page_with_the_pushed_tags(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.click('tr[data-repository="other/app"] a')
    assert _tags_on_page(page) == set(pushed.tags["other/app"])
    page.click("nav.crumbs a >> text=Dashboard")
    page.wait_for_selector("#totals")


def test_auth_token_prompt_then_a_click_on_repositories_gives_200(
    browser: Browser, service: ServiceProcess, slapd: Slapd
) -> None:
    user = slapd.users["alice"]
    # The browser answers the Basic prompt, then sends that Authorization header with every later request.
    context = browser.new_context(http_credentials={"username": user.uid, "password": user.password})
    try:
        page = context.new_page()
        first = page.goto(service.url + "/auth_token")
        assert first is not None and first.status == 200
        with page.expect_navigation() as navigation:
            page.click('a[href$="/repositories"]')
        answer = navigation.value
        assert answer is not None and answer.status == 200
        assert "Repositories" in page.title()
        home = page.goto(service.url + "/")
        assert home is not None and home.status == 200
        page.wait_for_selector("#totals")
    finally:
        context.close()


def test_logout_clears_the_login(context: BrowserContext, service: ServiceProcess, slapd: Slapd) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.wait_for_selector("#totals")
    page.click("#logout")
    page.wait_for_selector("form#login")
    assert not [cookie for cookie in context.cookies() if cookie["name"] == "access_token_cookie"]
    again = page.goto(service.url + "/")
    assert again is not None and page.locator("form#login").count() == 1
    assert page.goto(service.url + "/repositories/other%2Fapp") is not None
    assert page.locator("#totals").count() == 0


def test_login_from_another_site_is_refused(service: ServiceProcess, slapd: Slapd) -> None:
    user = slapd.users["alice"]
    form = {"username": user.uid, "password": user.password}
    for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"}, {}):
        answer = requests.post(service.url + "/login", data=form, headers=headers, allow_redirects=False,
                               timeout=10)
        assert answer.status_code == 403, headers
        assert "access_token_cookie" not in answer.cookies
    own = requests.post(service.url + "/login", data=form, headers={"Origin": f"http://127.0.0.1:{service.port}"},
                        allow_redirects=False, timeout=10)
    assert own.status_code == 303 and own.headers["Location"].endswith((service.prefix or "") + "/")


def test_over_https_the_login_cookie_is_secure_and_the_pages_work(
    browser: Browser, tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    tls = make_ca(tmp_path / "tls")
    config = service_config(tmp_path, registry, gitlab, slapd, general__tls_cert=str(tls.server_cert),
                            general__tls_key=str(tls.server_key))
    service = ServiceProcess(tmp_path, ["-c", str(config)])
    service.url = service.url.replace("http://", "https://")
    service.http.verify = str(tls.ca_cert)
    with service:
        user = slapd.users["alice"]
        service.wait_for_data(service.login(user.uid, user.password))
        # The test's own CA is not in chromium's store; a person would have added it.
        context = browser.new_context(ignore_https_errors=True)
        try:
            page = context.new_page()
            log_in(page, service, slapd)
            page.wait_for_selector("#totals")
            cookie = next(cookie for cookie in context.cookies() if cookie["name"] == "access_token_cookie")
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            page.click('tr[data-repository="base/debian"] a')
            assert _tags_on_page(page) == set(pushed.tags["base/debian"])
        finally:
            context.close()


def _expected(pushed: PushedRegistry) -> Expected:
    # The session's images carry no creation time in their configs.
    return Expected(pushed, {(repo, tag): None for repo, tags in pushed.tags.items() for tag in tags})


def _rows(page: Page, selector: str, key: str, value: str) -> dict[str, str]:
    rows = page.locator(selector)
    return {str(rows.nth(i).get_attribute(key)): str(rows.nth(i).get_attribute(value)) for i in range(rows.count())}


def test_clicking_a_group_in_the_treemap_opens_its_page_with_the_pushed_figures(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry, tmp_path: Path
) -> None:
    expected = _expected(pushed)
    page = context.new_page()
    log_in(page, service, slapd)
    page.wait_for_selector("#totals")
    # The tooltip of the group's band says what deleting the group frees.
    band = page.locator('svg.treemap rect.band[data-group="group"]')
    figures = expected.group("group")
    assert "deleting the group frees" in str(band.locator("title").text_content())
    assert f"({figures['unique_size']:,} bytes)" in str(band.locator("title").text_content())
    band.click()
    page.wait_for_selector("#group")
    assert page.url == service.url + "/groups/group"
    cards = {key: page.get_attribute(f"#group-{name}", f"data-{key}") for name, key in (
        ("disk-size", "disk-size"), ("size", "size"), ("unique-size", "unique-size"),
        ("repository-count", "repository-count"), ("tag-count", "tag-count"))}
    assert cards == {"disk-size": str(figures["disk_size"]), "size": str(figures["size"]),
                     "unique-size": str(figures["unique_size"]), "repository-count": str(figures["repository_count"]),
                     "tag-count": str(figures["tag_count"])}
    assert _rows(page, "tr[data-group]", "data-group", "data-disk-size") == {
        name: str(expected.group(name)["disk_size"]) for name in expected.subgroups("group")}
    assert _rows(page, "tr[data-repository]", "data-repository", "data-disk-size") == {
        name: str(expected.figure(name, "disk_size")) for name in expected.direct_repositories("group")}
    # The treemap draws the subgroup and the group's own repositories, every covered byte once.
    rects = page.locator("svg.treemap rect[data-path]")
    drawn = [(rects.nth(i).get_attribute("data-kind"), int(str(rects.nth(i).get_attribute("data-bytes"))))
             for i in range(rects.count())]
    assert sum(size for kind, size in drawn if kind != "group") == figures["disk_size"]
    screenshot(page, tmp_path, "group")
    # A subgroup opens its own page; its crumbs lead back up.
    page.click('tr[data-group="group/sub"] a')
    page.wait_for_selector('#group[data-group="group/sub"]')
    assert page.url == service.url + "/groups/group/sub"
    page.click('nav.crumbs a >> text="group"')
    page.wait_for_selector('#group[data-group="group"]')
    page.click("nav.crumbs a >> text=Groups")
    page.wait_for_selector("table#groups")
    assert _rows(page, "tr[data-group]", "data-group", "data-disk-size") == {
        name: str(expected.group(name)["disk_size"]) for name in expected.groups_at(1)}


def test_the_cleanup_form_of_a_group_shows_what_the_policy_deletes_and_frees(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry, tmp_path: Path
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.wait_for_selector("#totals")
    page.goto(service.url + "/groups/group")
    page.fill("#keep_n", "0")
    # No age limit: these images record no creation time, which an age limit never deletes.
    page.fill("#older_than", "")
    page.click("#cleanup-form button[type=submit]")
    page.wait_for_selector("#cleanup-result")
    assert page.url.startswith(service.url + "/groups/group/cleanup?keep_n=0")
    answer = _expected(pushed).cleanup(Policy(keep_n=0), 0.0, scope=_expected(pushed).covered("group"))
    result = page.locator("#cleanup-result")
    assert (result.get_attribute("data-tags-deleted"), result.get_attribute("data-freed-size"),
            result.get_attribute("data-repositories-affected")) == (
        str(answer["tags_deleted"]), str(answer["freed_size"]), str(answer["repositories_affected"]))
    assert f"Would delete {answer['tags_deleted']} tags in {answer['repositories_affected']} repositories" in \
        page.inner_text("#cleanup-result")
    assert _rows(page, "tr[data-repository]", "data-repository", "data-freed-size") == {
        item["name"]: str(item["freed_size"]) for item in answer["items"]}
    rows = page.locator("tr[data-repository]")
    assert [rows.nth(i).get_attribute("data-repository") for i in range(rows.count())] == [
        item["name"] for item in answer["items"]]
    # The form keeps what was asked.
    assert page.input_value("#keep_n") == "0" and page.input_value("#older_than") == ""
    screenshot(page, tmp_path, "cleanup")


def test_a_bad_policy_is_shown_beside_its_field_with_status_400(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.wait_for_selector("#totals")
    page.click("nav.site >> text=Cleanup simulator")
    page.wait_for_selector("#cleanup-form")
    page.fill("#name_regex", "(unclosed")
    with page.expect_response(lambda response: "/cleanup?" in response.url) as answer:
        page.click("#cleanup-form button[type=submit]")
    assert answer.value.status == 400
    assert page.get_attribute("#name_regex", "aria-invalid") == "true"
    assert "RE2" in page.inner_text("#name_regex-error")
    assert page.input_value("#name_regex") == "(unclosed"
    assert page.locator("#cleanup-result").count() == 0


def test_the_repository_page_links_its_groups_and_simulates_a_cleanup_of_it(
    context: BrowserContext, service: ServiceProcess, slapd: Slapd, pushed: PushedRegistry
) -> None:
    page = context.new_page()
    log_in(page, service, slapd)
    page.click('tr[data-repository="group/sub/project"] a')
    page.wait_for_selector("table#tags")
    page.click("#simulate summary")
    page.fill("#keep_n", "1")
    page.fill("#older_than", "")
    page.click("#cleanup-form button[type=submit]")
    page.wait_for_selector("#cleanup-result")
    assert page.url.startswith(service.url + "/repositories/group%2Fsub%2Fproject/cleanup?")
    expected = _expected(pushed)
    answer = expected.cleanup(Policy(keep_n=1), 0.0, scope=["group/sub/project"])
    assert _rows(page, "tr[data-repository]", "data-repository", "data-tags-deleted") == {
        item["name"]: str(item["tags_deleted"]) for item in answer["items"]}
    page.click('nav.crumbs a >> text="sub"')
    page.wait_for_selector('#group[data-group="group/sub"]')


def test_the_root_document_links_to_groups_and_the_cleanup_simulator(service: ServiceProcess, slapd: Slapd) -> None:
    user = slapd.users["alice"]
    headers = service.login(user.uid, user.password)
    links = service.get("/").json()["_links"]
    base = service.prefix
    assert (links["groups"], links["cleanup"]) == ({"href": base + "/groups"}, {"href": base + "/cleanup"})
    for name in ("groups", "cleanup"):
        answer = service.http.get(f"http://127.0.0.1:{service.port}{links[name]['href']}", headers=headers,
                                  timeout=10)
        assert answer.status_code == 200, (name, answer.text)
