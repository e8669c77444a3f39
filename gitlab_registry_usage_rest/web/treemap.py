"""A two-level squarified treemap (groups, then their repositories): rectangles sized by bytes. Pure.

The top level may also hold single repositories beside the groups (``leaves``): a group's page shows its
subgroups, each with the repositories it covers, and its own direct repositories.

The layout is the squarified algorithm of Bruls, Huizing and van Wijk, from the ``squarify`` package.
Repositories tile their group's rectangle exactly (no padding), so every rectangle's area is the same
number of bytes per unit wherever it lies; group outlines are drawn on top. What one picture shows is
bounded: the largest ``max_groups`` groups, the largest ``max_tiles`` repositories, and per group one
tile standing for the rest, so a registry of 100,000 repositories draws a few hundred rectangles.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import squarify

K = TypeVar("K", str, tuple[str, str])


@dataclass(frozen=True, slots=True)
class Tile:
    """One rectangle: a group, a repository, or the rest of a group's (or the registry's) smaller ones."""

    kind: str  # "group", "repository" or "rest"
    path: str  # the group or repository; for "rest", the group it belongs to ("" for the rest of the groups)
    size: int  # bytes
    x: float
    y: float
    w: float
    h: float
    count: int = 1  # repositories (or groups) a "rest" tile stands for
    parent: str | None = None  # for a repository: the group whose rectangle it lies in (None at the top level)


def top_level_group(name: str) -> str:
    """The GitLab top-level group of a repository path: its first segment."""
    return name.split("/", 1)[0]


def group_repositories(repositories: Iterable[tuple[str, int | None]]) -> dict[str, list[tuple[str, int]]]:
    """Repositories with bytes to show, by top-level group (unknown and zero sizes have no area)."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for name, size in repositories:
        if size:
            groups.setdefault(top_level_group(name), []).append((name, size))
    return groups


def _squarify(items: Sequence[tuple[K, int]], x: float, y: float, w: float, h: float,
              ) -> list[tuple[K, int, float, float, float, float]]:
    """(key, size, x, y, w, h) for ``items`` sorted largest first, filling the rectangle."""
    if not items or w <= 0 or h <= 0:
        return []
    ordered = sorted(items, key=lambda item: (-item[1], item[0]))
    areas = squarify.normalize_sizes([size for _, size in ordered], w, h)
    rects = squarify.squarify(areas, x, y, w, h)
    return [(key, size, r["x"], r["y"], r["dx"], r["dy"]) for (key, size), r in zip(ordered, rects, strict=True)]


def layout(groups: Mapping[str, Sequence[tuple[str, int]]], width: float, height: float, *,
           leaves: Mapping[str, int] | None = None, root: str = "",
           max_groups: int = 60, max_tiles: int = 400) -> list[Tile]:
    """Group tiles and, inside each, repository tiles (and one "rest" tile where some are left out).

    ``leaves`` are repositories drawn at the top level beside the groups; the largest ``max_groups`` of the
    groups and leaves together get a rectangle, the others one "rest" tile whose ``path`` is ``root``.
    """
    totals = {group: sum(size for _, size in members) for group, members in groups.items()}
    items = [(("group", group), size) for group, size in totals.items() if size > 0]
    items += [(("repository", name), size) for name, size in (leaves or {}).items() if size > 0]
    shown = heapq.nsmallest(max_groups, items, key=lambda item: (-item[1], item[0][1]))
    shown_keys = {key for key, _ in shown}
    rest = [size for key, size in items if key not in shown_keys]
    shown_leaves = sum(1 for (kind, _), _ in shown if kind == "repository")
    # The largest repositories of the shown groups get their own tile; the others are summed per group.
    candidates = ((name, size) for (kind, group), _ in shown if kind == "group" for name, size in groups[group])
    own = {name for name, _ in heapq.nsmallest(max(0, max_tiles - shown_leaves), candidates,
                                               key=lambda item: (-item[1], item[0]))}
    top: list[tuple[tuple[str, str], int]] = list(shown)
    if rest:
        top.append((("rest", root), sum(rest)))
    tiles: list[Tile] = []
    outlines: list[Tile] = []
    for (kind, group), size, x, y, w, h in _squarify(top, 0.0, 0.0, width, height):
        if kind == "rest":
            tiles.append(Tile("rest", root, size, x, y, w, h, count=len(rest)))
            continue
        if kind == "repository":
            tiles.append(Tile("repository", group, size, x, y, w, h))
            continue
        members = [(name, member) for name, member in groups[group] if name in own]
        left_out = [member for name, member in groups[group] if name not in own]
        children: list[tuple[str, int]] = list(members)
        if left_out:
            children.append(("", sum(left_out)))
        for name, member, cx, cy, cw, ch in _squarify(children, x, y, w, h):
            if name == "" and left_out:
                tiles.append(Tile("rest", group, member, cx, cy, cw, ch, count=len(left_out)))
            else:
                tiles.append(Tile("repository", name, member, cx, cy, cw, ch, parent=group))
        outlines.append(Tile("group", group, size, x, y, w, h))
    return tiles + outlines
