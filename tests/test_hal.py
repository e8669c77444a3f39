"""Pure HAL logic: query parsing and the mapping of raw paths to resources."""

from __future__ import annotations

import sys

import pytest

from gitlab_registry_usage_rest.model import RepositoryUsage, TagUsage
from gitlab_registry_usage_rest.web.hal import Options, Target, parse_embed, parse_flag, resolve, tag_document
from gitlab_registry_usage_rest.web.humanize import iso_millis


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (None, 0), ("true", sys.maxsize), ("T", sys.maxsize), ("yes", sys.maxsize), ("Y", sys.maxsize),
        ("1", 1), ("2", 2), ("0", 0), ("false", 0), ("", 0), ("-1", 0), ("²", 0), ("1.5", 0),
        ("9" * 5000, sys.maxsize),
    ],
    ids=lambda value: repr(value)[:12],
)
def test_embed_follows_flask_restful_hal(value: str | None, depth: int) -> None:
    assert parse_embed(value) == depth


@pytest.mark.parametrize(("value", "flag"), [(None, False), ("true", True), ("Yes", True), ("1", True), ("2", False)])
def test_links_flag(value: str | None, flag: bool) -> None:
    assert parse_flag(value) is flag


@pytest.mark.parametrize(
    ("raw", "first"),
    [
        ("project", Target("project")),
        ("group%2Fsub%2Fproject", Target("group/sub/project")),
        ("group/sub/project", Target("group/sub/project")),
        ("group/project/tags", Target("group/project", collection=True)),
        ("group%2Fproject/tags", Target("group/project", collection=True)),
        ("group%2Ftags", Target("group/tags")),
        ("group%2Ftags/tags/v1", Target("group/tags", tag="v1")),
        ("group/tags/tags/v1", Target("group/tags", tag="v1")),
        ("group%2Fproject/tags/1.0", Target("group/project", tag="1.0")),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_path_resolves_first_to_the_originals_reading(raw: str, first: Target) -> None:
    assert resolve(raw)[0] == first


def test_unencoded_repository_ending_in_tags_is_a_fallback_reading() -> None:
    assert resolve("group/tags") == [Target("group", collection=True), Target("group/tags")]


def test_trailing_tags_is_read_as_a_collection_before_a_tag_named_tags() -> None:
    assert resolve("group/tags/tags") == [
        Target("group/tags", collection=True), Target("group", tag="tags"), Target("group/tags/tags"),
    ]


@pytest.mark.parametrize("raw", ["", "a//b", "a/", "/a"])
def test_empty_name_segments_resolve_to_nothing(raw: str) -> None:
    assert resolve(raw) == []


def test_canonical_paths_encode_names() -> None:
    assert Target("g/p", tag="1.0").path("/prefix") == "/prefix/repositories/g%2Fp/tags/1.0"
    assert Target("g/p", collection=True).path() == "/repositories/g%2Fp/tags"


@pytest.mark.parametrize(
    ("timestamp", "shown"),
    [
        (1686825296.0, "2023-06-15T10:34:56Z"), (1686825296.789, "2023-06-15T10:34:56.789Z"),
        (1686825296.0004, "2023-06-15T10:34:56Z"), (1686825296.9996, "2023-06-15T10:34:57Z"),
        (946684800.0, "2000-01-01T00:00:00Z"), (253402300799.9999, "9999-12-31T23:59:59.999Z"),
    ],
    ids=str,
)
def test_times_are_iso_8601_utc_with_milliseconds_only_where_there_are_any(timestamp: float, shown: str) -> None:
    assert iso_millis(timestamp) == shown


def test_tag_document_gains_created_and_first_seen_after_the_other_figures_and_before_links() -> None:
    tag = TagUsage("v1", 30, 20, 10, digest="sha256:d", media_type="application/vnd.oci.image.index.v1+json",
                   platforms=("linux/amd64",), created=1686825296.789, first_seen=1700000000.0)
    document = tag_document(RepositoryUsage("g/p", 30, 20, 10, (tag,)), tag, Options(links=True))
    assert list(document) == ["name", "size", "disk_size", "unique_size", "digest", "media_type", "platforms",
                              "created", "first_seen", "_links"]
    assert (document["created"], document["first_seen"]) == ("2023-06-15T10:34:56.789Z", "2023-11-14T22:13:20Z")


def test_unknown_creation_and_first_seen_times_are_null() -> None:
    tag = TagUsage("v1", 1, 1, 1)
    assert tag_document(RepositoryUsage("g/p", 1, 1, 1, (tag,)), tag, Options()) == {
        "name": "v1", "size": 1, "disk_size": 1, "unique_size": 1, "created": None, "first_seen": None}
