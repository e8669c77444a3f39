"""Log lines are written in batches: whole and in order, warnings at once, the rest within the interval; no value
from a request or a registry can forge a line."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitlab_registry_usage_rest import logs
from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.refresher import Refresher
from gitlab_registry_usage_rest.state import RefreshState, SnapshotHolder
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import until
from tests.support.proxy import FaultyProxy, respond
from tests.support.pushed import PushedRegistry
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_lines_from_many_threads_are_written_whole_and_nothing_is_lost(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    log = logging.getLogger("gitlab_registry_usage_rest.test")

    def write(number: int) -> None:
        for line in range(200):
            log.info("thread %d line %d", number, line, extra={"fields": {"thread": number, "line": line}})

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logs.flush()
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(entries) == 8 * 200
    for number in range(8):
        lines = [entry["line"] for entry in entries if entry["thread"] == number]
        assert lines == list(range(200))  # each thread's lines in its order
    assert entries[0]["message"].startswith("thread ") and entries[0]["level"] == "INFO"


def test_a_traceback_is_written_with_its_record(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "text")
    try:
        raise ValueError("registry answered garbage")
    except ValueError:
        logging.getLogger("gitlab_registry_usage_rest.test").exception("refresh failed")
    logs.flush()
    err = capsys.readouterr().err
    assert "ERROR gitlab_registry_usage_rest.test: refresh failed" in err
    assert "Traceback" in err and "ValueError: registry answered garbage" in err


def test_records_below_the_level_are_dropped_before_the_queue(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("WARNING", "text")
    logging.getLogger("gitlab_registry_usage_rest.access").info("GET /repositories 200")
    logging.getLogger("gitlab_registry_usage_rest.test").warning("kept")
    logs.flush()
    err = capsys.readouterr().err
    assert "kept" in err and "GET /repositories" not in err


def test_warnings_are_written_at_once_and_the_rest_within_the_interval() -> None:
    stream = io.StringIO()
    handler = logs.BatchingHandler(stream, interval=0.05)
    handler.setFormatter(logs.TextFormatter())
    log = logging.getLogger("gitlab_registry_usage_rest.test.batching")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info("GET /repositories 200")
        log.warning("refresh failed")
        lines = stream.getvalue().splitlines()
        assert [line.split(" ", 2)[2] for line in lines] == [
            "INFO gitlab_registry_usage_rest.test.batching: GET /repositories 200",
            "WARNING gitlab_registry_usage_rest.test.batching: refresh failed"]  # in order, the info line first
        log.info("later")
        deadline = time.monotonic() + 5
        while "later" not in stream.getvalue():
            assert time.monotonic() < deadline, "the pending line was not written within the interval"
            time.sleep(0.01)
    finally:
        log.removeHandler(handler)
        handler.close()


def test_the_time_stamp_is_the_standard_one() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "message", None, None)
    assert logs.TextFormatter().format(record) == logging.Formatter(logs.TEXT_FORMAT).format(record)


# --- no forged lines -------------------------------------------------------------------------------

FORGED = "2030-01-01 00:00:00 INFO gitlab_registry_usage_rest.web.resources: issued a token to admin"
# What cheroot hands the application for the path /x%0A2030-01-01%2000:00:00%20INFO%20...: the line feed decoded.
INJECTION_PATH = "/x%0A" + FORGED.replace(" ", "%20")
TEST_LOGGER = "INFO gitlab_registry_usage_rest.test: "


def text_line(msg: object, *args: object, exc_info: object = None) -> str:
    """The text line of a record, without its time stamp, level and logger name."""
    record = logging.LogRecord("gitlab_registry_usage_rest.test", logging.INFO, __file__, 1, msg, args or None,
                               exc_info)  # type: ignore[arg-type]
    line = logs.TextFormatter().format(record).split(" ", 2)[2]
    assert line.startswith(TEST_LOGGER)
    return line.removeprefix(TEST_LOGGER)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("/x\n" + FORGED, "/x\\n" + FORGED),
        ("a\r\nb", "a\\r\\nb"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        ("tab\there", "tab\\there"),
        ("nul\x00 del\x7f c1\x85", "nul\\x00 del\\x7f c1\\x85"),
        ("line\u2028separator\u2029paragraph", "line\\u2028separator\\u2029paragraph"),
        ("bidi\u202eoverride zero\u200bwidth", "bidi\\u202eoverride zero\\u200bwidth"),
        ("a literal \\n is not a line feed", "a literal \\\\n is not a line feed"),
        ("équipe/プロジェクト/🚀 v1-ü", "équipe/プロジェクト/🚀 v1-ü"),
        ("GET /repositories 200", "GET /repositories 200"),
    ],
    ids=["line-feed", "carriage-return", "terminal-escapes", "tab", "nul-del-c1", "unicode-separators",
         "format-characters", "backslash", "unicode-letters-kept", "plain-kept"],
)
def test_text_lines_escape_control_characters_in_string_arguments(value: str, written: str) -> None:
    line = text_line("GET %s 404 user=%s", value, value)
    assert line == f"GET {written} 404 user={written}"
    assert "\n" not in line


def test_json_lines_carry_every_control_character_escaped_on_one_line() -> None:
    value = "/x\n\r\x1b[2J\x00\x85\u2028\u2029 équipe"
    record = logging.LogRecord("gitlab_registry_usage_rest.access", logging.INFO, __file__, 1, "GET %s", (value,),
                               None)
    record.fields = {"path": value}
    line = logs.JsonFormatter().format(record)
    assert line.isprintable() and line.isascii()  # ensure_ascii: even U+2028, which some viewers break lines at
    entry = json.loads(line)
    assert (entry["message"], entry["path"]) == (f"GET {value}", value)  # the exact value, for log collectors


def test_text_lines_escape_other_arguments_and_keep_numbers_and_repr() -> None:
    error = OSError(f"No such file: '/data\n{FORGED}'")
    assert text_line("could not write %s: %s", Path("/data\nx"), error) == (
        "could not write /data\\nx: No such file: '/data\\n"
        f"{FORGED}'")
    # %r of a string was safe already (repr escapes): the same text, not escaped twice.
    assert text_line("login of %r refused", "a\nb\\") == "login of 'a\\nb\\\\' refused"
    assert text_line("%d repos, %.1fs, %s", 3, 1.25, True) == "3 repos, 1.2s, True"
    assert text_line("%(user)s from %(client)s", {"user": "eve\n", "client": "::1"}) == (
        "eve\\n from ::1")
    # A message that is no template (an object logged as it is) is data too.
    assert text_line(ValueError("bad\nline")) == "bad\\nline"


def test_text_lines_keep_line_breaks_the_code_writes() -> None:
    assert text_line("refresh done: 2 errors" + "\n  %s" * 2, "a: 500", f"b\n{FORGED}") == (
        f"refresh done: 2 errors\n  a: 500\n  b\\n{FORGED}")


def test_a_traceback_keeps_its_layout_and_escapes_its_exception_messages() -> None:
    try:
        try:
            raise KeyError(f"tag\n{FORGED}")
        except KeyError as cause:
            raise RuntimeError(f"manifest x:v1\n{FORGED}") from cause
    except RuntimeError:
        exc_info = sys.exc_info()
    lines = text_line("unexpected error on %s", "/x", exc_info=exc_info).splitlines()
    assert lines[0] == "unexpected error on /x"
    assert lines[1] == "Traceback (most recent call last):"
    assert all(line.startswith(("Traceback", "  ", "KeyError: ", "RuntimeError: ", "\n", "The above"))
               for line in lines[1:] if line), lines
    assert not any(line.startswith(FORGED) for line in lines)
    assert f"RuntimeError: manifest x:v1\\n{FORGED}" in lines
    assert any(line.startswith("KeyError: ") and "\\n" in line for line in lines)


def test_a_refresh_writes_one_line_per_error_each_escaped(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    class Crawler:
        def crawl(self) -> Listing:
            return Listing((RepositoryListing("ok", (ImageListing("v1", ()),)), RepositoryListing("bad", None)), {},
                           errors=("bad: manifest bad:v1 answered 500", f"worse\n{FORGED}: answered 404"))

        def cancel(self) -> None:
            pass

    logs.configure("INFO", "text")
    assert Refresher(Crawler(), SnapshotHolder(), RefreshState(), interval=3600).run_once()
    logs.flush()
    lines = capsys.readouterr().err.splitlines()
    (done,) = [index for index, line in enumerate(lines) if "refresh done" in line]
    assert lines[done].endswith("2 errors")
    assert lines[done + 1:] == ["  bad: manifest bad:v1 answered 500", f"  worse\\n{FORGED}: answered 404"]


def test_a_json_refresh_line_counts_the_crawls_warnings(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    class Crawler:
        def crawl(self) -> Listing:
            return Listing((RepositoryListing("ok", (ImageListing("v1", ()),)),), {},
                           warnings=("ok:v1: config sha256:c answered 500",))

        def cancel(self) -> None:
            pass

    logs.configure("INFO", "json")
    assert Refresher(Crawler(), SnapshotHolder(), RefreshState(), interval=3600).run_once()
    logs.flush()
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (refresh,) = [entry for entry in entries if entry.get("event") == "refresh"]
    assert (refresh["errors"], refresh["warnings"]) == ([], 1)


def access_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "gitlab_registry_usage_rest.access" in line]


@pytest.mark.registry
@pytest.mark.slapd
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_line_feed_in_the_path_or_a_registry_name_forges_no_log_line(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry, log_format: str,
) -> None:
    forged_name = f"x\n{FORGED}"
    with FaultyProxy(registry.url) as proxy:
        # A registry (or something in between) that lists a repository whose name carries a line feed.
        proxy.add_rule("^GET /v2/_catalog", respond(
            200, {"Content-Type": "application/json"},
            json.dumps({"repositories": [*pushed.tags, forged_name]}).encode()))
        config = service_config(tmp_path, registry, gitlab, slapd, registry__registry_base_url=proxy.url,
                                general__log_format=log_format)
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            assert service.get(INJECTION_PATH).status_code == 404
            alice = slapd.users["alice"]
            service.wait_for_data(service.login(alice.uid, alice.password))
            until(lambda: "refresh done" in service.log() and "/x" in service.log(), "the request and refresh lines",
                  log=service.log)
    text = service.log()
    assert not any(line.startswith(FORGED) for line in text.splitlines()), text
    if log_format == "text":
        (request,) = [line for line in access_lines(text) if "GET /x" in line]
        assert request.split(" ", 2)[2].startswith(
            f"INFO gitlab_registry_usage_rest.access: GET /x\\n{FORGED} 404 ")
        (error,) = [line for line in text.splitlines() if line.startswith("  x")]
        assert error.startswith(f"  x\\n{FORGED}: ")
    else:
        entries = [json.loads(line) for line in text.splitlines()]
        (request,) = [entry for entry in entries if entry.get("path", "").startswith("/x")]
        assert request["path"] == f"/x\n{FORGED}" and request["status"] == 404
        (refresh,) = [entry for entry in entries if entry.get("event") == "refresh"]
        (error,) = refresh["errors"]
        assert error.startswith(f"{forged_name}: ")
