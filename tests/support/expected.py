"""Expected groups, tag ages and cleanup answers, computed the slow, obvious way from what a test pushed.

Nothing here calls the package: every figure is a brute-force count over the pushed layer sets, written from the
meanings in issue 13 (groups cover a repository named so and those below it; a layer is freed when every tag
referencing it, in the whole registry, is deleted), so that a wrong figure in the service cannot also be the
expected one. Quadratic and worse on purpose: a test registry has a few dozen tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.pushed import PushedRegistry, expected_figures

LATEST = "latest"
# Configs created before this are reproducible builds' placeholders (1970, 1980): the service says "unknown".
EARLIEST_CREATED = datetime(2000, 1, 1, tzinfo=UTC).timestamp()

Key = tuple[str, str]  # (repository, tag)


def created_time(text: str | None) -> float | None:
    """What the service makes of a config's ``created``: seconds since the epoch, None if absent or before 2000."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text).timestamp()
    return moment if moment >= EARLIEST_CREATED else None


def iso_utc(moment: float) -> str:
    """A whole-second time as the service writes it: ``2023-03-01T00:00:00Z``."""
    assert moment == int(moment), "only whole seconds are written without milliseconds"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gitlab_match(pattern: str, name: str) -> bool:
    """GitLab's cleanup test: ``\\A#{regex}\\z`` searched, the pattern not grouped (``a|b``: starts with a or ends
    with b). Python's ``\\Z`` is RE2's ``\\z``."""
    return re.search("\\A" + pattern + "\\Z", name) is not None


@dataclass(frozen=True)
class Policy:
    """A GitLab cleanup policy as a test gives it: the query parameters, and the duration in seconds (stated by
    the test, not parsed)."""

    keep_n: int | None = None
    older_than: str | None = None
    older_than_seconds: int | None = None
    name_regex: str = ".*"
    name_regex_keep: str | None = None

    def query(self) -> dict[str, str]:
        """The query parameters of this policy (GitLab's defaults left out)."""
        params = {"keep_n": None if self.keep_n is None else str(self.keep_n), "older_than": self.older_than,
                  "name_regex": None if self.name_regex == ".*" else self.name_regex,
                  "name_regex_keep": self.name_regex_keep}
        return {name: value for name, value in params.items() if value is not None}


