"""gitlab-registry-usage-rest: storage used by a GitLab container registry, served as HAL JSON."""

from ._version import __version__

__all__ = ["__version__"]
