"""Size arithmetic: exact numbers from hand-built listings, and agreement with gitlab-registry-usage."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping

import pytest
from gitlab_registry_usage.registry.high_level_api import GitLabRegistry

from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing, Snapshot
from gitlab_registry_usage_rest.sizes import build_snapshot, compute_usage, group_names


def listing(repos: Mapping[str, dict[str, list[str]] | None], sizes: dict[str, int]) -> Listing:
    return Listing(
        tuple(
            RepositoryListing(name, None if tags is None else tuple(
                ImageListing(tag, tuple(layers)) for tag, layers in tags.items()))
            for name, tags in repos.items()
        ),
        sizes,
    )


def figures(result: Listing) -> dict[str, tuple[int | None, int | None, dict[str, tuple[int, int]] | None]]:
    return {
        repo.name: (repo.size, repo.disk_size,
                    None if repo.tags is None else {t.name: (t.size, t.disk_size) for t in repo.tags})
        for repo in compute_usage(result)
    }


def test_tag_size_is_the_sum_of_its_layers() -> None:
    usage = figures(listing({"a": {"v1": ["x", "y"]}}, {"x": 10, "y": 5}))
    assert usage["a"] == (15, 15, {"v1": (15, 15)})


def test_shared_layer_is_counted_once_on_disk_by_the_tag_with_fewest_layers() -> None:
    usage = figures(listing(
        {"base": {"1": ["b"]}, "app": {"1": ["b", "app1"], "2": ["b", "app2"]}},
        {"b": 100, "app1": 7, "app2": 9},
    ))
    assert usage["base"] == (100, 100, {"1": (100, 100)})
    assert usage["app"] == (216, 16, {"1": (107, 7), "2": (109, 9)})


def test_tie_on_layer_count_goes_to_the_first_tag_in_catalog_order() -> None:
    usage = figures(listing({"first": {"t": ["s", "f"]}, "second": {"t": ["s", "g"]}}, {"s": 50, "f": 1, "g": 2}))
    assert usage["first"][1] == 51
    assert usage["second"][1] == 2


def test_retagged_image_occupies_no_extra_disk() -> None:
    usage = figures(listing({"r": {"latest": ["l1", "l2"], "v1": ["l1", "l2"]}}, {"l1": 3, "l2": 4}))
    assert usage["r"] == (14, 7, {"latest": (7, 7), "v1": (7, 0)})


def test_repository_whose_tags_failed_has_no_figures_and_takes_no_layers() -> None:
    usage = figures(listing({"broken": None, "ok": {"t": ["x"]}}, {"x": 8}))
    assert usage["broken"] == (None, None, None)
    assert usage["ok"] == (8, 8, {"t": (8, 8)})


def test_repository_without_tags_is_zero() -> None:
    assert figures(listing({"empty": {}}, {}))["empty"] == (0, 0, {})


def test_disk_sizes_add_up_to_the_distinct_layers_of_the_registry() -> None:
    rng = random.Random(7)
    sizes = {f"l{i}": rng.randint(1, 10_000) for i in range(40)}
    repos = {
        f"r{r}": {f"t{t}": rng.sample(sorted(sizes), rng.randint(1, 8)) for t in range(rng.randint(0, 4))}
        for r in range(15)
    }
    usage = compute_usage(listing(repos, sizes))
    used = {layer for tags in repos.values() for layers in tags.values() for layer in layers}
    assert sum(repo.disk_size or 0 for repo in usage) == sum(sizes[layer] for layer in used)


def library_figures(repos: dict[str, dict[str, list[str]] | None], sizes: dict[str, int]) -> dict[str, object]:
    """What gitlab-registry-usage computes from the same crawl (fed in without a registry)."""
    registry = GitLabRegistry("http://unused/", "http://unused/", "u", "p")
    registry._registry_catalog = list(repos)
    registry._repository_layers = repos
    registry._layer_sizes = sizes
    return {
        name: (registry.repository_sizes[name], registry.repository_disk_sizes[name],
               None if registry.tag_sizes[name] is None else {
                   tag: (registry.tag_sizes[name][tag], registry.tag_disk_sizes[name][tag])
                   for tag in registry.tag_sizes[name]})
        for name in repos
    }


@pytest.mark.parametrize("seed", range(25))
def test_figures_equal_gitlab_registry_usage_on_random_registries(seed: int) -> None:
    rng = random.Random(seed)
    sizes = {f"sha256:{i:04d}": rng.randint(0, 5000) for i in range(rng.randint(1, 30))}
    repos: dict[str, dict[str, list[str]] | None] = {}
    for r in range(rng.randint(1, 10)):
        if rng.random() < 0.1:
            repos[f"g/r{r}"] = None
            continue
        repos[f"g/r{r}"] = {
            f"t{t}": list(dict.fromkeys(rng.choices(sorted(sizes), k=rng.randint(1, 6))))
            for t in range(rng.randint(0, 5))
        }
    assert figures(listing(repos, sizes)) == library_figures(repos, sizes)


def test_snapshot_finds_repositories_and_tags_by_name() -> None:
    snapshot = build_snapshot(listing({"g/p": {"v1": ["x"]}}, {"x": 1}), timestamp=12.5)
    repository = snapshot.repository("g/p")
    assert snapshot.timestamp == 12.5
    assert repository is not None and repository.tag("v1") is not None
    assert snapshot.repository("g") is None and repository.tag("v2") is None


def unique_figures(result: Listing) -> dict[str, tuple[int | None, dict[str, int] | None]]:
    return {
        repo.name: (repo.unique_size, None if repo.tags is None else {t.name: t.unique_size for t in repo.tags})
        for repo in compute_usage(result)
    }


def test_unique_size_is_what_deleting_frees() -> None:
    usage = unique_figures(listing(
        {"base": {"1": ["b"]},
         "app": {"1": ["b", "shared-in-app", "own1"], "2": ["b", "shared-in-app", "own2"], "alias": ["b", "own2"]}},
        {"b": 100, "shared-in-app": 40, "own1": 7, "own2": 9},
    ))
    assert usage["base"] == (0, {"1": 0})
    # Deleting tag 1 frees own1 only; "2" and "alias" share own2, so neither frees it alone.
    assert usage["app"] == (56, {"1": 7, "2": 0, "alias": 0})


def test_retagged_image_frees_nothing_until_both_tags_go() -> None:
    usage = unique_figures(listing({"r": {"latest": ["l1"], "v1": ["l1"]}}, {"l1": 3}))
    assert usage["r"] == (3, {"latest": 0, "v1": 0})


@pytest.mark.parametrize("seed", range(10))
def test_unique_sizes_match_their_definition_on_random_registries(seed: int) -> None:
    rng = random.Random(seed)
    sizes = {f"l{i}": rng.randint(1, 1000) for i in range(20)}
    repos = {f"r{r}": {f"t{t}": rng.sample(sorted(sizes), rng.randint(1, 5)) for t in range(rng.randint(0, 4))}
             for r in range(8)}
    usage = unique_figures(listing(repos, sizes))
    for name, tags in repos.items():
        elsewhere = {layer for other, other_tags in repos.items() if other != name
                     for layers in other_tags.values() for layer in layers}
        mine = {layer for layers in tags.values() for layer in layers}
        assert usage[name][0] == sum(sizes[layer] for layer in mine - elsewhere)
        for tag, layers in tags.items():
            others = elsewhere | {layer for other_tag, other_layers in tags.items() if other_tag != tag
                                  for layer in other_layers}
            tag_figures = usage[name][1]
            assert tag_figures is not None
            assert tag_figures[tag] == sum(sizes[layer] for layer in set(layers) - others)


def first_seen(snapshot: Snapshot) -> dict[str, float | None]:
    return {f"{repo.name}:{tag.name}": tag.first_seen for repo in snapshot.repositories for tag in repo.tags or ()}


def crawl(tags: Mapping[str, str | None], created: float | None = None) -> Listing:
    """One repository per "repository:tag" key, each tag at the digest given (``None``: the library backend)."""
    repositories: dict[str, list[ImageListing]] = {}
    for name, digest in tags.items():
        repository, tag = name.split(":")
        repositories.setdefault(repository, []).append(ImageListing(tag, ("l",), digest=digest, created=created))
    return Listing(tuple(RepositoryListing(name, tuple(images)) for name, images in repositories.items()), {"l": 1})


def test_first_seen_is_the_snapshots_time_without_a_previous_snapshot() -> None:
    snapshot = build_snapshot(crawl({"a:v1": "sha256:1", "a:v2": None}), 100.0)
    assert first_seen(snapshot) == {"a:v1": 100.0, "a:v2": 100.0}


def test_first_seen_is_kept_at_the_same_digest_and_renewed_at_another_or_for_a_new_tag() -> None:
    first = build_snapshot(crawl({"a:same": "sha256:1", "a:moved": "sha256:2", "b:same": "sha256:1"}), 100.0)
    second = build_snapshot(
        crawl({"a:same": "sha256:1", "a:moved": "sha256:3", "b:same": "sha256:1", "b:new": "sha256:1"}), 200.0,
        previous=first)
    assert first_seen(second) == {"a:same": 100.0, "a:moved": 200.0, "b:same": 100.0, "b:new": 200.0}
    third = build_snapshot(crawl({"a:same": "sha256:1", "a:moved": "sha256:3"}), 300.0, previous=second)
    assert first_seen(third) == {"a:same": 100.0, "a:moved": 200.0}


def test_a_tag_deleted_and_pushed_again_is_seen_anew() -> None:
    first = build_snapshot(crawl({"a:v1": "sha256:1", "a:other": "sha256:2"}), 100.0)
    gone = build_snapshot(crawl({"a:other": "sha256:2"}), 200.0, previous=first)
    back = build_snapshot(crawl({"a:v1": "sha256:1", "a:other": "sha256:2"}), 300.0, previous=gone)
    assert first_seen(back) == {"a:v1": 300.0, "a:other": 100.0}


def test_without_digests_first_seen_is_kept_per_repository_and_tag() -> None:
    first = build_snapshot(crawl({"a:v1": None, "b:v1": None}), 100.0)
    second = build_snapshot(crawl({"a:v1": None, "b:v1": "sha256:1", "a:v2": None}), 200.0, previous=first)
    assert first_seen(second) == {"a:v1": 100.0, "b:v1": 200.0, "a:v2": 200.0}


def test_a_previous_snapshot_without_first_seen_gives_the_new_time() -> None:
    # A data file of format version 1 loads with first_seen None.
    old = build_snapshot(crawl({"a:v1": "sha256:1"}), 100.0)
    old_tags = old.repositories[0].tags or ()
    old = Snapshot(100.0, (dataclasses.replace(old.repositories[0], tags=tuple(
        dataclasses.replace(tag, first_seen=None) for tag in old_tags)),))
    assert first_seen(build_snapshot(crawl({"a:v1": "sha256:1"}), 200.0, previous=old)) == {"a:v1": 200.0}


def test_snapshot_carries_created_and_the_crawls_warnings() -> None:
    listing = dataclasses.replace(crawl({"a:v1": "sha256:1"}, created=1686825296.0),
                                  warnings=("a:v1: config sha256:c could not be read",))
    snapshot = build_snapshot(listing, 100.0)
    tag = snapshot.repositories[0].tag("v1")
    assert tag is not None and tag.created == 1686825296.0
    assert snapshot.warnings == ("a:v1: config sha256:c could not be read",)
    assert snapshot.errors == ()


# -- groups -------------------------------------------------------------------------------------------------------


def grouped(repos: Mapping[str, dict[str, list[str]] | None], sizes: dict[str, int]) -> Snapshot:
    return build_snapshot(listing(repos, sizes), 0.0)


def test_groups_are_first_segments_and_deeper_proper_prefixes() -> None:
    snapshot = grouped({"solo": {"t": ["a"]}, "g/p": {"t": ["a"]}, "g/p/sub": {"t": ["b"]}, "g/q/r/s": {}},
                       {"a": 1, "b": 2})
    assert [group.name for group in snapshot.groups] == ["g", "g/p", "g/q", "g/q/r", "solo"]
    assert group_names("g/q/r/s") == ["g", "g/q", "g/q/r"]
    assert group_names("solo") == ["solo"]


def test_a_group_covers_the_repository_named_so_and_those_below_it() -> None:
    snapshot = grouped({"g/p": {"t": ["a"]}, "g/p/sub": {"t": ["b"]}, "g/pq": {"t": ["c"]}},
                       {"a": 1, "b": 2, "c": 4})
    project = snapshot.group("g/p")
    assert project is not None
    assert (project.size, project.repository_count, project.repositories, project.subgroups) == (
        3, 2, ("g/p", "g/p/sub"), ())
    top = snapshot.group("g")
    assert top is not None and (top.subgroups, top.repositories) == (("g/p",), ("g/pq",))


def test_sibling_groups_disk_sizes_add_up_to_their_parent_and_the_top_level_to_the_registry() -> None:
    rng = random.Random(11)
    sizes = {f"l{i}": rng.randint(1, 10_000) for i in range(60)}
    names = ["a", "a/b", "a/b/c", "a/d", "a/d/e/f", "g/h", "g/i", "j", "k/l/m", "k/l/n", "k/o"]
    repos: dict[str, dict[str, list[str]] | None] = {
        name: {f"t{t}": rng.sample(sorted(sizes), rng.randint(1, 6)) for t in range(rng.randint(0, 3))}
        for name in names}
    repos["g/broken"] = None
    snapshot = grouped(repos, sizes)
    total = sum(repo.disk_size or 0 for repo in snapshot.repositories)
    assert sum(group.disk_size for group in snapshot.top_level_groups()) == total
    for group in snapshot.groups:
        parts = [snapshot.group(name) for name in group.subgroups]
        own = [snapshot.repository(name) for name in group.repositories]
        assert group.disk_size == sum(p.disk_size for p in parts if p) + sum(r.disk_size or 0 for r in own if r)
        assert group.repository_count == sum(p.repository_count for p in parts if p) + len(own)


def test_group_unique_size_is_the_layers_referenced_only_from_inside_it() -> None:
    rng = random.Random(5)
    sizes = {f"l{i}": rng.randint(1, 10_000) for i in range(50)}
    names = ["a", "a/b", "a/b/c", "a/bc", "a/d/e", "f", "f/g/h", "i/j"]
    repos = {name: {f"t{t}": rng.sample(sorted(sizes), rng.randint(1, 5)) for t in range(rng.randint(1, 3))}
             for name in names}
    snapshot = grouped(repos, sizes)
    for group in snapshot.groups:
        def inside(name: str, group: str = group.name) -> bool:
            return name == group or name.startswith(group + "/")
        referencing: dict[str, set[str]] = {}
        for name, tags in repos.items():
            for layers in tags.values():
                for layer in layers:
                    referencing.setdefault(layer, set()).add(name)
        expected = sum(sizes[layer] for layer, users in referencing.items() if all(map(inside, users)))
        assert group.unique_size == expected, group.name


def test_a_layer_shared_by_two_subgroups_is_unique_to_their_parent_only() -> None:
    snapshot = grouped({"g/a/x": {"t": ["shared", "own"]}, "g/b/y": {"t": ["shared"]}, "h": {"t": ["other"]}},
                       {"shared": 100, "own": 7, "other": 1})
    assert [(g.name, g.unique_size) for g in snapshot.groups] == [("g", 107), ("g/a", 7), ("g/b", 0), ("h", 1)]


def test_layer_table_lists_each_tags_layer_ids_with_their_sizes() -> None:
    snapshot = grouped({"r": {"one": ["x", "y"], "two": ["y"]}, "broken": None, "s": {"t": ["z", "x"]}},
                       {"x": 1, "y": 2, "z": 3})
    layers = snapshot.layers
    assert layers is not None and layers.tag_count == 3
    assert [[layers.sizes[i] for i in layers.tag_layers(n)] for n in range(3)] == [[1, 2], [2], [3, 1]]


def test_a_new_or_moved_tag_is_first_seen_when_the_registry_published_it() -> None:
    def at(tags: dict[str, tuple[str, float | None]]) -> Listing:
        listed = crawl({name: digest for name, (digest, _) in tags.items()})
        published = {name.split(":")[1]: when for name, (_, when) in tags.items()}
        return dataclasses.replace(listed, repositories=tuple(
            dataclasses.replace(repo, images=tuple(dataclasses.replace(image, published=published[image.tag])
                                                   for image in repo.images or ()))
            for repo in listed.repositories))

    first = build_snapshot(at({"a:old": ("sha256:1", 50.0), "a:unknown": ("sha256:2", None),
                               "a:ahead": ("sha256:3", 150.0)}), 100.0)
    assert first_seen(first) == {"a:old": 50.0, "a:unknown": 100.0, "a:ahead": 100.0}
    second = build_snapshot(at({"a:old": ("sha256:1", 60.0), "a:unknown": ("sha256:2", 70.0),
                                "a:ahead": ("sha256:4", 180.0), "a:new": ("sha256:5", 190.0)}), 200.0,
                            previous=first)
    # Kept at the same digest, whatever the registry says now; published where moved or new.
    assert first_seen(second) == {"a:old": 50.0, "a:unknown": 100.0, "a:ahead": 180.0, "a:new": 190.0}
