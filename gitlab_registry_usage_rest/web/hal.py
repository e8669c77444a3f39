"""HAL documents of the repository resources and the groups, and the mapping from request paths to resources.

Pure: a snapshot and the query options go in, plain dicts come out, in exactly the key order the
original (flask-restful-hal 0.2.6) produced, so clients see the same JSON (plus new fields:
``unique_size``, and a tag's ``digest``, ``media_type``, ``platforms``, ``created`` and ``first_seen``).
Its defects are not copied: a tag's ``self`` link names the tag's own path, tag item links are titled with
the tag name, every href carries the server prefix, and empty collections still have an ``items`` list.

Groups (new) are path prefixes of repository names (``model.GroupUsage``): ``/groups`` lists those of one depth,
``/groups/<path>`` is one with its subgroups and repositories. Their paths keep slashes plain, as GitLab's do.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlencode

from ..model import GroupUsage, RepositoryUsage, Snapshot, TagUsage
from ..sizes import covered
from .humanize import iso_millis

Document = dict[str, Any]

UNLIMITED = sys.maxsize
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_DIGITS = re.compile(r"[0-9]+")


SORT_KEYS = ("name", "size", "disk_size", "unique_size")
GROUP_SORT_KEYS = (*SORT_KEYS, "repository_count", "tag_count")
MAX_LIMIT = 100_000
# Deeper than any registry nests (GitLab allows 20 levels of subgroups).
MAX_DEPTH = 64
# The last path segment that asks for the cleanup simulator (as ``tags`` asks for the tags collection).
CLEANUP = "cleanup"


class QueryError(ValueError):
    """A query parameter with a value we cannot use (answered with 400)."""


@dataclass(frozen=True)
class Window:
    """Which items of a collection, in which order: ``?sort=``, ``?limit=``, ``?offset=``, ``?prefix=``."""

    sort: str | None = None
    limit: int | None = None
    offset: int = 0
    prefix: str | None = None

    @property
    def active(self) -> bool:
        return self != Window()


@dataclass(frozen=True)
class Options:
    """How much to include: embedding depth, links, the prefix every href starts with, and the window
    of the requested collection."""

    embed: int = 0
    links: bool = False
    base: str = ""
    window: Window = Window()
    # The browser view's page size: set, every collection embedded below lists at most this many items too.
    page_size: int | None = None


def paged(options: Options, page_size: int) -> Options:
    """``options`` for a page of at most ``page_size`` items per collection, with ``next``/``prev`` to the rest.

    A smaller ``?limit=`` is kept, a larger one (or none) becomes ``page_size``; collections embedded in
    the document are cut to their first ``page_size`` items, with their own ``next`` link.
    """
    limit = page_size if options.window.limit is None else min(options.window.limit, page_size)
    return replace(options, window=replace(options.window, limit=limit), page_size=page_size)


def parse_embed(value: str | None) -> int:
    """flask-restful-hal's rule: digits are a depth, a true word is unlimited, anything else is 0."""
    if value is None:
        return 0
    if _DIGITS.fullmatch(value):
        # Python refuses to parse very long digit strings; anything this deep is unlimited anyway.
        return UNLIMITED if len(value) > 18 else int(value)
    return UNLIMITED if value.lower() in _TRUE else 0


def parse_flag(value: str | None) -> bool:
    return value is not None and value.lower() in _TRUE


def quote_name(name: str) -> str:
    """A name as one path segment: ``group/project`` becomes ``group%2Fproject``."""
    return quote(name, safe="")


def repositories_path(base: str) -> str:
    return f"{base}/repositories"


def repository_path(base: str, repository: str) -> str:
    return f"{base}/repositories/{quote_name(repository)}"


def tags_path(base: str, repository: str) -> str:
    return f"{repository_path(base, repository)}/tags"


def tag_path(base: str, repository: str, tag: str) -> str:
    return f"{tags_path(base, repository)}/{quote_name(tag)}"


def groups_path(base: str) -> str:
    return f"{base}/groups"


def group_path(base: str, group: str) -> str:
    """``/groups/a/b``: each segment encoded, the slashes between them plain (as GitLab writes group paths).

    Only a last segment ``cleanup`` is joined by an encoded slash (``a%2Fcleanup``): plain, it would ask for
    the cleanup simulator of ``a``.
    """
    segments = [quote_name(segment) for segment in group.split("/")]
    if len(segments) > 1 and segments[-1] == CLEANUP:
        segments[-2:] = [f"{segments[-2]}%2F{CLEANUP}"]
    return f"{base}/groups/" + "/".join(segments)


