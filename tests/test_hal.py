"""Pure HAL logic: query parsing and the mapping of raw paths to resources."""

from __future__ import annotations

import sys

import pytest

from gitlab_registry_usage_rest.web.hal import Target, parse_embed, parse_flag, resolve


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
