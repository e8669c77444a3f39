"""Snapshots for the history tests: repositories whose layers are their own, so every figure is known."""

from __future__ import annotations

from collections.abc import Mapping

from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing, Snapshot
from gitlab_registry_usage_rest.sizes import build_snapshot


def snapshot(timestamp: float, repositories: Mapping[str, list[int] | None]) -> Snapshot:
    """Repositories with one tag each whose layers (of these sizes) belong to that repository alone;
    ``None``: its tags could not be read."""
    sizes: dict[str, int] = {}
    listings = []
    for name, layers in repositories.items():
        if layers is None:
            listings.append(RepositoryListing(name, None))
            continue
        digests = tuple(f"sha256:{name}:{number}:{size}" for number, size in enumerate(layers))
        sizes.update(zip(digests, layers, strict=True))
        listings.append(RepositoryListing(name, (ImageListing("latest", digests),)))
    return build_snapshot(Listing(tuple(listings), sizes), timestamp)
