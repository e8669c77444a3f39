"""The cleanup-policy simulator: which tags a GitLab cleanup policy would delete, and what garbage collection would
then free, exactly and set-wise across the whole registry (issue 13, part 3).

Pure: plain data in (``CleanupInput``), frozen dataclasses out, no I/O, no clock (the caller passes ``now``: the
service passes the snapshot's own time, so that one query has one answer however late it is asked).

- ``parse_policy(args)`` reads GitLab's four policy parameters (``POLICY_PARAMETERS``: ``keep_n``,
  ``older_than``, ``name_regex``, ``name_regex_keep``) from request arguments and raises ``PolicyError`` naming
  the bad one.
- ``cleanup_input(snapshot)`` is that input: the snapshot's repositories and layer table, not copied
  (``pack`` builds one from hand-written tags).
- ``CleanupIndex(data)`` does once per snapshot what every simulation shares: each repository's tags in policy
  order (their positions, 4 bytes a tag) and, per layer, how many tags in the whole registry reference it.
- ``CleanupIndex.simulate(policy, now, scope)`` costs time linear in the (tag, layer) pairs of the tags in scope
  (plus one regular-expression match per distinct tag name there), not in the size of the registry.

Regular expressions are RE2, as GitLab's (``Gitlab::UntrustedRegexp``), matched by google-re2 in time linear in
the name, whatever the pattern: ``(a+)+$`` costs what ``.*`` costs. Patterns compile without capture groups
(a match that must report groups falls back from RE2's DFA to slower engines) and within ``REGEX_MAX_MEM``.

They match as GitLab's cleanup matches them (``CleanupTagsBaseService#filter_by_name``:
``UntrustedRegexp.new("\\A#{regex}\\z").match?(tag.name)``), not as "the whole name": the pattern is pasted
between the anchors without a group, so ``main|stable`` means ``\\Amain`` or ``stable\\z`` and deletes (or keeps)
``main-abc`` and ``old-stable`` too; write ``(main|stable)`` for the two names alone. A preview must predict what
GitLab does, so this one compiles ``"\\A" + pattern + "\\z"`` and searches. A pattern is first checked alone,
as GitLab validates a policy's patterns, so one that only compiles once anchored (``a\\``) is refused.
"""

from __future__ import annotations

import bisect
import datetime
import re
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import re2

from .config import parse_timedelta
from .model import LayerTable, Snapshot

LATEST = "latest"
# GitLab's policy parameters, in the order self links and cache keys list them.
POLICY_PARAMETERS = ("keep_n", "older_than", "name_regex", "name_regex_keep")
DEFAULT_NAME_REGEX = ".*"
MAX_PATTERN_LENGTH = 1_000
MAX_KEEP_N = 10**6
# RE2's own default budget for a program and its DFA cache. Measured on 100,000 tag names: with 1 MiB the DFA of
# a pattern like ``(.*){1000}`` runs out of memory and RE2 falls back to its NFA, 40 times slower; with 8 MiB
# every pattern tried (up to 40,000 instructions) ran within 4 times ``.*``'s time.
REGEX_MAX_MEM = 8 << 20
# GitLab stores months as 30 days (ChronicDuration's default); ``config.parse_timedelta`` knows no months.
_MONTHS = re.compile(r"^\s*(\d{1,6})\s*(?:mo|mon|month|months)\s*$")
_KEEP_N = re.compile(r"^[0-9]{1,8}$")


