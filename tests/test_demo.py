"""The demo's sample registry: images with build times spread over the last 200 days, one reproducible build."""

from __future__ import annotations

from gitlab_registry_usage_rest.cleanup import CleanupIndex, cleanup_input, parse_policy
from gitlab_registry_usage_rest.demo import demo_listing
from gitlab_registry_usage_rest.sizes import build_snapshot

NOW = 1_800_000_000.0
DAY = 86400.0


def test_demo_images_were_built_within_200_days_but_one_reproducible_build() -> None:
    created = {f"{repo.name}:{image.tag}": image.created
               for repo in demo_listing(NOW).repositories for image in repo.images or ()}
    assert [name for name, when in created.items() if when is None] == ["legacy/app:final"]
    times = [when for when in created.values() if when is not None]
    assert all(NOW - 200 * DAY <= when < NOW for when in times)
    assert max(times) - min(times) > 190 * DAY, "spread, so the pages show ages from hours to months"


def test_demo_tags_on_one_manifest_have_one_build_time() -> None:
    by_digest: dict[str | None, set[float | None]] = {}
    for repo in demo_listing(NOW).repositories:
        for image in repo.images or ():
            by_digest.setdefault(image.digest, set()).add(image.created)
    assert all(len(times) == 1 for times in by_digest.values())


def test_gitlabs_usual_policy_on_the_demo_deletes_old_commit_builds_and_frees_their_own_layers() -> None:
    snapshot = build_snapshot(demo_listing(NOW), NOW)
    result = CleanupIndex(cleanup_input(snapshot)).simulate(parse_policy({"keep_n": "5", "older_than": "30d"}), NOW)
    assert {entry.name for entry in result.repositories} == {"apps/web/backend", "apps/web/frontend"}
    for entry in result.repositories:
        repository = snapshot.repository(entry.name)
        assert repository is not None and repository.tags is not None
        newest = sorted((tag for tag in repository.tags if tag.name != "latest"),
                        key=lambda tag: -(tag.created or 0))[5:]
        assert list(entry.tags) == [tag.name for tag in newest if (tag.created or NOW) < NOW - 30 * DAY]
    assert result.tags_deleted >= 20
    # Only the builds' own layers go: the shared stack stays referenced by the kept builds.
    assert result.freed_size == sum(entry.freed_size for entry in result.repositories) > 100 * 2**20


def test_demo_groups_have_subgroups_and_their_disk_sizes_add_up_to_the_registry() -> None:
    snapshot = build_snapshot(demo_listing(NOW), NOW)
    apps = snapshot.group("apps")
    assert apps is not None and apps.subgroups == ("apps/web",) and apps.repositories == ("apps/api",)
    assert sum(group.disk_size for group in snapshot.top_level_groups()) == sum(
        repository.disk_size or 0 for repository in snapshot.repositories)
