"""The cleanup-policy simulator: which tags a GitLab cleanup policy would delete, and what garbage collection would
then free, exactly and set-wise across the whole registry (issue 13, part 3).

Pure: plain data in (``CleanupInput``), frozen dataclasses out, no I/O, no clock (the caller passes ``now``).

- ``parse_policy(args)`` reads GitLab's four policy parameters (``keep_n``, ``older_than``, ``name_regex``,
  ``name_regex_keep``) from request arguments and raises ``PolicyError`` naming the bad one;
  ``parse_scope(args)`` reads ``group`` or ``repository``.
- ``cleanup_input(snapshot)`` builds that input from a snapshot's layer table.
- ``CleanupIndex(data)`` does once per snapshot what every simulation shares: each repository's tags in policy
  order and, per layer, how many tags in the whole registry reference it.
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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import re2

from .config import parse_timedelta
from .model import Snapshot

LATEST = "latest"
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


@dataclass(frozen=True, slots=True)
class TagInput:
    """One tag: its name, its creation time (seconds since the epoch, ``None`` if unknown) and the ids of the
    layers its image references (indices into ``CleanupInput.layer_sizes``; a repeated id counts once).

    Two tags on one manifest simply list the same layers: references are counted per tag, so such a layer is
    freed only when both tags go, and no manifest digest is needed."""

    name: str
    created: float | None
    layers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RepositoryInput:
    """A repository and all its tags (names distinct)."""

    name: str
    tags: tuple[TagInput, ...]


@dataclass(frozen=True, slots=True)
class CleanupInput:
    """The whole registry: every repository (references from all of them keep layers) and the size of each layer,
    indexed by layer id."""

    repositories: tuple[RepositoryInput, ...]
    layer_sizes: Sequence[int]


def cleanup_input(snapshot: Snapshot) -> CleanupInput:
    """The simulator's input from ``snapshot.layers``: every repository in snapshot order (one whose tags could not
    be read has none, so it is in scope but deletes and keeps nothing), its tags with their layer ids.

    Raises ``ValueError`` for a snapshot without a layer table (read from an older data file). Linear in the
    (tag, layer) pairs."""
    layers = snapshot.layers
    if layers is None:
        raise ValueError("the snapshot has no layer table")
    repositories: list[RepositoryInput] = []
    number = 0
    for repository in snapshot.repositories:
        tags: list[TagInput] = []
        for tag in repository.tags or ():
            tags.append(TagInput(tag.name, tag.created, tuple(layers.tag_layers(number))))
            number += 1
        repositories.append(RepositoryInput(repository.name, tuple(tags)))
    if number != layers.tag_count:
        raise ValueError(f"the layer table has {layers.tag_count} tags, the repositories {number}")
    return CleanupInput(tuple(repositories), layers.sizes)


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
    ``name_regex`` ``.*``, no ``name_regex_keep``). Other arguments are ignored."""
    keep_n: int | None = None
    if "keep_n" in args:
        text = args["keep_n"].strip()
        if not _KEEP_N.match(text) or int(text) > MAX_KEEP_N:
            raise PolicyError("keep_n", f"must be an integer from 0 to {MAX_KEEP_N}")
        keep_n = int(text)
    older_than_text = args.get("older_than")
    older_than = None if older_than_text is None else parse_duration("older_than", older_than_text)
    name_regex = args.get("name_regex", DEFAULT_NAME_REGEX)
    delete = compile_pattern("name_regex", name_regex)
    name_regex_keep = args.get("name_regex_keep")
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


def parse_scope(args: Mapping[str, str]) -> Scope:
    """``group`` or ``repository`` from request arguments (neither: the whole registry)."""
    group, repository = args.get("group"), args.get("repository")
    if group is not None and repository is not None:
        raise PolicyError("repository", "give either group or repository, not both")
    if group is not None:
        group = group.strip("/")
        if not group:
            raise PolicyError("group", "must not be empty")
    if repository is not None and not repository:
        raise PolicyError("repository", "must not be empty")
    return Scope(group, repository)


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


@dataclass(frozen=True, slots=True)
class _Repository:
    name: str
    tag_count: int
    # The tags a policy may delete (all but ``latest``) in policy order: unknown creation times first (GitLab's
    # ``created_at || now``), then newest first; equal or unknown times by name. Parallel tuples, so a simulation
    # touches no per-tag objects.
    names: tuple[str, ...]
    created: tuple[float | None, ...]
    layers: tuple[tuple[int, ...], ...]


def _policy_order(tag: TagInput) -> tuple[bool, float, str]:
    return (tag.created is not None, -(tag.created or 0.0), tag.name)


