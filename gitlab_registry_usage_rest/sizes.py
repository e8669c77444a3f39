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

A group's figures (new) cover the repository named as the group and those below it: ``size`` and
``disk_size`` are sums, so sibling groups add up to their parent and the top-level groups to the registry;
``unique_size`` is what deleting all of them frees: the layers every reference to which comes from inside.
Groups are every first path segment and every deeper proper prefix of a repository name (``a/b`` is a group
when ``a/b/c`` exists, whether or not ``a/b`` itself is a repository), so each repository has one innermost
group, and a group's subgroups and direct repositories cover it exactly once.

A tag's ``first_seen`` (new) is carried from the previous snapshot while the tag keeps its digest (or, for
a collector that reports no digests, while it exists); a new tag, or one moved to another digest, gets the
time the registry says it was pushed (``ImageListing.published``, never later than the snapshot) where the
crawl knows it, else the new snapshot's time.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .model import GroupUsage, ImageListing, LayerTable, Listing, RepositoryUsage, Snapshot, TagUsage

_SHARED = -1


@dataclass(slots=True)
class _Layers:
    """What one pass over the (tag, layer) pairs learns about the layers, by layer id (in order of first
    reference): flat arrays, not an object per layer (at 100,000 tags, 230,000 layers of about 250 bytes each)."""

    ids: dict[str, int]  # digest -> id
    owner: array[int]  # flat index of the tag it is attributed to
    owner_layer_count: array[int]
    references: array[int]  # tags that contain it
    repository: array[int]  # the one repository that contains it, or _SHARED


def _scan(listing: Listing) -> tuple[list[tuple[int, ImageListing]], _Layers, array[int], array[int]]:
    """Every tag (flattened, in catalog and tag order), every layer's owner and references, and the layer ids
    of each tag (``starts`` and ``ids`` of a ``LayerTable``)."""
    tags: list[tuple[int, ImageListing]] = []
    layers = _Layers({}, array("q"), array("q"), array("q"), array("q"))
    known, owner, owner_count, references, repository_of = (
        layers.ids, layers.owner, layers.owner_layer_count, layers.references, layers.repository)
    starts, ids = array("q", [0]), array("I")
    for repo_index, repository in enumerate(listing.repositories):
        for image in repository.images or ():
            tag_index = len(tags)
            tags.append((repo_index, image))
            count = len(image.layers)
            for digest in image.layers:
                layer = known.get(digest)
                if layer is None:
                    known[digest] = layer = len(known)
                    owner.append(tag_index)
                    owner_count.append(count)
                    references.append(1)
                    repository_of.append(repo_index)
                    ids.append(layer)
                    continue
                ids.append(layer)
                references[layer] += 1
                # Strictly fewer layers wins, so among equals the first tag in order keeps the layer.
                if count < owner_count[layer]:
                    owner[layer], owner_count[layer] = tag_index, count
                if repository_of[layer] != repo_index:
                    repository_of[layer] = _SHARED
            starts.append(len(ids))
    return tags, layers, starts, ids


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

    ``first_seen`` comes from ``previous`` where the tag has the same digest there, else it is the tag's
    ``published`` (at most ``seen_at``) where known, else ``seen_at``.
    """
    known = previous or {}
    return _usage(listing, seen_at, lambda repository, tag: known.get((repository, tag)))[0]


def _in_snapshot(snapshot: Snapshot | None) -> Callable[[str, str], tuple[str | None, float] | None]:
    """``first_seen_index(snapshot).get`` without building the index: the snapshot's own indexes answer."""
    def known(name: str, tag_name: str) -> tuple[str | None, float] | None:
        repository = None if snapshot is None else snapshot.repository(name)
        tag = None if repository is None else repository.tag(tag_name)
        return None if tag is None or tag.first_seen is None else (tag.digest, tag.first_seen)

    return known