def cleanup_path(base: str) -> str:
    return f"{base}/{CLEANUP}"


def group_cleanup_path(base: str, group: str) -> str:
    return f"{group_path(base, group)}/{CLEANUP}"


def repository_cleanup_path(base: str, repository: str) -> str:
    return f"{repository_path(base, repository)}/{CLEANUP}"


def repositories_document(snapshot: Snapshot | None, options: Options) -> Document:
    """``/repositories``: the timestamp and totals, with the repositories as links and embedded items."""
    if snapshot is None:
        document: Document = {"timestamp": None}
        if options.links:
            document["_links"] = {"self": {"href": repositories_path(options.base)}}
        return document
    window = options.window
    matching = _with_prefix(snapshot, window.prefix)
    document = {
        "timestamp": snapshot.timestamp,
        "total_size": sum(repo.size or 0 for repo in matching),
        "total_disk_size": sum(repo.disk_size or 0 for repo in matching),
        "repository_count": len(matching),
        "tag_count": sum(len(repo.tags or ()) for repo in matching),
    }
    shown = _window(matching, window)
    if options.links:
        links: Document = {"self": {"href": repositories_path(options.base)}}
        links["items"] = [
            {"href": repository_path(options.base, repository.name), "title": repository.name}
            for repository in shown
        ]
        links.update(_paging_links(repositories_path(options.base), options, len(matching)))
        document["_links"] = links
    if options.embed > 0:
        inner = _deeper(options)
        document["_embedded"] = {"items": [repository_document(repository, inner) for repository in shown]}
    return document


def _with_prefix(snapshot: Snapshot, prefix: str | None) -> list[RepositoryUsage]:
    return [repo for repo in snapshot.repositories if prefix is None or repo.name.startswith(prefix)]


def select_repositories(snapshot: Snapshot, window: Window) -> list[RepositoryUsage]:
    """The repositories ``/repositories`` lists for ``window``, in its order (for exports)."""
    return _window(_with_prefix(snapshot, window.prefix), window)


def select_covered(snapshot: Snapshot, group: GroupUsage, window: Window) -> list[RepositoryUsage]:
    """Every repository ``group`` covers, by name, then in ``window``'s order and cut (for exports)."""
    return _window(covered(snapshot, group.name), window)


def select_groups(snapshot: Snapshot, depth: int, window: Window) -> list[GroupUsage]:
    """The groups ``/groups?depth=`` lists for ``window``, in its order (for exports)."""
    return _window(groups_at(snapshot, depth), window)


def repository_document(repository: RepositoryUsage, options: Options) -> Document:
    """``/repositories/<name>``: its figures, linking to its tags collection."""
    document: Document = {
        "name": repository.name,
        "size": repository.size,
        "disk_size": repository.disk_size,
        "unique_size": repository.unique_size,
    }
    if options.links:
        links: Document = {
            "self": {"href": repository_path(options.base, repository.name)},
            "collection": {"href": repositories_path(options.base)},
        }
        if repository.tags is not None:
            links["related"] = {"href": tags_path(options.base, repository.name), "title": "tags"}
        document["_links"] = links
    if options.embed > 0 and repository.tags is not None:
        document["_embedded"] = {"related": tags_document(repository, _deeper(options))}
    return document


def tags_document(repository: RepositoryUsage, options: Options) -> Document:
    """``/repositories/<name>/tags``: no fields of its own, the tags as links and embedded items."""
    document: Document = {}
    shown = None if repository.tags is None else _window(list(repository.tags), options.window)
    if options.links:
        links: Document = {
            "self": {"href": tags_path(options.base, repository.name)},
            "up": {"href": repository_path(options.base, repository.name)},
        }
        if repository.tags is not None and shown is not None:
            links["items"] = [
                {"href": tag_path(options.base, repository.name, tag.name), "title": tag.name} for tag in shown
            ]
            links.update(_paging_links(tags_path(options.base, repository.name), options, len(repository.tags)))
        document["_links"] = links
    if options.embed > 0 and shown is not None:
        inner = _deeper(options)
        document["_embedded"] = {"items": [tag_document(repository, tag, inner) for tag in shown]}
    return document


