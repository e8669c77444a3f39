"""What the session's fixtures pushed to the registry, and the figures expected from it."""

from __future__ import annotations

from dataclasses import dataclass

REGISTRY_USER = "root"
REGISTRY_TOKEN = "glpat-end-to-end-tests"


@dataclass(frozen=True)
class PushedRegistry:
    """What the tests pushed: every tag's layers, in the registry's own catalog and tag order."""

    tags: dict[str, dict[str, tuple[tuple[str, int], ...]]]


def expected_figures(pushed: PushedRegistry) -> dict[str, dict[str, object]]:
    """Sizes computed the slow, obvious way from what was pushed: the meaning the original gives them."""
    order = [(repo, tag) for repo, tags in pushed.tags.items() for tag in tags]
    layer_sets = {key: dict(pushed.tags[key[0]][key[1]]) for key in order}
    owner: dict[str, tuple[str, str]] = {}
    for digest in {d for layers in layer_sets.values() for d in layers}:
        holders = [key for key in order if digest in layer_sets[key]]
        owner[digest] = min(holders, key=lambda key: (len(layer_sets[key]), order.index(key)))
    result: dict[str, dict[str, object]] = {}
    for repo, tags in pushed.tags.items():
        tag_figures = {
            tag: {
                "size": sum(layer_sets[(repo, tag)].values()),
                "disk_size": sum(size for d, size in layer_sets[(repo, tag)].items() if owner[d] == (repo, tag)),
            }
            for tag in tags
        }
        result[repo] = {
            "size": sum(f["size"] for f in tag_figures.values()),
            "disk_size": sum(f["disk_size"] for f in tag_figures.values()),
            "tags": tag_figures,
        }
    return result
