"""The data file: exact round trips, atomic replacement, and unreadable files moved aside, never deleted."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gitlab_registry_usage_rest.model import RepositoryUsage, Snapshot, TagUsage
from gitlab_registry_usage_rest.persistence import DataFile, encode

LOGGER = "gitlab_registry_usage_rest.persistence"


def every_field_kind() -> Snapshot:
    """Unknown figures, empty and unicode names, digests, media types, platforms and sizes beyond 2**53."""
    return Snapshot(
        timestamp=1521796487.7021387,
        repositories=(
            RepositoryUsage("group/sub/project", 230, 30, 30, (
                TagUsage("1.0", 110, 10, 10, digest="sha256:" + "a" * 64,
                         media_type="application/vnd.oci.image.index.v1+json",
                         platforms=("linux/amd64", "linux/arm64/v8")),
                TagUsage("latest", 120, 20, 20, digest="sha256:" + "b" * 64,
                         media_type="application/vnd.docker.distribution.manifest.v2+json"),
            )),
            RepositoryUsage("broken", None, None, None, None),
            RepositoryUsage("empty", 0, 0, 0, ()),
            RepositoryUsage("équipe/プロジェクト/🚀", 2**63 + 1, 2**63, 0, (
                TagUsage("v1-ü", 2**63 + 1, 2**63, 0, platforms=("windows/amd64:10.0.17763.5936",)),
            )),
        ),
        errors=("broken: tags/list answered 500", "quoted \"text\" and a backslash \\"),
    )


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- round trips -------------------------------------------------------------------------------

def test_snapshot_with_every_field_kind_round_trips_equal(tmp_path: Path) -> None:
    snapshot = every_field_kind()
    data_file = DataFile(str(tmp_path / "snapshot.json"))
    assert data_file.save(snapshot) is True
    loaded = data_file.load()
    assert loaded == snapshot
    assert loaded is not None
    broken = loaded.repository("broken")
    assert broken is not None and broken.tags is None and broken.size is None
    unicode_repository = loaded.repository("équipe/プロジェクト/🚀")
    assert unicode_repository is not None and unicode_repository.tag("v1-ü") is not None
    assert files_in(tmp_path) == ["snapshot.json"]


def test_save_creates_missing_parent_folders(tmp_path: Path) -> None:
    data_file = DataFile(str(tmp_path / "var" / "lib" / "snapshot.json"))
    assert data_file.save(every_field_kind()) is True
    assert data_file.load() == every_field_kind()


def test_file_names_its_format_and_version(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    DataFile(str(path)).save(Snapshot(5.0, ()))
    assert json.loads(path.read_bytes()) == {
        "format": "gitlab-registry-usage-rest snapshot", "version": 1, "timestamp": 5.0, "errors": [],
        "repositories": [],
    }


def test_version_1_file_written_by_hand_loads_to_the_exact_snapshot(tmp_path: Path) -> None:
    # What the first release writes: later releases must keep reading it.
    path = tmp_path / "snapshot.json"
    path.write_bytes(
        b'{"format":"gitlab-registry-usage-rest snapshot","version":1,"timestamp":1700000000,'
        b'"errors":["x: timeout"],"repositories":[["app",15,12,7,[["v1",15,12,7,"sha256:d",'
        b'"application/vnd.oci.image.manifest.v1+json",["linux/amd64"]]]],["x",null,null,null,null]]}'
    )
    assert DataFile(str(path)).load() == Snapshot(
        timestamp=1700000000.0,
        repositories=(
            RepositoryUsage("app", 15, 12, 7, (TagUsage("v1", 15, 12, 7, "sha256:d",
                                                        "application/vnd.oci.image.manifest.v1+json",
                                                        ("linux/amd64",)),)),
            RepositoryUsage("x", None, None, None, None),
        ),
        errors=("x: timeout",),
    )


def test_hundred_thousand_tags_round_trip(tmp_path: Path) -> None:
    snapshot = Snapshot(
        timestamp=1.5,
        repositories=tuple(
            RepositoryUsage(f"group/repo-{r}", 100 * 1000 + r, 100 * 10 + r, r, tuple(
                TagUsage(f"v{t}", 1000 + t, 10 + t, t % 7, digest=f"sha256:{r:032x}{t:032x}",
                         media_type="application/vnd.oci.image.manifest.v1+json", platforms=("linux/amd64",))
                for t in range(100)
            ))
            for r in range(1000)
        ),
    )
    data_file = DataFile(str(tmp_path / "snapshot.json"))
    assert data_file.save(snapshot) is True
    loaded = data_file.load()
    assert loaded == snapshot
    assert loaded is not None
    assert sum(len(repository.tags or ()) for repository in loaded.repositories) == 100_000


# --- atomic replacement and failed saves -------------------------------------------------------

def test_save_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    data_file = DataFile(str(path))
    data_file.save(Snapshot(1.0, (RepositoryUsage("old", 1, 1, 1, ()),)))
    old_bytes = path.read_bytes()
    with open(path, "rb") as reader_of_old:
        data_file.save(every_field_kind())
        # A rename gives the path a new file; a reader that opened the old one still sees it whole,
        # which rewriting in place (truncate, write) would not give.
        assert reader_of_old.read() == old_bytes
        assert os.fstat(reader_of_old.fileno()).st_ino != path.stat().st_ino
    assert data_file.load() == every_field_kind()
    assert files_in(tmp_path) == ["snapshot.json"]


def test_save_into_a_folder_that_is_a_file_returns_false_and_logs_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "data"
    blocker.write_bytes(b"not a folder")
    data_file = DataFile(str(blocker / "snapshot.json"))
    assert data_file.save(every_field_kind()) is False
    assert [(record.name, record.levelno) for record in caplog.records] == [(LOGGER, logging.ERROR)]
    assert f"could not write the data file {blocker / 'snapshot.json'}" in caplog.text
    assert blocker.read_bytes() == b"not a folder"
    assert files_in(tmp_path) == ["data"]


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk (SIGXFSZ ignored so they fail, not kill)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_save_failing_midway_keeps_the_previous_file_and_removes_the_partial_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "snapshot.json"
    data_file = DataFile(str(path))
    previous = Snapshot(1.0, (RepositoryUsage("old", 1, 1, 1, ()),))
    data_file.save(previous)
    previous_bytes = path.read_bytes()
    bigger = Snapshot(2.0, tuple(RepositoryUsage(f"repo-{n}", n, n, n, ()) for n in range(1000)))
    assert len(encode(bigger)) > 4096
    with file_size_limit(4096):
        assert data_file.save(bigger) is False
    assert "could not write the data file" in caplog.text
    assert "File too large" in caplog.text
    assert path.read_bytes() == previous_bytes
    assert files_in(tmp_path) == ["snapshot.json"]
    assert data_file.load() == previous


# --- missing and unreadable files --------------------------------------------------------------

def test_missing_file_is_none_and_creates_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    assert DataFile(str(tmp_path / "snapshot.json")).load() is None
    assert files_in(tmp_path) == []
    assert [record.levelno for record in caplog.records] == [logging.INFO]


def good_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode(every_field_kind()))
    return document


def changed(change: Callable[[dict[str, Any]], object]) -> bytes:
    """A valid file with one thing wrong."""
    document = good_document()
    change(document)
    return json.dumps(document).encode()


GOOD = encode(every_field_kind())


def first_tag(document: dict[str, Any]) -> list[Any]:
    tag: list[Any] = document["repositories"][0][4][0]
    return tag


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (GOOD[:1], "not JSON"),
        (GOOD[:len(GOOD) // 3], "not JSON"),
        (GOOD[:GOOD.index(b'"latest"') + 4], "not JSON"),
        (GOOD[:-1], "not JSON"),
        (b"", "not JSON"),
        (b"\x00\x00\x00\x00garbage", "not JSON"),
        (b"\xff\xfe\xfd not utf-8", "not JSON"),
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[1, 2, 3]", "not a snapshot file"),
        (b'"gitlab-registry-usage-rest snapshot"', "not a snapshot file"),
        (b"{}", "not a snapshot file"),
        (changed(lambda d: d.update(format="gitlab-registry-usage snapshot")), "not a snapshot file"),
        (changed(lambda d: d.update(version=2)), "format version 2, this version reads 1"),
        (changed(lambda d: d.update(version="1")), "format version '1', this version reads 1"),
        (changed(lambda d: d.pop("version")), "format version None, this version reads 1"),
        (changed(lambda d: d.pop("timestamp")), "KeyError: 'timestamp'"),
        (changed(lambda d: d.update(timestamp="yesterday")), "expected a timestamp, found 'yesterday'"),
        (changed(lambda d: d.update(repositories={"app": [1, 1, 1, None]})), "expected an array, found {'app'"),
        (changed(lambda d: d.update(errors="oops")), "expected an array, found 'oops'"),
        (changed(lambda d: d["repositories"][0].__setitem__(1, -1)), "expected a size in bytes, found -1"),
        (changed(lambda d: first_tag(d).__setitem__(2, -10)), "expected a size in bytes, found -10"),
        (changed(lambda d: d["repositories"][0].__setitem__(1, "230")), "expected a size in bytes, found '230'"),
        (changed(lambda d: first_tag(d).__setitem__(1, 110.0)), "expected a size in bytes, found 110.0"),
        (changed(lambda d: first_tag(d).__setitem__(1, True)), "expected a size in bytes, found True"),
        (changed(lambda d: first_tag(d).__setitem__(3, None)), "expected a size in bytes, found None"),
        (changed(lambda d: first_tag(d).pop()), "not enough values to unpack (expected 7, got 6)"),
        (changed(lambda d: d["repositories"][0].append(0)), "too many values to unpack (expected 5)"),
        (changed(lambda d: first_tag(d).__setitem__(6, "linux/amd64")), "expected an array, found 'linux/amd64'"),
        (changed(lambda d: first_tag(d).__setitem__(0, 1.0)), "expected a string, found 1.0"),
    ],
    ids=[
        "truncated-after-1-byte", "truncated-at-a-third", "truncated-inside-a-tag-name", "truncated-last-byte",
        "empty", "binary", "not-utf-8", "html-error-page", "nested-too-deep",
        "array", "string", "empty-object", "wrong-format-name", "future-version-2", "version-as-string",
        "no-version", "no-timestamp", "timestamp-as-string", "repositories-as-object", "errors-as-string",
        "negative-repository-size", "negative-tag-disk-size", "size-as-string", "size-as-float", "size-as-bool",
        "tag-unique-size-null", "tag-missing-a-field", "repository-extra-field", "platforms-as-string",
        "tag-name-as-number",
    ],
)
def test_unreadable_file_is_none_and_moved_aside_unchanged_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, problem: str
) -> None:
    path = tmp_path / "snapshot.json"
    path.write_bytes(content)
    assert DataFile(str(path)).load() is None
    (aside,) = tmp_path.iterdir()
    assert aside.name.startswith("snapshot.json.unreadable-")
    assert aside.read_bytes() == content
    (record,) = caplog.records
    assert (record.name, record.levelno) == (LOGGER, logging.WARNING)
    message = record.getMessage()
    assert message.startswith(f"ignoring the data file {path}, moved to {aside}: ")
    assert problem in message


def test_two_unreadable_files_in_one_second_are_both_kept(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    data_file = DataFile(str(path))
    path.write_bytes(b"first")
    assert data_file.load() is None
    path.write_bytes(b"second")
    assert data_file.load() is None
    kept = sorted(aside.read_bytes() for aside in tmp_path.iterdir())
    assert kept == [b"first", b"second"]
    assert all(name.startswith("snapshot.json.unreadable-") for name in files_in(tmp_path))


def test_after_an_unreadable_file_the_next_save_and_load_work(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    data_file = DataFile(str(path))
    path.write_bytes(GOOD[:100])
    assert data_file.load() is None
    assert data_file.save(every_field_kind()) is True
    assert data_file.load() == every_field_kind()
    assert len(files_in(tmp_path)) == 2
