"""Size computation: ours (linear) against gitlab-registry-usage's own, on the same synthetic registry.

    python3 -m bench.sizes [--tags 100000] [--give-up 60]

Each registry has repositories of 10 tags; every tag has 10 layers: 3 base layers shared across the
registry and 7 drawn from its repository's own 12. The library computes in a child process that is
stopped after --give-up seconds. Prints one table row per size.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time

from gitlab_registry_usage.registry.high_level_api import GitLabRegistry

from gitlab_registry_usage_rest.model import ImageListing, Listing, RepositoryListing
from gitlab_registry_usage_rest.sizes import compute_usage

TAGS_PER_REPOSITORY = 10


def synthetic(tags: int, seed: int = 1) -> tuple[dict[str, dict[str, list[str]]], dict[str, int]]:
    rng = random.Random(seed)
    base = [f"sha256:base{n:04d}" for n in range(100)]
    sizes = {digest: rng.randint(10_000_000, 50_000_000) for digest in base}
    repositories: dict[str, dict[str, list[str]]] = {}
    for repo in range(max(1, tags // TAGS_PER_REPOSITORY)):
        own = [f"sha256:r{repo:06d}l{n:02d}" for n in range(12)]
        sizes.update((digest, rng.randint(1_000, 20_000_000)) for digest in own)
        repositories[f"group{repo % 50}/project{repo}"] = {
            f"v{tag}": rng.sample(base, 3) + rng.sample(own, 7) for tag in range(TAGS_PER_REPOSITORY)
        }
    return repositories, sizes


def ours(repositories: dict[str, dict[str, list[str]]], sizes: dict[str, int]) -> float:
    listing = Listing(
        tuple(RepositoryListing(name, tuple(ImageListing(tag, tuple(layers)) for tag, layers in tags.items()))
              for name, tags in repositories.items()),
        sizes,
    )
    started = time.perf_counter()
    compute_usage(listing)
    return time.perf_counter() - started


def _library(repositories: dict[str, dict[str, list[str]]], sizes: dict[str, int],
             result: multiprocessing.Queue[float]) -> None:
    registry = GitLabRegistry("http://unused/", "http://unused/", "u", "p")
    registry._registry_catalog = list(repositories)
    registry._repository_layers = repositories
    registry._layer_sizes = sizes
    started = time.perf_counter()
    _ = (registry.tag_sizes, registry.tag_disk_sizes, registry.repository_sizes, registry.repository_disk_sizes)
    result.put(time.perf_counter() - started)


def library(repositories: dict[str, dict[str, list[str]]], sizes: dict[str, int], give_up: float) -> float | None:
    """The library's seconds, or None if it had not finished after ``give_up`` seconds."""
    context = multiprocessing.get_context("fork")
    result: multiprocessing.Queue[float] = context.Queue()
    process = context.Process(target=_library, args=(repositories, sizes, result))
    process.start()
    process.join(give_up)
    if process.is_alive():
        process.terminate()
        process.join()
        return None
    return result.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tags", type=int, default=100_000, help="tags of the largest registry")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds to wait for the library")
    args = parser.parse_args()
    print(f"{'tags':>8} {'layers':>8} {'ours (s)':>9} {'library (s)':>12} {'library / ours':>15}")
    for tags in sorted({1_000, 5_000, 20_000, args.tags}):
        if tags > args.tags:
            continue
        repositories, sizes = synthetic(tags)
        mine = min(ours(repositories, sizes) for _ in range(3))
        theirs = library(repositories, sizes, args.give_up)
        shown = f"> {args.give_up:.0f} (gave up)" if theirs is None else f"{theirs:.2f}"
        ratio = f"> {args.give_up / mine:,.0f}x" if theirs is None else f"{theirs / mine:,.0f}x"
        print(f"{tags:>8,} {len(sizes):>8,} {mine:>9.3f} {shown:>12} {ratio:>15}", flush=True)


if __name__ == "__main__":
    main()