class PolicyError(ValueError):
    """A policy or scope parameter that cannot be used; ``parameter`` names it, for a 400 answer."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


# -- input: what a snapshot provides ---------------------------------------------------------------------------


class TagLike(Protocol):
    """What the simulator reads of a tag (``model.TagUsage`` is one): its name and creation time (seconds since
    the epoch, ``None`` if unknown)."""

    @property
    def name(self) -> str: ...

    @property
    def created(self) -> float | None: ...


class RepositoryLike(Protocol):
    """What the simulator reads of a repository (``model.RepositoryUsage`` is one): ``tags`` is ``None`` where
    they could not be read."""

    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> Sequence[TagLike] | None: ...


@dataclass(frozen=True, slots=True)
class CleanupInput:
    """The whole registry: every repository in order (references from all of them keep layers) and the layer
    table numbering their tags: tag ``n`` of ``layers`` is the ``n``-th tag of the readable repositories in order.

    Nothing is copied from a snapshot: the index reads names, times and layer ids from these at simulation time."""

    repositories: Sequence[RepositoryLike]
    layers: LayerTable


def cleanup_input(snapshot: Snapshot) -> CleanupInput:
    """The simulator's input from a snapshot: its repositories and its layer table, as they are.

    Raises ``ValueError`` for a snapshot without a layer table (read from an older data file), or one whose table
    does not number its tags."""
    layers = snapshot.layers
    if layers is None:
        raise ValueError("the snapshot has no layer table")
    return CleanupInput(snapshot.repositories, layers)


@dataclass(frozen=True, slots=True)
class TagInput:
    """A tag for ``pack``: its name, creation time and the ids of the layers its image references (indices into
    the sizes; a repeated id counts once). Two tags on one manifest simply list the same layers."""

    name: str
    created: float | None
    layers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RepositoryInput:
    """A repository for ``pack``: its tags (names distinct), ``None`` where they could not be read."""

    name: str
    tags: tuple[TagInput, ...] | None


def pack(repositories: Sequence[RepositoryInput], layer_sizes: Sequence[int]) -> CleanupInput:
    """Hand-written repositories (tests, benchmarks) as the simulator's input: their layer ids in a ``LayerTable``
    as a snapshot keeps them. ``ValueError`` for an id that is not an index into ``layer_sizes``."""
    starts, ids = array("q", [0]), array("I")
    for repository in repositories:
        for tag in repository.tags or ():
            distinct = dict.fromkeys(tag.layers)
            if distinct and (min(distinct) < 0 or max(distinct) >= len(layer_sizes)):
                raise ValueError(f"layer ids must be from 0 to {len(layer_sizes) - 1}")
            ids.extend(distinct)
            starts.append(len(ids))
    return CleanupInput(tuple(repositories), LayerTable(array("q", layer_sizes), starts, ids))


# -- the policy -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """A GitLab cleanup policy, validated: build it with ``parse_policy``."""

    keep_n: int | None
    older_than: datetime.timedelta | None
    older_than_text: str | None
    name_regex: str
    name_regex_keep: str | None
    _delete: Any = field(compare=False, repr=False)
    _keep: Any = field(compare=False, repr=False)

    def describe(self) -> dict[str, Any]:
        """The policy as understood, as plain JSON values (the duration both as written and in seconds)."""
        return {
            "keep_n": self.keep_n,
            "older_than": self.older_than_text,
            "older_than_seconds": None if self.older_than is None else int(self.older_than.total_seconds()),
            "name_regex": self.name_regex,
            "name_regex_keep": self.name_regex_keep,
        }

    def matches_delete(self, name: str) -> bool:
        """Whether GitLab's ``\\A#{name_regex}\\z`` matches ``name``."""
        if self.name_regex == DEFAULT_NAME_REGEX:
            # What ``\A.*\z`` matches, without a call: ``.`` is any character but a newline.
            return "\n" not in name
        return self._delete.search(name) is not None

    def matches_keep(self, name: str) -> bool:
        """Whether GitLab's ``\\A#{name_regex_keep}\\z`` matches ``name`` (never, without one)."""
        return self._keep is not None and self._keep.search(name) is not None


def compile_pattern(parameter: str, pattern: str) -> Any:
    """``pattern`` as GitLab's cleanup uses it: checked alone (as GitLab validates a policy), then compiled by RE2
    as ``\\A`` + pattern + ``\\z``, not grouped, to be searched; or a ``PolicyError`` naming ``parameter``."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PolicyError(parameter, f"longer than {MAX_PATTERN_LENGTH} characters")
    # Alone first: a pattern ending in one backslash is invalid, though anchored that backslash would escape the
    # one of \z and compile (to a literal backslash and z, with no end anchor).
    _compile(parameter, pattern)
    return _compile(parameter, "\\A" + pattern + "\\z")


def _compile(parameter: str, pattern: str) -> Any:
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.never_capture = True
    options.log_errors = False  # RE2 would write each invalid pattern to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else str(
            error)
        raise PolicyError(parameter, f"not an RE2 regular expression: {reason}") from None
    except UnicodeError:  # a lone surrogate cannot be UTF-8 encoded
        raise PolicyError(parameter, "not valid Unicode text") from None


def parse_duration(parameter: str, text: str) -> datetime.timedelta:
    """GitLab's ``7d``, ``14d``, ``90d`` and the service's forms (``2 weeks``, ``30 minutes``, ``1h``), plus months
    of 30 days (``1 month``) as GitLab counts them."""
    months = _MONTHS.match(text.lower())
    if months is not None:
        return datetime.timedelta(days=30 * int(months.group(1)))
    try:
        return parse_timedelta(text)
    except ValueError:
        raise PolicyError(parameter, f"{text[:40]!r} is not a duration (examples: '90d', '2 weeks', '1 month')") \
            from None
    except OverflowError:
        raise PolicyError(parameter, "too long a duration") from None


def parse_policy(args: Mapping[str, str]) -> Policy:
    """The policy in request arguments; absent parameters take GitLab's defaults (no keep_n, no older_than,
    ``name_regex`` ``.*``, no ``name_regex_keep``), empty ones are refused. Other arguments are ignored here
    (``web.simulations.parse_request`` refuses unknown ones)."""
    keep_n: int | None = None
    if "keep_n" in args:
        text = args["keep_n"].strip()
        if not _KEEP_N.match(text) or int(text) > MAX_KEEP_N:
            raise PolicyError("keep_n", f"must be an integer from 0 to {MAX_KEEP_N}")
        keep_n = int(text)
    older_than_text = args.get("older_than")
    older_than = None if older_than_text is None else parse_duration("older_than", older_than_text)
    name_regex = args.get("name_regex", DEFAULT_NAME_REGEX)
    if not name_regex:
        raise PolicyError("name_regex", f"must not be empty (leave it out for GitLab's default {DEFAULT_NAME_REGEX})")
    delete = compile_pattern("name_regex", name_regex)
    name_regex_keep = args.get("name_regex_keep")
    if name_regex_keep == "":
        raise PolicyError("name_regex_keep", "must not be empty (leave it out to keep no tag by its name)")
    keep = None if name_regex_keep is None else compile_pattern("name_regex_keep", name_regex_keep)
    return Policy(keep_n, older_than, older_than_text, name_regex, name_regex_keep, delete, keep)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which repositories a cleanup runs on: all, a group (the repository named so and those under it), or one."""

    group: str | None = None
    repository: str | None = None

    def describe(self) -> dict[str, str | None]:
        """The scope as plain JSON values."""
        return {"group": self.group, "repository": self.repository}