def tag_document(repository: RepositoryUsage, tag: TagUsage, options: Options) -> Document:
    """``/repositories/<name>/tags/<tag>``: the tag's figures."""
    document: Document = {
        "name": tag.name, "size": tag.size, "disk_size": tag.disk_size, "unique_size": tag.unique_size,
    }
    # What the tag points at, where the collector knows it (the library backend does not).
    if tag.digest is not None:
        document["digest"] = tag.digest
    if tag.media_type is not None:
        document["media_type"] = tag.media_type
    if tag.platforms:
        document["platforms"] = list(tag.platforms)
    # Always present, null where unknown; before _links, as HAL's reserved keys follow the properties.
    document["created"] = None if tag.created is None else iso_millis(tag.created)
    document["first_seen"] = None if tag.first_seen is None else iso_millis(tag.first_seen)
    if options.links:
        document["_links"] = {
            "self": {"href": tag_path(options.base, repository.name, tag.name)},
            "collection": {"href": tags_path(options.base, repository.name)},
        }
    return document


def groups_document(snapshot: Snapshot | None, options: Options, depth: int = 1) -> Document:
    """``/groups``: the groups of ``depth`` (1: top level) with their totals, as links and embedded items.

    Groups of one depth never overlap, so the totals count each repository they cover once; at depth 1 they
    cover every repository, and equal ``/repositories``' totals.
    """
    if snapshot is None:
        document: Document = {"timestamp": None}
        if options.links:
            document["_links"] = {"self": {"href": groups_path(options.base)}}
        return document
    matching = groups_at(snapshot, depth)
    document = {
        "timestamp": snapshot.timestamp,
        "total_size": sum(group.size for group in matching),
        "total_disk_size": sum(group.disk_size for group in matching),
        "group_count": len(matching),
        "repository_count": sum(group.repository_count for group in matching),
        "tag_count": sum(group.tag_count for group in matching),
    }
    shown = _window(matching, options.window)
    if options.links:
        extra = {"depth": None if depth == 1 else str(depth)}
        links: Document = {"self": {"href": _with_query(groups_path(options.base), extra)}}
        links["items"] = [{"href": group_path(options.base, group.name), "title": group.name} for group in shown]
        links.update(_paging_links(groups_path(options.base), options, len(matching), extra))
        document["_links"] = links
    if options.embed > 0:
        inner = _deeper(options)
        document["_embedded"] = {"items": [group_document(snapshot, group, inner) for group in shown]}
    return document


def groups_at(snapshot: Snapshot, depth: int) -> list[GroupUsage]:
    """The snapshot's groups of ``depth`` path segments, by name."""
    return [group for group in snapshot.groups if group.name.count("/") == depth - 1]


def group_document(snapshot: Snapshot, group: GroupUsage, options: Options) -> Document:
    """``/groups/<path>``: the group's figures, linking up, to its subgroups and to its direct repositories.

    The window (``sort``, ``limit``, ``offset``, with ``next``/``prev``) applies to its direct repositories, in
    the links and embedded alike; the subgroups are listed whole, by name (a page for people: a page of them).
    """
    document: Document = {
        "name": group.name,
        "size": group.size,
        "disk_size": group.disk_size,
        "unique_size": group.unique_size,
        "repository_count": group.repository_count,
        "tag_count": group.tag_count,
        "unreadable_repositories": group.unreadable_repositories,
    }
    subgroups = group.subgroups[:options.page_size]
    direct = [_known(snapshot.repository(name)) for name in group.repositories]
    repositories = _window(direct, options.window)
    if options.links:
        parent = group.parent
        path = group_path(options.base, group.name)
        document["_links"] = {
            "self": {"href": path},
            "up": {"href": groups_path(options.base) if parent is None else group_path(options.base, parent)},
            "subgroups": [{"href": group_path(options.base, name), "title": name} for name in subgroups],
            "repositories": [{"href": repository_path(options.base, repository.name), "title": repository.name}
                             for repository in repositories],
            **_paging_links(path, options, len(direct)),
        }
    if options.embed > 0:
        inner = _deeper(options)
        document["_embedded"] = {
            "subgroups": [group_document(snapshot, _known(snapshot.group(name)), inner) for name in subgroups],
            "repositories": [repository_document(repository, inner) for repository in repositories],
        }
    return document