class CleanupIndex:
    """One snapshot's tags prepared for any number of simulations: built once, read-only afterwards (safe to share
    between request threads)."""

    def __init__(self, data: CleanupInput) -> None:
        sizes = tuple(data.layer_sizes)
        repositories: list[_Repository] = []
        every_layers: list[tuple[int, ...]] = []
        for repository in data.repositories:
            distinct = [TagInput(tag.name, tag.created, tuple(dict.fromkeys(tag.layers))) for tag in repository.tags]
            every_layers.extend(tag.layers for tag in distinct)
            ordered = sorted((tag for tag in distinct if tag.name != LATEST), key=_policy_order)
            repositories.append(_Repository(
                repository.name, len(distinct), tuple(tag.name for tag in ordered),
                tuple(tag.created for tag in ordered), tuple(tag.layers for tag in ordered)))
        counted = Counter(chain.from_iterable(every_layers))
        if counted and (min(counted) < 0 or max(counted) >= len(sizes)):
            raise ValueError(f"layer ids must be from 0 to {len(sizes) - 1}")
        references = [0] * len(sizes)
        for layer, count in counted.items():
            references[layer] = count
        self._sizes = sizes
        self._references = tuple(references)
        self._repositories = tuple(repositories)
        by_name = sorted(range(len(repositories)), key=lambda number: repositories[number].name)
        self._sorted_names = [repositories[number].name for number in by_name]
        self._sorted_numbers = by_name

    def references(self, layer: int) -> int:
        """How many tags in the whole registry reference ``layer``."""
        return self._references[layer]

    def _in_scope(self, scope: Scope) -> list[_Repository]:
        if scope.repository is not None:
            names = self._sorted_names
            at = bisect.bisect_left(names, scope.repository)
            found = at < len(names) and names[at] == scope.repository
            return [self._repositories[self._sorted_numbers[at]]] if found else []
        if scope.group is not None:
            # The group itself, then what is under it: names from "group/" up to "group0" ("0" follows "/").
            names = self._sorted_names
            exact = bisect.bisect_left(names, scope.group)
            selected = [exact] if exact < len(names) and names[exact] == scope.group else []
            selected.extend(range(bisect.bisect_left(names, scope.group + "/"),
                                  bisect.bisect_left(names, scope.group + "0")))
            return [self._repositories[self._sorted_numbers[at]] for at in selected]
        return list(self._repositories)

    def simulate(self, policy: Policy, now: float, scope: Scope | None = None) -> CleanupResult:
        """What ``policy`` deletes in ``scope`` (default: the whole registry) at time ``now`` (seconds since the
        epoch), as GitLab's cleanup does it per repository: drop ``latest``; keep only names ``name_regex``
        matches; drop names ``name_regex_keep`` matches (both anchored as GitLab does, see the module); order
        newest first, a tag of unknown creation time counting as the newest (GitLab sorts by
        ``created_at || now``), equal or unknown times by name; drop the first ``keep_n``; drop those not created
        strictly before ``now - older_than`` (GitLab's ``created_at < older_than.ago``), and those of unknown
        creation time when ``older_than`` is set (counted in ``tags_created_unknown``). The rest are deleted.

        Freed bytes count references from the whole registry, in scope or not."""
        scope = scope or Scope()
        cutoff = None if policy.older_than is None else now - policy.older_than.total_seconds()
        delete_memo: dict[str, bool] = {}
        references, sizes = self._references, self._sizes
        in_scope = self._in_scope(scope)
        affected: list[RepositoryCleanup] = []
        all_deleted: list[tuple[int, ...]] = []
        tags_in_scope = created_unknown = 0
        for repository in in_scope:
            tags_in_scope += repository.tag_count
            candidates = []
            for number, name in enumerate(repository.names):
                deletable = delete_memo.get(name)
                if deletable is None:
                    deletable = delete_memo[name] = policy.matches_delete(name) and not policy.matches_keep(name)
                if deletable:
                    candidates.append(number)
            if policy.keep_n is not None:
                del candidates[:policy.keep_n]
            if cutoff is not None:
                created = repository.created
                created_unknown += sum(1 for number in candidates if created[number] is None)
                candidates = [number for number in candidates
                              if (when := created[number]) is not None and when < cutoff]
            if not candidates:
                continue
            deleted_layers = [repository.layers[number] for number in candidates]
            all_deleted.extend(deleted_layers)
            own = Counter(chain.from_iterable(deleted_layers))
            freed = sum(sizes[layer] for layer, count in own.items() if count == references[layer])
            affected.append(RepositoryCleanup(repository.name, freed, len(candidates),
                                              tuple(repository.names[number] for number in candidates)))
        together = Counter(chain.from_iterable(all_deleted))
        freed_size = sum(sizes[layer] for layer, count in together.items() if count == references[layer])
        affected.sort(key=lambda entry: (-entry.freed_size, entry.name))
        return CleanupResult(policy, scope, len(in_scope), tags_in_scope, len(all_deleted), len(affected),
                             freed_size, tuple(affected), created_unknown)