# -- the answer -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositoryCleanup:
    """One affected repository: the tags the policy deletes there (in policy order, newest first) and what
    garbage collection would free if only these were deleted."""

    name: str
    freed_size: int
    tags_deleted: int
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CleanupResult:
    """What a policy deletes in a scope, and what garbage collection frees after all those deletions together.

    ``freed_size`` is at least the sum of the repositories' own: a layer freed by one repository's deletions alone
    has all its references there, so the deletions together free it too, and no other repository's own figure can
    count it. It is more when a layer is shared by tags of several repositories that are all deleted."""

    policy: Policy
    scope: Scope
    repositories_in_scope: int
    tags_in_scope: int
    tags_deleted: int
    repositories_affected: int
    freed_size: int
    repositories: tuple[RepositoryCleanup, ...]  # largest freed_size first, then by name
    # Tags the regexes and keep_n would delete that older_than keeps only because their creation time is unknown
    # (GitLab never deletes those by age; reproducible builds that record 1970 are unknown here).
    tags_created_unknown: int = 0
    # Repositories in scope whose tags could not be read: they delete nothing, and their layers, unknown, may be
    # shared with deleted tags, so freed sizes may be overstated.
    unreadable_repositories: int = 0
    evaluated_at: float = 0.0  # the ``now`` the policy's older_than was measured from (seconds since the epoch)

    @property
    def own_freed_size(self) -> int:
        """The sum of what each affected repository's deletions free alone (at most ``freed_size``)."""
        return sum(entry.freed_size for entry in self.repositories)


def _policy_order(tag: TagLike) -> tuple[bool, float, str]:
    # GitLab's ``sort_by { |tag| tag.created_at || now }.reverse``: unknown first, then newest first; names
    # break ties (GitLab's order among equals is whatever its sort leaves).
    return (tag.created is not None, -(tag.created or 0.0), tag.name)


