"""Log lines are written in batches: whole and in order, warnings at once, the rest within the interval."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from gitlab_registry_usage_rest import logs


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
