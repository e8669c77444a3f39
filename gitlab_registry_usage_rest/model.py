"""The data model: what a crawl found (``Listing``) and what the service serves (``Snapshot``).

Pure: frozen dataclasses and tuples all the way down, so a snapshot can be shared by every request
thread without locks. Nothing here does I/O or imports from the rest of the package.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ImageListing:
    """One tag as the registry describes it: the distinct layer digests of its image, in manifest order.

    ``created`` is when the image was built (UNIX time, from its config; for a multi-platform tag, the newest
    platform's), ``None`` where unknown: not recorded, a placeholder before 2000, unreadable, or not collected.
    ``published`` is when the registry says the tag got its present digest (UNIX time, GitLab's metadata-database
    ``published_at``), ``None`` where the registry does not say (the plain registry API v2).
    """

    tag: str
    layers: tuple[str, ...]
    digest: str | None = None
    media_type: str | None = None
    platforms: tuple[str, ...] = ()
    created: float | None = None
    published: float | None = None


@dataclass(frozen=True, slots=True)
class RepositoryListing:
    """A repository with its tags in the order ``tags/list`` returned them; ``None`` if they could not be read."""

    name: str
    images: tuple[ImageListing, ...] | None


@dataclass(frozen=True, slots=True)
class Listing:
    """A whole crawl: repositories in catalog order and the size of every layer seen.

    ``errors`` names each repository served without figures, one line each (``/health`` counts them as
    unreadable repositories); ``warnings`` names what is missing from repositories that do have figures,
    such as a tag whose creation time could not be read.
    """

    repositories: tuple[RepositoryListing, ...]
    layer_sizes: Mapping[str, int]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TagUsage:
    """The figures served for one tag.

    ``created`` is the image's build time (``ImageListing.created``); ``first_seen`` when this service first saw
    the tag at its present digest (UNIX times, ``None`` where unknown).
    """

    name: str
    size: int
    disk_size: int
    unique_size: int
    digest: str | None = None
    media_type: str | None = None
    platforms: tuple[str, ...] = ()
    created: float | None = None
    first_seen: float | None = None


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    """The figures served for one repository; ``tags`` is ``None`` when its tags could not be read."""

    name: str
    size: int | None
    disk_size: int | None
    unique_size: int | None
    tags: tuple[TagUsage, ...] | None
    _tag_index: Mapping[str, TagUsage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {tag.name: tag for tag in self.tags or ()}
        object.__setattr__(self, "_tag_index", MappingProxyType(index))

    def tag(self, name: str) -> TagUsage | None:
        return self._tag_index.get(name)


@dataclass(frozen=True, slots=True)
class LayerTable:
    """Which layers every tag references, by layer id, and each layer's size: what the set-wise questions
    (a group's ``unique_size``, what a cleanup policy frees) need once the digests are forgotten.

    Tags are numbered in snapshot order (repositories in order, each readable repository's tags in order);
    tag ``n`` references the distinct layer ids ``ids[starts[n]:starts[n + 1]]``. Flat arrays rather than a
    tuple per tag: four bytes per reference instead of an object each.
    """

    sizes: array[int]  # "q": bytes, by layer id
    starts: array[int]  # "q": tag count + 1 offsets into ids
    ids: array[int]  # "I": layer ids

    @property
    def tag_count(self) -> int:
        return len(self.starts) - 1

    def tag_layers(self, number: int) -> array[int]:
        """The layer ids of tag ``number``."""
        return self.ids[self.starts[number]:self.starts[number + 1]]


@dataclass(frozen=True, slots=True)
class GroupUsage:
    """A group (a path prefix of repository names) and what it covers: the repository named so and those
    below it.

    ``size`` and ``disk_size`` sum the covered repositories' (so sibling groups add up to their parent);
    ``unique_size`` is what deleting every covered repository frees (``None`` where the layers are unknown).
    ``subgroups`` and ``repositories`` are its direct children, by name: together they cover exactly what the
    group covers, each repository once. ``unreadable_repositories`` counts the covered repositories whose tags
    could not be read: they add nothing to the sums, and their layers, unknown, may be shared, so ``unique_size``
    may be overstated.
    """

    name: str
    size: int
    disk_size: int
    unique_size: int | None
    repository_count: int
    tag_count: int
    subgroups: tuple[str, ...]
    repositories: tuple[str, ...]
    unreadable_repositories: int = 0

    @property
    def parent(self) -> str | None:
        """The enclosing group's name; ``None`` for a top-level group."""
        head, slash, _ = self.name.rpartition("/")
        return head if slash else None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything served between two refreshes; replaced whole, never changed.

    ``errors`` are the crawl's repositories without figures, ``warnings`` what else it could not read.
    ``layers`` is ``None`` for a snapshot read from an older data file, which kept no layers; ``groups``
    (by name) are computed with the figures (``sizes.build_snapshot``, ``sizes.group_usage``).

    Derived once, on construction: the registry's totals (``total_size``, ``total_disk_size``, ``tag_count``;
    repositories without figures count 0) and ``by_name``, the repositories sorted by name (for ``sizes.covered``).
    """

    timestamp: float
    repositories: tuple[RepositoryUsage, ...]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    layers: LayerTable | None = None
    groups: tuple[GroupUsage, ...] = field(default=(), compare=False)  # derived from the two above
    total_size: int = field(init=False, repr=False, compare=False)
    total_disk_size: int = field(init=False, repr=False, compare=False)
    tag_count: int = field(init=False, repr=False, compare=False)
    by_name: tuple[RepositoryUsage, ...] = field(init=False, repr=False, compare=False)
    _index: Mapping[str, RepositoryUsage] = field(init=False, repr=False, compare=False)
    _group_index: Mapping[str, GroupUsage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        repositories = self.repositories
        index = {repository.name: repository for repository in repositories}
        object.__setattr__(self, "_index", MappingProxyType(index))
        object.__setattr__(self, "_group_index", MappingProxyType({group.name: group for group in self.groups}))
        object.__setattr__(self, "total_size", sum(repository.size or 0 for repository in repositories))
        object.__setattr__(self, "total_disk_size", sum(repository.disk_size or 0 for repository in repositories))
        object.__setattr__(self, "tag_count", sum(len(repository.tags or ()) for repository in repositories))
        # A crawl lists the catalog sorted, so this is one linear pass of the sort in the usual case.
        object.__setattr__(self, "by_name", tuple(sorted(repositories, key=_name)))

    def repository(self, name: str) -> RepositoryUsage | None:
        return self._index.get(name)

    def group(self, name: str) -> GroupUsage | None:
        return self._group_index.get(name)

    def top_level_groups(self) -> list[GroupUsage]:
        """The groups of depth 1, by name."""
        return [group for group in self.groups if "/" not in group.name]


def _name(repository: RepositoryUsage) -> str:
    return repository.name