def _with_query(path: str, query: Mapping[str, str | None]) -> str:
    """``path`` with the parameters that have a value."""
    given = {key: value for key, value in query.items() if value is not None}
    return f"{path}?{urlencode(given)}" if given else path


Known = TypeVar("Known", GroupUsage, RepositoryUsage)


def _known(found: Known | None) -> Known:
    # A group's children are the snapshot's own groups and repositories, computed with it.
    assert found is not None
    return found


def _deeper(options: Options) -> Options:
    # The window applies to the requested collection only, not to collections embedded in it; a page for
    # people cuts those to a page as well. Unlimited stays unlimited, so that their paging links say so.
    window = Window() if options.page_size is None else Window(limit=options.page_size)
    return Options(embed=options.embed if options.embed == UNLIMITED else options.embed - 1, links=options.links,
                   base=options.base, window=window, page_size=options.page_size)


Item = TypeVar("Item", RepositoryUsage, TagUsage, GroupUsage)


def _window(items: list[Item], window: Window) -> list[Item]:
    """Sort (unknown sizes last, whatever the direction), then cut out ``offset`` .. ``offset + limit``."""
    if window.sort is not None:
        key = window.sort.lstrip("-")
        known = [item for item in items if getattr(item, key) is not None]
        unknown = [item for item in items if getattr(item, key) is None]
        known.sort(key=lambda item: getattr(item, key), reverse=window.sort.startswith("-"))
        items = known + unknown
    end = None if window.limit is None else window.offset + window.limit
    return items[window.offset:end]