class CleanupIndex:
    """One snapshot's tags prepared for any number of simulations: built once, read-only afterwards (safe to share
    between request threads).

    It keeps, per repository, the positions of its tags in policy order (4 bytes a tag) and, per layer, how many
    tags of the whole registry reference it (4 bytes a layer); names, creation times and layer ids stay where the
    input holds them (for a snapshot: its tags and its ``LayerTable``) and are read at simulation time."""

    def __init__(self, data: CleanupInput) -> None:
        layers = data.layers
        count = len(layers.sizes)
        if layers.ids and max(layers.ids) >= count:
            raise ValueError(f"layer ids must be from 0 to {count - 1}")
        references = array("I", bytes(4 * count))
        for layer, referencing in Counter(layers.ids).items():
            references[layer] = referencing
        order, order_starts, first_tag = array("I"), array("q", [0]), array("q")
        number = 0
        for repository in data.repositories:
            first_tag.append(number)
            tags = repository.tags
            if tags is not None:
                ordered = sorted((index for index, tag in enumerate(tags) if tag.name != LATEST),
                                 key=lambda index: _policy_order(tags[index]))
                order.extend(ordered)
                number += len(tags)
            order_starts.append(len(order))
        if number != layers.tag_count:
            raise ValueError(f"the layer table has {layers.tag_count} tags, the repositories {number}")
        self._repositories = data.repositories
        self._layers = layers
        self._references = references
        self._order, self._order_starts, self._first_tag = order, order_starts, first_tag
        by_name = sorted(range(len(data.repositories)), key=lambda index: data.repositories[index].name)
        self._sorted_names = [data.repositories[index].name for index in by_name]
        self._sorted_numbers = array("I", by_name)

    def _in_scope(self, scope: Scope) -> Sequence[int]:
        """The numbers of the repositories in ``scope``."""
        if scope.repository is None and scope.group is None:
            return range(len(self._repositories))
        names, numbers = self._sorted_names, self._sorted_numbers
        if scope.repository is not None:
            at = bisect.bisect_left(names, scope.repository)
            return [numbers[at]] if at < len(names) and names[at] == scope.repository else []
        assert scope.group is not None
        # The group itself, then what is under it: names from "group/" up to "group0" ("0" follows "/").
        exact = bisect.bisect_left(names, scope.group)
        selected = [numbers[exact]] if exact < len(names) and names[exact] == scope.group else []
        selected.extend(numbers[bisect.bisect_left(names, scope.group + "/"):
                                bisect.bisect_left(names, scope.group + "0")])
        return selected

    def simulate(self, policy: Policy, now: float, scope: Scope | None = None) -> CleanupResult:
        """What ``policy`` deletes in ``scope`` (default: the whole registry) at time ``now`` (seconds since the
        epoch), as GitLab's cleanup does it per repository: drop ``latest``; keep only names ``name_regex``
        matches; drop names ``name_regex_keep`` matches (both anchored as GitLab does, see the module); order
        newest first, a tag of unknown creation time counting as the newest (GitLab sorts by
        ``created_at || now``), equal or unknown times by name; drop the first ``keep_n``; drop those not created
        strictly before ``now - older_than`` (GitLab's ``created_at < older_than.ago``), and those of unknown
        creation time when ``older_than`` is set (counted in ``tags_created_unknown``). The rest are deleted.

        Freed bytes count references from the whole registry, in scope or not. A repository in scope whose tags
        could not be read deletes nothing and is counted in ``unreadable_repositories``."""
        scope = scope or Scope()
        cutoff = None if policy.older_than is None else now - policy.older_than.total_seconds()
        delete_memo: dict[str, bool] = {}
        references, sizes, starts, ids = self._references, self._layers.sizes, self._layers.starts, self._layers.ids
        order, order_starts, first_tag = self._order, self._order_starts, self._first_tag
        in_scope = self._in_scope(scope)
        repositories, keep_n = self._repositories, policy.keep_n
        affected: list[RepositoryCleanup] = []
        all_deleted = array("I")  # the layer ids of every deleted tag, one after another
        tags_in_scope = tags_deleted = created_unknown = unreadable = 0
        for number in in_scope:
            repository = repositories[number]
            tags = repository.tags
            if tags is None:
                unreadable += 1
                continue
            tags_in_scope += len(tags)
            candidates = []
            for index in order[order_starts[number]:order_starts[number + 1]]:
                name = tags[index].name
                deletable = delete_memo.get(name)
                if deletable is None:
                    deletable = delete_memo[name] = policy.matches_delete(name) and not policy.matches_keep(name)
                if deletable:
                    candidates.append(index)
            if keep_n is not None:
                del candidates[:keep_n]
            if cutoff is not None:
                old_enough = []
                for index in candidates:
                    when = tags[index].created
                    if when is None:
                        created_unknown += 1
                    elif when < cutoff:
                        old_enough.append(index)
                candidates = old_enough
            if not candidates:
                continue
            first = first_tag[number]
            mine = array("I")
            for index in candidates:
                mine += ids[starts[first + index]:starts[first + index + 1]]
            all_deleted += mine
            tags_deleted += len(candidates)
            own = Counter(mine)
            freed = sum(sizes[layer] for layer, count in own.items() if count == references[layer])
            affected.append(RepositoryCleanup(repository.name, freed, len(candidates),
                                              tuple(tags[index].name for index in candidates)))
        together = Counter(all_deleted)
        freed_size = sum(sizes[layer] for layer, count in together.items() if count == references[layer])
        affected.sort(key=lambda entry: (-entry.freed_size, entry.name))
        return CleanupResult(policy, scope, len(in_scope), tags_in_scope, tags_deleted, len(affected),
                             freed_size, tuple(affected), created_unknown, unreadable, now)
