"""The data model: what a crawl found (``Listing``) and what the service serves (``Snapshot``).

Pure: frozen dataclasses and tuples all the way down, so a snapshot can be shared by every request
thread without locks. Nothing here does I/O or imports from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ImageListing:
    """One tag as the registry describes it: the distinct layer digests of its image, in manifest order.

    ``created`` is when the image was built (UNIX time, from its config; for a multi-platform tag, the newest
    platform's), ``None`` where unknown: not recorded, a placeholder before 2000, unreadable, or not collected.
    """

    tag: str
    layers: tuple[str, ...]
    digest: str | None = None
    media_type: str | None = None
    platforms: tuple[str, ...] = ()
    created: float | None = None


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
class Snapshot:
    """Everything served between two refreshes; replaced whole, never changed.

    ``errors`` are the crawl's repositories without figures, ``warnings`` what else it could not read.
    """

    timestamp: float
    repositories: tuple[RepositoryUsage, ...]
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    _index: Mapping[str, RepositoryUsage] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {repository.name: repository for repository in self.repositories}
        object.__setattr__(self, "_index", MappingProxyType(index))

    def repository(self, name: str) -> RepositoryUsage | None:
        return self._index.get(name)
