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
over the (tag, layer) pairs gives the same owners, so the cost here is linear in that number.
"""

from __future__ import annotations

from .model import Listing, RepositoryUsage, Snapshot, TagUsage


def layer_owners(listing: Listing) -> dict[str, tuple[int, int]]:
    """Map each layer digest to the (repository index, tag index) it is attributed to."""
    owners: dict[str, tuple[int, int]] = {}
    owner_layer_count: dict[str, int] = {}
    for repo_index, repository in enumerate(listing.repositories):
        for tag_index, image in enumerate(repository.images or ()):
            count = len(image.layers)
            for digest in image.layers:
                # Strictly fewer layers wins, so among equals the first tag in order keeps the layer.
                if count < owner_layer_count.get(digest, count + 1):
                    owners[digest] = (repo_index, tag_index)
                    owner_layer_count[digest] = count
    return owners


_SHARED = -1


def layer_references(listing: Listing) -> tuple[dict[str, int], dict[str, int]]:
    """Per layer: how many tags reference it, and the index of the one repository that does (or -1)."""
    tag_count: dict[str, int] = {}
    repository_of: dict[str, int] = {}
    for repo_index, repository in enumerate(listing.repositories):
        for image in repository.images or ():
            for digest in image.layers:
                tag_count[digest] = tag_count.get(digest, 0) + 1
                if repository_of.setdefault(digest, repo_index) != repo_index:
                    repository_of[digest] = _SHARED
    return tag_count, repository_of


def compute_usage(listing: Listing) -> tuple[RepositoryUsage, ...]:
    """The served figures of every repository and tag of a crawl."""
    sizes = listing.layer_sizes
    disk_sizes: dict[tuple[int, int], int] = {}
    for digest, owner in layer_owners(listing).items():
        disk_sizes[owner] = disk_sizes.get(owner, 0) + sizes[digest]
    tag_count, repository_of = layer_references(listing)

    repositories = []
    for repo_index, repository in enumerate(listing.repositories):
        if repository.images is None:
            repositories.append(RepositoryUsage(repository.name, None, None, None, None))
            continue
        own_layers = {digest for image in repository.images for digest in image.layers
                      if repository_of[digest] == repo_index}
        tags = tuple(
            TagUsage(
                name=image.tag,
                size=sum(sizes[digest] for digest in image.layers),
                disk_size=disk_sizes.get((repo_index, tag_index), 0),
                unique_size=sum(sizes[digest] for digest in image.layers if tag_count[digest] == 1),
                digest=image.digest,
                media_type=image.media_type,
                platforms=image.platforms,
            )
            for tag_index, image in enumerate(repository.images)
        )
        repositories.append(
            RepositoryUsage(
                name=repository.name,
                size=sum(tag.size for tag in tags),
                disk_size=sum(tag.disk_size for tag in tags),
                unique_size=sum(sizes[digest] for digest in own_layers),
                tags=tags,
            )
        )
    return tuple(repositories)


def build_snapshot(listing: Listing, timestamp: float) -> Snapshot:
    """Freeze a crawl into what the service serves."""
    return Snapshot(timestamp=timestamp, repositories=compute_usage(listing), errors=listing.errors)
