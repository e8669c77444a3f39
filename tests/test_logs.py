"""Log lines are written by a thread of their own, whole and in order, tracebacks included, before exit."""

from __future__ import annotations

import json
import logging
import threading
from typing import Iterator

import pytest

from gitlab_registry_usage_rest import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs.flush()
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
