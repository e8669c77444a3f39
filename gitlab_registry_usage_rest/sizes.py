"""Size arithmetic over a crawl, with exactly the meaning gitlab-registry-usage gives its figures.

- A tag's ``size`` is the sum of its distinct layers: what a pull transfers.
- A tag's ``disk_size`` is the sum of the layers *attributed* to it. Every layer is attributed to
  the tag with the fewest layers that contains it; ties go to the first tag in catalog and tag order.
  Summed over the registry, every stored layer is counted exactly once.
- A repository's figures are the sums over its tags.
- ``unique_size`` (new) is what deleting a tag or a repository frees after garbage collection: the
  layers that nothing else in the registry references. A tag that shares its manifest with another
  tag frees nothing. Repositories whose tags could not be read are unknown and count as referencing
  nothing, so their layers may make others' unique sizes look larger than they are.

The library finds each layer's owner by scanning every tag for every layer (layers x tags); one pass
over the (tag, layer) pairs gives the same owners and reference counts, so the cost here is linear
in that number.

A tag's ``first_seen`` (new) is carried from the previous snapshot while the tag keeps its digest (or, for
a collector that reports no digests, while it exists); a new tag, or one moved to another digest, gets the
new snapshot's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .model import ImageListing, Listing, RepositoryUsage, Snapshot, TagUsage


@dataclass(slots=True)
class _Layer:
    """What one pass over the (tag, layer) pairs learns about a layer."""

    owner: int  # flat index of the tag it is attributed to
    owner_layer_count: int
    references: int  # tags that contain it
    repository: int  # the one repository that contains it, or _SHARED


_SHARED = -1


def _scan(listing: Listing) -> tuple[list[tuple[int, ImageListing]], dict[str, _Layer]]:
    """Every tag (flattened, in catalog and tag order) and every layer's owner and references."""
    tags: list[tuple[int, ImageListing]] = []
    layers: dict[str, _Layer] = {}
    for repo_index, repository in enumerate(listing.repositories):
        for image in repository.images or ():
            tag_index = len(tags)
            tags.append((repo_index, image))
            count = len(image.layers)
            for digest in image.layers:
                layer = layers.get(digest)
                if layer is None:
                    layers[digest] = _Layer(tag_index, count, 1, repo_index)
                    continue
                layer.references += 1
                # Strictly fewer layers wins, so among equals the first tag in order keeps the layer.
                if count < layer.owner_layer_count:
                    layer.owner, layer.owner_layer_count = tag_index, count
                if layer.repository != repo_index:
                    layer.repository = _SHARED
    return tags, layers


# (repository, tag) -> (digest, first_seen): what the previous snapshot knew of each tag.
FirstSeen = Mapping[tuple[str, str], tuple[str | None, float]]


def first_seen_index(snapshot: Snapshot | None) -> dict[tuple[str, str], tuple[str | None, float]]:
    """Each tag's digest and ``first_seen`` in ``snapshot``, for the next ``build_snapshot``; one pass."""
    index: dict[tuple[str, str], tuple[str | None, float]] = {}
    for repository in snapshot.repositories if snapshot is not None else ():
        for tag in repository.tags or ():
            if tag.first_seen is not None:
                index[repository.name, tag.name] = (tag.digest, tag.first_seen)
    return index


def compute_usage(listing: Listing, seen_at: float | None = None,
                  previous: FirstSeen | None = None) -> tuple[RepositoryUsage, ...]:
    """The served figures of every repository and tag of a crawl.

    ``first_seen`` comes from ``previous`` where the tag has the same digest there, else it is ``seen_at``.
    """
    previous = previous or {}
    sizes = listing.layer_sizes
    tags, layers = _scan(listing)
    disk_sizes = [0] * len(tags)
    repository_unique = [0] * len(listing.repositories)
    for digest, layer in layers.items():
        size = sizes[digest]
        disk_sizes[layer.owner] += size
        if layer.repository != _SHARED:
            repository_unique[layer.repository] += size

    usages: list[list[TagUsage]] = [[] for _ in listing.repositories]
    for tag_index, (repo_index, image) in enumerate(tags):
        first_seen = seen_at
        known = previous.get((listing.repositories[repo_index].name, image.tag))
        if known is not None and known[0] == image.digest:
            first_seen = known[1]
        size = unique = 0
        for digest in image.layers:
            layer_size = sizes[digest]
            size += layer_size
            if layers[digest].references == 1:
                unique += layer_size
        usages[repo_index].append(TagUsage(
            name=image.tag, size=size, disk_size=disk_sizes[tag_index], unique_size=unique,
            digest=image.digest, media_type=image.media_type, platforms=image.platforms,
            created=image.created, first_seen=first_seen,
        ))

    repositories = []
    for repo_index, repository in enumerate(listing.repositories):
        if repository.images is None:
            repositories.append(RepositoryUsage(repository.name, None, None, None, None))
            continue
        tag_usages = tuple(usages[repo_index])
        repositories.append(RepositoryUsage(
            name=repository.name,
            size=sum(tag.size for tag in tag_usages),
            disk_size=sum(tag.disk_size for tag in tag_usages),
            unique_size=repository_unique[repo_index],
            tags=tag_usages,
        ))
    return tuple(repositories)


def build_snapshot(listing: Listing, timestamp: float, previous: Snapshot | None = None) -> Snapshot:
    """Freeze a crawl into what the service serves; tags keep their ``first_seen`` from ``previous``."""
    return Snapshot(timestamp=timestamp, repositories=compute_usage(listing, timestamp, first_seen_index(previous)),
                    errors=listing.errors, warnings=listing.warnings)
