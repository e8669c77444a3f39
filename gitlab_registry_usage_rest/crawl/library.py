"""Crawler backed by the gitlab-registry-usage library (``GitLabRegistry``), the original's engine."""

from __future__ import annotations

from gitlab_registry_usage.registry.high_level_api import GitLabRegistry

from ..model import ImageListing, Listing, RepositoryListing
from .base import ProgressCallback


class LibraryCrawler:
    """Crawls with ``GitLabRegistry.update()`` and converts its dictionaries into a ``Listing``."""

    def __init__(self, gitlab_base_url: str, registry_base_url: str, username: str, access_token: str,
                 progress: ProgressCallback | None = None) -> None:
        # ``progress`` is accepted as every crawler factory passes it, but the library reports none.
        self._args = (gitlab_base_url, registry_base_url, username, access_token)

    def cancel(self) -> None:
        """The library cannot be interrupted; the refresh thread is a daemon and ends with the process."""

    def crawl(self) -> Listing:
        registry = GitLabRegistry(*self._args)
        registry.update()
        repositories = []
        errors = []
        for name in registry.registry_catalog:
            tag_layers = registry.repository_layers.get(name)
            if tag_layers is None:
                errors.append(f"{name}: its tags or manifests could not be read")
                repositories.append(RepositoryListing(name, None))
                continue
            images = tuple(ImageListing(tag, tuple(dict.fromkeys(layers))) for tag, layers in tag_layers.items())
            repositories.append(RepositoryListing(name, images))
        return Listing(tuple(repositories), dict(registry.layer_sizes), tuple(errors))