def _paging_links(path: str, options: Options, total: int, extra: Mapping[str, str | None] | None = None
                  ) -> Document:
    """HAL ``next`` and ``prev`` for a limited window, keeping every other query parameter (``extra``: the
    resource's own)."""
    window = options.window
    if window.limit is None:
        return {}

    def href(offset: int) -> dict[str, str]:
        query = {"embed": _shown_embed(options.embed), "links": "true", "sort": window.sort,
                 "prefix": window.prefix, **(extra or {}), "limit": str(window.limit), "offset": str(offset)}
        return {"href": f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"}

    links = {}
    if window.offset + window.limit < total:
        links["next"] = href(window.offset + window.limit)
    if window.offset > 0:
        # From past the end, back to the last page that has items.
        links["prev"] = href(max(0, min(window.offset, total) - window.limit))
    return links


def _shown_embed(embed: int) -> str | None:
    if embed == 0:
        return None
    return "true" if embed == UNLIMITED else str(embed)


@dataclass(frozen=True)
class Target:
    """A resource a path may mean: ``tag`` set for a tag, ``collection`` for the tags collection, ``cleanup``
    for the repository's cleanup simulator."""

    repository: str
    tag: str | None = None
    collection: bool = False
    cleanup: bool = False

    def path(self, base: str = "") -> str:
        """The canonical path, names encoded: used in 404 messages as the original did."""
        if self.tag is not None:
            return tag_path(base, self.repository, self.tag)
        if self.collection:
            return tags_path(base, self.repository)
        if self.cleanup:
            return repository_cleanup_path(base, self.repository)
        return repository_path(base, self.repository)


def resolve(raw_path: str) -> list[Target]:
    """The resources a raw (still percent-encoded) path below ``/repositories/`` may mean, best first.

    Encoded slashes belong to names, unencoded ones separate segments, so ``group%2Ftags`` is the
    repository ``group/tags``. Unencoded, a trailing ``/tags`` is read first as a tags collection,
    then ``/tags/<tag>`` as a tag, as in the original's routes, then a trailing ``/cleanup`` as the
    repository's cleanup simulator (after the tag reading, so that the tag ``cleanup`` keeps its link); the
    plain repository reading comes last, so a repository that itself ends in ``/tags`` or ``/cleanup`` is
    still found when nothing else matches.
    """
    segments = raw_path.split("/")
    names = [unquote(segment, errors="strict") for segment in segments]
    candidates: list[Target] = []
    if len(segments) >= 2 and segments[-1] == "tags":
        candidates.append(Target("/".join(names[:-1]), collection=True))
    if len(segments) >= 3 and segments[-2] == "tags":
        candidates.append(Target("/".join(names[:-2]), tag=names[-1]))
    if len(segments) >= 2 and segments[-1] == CLEANUP:
        candidates.append(Target("/".join(names[:-1]), cleanup=True))
    candidates.append(Target("/".join(names)))
    return [target for target in candidates if _valid_name(target.repository)]


def _valid_name(name: str) -> bool:
    return bool(name) and all(name.split("/"))


@dataclass(frozen=True)
class GroupTarget:
    """What a path below ``/groups/`` may mean: a group, or (``cleanup``) its cleanup simulator."""

    group: str
    cleanup: bool = False

    def path(self, base: str = "") -> str:
        """The canonical path, for 404 messages."""
        return group_cleanup_path(base, self.group) if self.cleanup else group_path(base, self.group)


def resolve_group(raw_path: str) -> list[GroupTarget]:
    """The resources a raw (still percent-encoded) path below ``/groups/`` may mean, best first.

    Slashes may be plain or encoded (``a/b`` and ``a%2Fb`` are one group). An unencoded trailing ``/cleanup``
    is read first as the simulator, then as part of the group's name, so a group named ``a/cleanup`` is
    still found (and its links, ``a%2Fcleanup``, are never ambiguous).
    """
    segments = raw_path.split("/")
    names = [unquote(segment, errors="strict") for segment in segments]
    candidates: list[GroupTarget] = []
    if len(segments) >= 2 and segments[-1] == CLEANUP:
        candidates.append(GroupTarget("/".join(names[:-1]), cleanup=True))
    candidates.append(GroupTarget("/".join(names)))
    return [target for target in candidates if _valid_name(target.group)]


def find_group(snapshot: Snapshot, candidates: list[GroupTarget]) -> tuple[GroupTarget, GroupUsage] | None:
    """The first candidate whose group exists in the snapshot."""
    for target in candidates:
        group = snapshot.group(target.group)
        if group is not None:
            return target, group
    return None


def find(snapshot: Snapshot, candidates: list[Target]) -> tuple[Target, RepositoryUsage, TagUsage | None] | None:
    """The first candidate that exists in the snapshot."""
    for target in candidates:
        repository = snapshot.repository(target.repository)
        if repository is None:
            continue
        if target.tag is None:
            return target, repository, None
        tag = repository.tag(target.tag)
        if tag is not None:
            return target, repository, tag
    return None


def render(snapshot: Snapshot, found: tuple[Target, RepositoryUsage, TagUsage | None], options: Options) -> Document:
    """The document of a resolved target."""
    target, repository, tag = found
    if tag is not None:
        return tag_document(repository, tag, options)
    if target.collection:
        return tags_document(repository, options)
    return repository_document(repository, options)


def options_from(args: Mapping[str, str], base: str, links_default: bool = False, prefix_allowed: bool = False,
                 sort_keys: tuple[str, ...] = SORT_KEYS) -> Options:
    """Query parameters -> ``Options``; ``links_default`` is for the browser view. Raises ``QueryError``."""
    links = args.get("links")
    return Options(
        embed=parse_embed(args.get("embed")),
        links=links_default if links is None else parse_flag(links),
        base=base,
        window=parse_window(args, prefix_allowed, sort_keys),
    )


def parse_depth(args: Mapping[str, str]) -> int:
    """``/groups?depth=N``: which level of groups to list, 1 (the top level) unless given."""
    depth = _count(args, "depth", 1, MAX_DEPTH)
    return 1 if depth is None else depth


def parse_window(args: Mapping[str, str], prefix_allowed: bool, sort_keys: tuple[str, ...] = SORT_KEYS) -> Window:
    """``sort``, ``limit``, ``offset`` (and on ``/repositories`` ``prefix``), validated."""
    sort = args.get("sort")
    if sort is not None and sort.removeprefix("-") not in sort_keys:
        raise QueryError(f"sort must be one of {', '.join(sort_keys)}, with '-' in front for descending order")
    prefix = args.get("prefix")
    if prefix is not None and not prefix_allowed:
        raise QueryError("prefix is accepted on /repositories only")
    return Window(sort=sort, limit=_count(args, "limit", 1, MAX_LIMIT), offset=_count(args, "offset", 0, 10**9) or 0,
                  prefix=prefix)


def _count(args: Mapping[str, str], name: str, minimum: int, maximum: int) -> int | None:
    value = args.get(name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or len(value) > 10 or not minimum <= int(value) <= maximum:
        raise QueryError(f"{name} must be a whole number from {minimum} to {maximum}")
    return int(value)
