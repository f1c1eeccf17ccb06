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

import glob
import os
from pathlib import Path
from typing import Any

__all__ = ["LATENCY_BUCKETS", "Metrics", "ModelStats", "mark_process_dead"]

# Single-digit-millisecond services need resolution below 5 ms (OpenTelemetry's first bucket).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


_NO_COUNTS = (0,) * (len(LATENCY_BUCKETS) + 1)
_BOUNDS: list[float] = list(LATENCY_BUCKETS)  # a list: compiled, a tuple is boxed per loop


def bucket_of(seconds: float) -> int:
    """The index of the first latency bucket that holds ``seconds`` (``len(LATENCY_BUCKETS)``
    above the largest). A scan from the smallest: most requests stop at the first buckets."""
    index = 0
    for bound in _BOUNDS:
        if seconds <= bound:
            return index
        index += 1
    return index


class ModelStats:
    """What the request path counts for one model version between two flushes.

    Plain attributes and lists, updated in place: :meth:`observe` runs once per request.
    ``request_counts`` and ``predict_counts`` hold one count per latency bucket (the last one
    for everything above the largest bucket), not cumulative.
    """

    __slots__ = (
        "labels",
        "ok",
        "predict_counts",
        "predict_sum",
        "request_counts",
        "request_sum",
        "statuses",
    )

    def __init__(self, model: str, version: str) -> None:
        self.labels = (model, version)
        self.ok = 0  # answers with status 200; the other statuses are counted in `statuses`
        self.statuses: dict[int, int] = {}
        self.request_counts = list(_NO_COUNTS)
        self.request_sum = 0.0
        self.predict_counts = list(_NO_COUNTS)
        self.predict_sum = 0.0

    def observe(self, status: int, seconds: float, predict_seconds: float | None) -> None:
        """Count one answered request."""
        if status == 200:
            self.ok += 1
        else:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        self.request_counts[bucket_of(seconds)] += 1
        self.request_sum += seconds
        if predict_seconds is not None:
            self.predict_counts[bucket_of(predict_seconds)] += 1
            self.predict_sum += predict_seconds

    def take(self) -> tuple[dict[int, int], list[int], float, list[int], float]:
        """Everything counted since the last call (statuses, request and predict buckets and
        sums), and start again from zero."""
        statuses, self.statuses = self.statuses, {}
        if self.ok:
            statuses[200] = statuses.get(200, 0) + self.ok
            self.ok = 0
        taken = (
            statuses,
            self.request_counts,
            self.request_sum,
            self.predict_counts,
            self.predict_sum,
        )
        self.request_counts, self.request_sum = list(_NO_COUNTS), 0.0
        self.predict_counts, self.predict_sum = list(_NO_COUNTS), 0.0
        return taken


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
            statuses, request_counts, request_sum, predict_counts, predict_sum = stats.take()
            for status, n in statuses.items():
                self.requests.labels(*stats.labels, str(status)).inc(n)
            if request_sum or any(request_counts):
                _add_to_histogram(
                    self.request_seconds.labels(*stats.labels), request_counts, request_sum
                )
            if predict_sum or any(predict_counts):
                _add_to_histogram(
                    self.predict_seconds.labels(*stats.labels), predict_counts, predict_sum
                )
        self.in_flight.set(self.inflight_now)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every worker's metrics and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        self.flush()
        if not self.multiprocess_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        registry.register(_StoreCollector(self.multiprocess_dir))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _add_to_histogram(child: Any, counts: list[int], total: float) -> None:
    # prometheus_client's Histogram has no bulk update; observe() per request is what costs.
    # Its children keep one value per bucket (non-cumulative) and a sum: add to those.
    # tests/server/test_serve_metrics.py checks the exposition against the requests made.
    for index, n in enumerate(counts):
        if n:
            child._buckets[index].inc(n)
    child._sum.inc(total)


class _StoreCollector:
    """prometheus_client's multiprocess collector, minus the files not written yet.

    A worker that has just started creates its files empty and then sizes them; a scrape
    that reads one in between would fail as a whole (``struct.error``). Skipping it loses
    nothing: the file holds no values yet.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [f for f in glob.glob(os.path.join(self.path, "*.db")) if _written(f)]
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _written(file: str) -> bool:
    try:
        return os.path.getsize(file) >= 8  # the used-bytes header, at least
    except OSError:  # removed meanwhile (a dead worker's live gauges)
        return False


def mark_process_dead(multiprocess_dir: str, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]