def _usage(listing: Listing, seen_at: float | None,
           previous: Callable[[str, str], tuple[str | None, float] | None],
           ) -> tuple[tuple[RepositoryUsage, ...], LayerTable]:
    sizes = listing.layer_sizes
    tags, layers, starts, ids = _scan(listing)
    layer_sizes = array("q", bytes(8 * len(layers.ids)))
    disk_sizes = [0] * len(tags)
    repository_unique = [0] * len(listing.repositories)
    for digest, layer in layers.ids.items():
        layer_sizes[layer] = size = sizes[digest]
        disk_sizes[layers.owner[layer]] += size
        if layers.repository[layer] != _SHARED:
            repository_unique[layers.repository[layer]] += size

    references = layers.references
    usages: list[list[TagUsage]] = [[] for _ in listing.repositories]
    for tag_index, (repo_index, image) in enumerate(tags):
        first_seen = seen_at
        known = previous(listing.repositories[repo_index].name, image.tag)
        if known is not None and known[0] == image.digest:
            first_seen = known[1]
        elif image.published is not None:
            # A registry clock ahead of ours must not date a tag after the snapshot that first holds it.
            first_seen = image.published if seen_at is None else min(image.published, seen_at)
        size = unique = 0
        for layer in ids[starts[tag_index]:starts[tag_index + 1]]:
            layer_size = layer_sizes[layer]
            size += layer_size
            if references[layer] == 1:
                unique += layer_size
        usages[repo_index].append(TagUsage(
            name=image.tag, size=size, disk_size=disk_sizes[tag_index], unique_size=unique,
            digest=image.digest, media_type=image.media_type, platforms=image.platforms,
            created=image.created, first_seen=first_seen,
        ))
    del tags, layers  # before the repositories' objects are made: less for them to be interleaved with

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
    return tuple(repositories), LayerTable(layer_sizes, starts, ids)


def build_snapshot(listing: Listing, timestamp: float, previous: Snapshot | None = None) -> Snapshot:
    """Freeze a crawl into what the service serves; tags keep their ``first_seen`` from ``previous``."""
    repositories, layers = _usage(listing, timestamp, _in_snapshot(previous))
    return Snapshot(timestamp=timestamp, repositories=repositories, errors=listing.errors,
                    warnings=listing.warnings, layers=layers, groups=group_usage(repositories, layers))


# -- groups -----------------------------------------------------------------------------------------------------


def group_names(name: str) -> list[str]:
    """The groups a repository belongs to, outermost first: its first segment and its deeper proper prefixes."""
    segments = name.split("/")
    return ["/".join(segments[:depth]) for depth in range(1, max(2, len(segments)))]


def group_usage(repositories: Sequence[RepositoryUsage], layers: LayerTable | None) -> tuple[GroupUsage, ...]:
    """Every group's figures (see the module's docstring), by name; ``unique_size`` needs ``layers``.

    Cost: the repositories times their depth, plus one pass over each repository's distinct layers.
    """
    memberships = [group_names(repository.name) for repository in repositories]
    existing = {group for member_of in memberships for group in member_of}
    for repository, member_of in zip(repositories, memberships, strict=True):
        if repository.name in existing and repository.name not in member_of:
            member_of.append(repository.name)  # the group's own image
    groups: dict[str, list[int]] = {}  # name -> [size, disk_size, repository_count, tag_count, unreadable]
    for repository, member_of in zip(repositories, memberships, strict=True):
        for group in member_of:
            totals = groups.get(group)
            if totals is None:
                groups[group] = totals = [0, 0, 0, 0, 0]
            totals[0] += repository.size or 0
            totals[1] += repository.disk_size or 0
            totals[2] += 1
            totals[3] += len(repository.tags or ())
            totals[4] += repository.tags is None
    unique = None if layers is None else _group_unique(repositories, layers, set(groups))
    children: dict[str, list[str]] = {group: [] for group in groups}
    direct: dict[str, list[str]] = {group: [] for group in groups}
    for group in groups:
        head, slash, _ = group.rpartition("/")
        if slash:
            children[head].append(group)
    for repository, member_of in zip(repositories, memberships, strict=True):
        direct[member_of[-1]].append(repository.name)
    return tuple(
        GroupUsage(name=group, size=totals[0], disk_size=totals[1],
                   unique_size=None if unique is None else unique.get(group, 0),
                   repository_count=totals[2], tag_count=totals[3],
                   subgroups=tuple(sorted(children[group])), repositories=tuple(sorted(direct[group])),
                   unreadable_repositories=totals[4])
        for group, totals in sorted(groups.items())
    )


