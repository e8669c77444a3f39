"""The treemap layout: rectangles inside the picture, siblings apart, areas proportional to bytes."""

from __future__ import annotations

import itertools
import random

import pytest

from gitlab_registry_usage_rest.web.treemap import Tile, group_repositories, layout, top_level_group

WIDTH, HEIGHT = 1200.0, 560.0


def _overlap(a: Tile, b: Tile) -> float:
    width = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    height = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    return max(0.0, width) * max(0.0, height)


def _registry(seed: int, repositories: int, groups: int) -> list[tuple[str, int | None]]:
    rng = random.Random(seed)
    # Every fifth repository has no size to show (unreadable, or empty).
    return [(f"g{rng.randrange(groups)}/sub/r{i}", rng.choice([None, 0]) if i % 5 == 4 else rng.randint(1, 10**9))
            for i in range(repositories)]


@pytest.mark.parametrize(("repositories", "groups"), [(1, 1), (12, 4), (500, 30), (3000, 200)],
                         ids=["one", "few", "hundreds", "thousands"])
def test_tiles_lie_inside_do_not_overlap_and_have_areas_proportional_to_bytes(repositories: int, groups: int) -> None:
    tiles = layout(group_repositories(_registry(repositories, repositories, groups)), WIDTH, HEIGHT)
    leaves = [tile for tile in tiles if tile.kind != "group"]
    outlines = [tile for tile in tiles if tile.kind == "group"]
    total = sum(tile.size for tile in leaves)
    for tile in tiles:
        assert -1e-6 <= tile.x and tile.x + tile.w <= WIDTH + 1e-6
        assert -1e-6 <= tile.y and tile.y + tile.h <= HEIGHT + 1e-6
        assert tile.w * tile.h == pytest.approx(tile.size / total * WIDTH * HEIGHT, rel=1e-6)
    for first, second in itertools.combinations(leaves, 2):
        assert _overlap(first, second) < 1e-6
    for first, second in itertools.combinations(outlines, 2):
        assert _overlap(first, second) < 1e-6
    assert sum(tile.w * tile.h for tile in leaves) == pytest.approx(WIDTH * HEIGHT)


def test_every_byte_is_drawn_once_even_when_tiles_are_capped() -> None:
    registry = _registry(7, 5000, 300)
    groups = group_repositories(registry)
    tiles = layout(groups, WIDTH, HEIGHT, max_groups=20, max_tiles=100)
    leaves = [tile for tile in tiles if tile.kind != "group"]
    assert len([tile for tile in leaves if tile.kind == "repository"]) <= 100
    assert len([tile for tile in tiles if tile.kind == "group"]) <= 20
    assert sum(tile.size for tile in leaves) == sum(size or 0 for _, size in registry)
    rest_of_groups = [tile for tile in leaves if tile.kind == "rest" and tile.path == ""]
    assert len(rest_of_groups) == 1 and rest_of_groups[0].count == len(groups) - 20


def test_largest_repositories_get_their_own_tiles() -> None:
    groups = {"a": [("a/big", 1000), ("a/small", 1)], "b": [("b/mid", 500)]}
    tiles = layout(groups, WIDTH, HEIGHT, max_tiles=2)
    assert {(tile.kind, tile.path) for tile in tiles} == {
        ("repository", "a/big"), ("rest", "a"), ("repository", "b/mid"), ("group", "a"), ("group", "b")}


def test_unknown_and_empty_repositories_take_no_room() -> None:
    assert group_repositories([("a/x", None), ("a/y", 0), ("b/z", 5)]) == {"b": [("b/z", 5)]}
    assert layout({}, WIDTH, HEIGHT) == []


@pytest.mark.parametrize(("name", "group"), [("group/sub/project", "group"), ("solo", "solo"), ("a/b", "a")])
def test_top_level_group_is_the_first_path_segment(name: str, group: str) -> None:
    assert top_level_group(name) == group


def test_single_repositories_lie_beside_the_groups_at_the_top_level() -> None:
    groups = {"g/web": [("g/web/a", 600), ("g/web/b", 200)]}
    tiles = layout(groups, WIDTH, HEIGHT, leaves={"g/tools": 150, "g": 50, "g/empty": 0}, root="g")
    shown = {(tile.kind, tile.path): tile for tile in tiles}
    assert set(shown) == {("group", "g/web"), ("repository", "g/web/a"), ("repository", "g/web/b"),
                          ("repository", "g/tools"), ("repository", "g")}
    assert shown["repository", "g/web/a"].parent == "g/web" and shown["repository", "g/tools"].parent is None
    leaves = [tile for tile in tiles if tile.kind != "group"]
    for tile in tiles:
        assert tile.w * tile.h == pytest.approx(tile.size / 1000 * WIDTH * HEIGHT, rel=1e-6)
    for first, second in itertools.combinations(leaves, 2):
        assert _overlap(first, second) < 1e-6


def test_the_rest_of_a_capped_top_level_belongs_to_the_root_group() -> None:
    groups = {f"g/s{i}": [(f"g/s{i}/r", 100 + i)] for i in range(5)}
    tiles = layout(groups, WIDTH, HEIGHT, leaves={f"g/r{i}": 10 + i for i in range(5)}, root="g", max_groups=4)
    rest = [tile for tile in tiles if tile.kind == "rest"]
    assert [(tile.path, tile.count, tile.size) for tile in rest] == [("g", 6, 100 + sum(range(10, 15)))]
    assert sum(tile.size for tile in tiles if tile.kind != "group") == sum(100 + i for i in range(5)) + sum(
        range(10, 15))