class Expected:
    """Everything the service should serve about one pushed registry."""

    def __init__(self, pushed: PushedRegistry, created: Mapping[Key, float | None]) -> None:
        self.pushed = pushed
        self.repositories = list(pushed.tags)
        self.tags: dict[Key, dict[str, int]] = {
            (repo, tag): dict(layers) for repo, tags in pushed.tags.items() for tag, layers in tags.items()}
        assert set(created) == set(self.tags), "a creation time (or None) for every pushed tag"
        self.created = dict(created)
        self.figures = expected_figures(pushed)
        self.sizes = {digest: size for layers in self.tags.values() for digest, size in layers.items()}

    # -- layers ---------------------------------------------------------------------------------------------------

    def referencing(self, digest: str) -> set[Key]:
        """Every tag, in any repository, whose image references the layer."""
        return {key for key, layers in self.tags.items() if digest in layers}

    def freed(self, deleted: Iterable[Key]) -> int:
        """Bytes garbage collection frees after deleting these tags: layers all of whose references are deleted."""
        gone = set(deleted)
        return sum(size for digest, size in self.sizes.items() if self.referencing(digest) <= gone)

    def tags_of(self, repositories: Iterable[str]) -> list[Key]:
        wanted = set(repositories)
        return [key for key in self.tags if key[0] in wanted]

    def tag_size(self, key: Key) -> int:
        return sum(self.tags[key].values())

    # -- groups ---------------------------------------------------------------------------------------------------

    def group_names(self) -> list[str]:
        """Every first path segment and every deeper proper prefix of a repository name, sorted."""
        names = set()
        for repository in self.repositories:
            segments = repository.split("/")
            names.add(segments[0])
            for depth in range(2, len(segments)):
                names.add("/".join(segments[:depth]))
        return sorted(names)

    def covered(self, group: str) -> list[str]:
        """The repositories a group covers: the one named so and those starting with it and ``/``."""
        return [name for name in self.repositories if name == group or name.startswith(group + "/")]

    def groups_at(self, depth: int) -> list[str]:
        return [name for name in self.group_names() if name.count("/") == depth - 1]

    def subgroups(self, group: str) -> list[str]:
        """The groups strictly inside ``group`` with no group between them and it."""
        inside = [name for name in self.group_names() if name.startswith(group + "/")]
        return [name for name in inside
                if not any(name.startswith(other + "/") for other in inside if other != name)]

    def direct_repositories(self, group: str) -> list[str]:
        """The covered repositories for which ``group`` is the innermost covering group."""
        groups = self.group_names()
        return sorted(name for name in self.covered(group)
                      if not any(other != group and other.startswith(group + "/") and name in self.covered(other)
                                 for other in groups))

    def group(self, name: str) -> dict[str, Any]:
        """A group document's figures."""
        covered = self.covered(name)
        return {
            "name": name,
            "size": sum(self.figure(repo, "size") for repo in covered),
            "disk_size": sum(self.figure(repo, "disk_size") for repo in covered),
            "unique_size": self.freed(self.tags_of(covered)),
            "repository_count": len(covered),
            "tag_count": len(self.tags_of(covered)),
        }

    def figure(self, repository: str, name: str) -> int:
        """A repository's ``size`` or ``disk_size`` as ``pushed.expected_figures`` computes it."""
        value = self.figures[repository][name]
        assert isinstance(value, int)
        return value

    def total(self, name: str) -> int:
        """The registry's total ``size`` or ``disk_size``."""
        return sum(self.figure(repository, name) for repository in self.repositories)

    # -- cleanup --------------------------------------------------------------------------------------------------

    def policy_order(self, repository: str, names: Iterable[str]) -> list[str]:
        """GitLab's ``sort_by { |tag| tag.created_at || now }.reverse``: unknown times count as now, newer than any
        pushed time, so they come first, by name; then newest first, equal times by name."""
        names = list(names)
        dated = sorted(name for name in names if self.created[repository, name] is not None)
        dated.sort(key=lambda name: self.created[repository, name] or 0.0, reverse=True)  # stable: ties by name
        undated = sorted(name for name in names if self.created[repository, name] is None)
        return undated + dated

    def kept_for_unknown_age(self, policy: Policy, repository: str) -> list[str]:
        """The tags the regexes and keep_n would delete that older_than keeps only because their time is unknown."""
        if policy.older_than_seconds is None:
            return []
        names = [tag for repo, tag in self.tags if repo == repository and tag != LATEST
                 and gitlab_match(policy.name_regex, tag)
                 and not (policy.name_regex_keep is not None and gitlab_match(policy.name_regex_keep, tag))]
        ordered = self.policy_order(repository, names)[policy.keep_n or 0:]
        return [name for name in ordered if self.created[repository, name] is None]

    def deleted_by(self, policy: Policy, now: float, repository: str) -> list[str]:
        """The tags of ``repository`` that GitLab's cleanup deletes under ``policy`` at ``now``, in policy order."""
        names = [tag for repo, tag in self.tags if repo == repository and tag != LATEST]
        names = [name for name in names if gitlab_match(policy.name_regex, name)]
        if policy.name_regex_keep is not None:
            names = [name for name in names if not gitlab_match(policy.name_regex_keep, name)]
        ordered = self.policy_order(repository, names)
        if policy.keep_n is not None:
            ordered = ordered[policy.keep_n:]
        if policy.older_than_seconds is not None:
            cutoff = now - policy.older_than_seconds
            ordered = [name for name in ordered
                       if (created := self.created[repository, name]) is not None and created < cutoff]
        return ordered

    def assert_clear_of_cutoff(self, policy: Policy, now: float, margin: float = 3600.0) -> None:
        """No tag created within ``margin`` of the policy's cutoff: the service evaluates at its snapshot's time,
        which the test reads back, but a cutoff this near a tag would make the case depend on seconds."""
        if policy.older_than_seconds is None:
            return
        cutoff = now - policy.older_than_seconds
        near = [key for key, created in self.created.items() if created is not None and abs(created - cutoff) < margin]
        assert near == [], f"tags created too near the cutoff of {policy}: {near}"

    def cleanup(self, policy: Policy, now: float, scope: list[str] | None = None) -> dict[str, Any]:
        """The cleanup answer's figures and items for the repositories in ``scope`` (default: all)."""
        in_scope = self.repositories if scope is None else scope
        items: list[dict[str, Any]] = []
        everything: set[Key] = set()
        for repository in in_scope:
            deleted = self.deleted_by(policy, now, repository)
            if not deleted:
                continue
            keys = {(repository, tag) for tag in deleted}
            everything |= keys
            items.append({"name": repository, "freed_size": self.freed(keys), "tags_deleted": len(deleted),
                          "tags": deleted})
        items.sort(key=lambda item: item["name"])
        items.sort(key=lambda item: item["freed_size"], reverse=True)
        return {
            "repositories_in_scope": len(in_scope),
            "unreadable_repositories": 0,  # every pushed repository can be read
            "tags_in_scope": len(self.tags_of(in_scope)),
            "tags_deleted": len(everything),
            "repositories_affected": len(items),
            "freed_size": self.freed(everything),
            "tags_created_unknown": sum(len(self.kept_for_unknown_age(policy, name)) for name in in_scope),
            "items": items,
        }