def covered(snapshot: Snapshot, group: str) -> list[RepositoryUsage]:
    """The repositories a group path covers, by name: the one named so and those starting with it and ``/``
    (whether or not ``group`` is a group). Two binary searches in ``snapshot.by_name`` and a slice: the cost is
    what is covered, not the registry."""
    ordered = snapshot.by_name

    def at(name: str) -> int:
        return bisect.bisect_left(ordered, name, key=_name)

    exact = at(group)
    found = [ordered[exact]] if exact < len(ordered) and ordered[exact].name == group else []
    # Below it: names from "group/" up to "group0" ("0" follows "/"); "group-x" and "group.x" sort between.
    return found + list(ordered[at(group + "/"):at(group + "0")])


def covered_disk_size(snapshot: Snapshot, path: str) -> int:
    """The disk size of what ``path`` covers: the group's figure, else the repository's (unknown: 0), else 0."""
    group = snapshot.group(path)
    if group is not None:
        return group.disk_size
    repository = snapshot.repository(path)
    return (repository.disk_size or 0) if repository is not None else 0


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """The sums over groups that do not overlap (one depth): what they cover, each repository once."""

    size: int
    disk_size: int
    repository_count: int
    tag_count: int


def group_totals(groups: Iterable[GroupUsage]) -> GroupTotals:
    """``GroupTotals`` of ``groups``, which must not overlap (groups of one depth)."""
    size = disk_size = repository_count = tag_count = 0
    for group in groups:
        size += group.size
        disk_size += group.disk_size
        repository_count += group.repository_count
        tag_count += group.tag_count
    return GroupTotals(size, disk_size, repository_count, tag_count)


def _name(repository: RepositoryUsage) -> str:
    return repository.name


def _group_unique(repositories: Sequence[RepositoryUsage], layers: LayerTable, groups: set[str]) -> dict[str, int]:
    """Per group, the bytes of the layers referenced only from inside it.

    A layer's referencing repositories share a longest common prefix of path segments; the layer is unique to
    exactly the groups that are prefixes of it (or equal to it)."""
    count = len(layers.sizes)
    first_repository = [-1] * count  # layer id -> the first repository referencing it
    common_depth = [0] * count  # layer id -> path segments its repositories have in common
    segments = [repository.name.split("/") for repository in repositories]
    starts, ids, number = layers.starts, layers.ids, 0
    for repo_index, repository in enumerate(repositories):
        if repository.tags is None:
            continue
        end = number + len(repository.tags)
        mine = segments[repo_index]
        for layer in set(ids[starts[number]:starts[end]]):
            first = first_repository[layer]
            if first < 0:
                first_repository[layer], common_depth[layer] = repo_index, len(mine)
                continue
            depth = common_depth[layer]
            if depth == 0:
                continue  # shared across top-level groups already: unique to none
            theirs, shared = segments[first], 0
            while shared < depth and shared < len(mine) and mine[shared] == theirs[shared]:
                shared += 1
            common_depth[layer] = shared
        number = end
    unique: dict[str, int] = {}
    for layer, first in enumerate(first_repository):
        if first < 0:
            continue
        path = segments[first]
        for depth in range(1, common_depth[layer] + 1):
            group = "/".join(path[:depth])
            if group in groups:
                unique[group] = unique.get(group, 0) + layers.sizes[layer]
    return unique
