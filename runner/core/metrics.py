"""Prometheus metrics (`GET /metrics`): what operators graph and alert on.

One registry per app (not the process-wide default), so several apps in one process (tests)
do not share counters. Labels never carry repository names or anything from a payload: only
small fixed sets (event families, outcomes, jobs, states), and on every sample the node that
exports it (`server.node_name`), since behind one upstream any node may answer a scrape.

The figure no public runner exports is `hobotnica_push_to_start_seconds`: from the moment a
webhook arrived to the moment `make` started.
"""

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

# From a warm-mirror start (~15 ms) to builds that waited behind others for minutes.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
KNOWN_EVENTS = frozenset({"push", "pull_request", "ping"})

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _LabelledByNode:
    """The registry's metrics, each sample labelled with the node."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self._registry = registry
        self._node = node

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [
                sample._replace(labels={**sample.labels, "node": self._node})
                for sample in metric.samples
            ]
            yield metric


class Metrics:
    def __init__(self, node: str = "") -> None:
        self.registry = CollectorRegistry()
        self._exported = _LabelledByNode(self.registry, node) if node else self.registry
        self.deliveries = Counter(
            "hobotnica_deliveries",
            "Webhook deliveries by event and outcome (accepted, duplicate, ignored, rejected).",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.builds = Counter(
            "hobotnica_builds_finished",
            "Builds that reached a final state.",
            ["job", "state"],
            registry=self.registry,
        )
        self.queue = Gauge(
            "hobotnica_builds",
            "Builds in the store by state (queued, running), all daemons sharing it.",
            ["state"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "hobotnica_build_duration_seconds",
            "How long `make` ran, by job.",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.push_to_start = Histogram(
            "hobotnica_push_to_start_seconds",
            "From the webhook's arrival to `make` starting.",
            ["job"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "hobotnica_queue_wait_seconds",
            "From a build being queued to it being started.",
            ["job"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.status_posts = Counter(
            "hobotnica_status_posts",
            "Commit status posts by outcome (sent, rejected, retried, rate_limited).",
            ["outcome"],
            registry=self.registry,
        )
        self.rate_limit_wait = Counter(
            "hobotnica_rate_limit_wait_seconds",
            "Seconds GitHub asked Hobotnica to wait before posting again.",
            registry=self.registry,
        )

    def delivery(self, event: str, outcome: str) -> None:
        family = event if event in KNOWN_EVENTS else "other"
        self.deliveries.labels(family, outcome.split(":", 1)[0]).inc()

    def render(self) -> bytes:
        return generate_latest(self._exported)
