"""gitlab-registry-usage-rest: storage used by a GitLab container registry, served as HAL JSON."""

# The one place the version is written: pyproject.toml reads it from here, and so does ``-V``.
__version__ = "0.4.0"

__all__ = ["__version__"]
