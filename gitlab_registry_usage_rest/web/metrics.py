"""Prometheus metrics (prometheus_client): registry usage from the snapshot, refresh health, traffic.

A registry per application, not prometheus_client's module-level one, so several apps (and tests)
never share counters.

The snapshot's figures change only with the snapshot, so their text is rendered once per snapshot
and kept: a scrape concatenates those bytes with the live families (refresh state, registry and HTTP
requests), which are rendered at each scrape. The per-repository series name every repository, which
``/repositories`` keeps behind the login, so they are a part of their own that only an authorized
scrape gets; the registry-wide figures are the public part.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..model import Snapshot
from ..state import RefreshState, SnapshotHolder

PREFIX = "gitlab_registry_usage"


class _Families(Collector):
    """Already built families, in the shape ``generate_latest`` renders."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


@dataclass(frozen=True, slots=True)
class SnapshotText:
    """The exposition text of one snapshot's figures, rendered once: the public part and the per-repository one."""

    snapshot: Snapshot
    registry_wide: bytes
    per_repository: bytes


def render_snapshot(snapshot: Snapshot) -> SnapshotText:
    """Walk ``snapshot`` once: per-repository series and registry totals, as exposition text."""
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
    total_size = total_disk_size = tag_count = unreadable = 0
    for repository in snapshot.repositories:
        if repository.tags is None:
            unreadable += 1
            continue  # unreadable in the last crawl: no figure rather than a wrong one
        for field, family in per_repository.items():
            family.add_metric([repository.name], getattr(repository, field))
        tags.add_metric([repository.name], len(repository.tags))
        total_size += repository.size or 0
        total_disk_size += repository.disk_size or 0
        tag_count += len(repository.tags)
    registry_wide = (
        GaugeMetricFamily(f"{PREFIX}_size_bytes", "Sum of the sizes of all repositories", value=total_size),
        GaugeMetricFamily(f"{PREFIX}_disk_size_bytes", "Storage all repositories occupy", value=total_disk_size),
        GaugeMetricFamily(f"{PREFIX}_repositories", "Repositories in the registry",
                          value=len(snapshot.repositories)),
        GaugeMetricFamily(f"{PREFIX}_tags", "Tags in the registry", value=tag_count),
        GaugeMetricFamily(f"{PREFIX}_unreadable_repositories",
                          "Repositories whose tags or manifests could not be read in the last crawl",
                          value=unreadable),
        GaugeMetricFamily(f"{PREFIX}_data_timestamp_seconds", "When the served data was collected",
                          value=snapshot.timestamp),
    )
    return SnapshotText(
        snapshot,
        registry_wide=generate_latest(_Families(registry_wide)),
        per_repository=generate_latest(_Families((*per_repository.values(), tags))),
    )


class _LiveSeries(Collector):
    """What changes between snapshots, read at each scrape: refresh state and registry requests."""

    def __init__(self, refresh: RefreshState, registry_requests: Callable[[], dict[str, int]] | None) -> None:
        self._refresh = refresh
        self._registry_requests = registry_requests

    def collect(self) -> Iterator[Metric]:
        yield from self._refresh_metrics()
        if self._registry_requests is not None:
            requests = CounterMetricFamily(
                f"{PREFIX}_registry_requests", "Requests made to the registry and GitLab's token endpoint, "
                "by outcome (HTTP status or 'error')", labels=["outcome"])
            for outcome, count in sorted(self._registry_requests().items()):
                requests.add_metric([outcome], count)
            yield requests

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
        self._snapshots = snapshots
        # The live families only; the snapshot's are rendered apart, once per snapshot.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LiveSeries(refresh, registry_requests))
        self._http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests served, by endpoint and status",
            ["endpoint", "status"], registry=self.registry,
        )
        self._lock = threading.Lock()
        # Holds the snapshot it was rendered from until the next scrape after a refresh, as RenderCache does.
        self._rendered: SnapshotText | None = None

    def observe_request(self, endpoint: str, status: int) -> None:
        self._http_requests.labels(endpoint, str(status)).inc()

    def snapshot_text(self, snapshot: Snapshot) -> SnapshotText:
        """The rendered figures of ``snapshot``: rendered by the first scrape that sees it, however many
        scrape at the same time, then only looked up."""
        with self._lock:
            rendered = self._rendered
            if rendered is not None and rendered.snapshot is snapshot:
                return rendered
            rendered = render_snapshot(snapshot)
            if snapshot is self._snapshots.current():  # a scrape that began before a refresh keeps nothing
                self._rendered = rendered
            return rendered

    def render(self, *, per_repository: bool) -> tuple[bytes, str]:
        """The text exposition format and its content type; the per-repository series only if asked for."""
        live = generate_latest(self.registry)
        snapshot = self._snapshots.current()
        if snapshot is None:
            return live, CONTENT_TYPE_LATEST
        rendered = self.snapshot_text(snapshot)
        parts = (rendered.per_repository, rendered.registry_wide) if per_repository else (rendered.registry_wide,)
        return b"".join((*parts, live)), CONTENT_TYPE_LATEST
