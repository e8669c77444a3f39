"""The demo's sample registry: images with build times spread over the last 200 days, one reproducible build."""

from __future__ import annotations

from gitlab_registry_usage_rest.demo import demo_listing

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
