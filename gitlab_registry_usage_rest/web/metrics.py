"""Prometheus metrics (prometheus_client): registry usage from the snapshot, refresh health, traffic.

A registry per application, not prometheus_client's module-level one, so several apps (and tests)
never share counters. Snapshot figures are read at scrape time by a custom collector: the data
changes only with the snapshot, and nothing is copied in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..state import RefreshState, SnapshotHolder

PREFIX = "gitlab_registry_usage"


class _SnapshotSeries(Collector):
    """Per-repository and total sizes from the current snapshot; refresh state; registry requests."""

    def __init__(self, snapshots: SnapshotHolder, refresh: RefreshState,
                 registry_requests: Callable[[], dict[str, int]] | None) -> None:
        self._snapshots = snapshots
        self._refresh = refresh
        self._registry_requests = registry_requests

    def collect(self) -> Iterator[Metric]:
        yield from self._usage()
        yield from self._refresh_metrics()
        if self._registry_requests is not None:
            requests = CounterMetricFamily(
                f"{PREFIX}_registry_requests", "Requests made to the registry and GitLab's token endpoint, "
                "by outcome (HTTP status or 'error')", labels=["outcome"])
            for outcome, count in sorted(self._registry_requests().items()):
                requests.add_metric([outcome], count)
            yield requests

    def _usage(self) -> Iterator[Metric]:
        snapshot = self._snapshots.current()
        if snapshot is None:
            return
        per_repository = {
            "size": GaugeMetricFamily(f"{PREFIX}_repository_size_bytes",
                                      "Sum of the sizes of the repository's tags", labels=["repository"]),
            "disk_size": GaugeMetricFamily(f"{PREFIX}_repository_disk_size_bytes",
                                           "Storage the repository occupies, shared layers counted once",
                                           labels=["repository"]),
            "unique_size": GaugeMetricFamily(f"{PREFIX}_repository_unique_size_bytes",
                                             "Storage that deleting the repository would free",
                                             labels=["repository"]),
        }
        tags = GaugeMetricFamily(f"{PREFIX}_repository_tags", "Tags in the repository", labels=["repository"])
        total_size = total_disk_size = tag_count = 0
        for repository in snapshot.repositories:
            if repository.tags is None:
                continue  # unreadable in the last crawl: no figure rather than a wrong one
            for field, family in per_repository.items():
                family.add_metric([repository.name], getattr(repository, field))
            tags.add_metric([repository.name], len(repository.tags))
            total_size += repository.size or 0
            total_disk_size += repository.disk_size or 0
            tag_count += len(repository.tags)
        yield from per_repository.values()
        yield tags
        yield GaugeMetricFamily(f"{PREFIX}_size_bytes", "Sum of the sizes of all repositories", value=total_size)
        yield GaugeMetricFamily(f"{PREFIX}_disk_size_bytes", "Storage all repositories occupy",
                                value=total_disk_size)
        yield GaugeMetricFamily(f"{PREFIX}_repositories", "Repositories in the registry",
                                value=len(snapshot.repositories))
        yield GaugeMetricFamily(f"{PREFIX}_tags", "Tags in the registry", value=tag_count)
        yield GaugeMetricFamily(f"{PREFIX}_unreadable_repositories",
                                "Repositories whose tags or manifests could not be read in the last crawl",
                                value=sum(repository.tags is None for repository in snapshot.repositories))
        yield GaugeMetricFamily(f"{PREFIX}_data_timestamp_seconds", "When the served data was collected",
                                value=snapshot.timestamp)

    def _refresh_metrics(self) -> Iterator[Metric]:
        status = self._refresh.current()
        yield GaugeMetricFamily(f"{PREFIX}_refresh_running", "1 while a refresh runs", value=int(status.running))
        yield CounterMetricFamily(f"{PREFIX}_refreshes", "Refreshes finished", value=status.refreshes)
        yield CounterMetricFamily(f"{PREFIX}_refresh_failures", "Refreshes that failed as a whole",
                                  value=status.failures)
        if status.duration is not None:
            yield GaugeMetricFamily(f"{PREFIX}_refresh_duration_seconds", "Duration of the last refresh",
                                    value=status.duration)
        if status.last_success is not None:
            yield GaugeMetricFamily(f"{PREFIX}_refresh_last_success_timestamp_seconds",
                                    "When the last successful refresh finished", value=status.last_success)


class Metrics:
    """The application's metrics: what the snapshot says, plus the HTTP requests it served."""

    def __init__(self, snapshots: SnapshotHolder, refresh: RefreshState,
                 registry_requests: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotSeries(snapshots, refresh, registry_requests))
        self._http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests served, by endpoint and status",
            ["endpoint", "status"], registry=self.registry,
        )

    def observe_request(self, endpoint: str, status: int) -> None:
        self._http_requests.labels(endpoint, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
