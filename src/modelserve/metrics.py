"""Prometheus metrics, correct across worker processes and cheap on the request path.

prometheus_client's multiprocess mode keeps each worker's values in a memory-mapped file and
sums them on scrape. One update there costs 1.5-3.5 µs, several per request; so the request
path only bumps plain Python counters here, and :meth:`Metrics.flush` moves the deltas into
prometheus_client every second (and when a worker scrapes or exits). A scrape therefore sees
other workers' requests up to one flush interval late.

All names carry the ``modelserve_`` prefix, durations are in seconds, counters end in
``_total``. ``model`` and ``version`` labels only ever take the names and versions of models
this service serves (an unknown model in a request is counted as ``model=""``), so a caller
cannot create new series.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from pathlib import Path
from typing import Any

__all__ = ["LATENCY_BUCKETS", "Metrics", "ModelStats", "mark_process_dead"]

# Single-digit-millisecond services need resolution below 5 ms (OpenTelemetry's first bucket).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _Histogram:
    """Bucket counts and a sum, kept in plain Python between flushes."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0


class ModelStats:
    """What the request path counts for one model version between two flushes."""

    __slots__ = ("labels", "predict", "request", "statuses")

    def __init__(self, model: str, version: str) -> None:
        self.labels = (model, version)
        self.statuses: dict[int, int] = {}
        self.request = _Histogram()
        self.predict = _Histogram()

    def observe(self, status: int, seconds: float, predict_seconds: float | None) -> None:
        """Count one answered request (the hot path: plain dict and list updates only)."""
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        hist = self.request
        hist.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist.total += seconds
        if predict_seconds is not None:
            hist = self.predict
            hist.counts[bisect_left(LATENCY_BUCKETS, predict_seconds)] += 1
            hist.total += predict_seconds


class Metrics:
    """The metrics of one worker process, backed by a multiprocess directory when given."""

    def __init__(self, multiprocess_dir: Path | str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        self.multiprocess_dir = str(multiprocess_dir) if multiprocess_dir else None
        if self.multiprocess_dir:
            # prometheus_client picks its value store when it is imported; make sure this
            # process writes to the shared directory even if it was imported earlier.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.multiprocess_dir
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version")
        self.requests = Counter(
            "modelserve_requests",
            "Inference requests by model, version and HTTP status.",
            (*labels, "status"),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "modelserve_request_duration_seconds",
            "Time from a complete request to its response, by model and version.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predict_seconds = Histogram(
            "modelserve_predict_duration_seconds",
            "Time spent in the model's predict, by model and version.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "modelserve_requests_in_flight",
            "Requests received and not yet answered.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.load_seconds = Histogram(
            "modelserve_model_load_duration_seconds",
            "Time to fetch, load and self-test a model version.",
            (*labels, "outcome"),
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.selftests = Counter(
            "modelserve_selftests",
            "Load-time self-test runs by outcome (pass, fail, warn).",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.model_ready = Gauge(
            "modelserve_model_ready",
            "1 when the model version is loaded and self-tested in every live worker.",
            labels,
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self._stats: dict[tuple[str, str], ModelStats] = {}
        self.inflight_now = 0
        #: Requests refused before a model was chosen (bad JSON, unknown model).
        self.unrouted = self.stats_for("", "")

    def stats_for(self, model: str, version: str) -> ModelStats:
        """The request counters of one served model version (made once, then reused)."""
        stats = self._stats.get((model, version))
        if stats is None:
            stats = self._stats[(model, version)] = ModelStats(model, version)
        return stats

    def flush(self) -> None:
        """Move what the request path counted into prometheus_client's store."""
        for stats in self._stats.values():
            statuses, stats.statuses = stats.statuses, {}
            request, stats.request = stats.request, _Histogram()
            predict, stats.predict = stats.predict, _Histogram()
            for status, n in statuses.items():
                self.requests.labels(*stats.labels, str(status)).inc(n)
            if request.total or any(request.counts):
                _add_to_histogram(self.request_seconds.labels(*stats.labels), request)
            if predict.total or any(predict.counts):
                _add_to_histogram(self.predict_seconds.labels(*stats.labels), predict)
        self.in_flight.set(self.inflight_now)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every worker's metrics and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        self.flush()
        if not self.multiprocess_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _add_to_histogram(child: Any, hist: _Histogram) -> None:
    # prometheus_client's Histogram has no bulk update; observe() per request is what costs.
    # Its children keep one value per bucket (non-cumulative) and a sum: add to those.
    # tests/server/test_metrics.py checks the exposition against observe() for the same data.
    for index, n in enumerate(hist.counts):
        if n:
            child._buckets[index].inc(n)
    child._sum.inc(hist.total)


def mark_process_dead(multiprocess_dir: str, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]
