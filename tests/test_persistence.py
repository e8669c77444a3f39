"""The data file: exact round trips, atomic replacement, private to the service's user, and unreadable files
moved aside, never deleted."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gitlab_registry_usage_rest.model import (
    ImageListing,
    Listing,
    RepositoryListing,
    RepositoryUsage,
    Snapshot,
    TagUsage,
)
from gitlab_registry_usage_rest.persistence import DataFile, decode, encode
from gitlab_registry_usage_rest.sizes import build_snapshot
from tests.support.distribution import DistributionRegistry
from tests.support.gitlab_stand_in import GitLabTokenEndpoint
from tests.support.processes import until
from tests.support.proxy import FaultyProxy, delay
from tests.support.pushed import PushedRegistry
from tests.support.service import ServiceProcess, service_config
from tests.support.slapd import Slapd

LOGGER = "gitlab_registry_usage_rest.persistence"


def every_field_kind() -> Snapshot:
    """Unknown figures, empty and unicode names, digests, media types, platforms and sizes beyond 2**53."""
    return Snapshot(
        timestamp=1521796487.7021387,
        repositories=(
            RepositoryUsage("group/sub/project", 230, 30, 30, (
                TagUsage("1.0", 110, 10, 10, digest="sha256:" + "a" * 64,
                         media_type="application/vnd.oci.image.index.v1+json",
                         platforms=("linux/amd64", "linux/arm64/v8"), created=1686825296.789, first_seen=1521796000),
                TagUsage("latest", 120, 20, 20, digest="sha256:" + "b" * 64,
                         media_type="application/vnd.docker.distribution.manifest.v2+json", first_seen=1.5),
            )),
            RepositoryUsage("broken", None, None, None, None),
            RepositoryUsage("empty", 0, 0, 0, ()),
            RepositoryUsage("équipe/プロジェクト/🚀", 2**63 + 1, 2**63, 0, (
                TagUsage("v1-ü", 2**63 + 1, 2**63, 0, platforms=("windows/amd64:10.0.17763.5936",)),
            )),
        ),
        errors=("broken: tags/list answered 500", "quoted \"text\" and a backslash \\"),
        warnings=("group/sub/project:1.0: config sha256:... answered 500",),
    )


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- round trips -------------------------------------------------------------------------------

def data_files_in(folder: Path) -> list[str]:
    """What ``files_in`` finds but the history database (and its WAL files), which the service keeps beside."""
    return [name for name in files_in(folder) if not name.startswith("history.sqlite3")]


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
        "format": "gitlab-registry-usage-rest snapshot", "version": 3, "timestamp": 5.0, "errors": [],
        "warnings": [], "repositories": [], "layer_sizes": None, "configs": {},
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


def test_version_1_file_loads_with_no_creation_times_first_seen_warnings_or_config_dates(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_bytes(
        b'{"format":"gitlab-registry-usage-rest snapshot","version":1,"timestamp":5,"errors":[],'
        b'"repositories":[["app",1,1,1,[["v1",1,1,1,null,null,[]]]]]}'
    )
    saved = DataFile(str(path)).load_saved()
    assert saved is not None and saved.configs == {}
    assert saved.snapshot == Snapshot(5.0, (RepositoryUsage("app", 1, 1, 1, (TagUsage("v1", 1, 1, 1),)),))
    tag = saved.snapshot.repositories[0].tag("v1")
    assert tag is not None and (tag.created, tag.first_seen) == (None, None)
    assert saved.snapshot.warnings == ()


def test_config_dates_round_trip_beside_the_snapshot(tmp_path: Path) -> None:
    configs = {"sha256:" + "c" * 64: 1686825296.789, "sha256:" + "d" * 64: None}
    data_file = DataFile(str(tmp_path / "snapshot.json"))
    assert data_file.save(every_field_kind(), configs) is True
    saved = data_file.load_saved()
    assert saved is not None
    assert (saved.snapshot, saved.configs) == (every_field_kind(), configs)
    assert data_file.load() == every_field_kind()


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


# --- private, and never written through a planted link ------------------------------------------

@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_file_is_0600_and_the_folders_created_for_it_0700_whatever_the_umask(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    path = existing / "var" / "lib" / "snapshot.json"
    with umask(0):  # the most permissive: every bit the code asks for is granted
        assert DataFile(str(path)).save(every_field_kind()) is True
        assert DataFile(str(path)).save(every_field_kind()) is True  # a replaced file too
    assert mode(path) == 0o600
    assert (mode(existing / "var"), mode(existing / "var" / "lib")) == (0o700, 0o700)
    assert mode(existing) == 0o755, "a folder that existed is left as it was"


def test_a_file_written_world_readable_before_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_bytes(GOOD)
    path.chmod(0o644)
    assert DataFile(str(path)).save(every_field_kind()) is True
    assert mode(path) == 0o600


def victim_and_link(tmp_path: Path, link: Path, victim_exists: bool) -> Path:
    """A symbolic link at ``link`` to a file outside the data folder (``victim``), as another user would plant it."""
    victim = tmp_path / "elsewhere" / "victim"
    victim.parent.mkdir()
    if victim_exists:
        victim.write_bytes(b"precious")
    link.symlink_to(victim)
    return victim


@pytest.mark.parametrize("victim_exists", [True, False], ids=["link-to-a-file", "dangling-link"])
def test_a_link_planted_at_the_former_temporary_name_is_not_followed(tmp_path: Path, victim_exists: bool) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "snapshot.json"
    # The name every earlier version wrote through: predictable from the process id.
    link = folder / f".snapshot.json.{os.getpid()}.tmp"
    victim = victim_and_link(tmp_path, link, victim_exists)
    assert DataFile(str(path)).save(every_field_kind()) is True
    assert (victim.read_bytes() == b"precious") if victim_exists else not victim.exists()
    assert link.is_symlink() and DataFile(str(path)).load() == every_field_kind()
    assert not path.is_symlink() and mode(path) == 0o600


def test_a_link_planted_at_the_temporary_name_chosen_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name is random; here someone guessed it: the first name tempfile tries is the planted one.
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["guessed", "second"]))
    path = tmp_path / "snapshot.json"
    link = tmp_path / ".snapshot.json.guessed.tmp"
    victim = victim_and_link(tmp_path, link, victim_exists=False)
    assert DataFile(str(path)).save(every_field_kind()) is True
    assert not victim.exists() and link.is_symlink()
    assert DataFile(str(path)).load() == every_field_kind()
    assert files_in(tmp_path) == [".snapshot.json.guessed.tmp", "elsewhere", "snapshot.json"]


def test_a_link_planted_at_the_data_file_is_replaced_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    victim = victim_and_link(tmp_path, path, victim_exists=True)
    assert DataFile(str(path)).save(every_field_kind()) is True
    assert victim.read_bytes() == b"precious"
    assert not path.is_symlink() and mode(path) == 0o600


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
        (changed(lambda d: d.update(version=4)), "format version 4, this version reads 1 to 3"),
        (changed(lambda d: d.update(version="1")), "format version '1', this version reads 1 to 3"),
        (changed(lambda d: d.update(version=True)), "format version True, this version reads 1 to 3"),
        (changed(lambda d: d.pop("version")), "format version None, this version reads 1 to 3"),
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
        (changed(lambda d: first_tag(d).pop()), "not enough values to unpack (expected 9, got 8)"),
        (changed(lambda d: d["repositories"][0].append(0)), "too many values to unpack (expected 5)"),
        (changed(lambda d: first_tag(d).__setitem__(6, "linux/amd64")), "expected an array, found 'linux/amd64'"),
        (changed(lambda d: first_tag(d).__setitem__(0, 1.0)), "expected a string, found 1.0"),
        (changed(lambda d: d.update(timestamp=float("nan"))), "not JSON (NaN is not a number JSON allows)"),
        (changed(lambda d: d.update(timestamp=float("inf"))), "not JSON (Infinity is not a number JSON allows)"),
        (changed(lambda d: d.update(timestamp=-float("inf"))), "not JSON (-Infinity is not a number JSON allows)"),
        (GOOD.replace(b'"timestamp":1521796487.7021387', b'"timestamp":1e400'),
         "timestamp inf is not a time between 1970 and 9999"),
        (changed(lambda d: d.update(timestamp=10**400)), "timestamp 1000000000000000000000000000000000000000"),
        (changed(lambda d: d.update(timestamp=253402300800)), "timestamp 253402300800 is not a time between"),
        (changed(lambda d: d.update(timestamp=-1.0)), "timestamp -1.0 is not a time between 1970 and 9999"),
        (changed(lambda d: d["repositories"][0].__setitem__(1, float("nan"))), "NaN is not a number JSON allows"),
        (changed(lambda d: first_tag(d).__setitem__(2, float("inf"))), "Infinity is not a number JSON allows"),
        (changed(lambda d: first_tag(d).__setitem__(3, -float("inf"))), "-Infinity is not a number JSON allows"),
        (GOOD.replace(b'["1.0",110,', b'["1.0",1e400,'), "expected a size in bytes, found inf"),
        (changed(lambda d: first_tag(d).__setitem__(7, float("nan"))), "NaN is not a number JSON allows"),
        (GOOD.replace(b'1686825296.789', b'1e400'), "timestamp inf is not a time between 1970 and 9999"),
        (changed(lambda d: first_tag(d).__setitem__(8, "yesterday")), "expected a timestamp, found 'yesterday'"),
        (changed(lambda d: first_tag(d).__setitem__(8, -1)), "timestamp -1 is not a time between 1970 and 9999"),
        (changed(lambda d: d.pop("warnings")), "KeyError: 'warnings'"),
        (changed(lambda d: d.update(warnings=[1])), "expected a string, found 1"),
        (changed(lambda d: d.update(configs=[])), "expected at most 100000 config dates, found []"),
        (changed(lambda d: d.update(configs={"sha256:c": "1970"})), "expected a timestamp, found '1970'"),
        (changed(lambda d: d.update(configs={"sha256:c": float("inf")})), "Infinity is not a number JSON allows"),
    ],
    ids=[
        "truncated-after-1-byte", "truncated-at-a-third", "truncated-inside-a-tag-name", "truncated-last-byte",
        "empty", "binary", "not-utf-8", "html-error-page", "nested-too-deep",
        "array", "string", "empty-object", "wrong-format-name", "future-version-4", "version-as-string",
        "version-as-bool", "no-version", "no-timestamp", "timestamp-as-string", "repositories-as-object",
        "errors-as-string",
        "negative-repository-size", "negative-tag-disk-size", "size-as-string", "size-as-float", "size-as-bool",
        "tag-unique-size-null", "tag-missing-a-field", "repository-extra-field", "platforms-as-string",
        "tag-name-as-number", "timestamp-nan", "timestamp-infinity", "timestamp-minus-infinity",
        "timestamp-overflowing-to-infinity", "timestamp-huge-integer", "timestamp-after-year-9999",
        "timestamp-before-1970", "repository-size-nan", "tag-size-infinity", "tag-size-minus-infinity",
        "tag-size-overflowing-to-infinity", "created-nan", "created-overflowing-to-infinity",
        "first-seen-as-string", "first-seen-before-1970", "no-warnings", "warning-as-number", "configs-as-array",
        "config-date-as-string", "config-date-infinity",
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


@pytest.mark.registry
@pytest.mark.slapd
def test_the_service_moves_a_file_with_a_nan_timestamp_aside_serves_and_writes_a_private_file(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    folder = tmp_path / "lib" / "gitlab-registry-usage-rest"
    path = folder / "snapshot.json"
    path.parent.mkdir(parents=True)
    nan_file = GOOD.replace(b'"timestamp":1521796487.7021387', b'"timestamp":NaN')
    path.write_bytes(nan_file)
    with FaultyProxy(registry.url) as proxy:
        proxy.add_rule(r"^GET /v2/_catalog", delay(60))  # no data until the test has looked at the start
        config = service_config(tmp_path, registry, gitlab, slapd, registry__registry_base_url=proxy.url,
                                registry__timeout="2 seconds", general__data_file=str(path))
        with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
            (aside,) = folder.glob("snapshot.json.unreadable-*")
            assert aside.read_bytes() == nan_file
            alice = slapd.users["alice"]
            headers = service.login(alice.uid, alice.password)
            response = service.get("/repositories?embed=1", headers=headers)
            assert response.status_code == 200 and response.json()["timestamp"] is None
            assert service.get("/health").status_code == 503
            assert service.get("/metrics").status_code == 200
            until(lambda: "NaN is not a number JSON allows" in service.log(), "the warning", log=service.log)
            proxy.clear_rules()
            timestamp = service.wait_for_data(headers)
            until(lambda: path.exists() and decode(path.read_bytes()).timestamp == timestamp, "the new data file",
                  log=service.log)
    assert mode(path) == 0o600
    assert data_files_in(folder) == ["snapshot.json", aside.name]


@pytest.mark.registry
@pytest.mark.slapd
def test_the_service_creates_the_data_folder_0700_and_the_file_0600(
    tmp_path: Path, registry: DistributionRegistry, gitlab: GitLabTokenEndpoint, slapd: Slapd,
    pushed: PushedRegistry,
) -> None:
    path = tmp_path / "var" / "lib" / "gitlab-registry-usage-rest" / "snapshot.json"
    config = service_config(tmp_path, registry, gitlab, slapd, general__data_file=str(path))
    with ServiceProcess(tmp_path, ["-c", str(config)]) as service:
        alice = slapd.users["alice"]
        timestamp = service.wait_for_data(service.login(alice.uid, alice.password))
        until(lambda: path.exists() and decode(path.read_bytes()).timestamp == timestamp, "the data file",
              log=service.log)
    assert mode(path) == 0o600
    assert [mode(folder) for folder in (path.parent, path.parent.parent, path.parent.parent.parent)] == [0o700] * 3
    assert data_files_in(path.parent) == ["snapshot.json"]
    # The history (issue 14) lives beside the data file by default, as private as it.
    assert mode(path.parent / "history.sqlite3") == 0o600


def grouped_listing() -> Listing:
    """``team/app`` and ``team/app/cache`` share a layer no other repository has; ``other`` shares one with both."""
    return Listing((
        RepositoryListing("team/app", (ImageListing("v1", ("base", "app")), ImageListing("v2", ("base", "app2")))),
        RepositoryListing("team/app/cache", (ImageListing("v1", ("app", "cache")),)),
        RepositoryListing("other", (ImageListing("v1", ("base",)),)),
    ), {"base": 1000, "app": 200, "app2": 30, "cache": 4})


def test_layer_ids_and_sizes_round_trip_so_groups_keep_their_unique_size(tmp_path: Path) -> None:
    snapshot = build_snapshot(grouped_listing(), 10.0)
    data_file = DataFile(str(tmp_path / "snapshot.json"))
    assert data_file.save(snapshot) is True
    loaded = data_file.load()
    assert loaded is not None and loaded.layers is not None and snapshot.layers is not None
    assert loaded.layers == snapshot.layers
    assert loaded.groups == snapshot.groups
    team = loaded.group("team")
    assert team is not None and team.unique_size == 200 + 30 + 4


def test_file_of_version_2_loads_without_layers_and_its_groups_without_unique_size(tmp_path: Path) -> None:
    document = json.loads(encode(build_snapshot(grouped_listing(), 10.0)))
    document["version"] = 2
    del document["layer_sizes"]
    for repository in document["repositories"]:
        for tag in repository[4]:
            del tag[9]
    path = tmp_path / "snapshot.json"
    path.write_bytes(json.dumps(document).encode())
    loaded = DataFile(str(path)).load()
    assert loaded is not None and loaded.layers is None
    team = loaded.group("team")
    assert team is not None and team.unique_size is None and team.disk_size == 234


@pytest.mark.parametrize("bad_ids", [[7], [-1], ["0"], [True], None])
def test_layer_id_outside_the_layer_sizes_makes_the_file_unreadable(tmp_path: Path, bad_ids: Any) -> None:
    document = json.loads(encode(build_snapshot(grouped_listing(), 10.0)))
    document["repositories"][0][4][0][9] = bad_ids
    path = tmp_path / "snapshot.json"
    path.write_bytes(json.dumps(document).encode())
    assert DataFile(str(path)).load() is None
    assert [name for name in files_in(tmp_path) if name.startswith("snapshot.json.unreadable-")]
