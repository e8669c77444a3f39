"""The cleanup-policy simulator: GitLab's rules, the parameters' errors, RE2, and set-wise freed bytes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitlab_registry_usage_rest.cleanup import (
    CleanupIndex,
    CleanupResult,
    PolicyError,
    RepositoryInput,
    Scope,
    TagInput,
    pack,
    parse_policy,
)

DAY = 86400

Tags = Sequence[tuple[str, float | None, tuple[int, ...]]]


def registry(repositories: Mapping[str, Tags | None], sizes: Sequence[int]) -> CleanupIndex:
    """The index of these repositories (``None``: tags that could not be read), layers sized by ``sizes``."""
    return CleanupIndex(pack(
        [RepositoryInput(name, None if tags is None else tuple(TagInput(*tag) for tag in tags))
         for name, tags in repositories.items()], sizes))


def simulate(index: CleanupIndex, args: Mapping[str, str], now: float = 1000.0,
             scope: Scope | None = None) -> CleanupResult:
    return index.simulate(parse_policy(args), now, scope)


def deleted(result: CleanupResult) -> dict[str, tuple[str, ...]]:
    return {entry.name: entry.tags for entry in result.repositories}


# -- GitLab's rules, one repository -----------------------------------------------------------------------------

ONE = {"app": [("latest", 10.0, (0,)), ("v1", 100.0, (1,)), ("v2", 200.0, (2,)), ("v3", 300.0, (3,)),
               ("dev", 400.0, (4,)), ("old", None, (5,)), ("v10", 50.0, (6,))]}


@pytest.mark.parametrize(("args", "expected"), [
    ({}, ("old", "dev", "v3", "v2", "v1", "v10")),
    ({"name_regex": "latest"}, ()),
    ({"name_regex": "v"}, ()),
    ({"name_regex": "v1"}, ("v1",)),
    ({"name_regex": "v.*", "name_regex_keep": "v1.*"}, ("v3", "v2")),
    ({"name_regex": "v1", "name_regex_keep": "v1"}, ()),
    ({"keep_n": "0"}, ("old", "dev", "v3", "v2", "v1", "v10")),
    ({"keep_n": "2"}, ("v3", "v2", "v1", "v10")),
    ({"keep_n": "1", "name_regex": "v.*"}, ("v2", "v1", "v10")),
    ({"keep_n": "100"}, ()),
    ({"older_than": "700s"}, ("v2", "v1", "v10")),
    ({"older_than": "699s"}, ("v3", "v2", "v1", "v10")),
    ({"keep_n": "5"}, ("v10",)),
    ({"older_than": "1s"}, ("dev", "v3", "v2", "v1", "v10")),
    ({"keep_n": "5", "older_than": "1s"}, ("v10",)),
    ({"keep_n": "3", "older_than": "700s"}, ("v2", "v1", "v10")),
], ids=[
    "latest_never_deleted", "latest_never_deleted_even_when_named", "name_regex_is_anchored_not_searched",
    "name_regex_v1_does_not_match_v10", "keep_regex_wins", "keep_regex_wins_on_same_name", "keep_n_zero_keeps_none",
    "keep_n_keeps_newest_by_created", "keep_n_counts_only_matching_tags", "keep_n_beyond_tag_count",
    "older_than_strictly_older_kept_at_boundary", "older_than_one_second_less", "unknown_created_sorts_newest",
    "unknown_created_never_deleted_by_older_than", "keep_n_protects_unknown_first_then_older_than",
    "keep_n_then_older_than",
])
def test_gitlab_rules_select_deleted_tags_newest_first(args: dict[str, str], expected: tuple[str, ...]) -> None:
    result = simulate(registry(ONE, [1] * 7), args)
    assert deleted(result) == ({"app": expected} if expected else {})
    assert result.tags_deleted == len(expected)
    assert (result.repositories_in_scope, result.tags_in_scope) == (1, 7)


def test_equal_created_times_order_by_name_and_unknown_ones_count_as_newest() -> None:
    # GitLab sorts by ``created_at || now``: a tag of unknown age is among the newest, so keep_n protects it first.
    index = registry({"app": [("b", 100.0, ()), ("c", 100.0, ()), ("a", 100.0, ()), ("y", None, ()),
                              ("x", None, ())]}, [])
    assert deleted(simulate(index, {})) == {"app": ("x", "y", "a", "b", "c")}
    assert deleted(simulate(index, {"keep_n": "1"})) == {"app": ("y", "a", "b", "c")}
    assert deleted(simulate(index, {"keep_n": "4"})) == {"app": ("c",)}


@pytest.mark.parametrize(("args", "unknown", "old_deleted"), [
    ({"older_than": "1s"}, 1, False), ({"keep_n": "0", "older_than": "1s"}, 1, False),
    ({"keep_n": "1", "older_than": "1s"}, 0, False), ({}, 0, True), ({"keep_n": "0"}, 0, True),
    ({"name_regex": "v.*", "older_than": "1s"}, 0, False), ({"name_regex_keep": "old", "older_than": "1s"}, 0, False),
], ids=["older_than", "keep_none", "keep_n_protects_it", "no_older_than_deletes_it", "keep_none_no_older_than",
        "not_matching_the_regex", "kept_by_the_keep_regex"])
def test_tags_created_unknown_counts_what_only_the_unknown_age_keeps(args: dict[str, str], unknown: int,
                                                                     old_deleted: bool) -> None:
    # ONE's "old" has no creation time: deleted by the regexes and keep_n, kept only because older_than cannot say.
    result = simulate(registry(ONE, [1] * 7), args)
    assert result.tags_created_unknown == unknown
    assert ("old" in deleted(result).get("app", ())) is old_deleted


# -- parameters ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "parameter"), [
    ({"name_regex": "("}, "name_regex"),
    ({"name_regex_keep": "(a"}, "name_regex_keep"),
    ({"name_regex": r"(a)\1"}, "name_regex"),
    ({"name_regex": "(?=a)b"}, "name_regex"),
    ({"name_regex": "a" * 1001}, "name_regex"),
    ({"name_regex_keep": "a" * 1001}, "name_regex_keep"),
    ({"name_regex": "\ud800"}, "name_regex"),
    ({"keep_n": "-1"}, "keep_n"),
    ({"keep_n": "1000001"}, "keep_n"),
    ({"keep_n": "1" * 5000}, "keep_n"),
    ({"keep_n": "five"}, "keep_n"),
    ({"keep_n": "1_0"}, "keep_n"),
    ({"keep_n": ""}, "keep_n"),
    ({"older_than": "90 fortnights"}, "older_than"),
    ({"older_than": "-7d"}, "older_than"),
    ({"older_than": ""}, "older_than"),
    ({"older_than": "99999999999d"}, "older_than"),
    ({"keep_n": "5", "older_than": "30d", "name_regex": "(("}, "name_regex"),
], ids=[
    "unbalanced_paren", "unbalanced_keep", "backreference_is_not_re2", "lookahead_is_not_re2", "too_long_pattern",
    "too_long_keep_pattern", "lone_surrogate", "negative_keep_n", "huge_keep_n", "keep_n_of_5000_digits",
    "keep_n_word", "keep_n_underscores", "empty_keep_n", "fortnights", "negative_duration", "empty_duration",
    "overflowing_duration", "only_the_bad_one_named",
])
def test_bad_parameter_is_named(args: dict[str, str], parameter: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(args)
    assert raised.value.parameter == parameter
    assert str(raised.value).startswith(f"{parameter}: ")


def test_huge_program_is_refused_by_max_mem() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy({"name_regex": r"\pL{1000}"})
    assert raised.value.parameter == "name_regex"
    assert "too large" in raised.value.message


@pytest.mark.parametrize(("text", "seconds"), [
    ("7d", 7 * DAY), ("90d", 90 * DAY), ("2 weeks", 14 * DAY), ("7 days", 7 * DAY), ("1 month", 30 * DAY),
    ("3mo", 90 * DAY), ("1h", 3600), ("30 minutes", 1800), ("0d", 0),
], ids=["7d", "90d", "2_weeks", "7_days", "1_month", "3mo", "1h", "30_minutes", "zero"])
def test_durations_gitlab_and_service_forms(text: str, seconds: int) -> None:
    assert parse_policy({"older_than": text}).describe()["older_than_seconds"] == seconds


def test_describe_gives_policy_as_understood() -> None:
    assert parse_policy({"keep_n": "5", "older_than": "30d", "name_regex_keep": "main", "other": "x"}).describe() == {
        "keep_n": 5, "older_than": "30d", "older_than_seconds": 30 * DAY, "name_regex": ".*",
        "name_regex_keep": "main"}
    assert parse_policy({}).describe() == {"keep_n": None, "older_than": None, "older_than_seconds": None,
                                           "name_regex": ".*", "name_regex_keep": None}


# -- RE2 ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "matches"), [("a" * 100_000 + "b", False), ("a" * 100_000, True)],
                         ids=["no_match", "match"])
def test_catastrophic_backtracking_pattern_completes_and_matches_as_re2(name: str, matches: bool) -> None:
    assert parse_policy({"name_regex": "(a+)+$"}).matches_delete(name) is matches
    index = registry({"app": [(name, 1.0, (0,))]}, [7])
    assert simulate(index, {"name_regex": "(a+)+$"}).freed_size == (7 if matches else 0)


def _patterns() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["a", "b", r"\.", ".", "[ab]", "[^a]", r"\d"])
    return st.recursive(leaves, lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map(lambda pair: f"(?:{pair[0]}|{pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"{pair[0]}|{pair[1]}"),  # ungrouped, as people write them
        st.tuples(inner, st.sampled_from("*+?")).map(lambda pair: f"(?:{pair[0]}){pair[1]}"),
    ), max_leaves=6)


@pytest.mark.parametrize(("name", "deleted"), [
    ("main", True), ("stable", True), ("main-abc", True), ("old-stable", True), ("x-main-y", False),
    ("stable-1", False), ("mainstable", True),
], ids=str)
def test_alternation_is_not_grouped_as_in_gitlabs_anchored_pattern(name: str, deleted: bool) -> None:
    # GitLab matches \A#{regex}\z: "main|stable" is "starts with main" or "ends with stable".
    policy = parse_policy({"name_regex": "main|stable", "name_regex_keep": "main|stable"})
    assert policy.matches_delete(name) is deleted
    assert policy.matches_keep(name) is deleted
    index = registry({"app": [(name, 1.0, (0,))]}, [5])
    assert simulate(index, {"name_regex": "main|stable"}).tags_deleted == (1 if deleted else 0)
    assert simulate(index, {"name_regex_keep": "main|stable"}).tags_deleted == (0 if deleted else 1)


@pytest.mark.parametrize("pattern", ["a\\", "a)|(b", "\\"], ids=["trailing_backslash", "paren_bridge", "backslash"])
def test_a_pattern_invalid_alone_is_refused_even_if_anchoring_would_make_it_valid(pattern: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy({"name_regex": pattern})
    assert raised.value.parameter == "name_regex"


@given(pattern=_patterns(), name=st.text(alphabet="ab.1\n", max_size=8))
@settings(max_examples=300)
def test_matching_agrees_with_gitlabs_anchored_search_in_python_re(pattern: str, name: str) -> None:
    policy = parse_policy({"name_regex": pattern, "name_regex_keep": pattern})
    # Python's \Z is RE2's \z: the very end of the name.
    expected = re.search("\\A" + pattern + "\\Z", name) is not None
    assert policy.matches_delete(name) is expected
    assert policy.matches_keep(name) is expected


@pytest.mark.parametrize("name", ["a", "", "a\nb", "\n"], ids=["plain", "empty", "newline_inside", "newline"])
def test_default_regex_shortcut_agrees_with_re2(name: str) -> None:
    shortcut = parse_policy({})
    spelled = parse_policy({"name_regex": "(?:.*)"})
    assert shortcut.matches_delete(name) is spelled.matches_delete(name)


# -- freed bytes, set-wise -----------------------------------------------------------------------------------------


def test_layer_shared_across_repositories_freed_only_when_all_referencing_tags_go() -> None:
    index = registry({"a": [("v1", 1.0, (0, 1))], "b": [("v1", 1.0, (0, 2)), ("v2", 900.0, (0, 3))]},
                     [100, 10, 20, 30])
    assert simulate(index, {}, scope=Scope(repository="a")).freed_size == 10
    assert simulate(index, {"older_than": "1d"}, now=DAY + 500).freed_size == 10 + 20
    assert simulate(index, {}).freed_size == 160


def test_two_tags_on_one_manifest_free_nothing_until_both_go() -> None:
    index = registry({"a": [("v1", 100.0, (0, 1)), ("v2", 200.0, (0, 1)), ("v3", 300.0, (2,))]}, [100, 10, 1])
    one = simulate(index, {"keep_n": "1"})
    assert deleted(one) == {"a": ("v2", "v1")}
    assert one.freed_size == 110
    assert simulate(index, {"name_regex": "v1"}).freed_size == 0
    assert simulate(index, {"name_regex": "v[12]"}).freed_size == 110


def test_repeated_layer_in_one_tag_counts_once() -> None:
    index = registry({"a": [("v1", 1.0, (0, 0, 1))], "b": [("v1", 1.0, (1,))]}, [100, 10])
    # Counted twice, layer 0 would wait for a second reference to go; counted once, deleting a:v1 frees it.
    assert simulate(index, {}, scope=Scope(repository="a")).freed_size == 100
    assert simulate(index, {}).freed_size == 110


def test_unreadable_repositories_in_scope_delete_nothing_and_are_counted() -> None:
    index = registry({"g/a": [("v1", 1.0, (0,))], "g/broken": None, "h/broken": None}, [100])
    whole = simulate(index, {})
    assert (whole.unreadable_repositories, whole.repositories_in_scope, whole.tags_in_scope) == (2, 3, 1)
    assert deleted(whole) == {"g/a": ("v1",)}
    group = simulate(index, {}, scope=Scope(group="g"))
    assert (group.unreadable_repositories, group.repositories_in_scope) == (1, 2)
    assert simulate(index, {}, scope=Scope(repository="g/a")).unreadable_repositories == 0


def test_the_result_says_when_older_than_was_measured_from() -> None:
    index = registry(ONE, [1] * 7)
    assert simulate(index, {"older_than": "1s"}, now=1234.5).evaluated_at == 1234.5


def test_set_wise_total_exceeds_sum_of_repositories_own() -> None:
    # Layer 0 (100 bytes) is in both repositories: neither frees it alone, the two deletions together do.
    index = registry({"a": [("v1", 1.0, (0, 1))], "b": [("v1", 1.0, (0, 2)), ("v2", 2.0, (0, 2, 3))]},
                     [100, 10, 20, 40])
    result = simulate(index, {})
    assert [(entry.name, entry.freed_size, entry.tags_deleted, entry.tags) for entry in result.repositories] == [
        ("b", 60, 2, ("v2", "v1")), ("a", 10, 1, ("v1",))]
    assert (result.freed_size, result.tags_deleted, result.repositories_affected) == (170, 3, 2)
    assert result.freed_size > sum(entry.freed_size for entry in result.repositories)


def test_affected_repository_freeing_nothing_is_listed_last() -> None:
    index = registry({"a": [("v1", 1.0, (0,)), ("v2", 2.0, (0,))], "b": [("v1", 1.0, (1,))],
                      "c": [("keep", 1.0, (2,))]}, [100, 5, 1])
    result = simulate(index, {"name_regex": "v1"})
    assert [(entry.name, entry.freed_size) for entry in result.repositories] == [("b", 5), ("a", 0)]
    assert (result.repositories_affected, result.repositories_in_scope, result.tags_in_scope) == (2, 3, 4)


GROUPS: dict[str, Tags] = {"g": [("v1", 1.0, (0,))], "g/a": [("v1", 1.0, (1, 5))], "g/a/b": [("v1", 1.0, (2,))],
          "g-x/c": [("v1", 1.0, (3, 5))], "h/g": [("v1", 1.0, (4,))]}


@pytest.mark.parametrize(("scope", "affected", "freed"), [
    (Scope(group="g"), ("g", "g/a", "g/a/b"), 1 + 2 + 4),
    (Scope(group="g/a"), ("g/a", "g/a/b"), 2 + 4),
    (Scope(group="g-x"), ("g-x/c",), 8),
    (Scope(group="nothing"), (), 0),
    (Scope(repository="g/a"), ("g/a",), 2),
    (Scope(repository="g/"), (), 0),
    (Scope(), ("g", "g/a", "g/a/b", "g-x/c", "h/g"), 1 + 2 + 4 + 8 + 16 + 32),
], ids=["group_and_below_not_prefix_sibling", "subgroup", "sibling_group", "unknown_group", "repository",
        "unknown_repository", "whole_registry"])
def test_scope_selects_repositories_and_outside_references_keep_layers(
        scope: Scope, affected: tuple[str, ...], freed: int) -> None:
    # Layer 5 (32 bytes) is shared by g/a and g-x/c: only the whole registry frees it.
    result = simulate(registry(GROUPS, [1, 2, 4, 8, 16, 32]), {}, scope=scope)
    assert sorted(deleted(result)) == sorted(affected)
    assert result.freed_size == freed
    assert result.repositories_in_scope == len(affected)


def test_layer_ids_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="layer ids"):
        registry({"a": [("v1", 1.0, (3,))]}, [1, 2])


# -- against a slow obvious implementation ----------------------------------------------------------------------

SIZES = (1, 2, 4, 8, 16, 32, 64)
NAMES = ("a", "a/b", "ab", "c")


def slow(repositories: Mapping[str, Tags], args: Mapping[str, str], now: float,
         scope: Scope) -> tuple[int, dict[str, tuple[int, tuple[str, ...]]], int]:
    """GitLab's rules spelled out with Python's re, and freed layers as subsets of the deleted (repo, tag) pairs."""
    delete, keep = args.get("name_regex", ".*"), args.get("name_regex_keep")
    keep_n = int(args["keep_n"]) if "keep_n" in args else None
    older = int(args["older_than"].rstrip("s")) if "older_than" in args else None
    referencing: dict[int, set[tuple[str, str]]] = {}
    for name, tags in repositories.items():
        for tag, _, layers in tags:
            for layer in layers:
                referencing.setdefault(layer, set()).add((name, tag))
    chosen: dict[str, list[str]] = {}
    unknown = 0
    for name, tags in repositories.items():
        if scope.repository is not None and name != scope.repository:
            continue
        if scope.group is not None and name != scope.group and not name.startswith(scope.group + "/"):
            continue
        candidates = [(tag, created) for tag, created, _ in tags if tag != "latest"
                      and re.search(f"\\A{delete}\\Z", tag)
                      and not (keep is not None and re.search(f"\\A{keep}\\Z", tag))]
        candidates.sort(key=lambda pair: pair[0])
        # GitLab's ``created_at || now``: unknown is newer than any known time here; reverse keeps ties by name.
        candidates.sort(key=lambda pair: float("inf") if pair[1] is None else pair[1], reverse=True)
        if keep_n is not None:
            candidates = candidates[keep_n:]
        if older is not None:
            unknown += sum(1 for _, created in candidates if created is None)
            candidates = [(tag, created) for tag, created in candidates if created is not None
                          and now - created > older]
        if candidates:
            chosen[name] = [tag for tag, _ in candidates]

    def freed(gone: set[tuple[str, str]]) -> int:
        return sum(SIZES[layer] for layer, refs in referencing.items() if refs & gone and refs <= gone)

    everything = {(name, tag) for name, tags in chosen.items() for tag in tags}
    return freed(everything), {name: (freed({(name, tag) for tag in tags}), tuple(tags))
                               for name, tags in chosen.items()}, unknown


# Few creation times, so that ties and tags created exactly older_than ago (kept: the boundary) come up often.
_tag = st.tuples(st.sampled_from([None, 1.0, 2.0, 3.0]), st.frozensets(st.integers(0, 6), max_size=4))
_repository = st.dictionaries(st.sampled_from(["latest", "v1", "v2", "x1", "x2", "v10"]), _tag, max_size=5)


@given(
    repositories=st.dictionaries(st.sampled_from(NAMES), _repository, max_size=4),
    args=st.fixed_dictionaries({}, optional={
        "keep_n": st.integers(0, 4).map(str), "older_than": st.sampled_from(["3s", "4s", "5s"]),
        "name_regex": st.sampled_from([".*", "v.*", "x1|v2", "[vx]1", "v"]),
        "name_regex_keep": st.sampled_from(["v1", ".*2", "x.*"]),
    }),
    scope=st.sampled_from([Scope(), Scope(group="a"), Scope(repository="ab"), Scope(group="a/b")]),
)
@settings(max_examples=400)
def test_freed_size_matches_slow_obvious_implementation(
        repositories: dict[str, dict[str, tuple[float | None, frozenset[int]]]], args: dict[str, str],
        scope: Scope) -> None:
    tags = {name: [(tag, created, tuple(sorted(layers))) for tag, (created, layers) in repo.items()]
            for name, repo in repositories.items()}
    now = 6.0
    result = simulate(registry(tags, SIZES), args, now=now, scope=scope)
    total, own, unknown = slow(tags, args, now, scope)
    assert result.freed_size == total
    assert result.tags_created_unknown == unknown
    assert {entry.name: (entry.freed_size, entry.tags) for entry in result.repositories} == own
    assert result.freed_size >= sum(entry.freed_size for entry in result.repositories)
    assert [entry.freed_size for entry in result.repositories] == sorted(
        (entry.freed_size for entry in result.repositories), reverse=True)
    assert result.tags_deleted == sum(len(tags) for _, tags in own.values())
