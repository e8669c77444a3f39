"""A two-level squarified treemap (groups, then their repositories): rectangles sized by bytes. Pure.

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

import squarify


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


def _squarify(items: Sequence[tuple[str, int]], x: float, y: float, w: float, h: float,
              ) -> list[tuple[str, int, float, float, float, float]]:
    """(key, size, x, y, w, h) for ``items`` sorted largest first, filling the rectangle."""
    if not items or w <= 0 or h <= 0:
        return []
    ordered = sorted(items, key=lambda item: (-item[1], item[0]))
    areas = squarify.normalize_sizes([size for _, size in ordered], w, h)
    rects = squarify.squarify(areas, x, y, w, h)
    return [(key, size, r["x"], r["y"], r["dx"], r["dy"]) for (key, size), r in zip(ordered, rects, strict=True)]


def layout(groups: Mapping[str, Sequence[tuple[str, int]]], width: float, height: float, *,
           max_groups: int = 60, max_tiles: int = 400) -> list[Tile]:
    """Group tiles and, inside each, repository tiles (and one "rest" tile where some are left out)."""
    totals = {group: sum(size for _, size in members) for group, members in groups.items()}
    shown = heapq.nsmallest(max_groups, (group for group in totals if totals[group] > 0),
                            key=lambda group: (-totals[group], group))
    rest_groups = [group for group in totals if totals[group] > 0 and group not in set(shown)]
    # The largest repositories of the shown groups get their own tile; the others are summed per group.
    candidates = ((name, size, group) for group in shown for name, size in groups[group])
    own = {name for name, _, _ in heapq.nsmallest(max_tiles, candidates, key=lambda item: (-item[1], item[0]))}
    top: list[tuple[str, int]] = [(group, totals[group]) for group in shown]
    if rest_groups:
        top.append(("", sum(totals[group] for group in rest_groups)))
    tiles: list[Tile] = []
    outlines: list[Tile] = []
    for group, size, x, y, w, h in _squarify(top, 0.0, 0.0, width, height):
        if group == "" and rest_groups:
            tiles.append(Tile("rest", "", size, x, y, w, h, count=len(rest_groups)))
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
                tiles.append(Tile("repository", name, member, cx, cy, cw, ch))
        outlines.append(Tile("group", group, size, x, y, w, h))
    return tiles + outlines
