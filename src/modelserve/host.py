"""The model host: the versions a process serves, how they get loaded, and their status.

For each model in the configuration the host resolves the configured alias or version in the
registry, fetches the artifact into the local cache (digest-verified), loads it with the
service's current model class and runs the load-time self-test (checkpoint 2): the canaries
stored with the version are compared with their hand-written expectations and with the golden
outputs recorded at publish. With the ``refuse`` policy a failing version never becomes
ready; with ``warn`` it serves and its status says why it should not.

The same loader is the CI checkpoint (``modelserve selftest``): it loads every served model's
configured version with the repository's current code and environment.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson

from modelserve.config import ModelConfig, Settings
from modelserve.errors import ModelserveError, SelfTestFailedError
from modelserve.metrics import ModelStats
from modelserve.model import Model, TestCase, import_model_class, load_model, test_cases
from modelserve.registry import Manifest, Registry
from modelserve.selftest import SelfTestReport, Tolerance, run_selftest, to_jsonable

__all__ = ["ModelHost", "ModelStatus", "ResidentModel", "load_version"]

log = logging.getLogger("modelserve.host")

State = Literal["loading", "ready", "failed"]


@dataclass
class ResidentModel:
    """A loaded, self-tested model version, ready to predict."""

    name: str
    version: int
    model: Model
    model_cls: type[Model]
    manifest: Manifest
    report: SelfTestReport
    load_seconds: float
    inline: bool = True
    #: True when the executor is "auto": a model that turns out slow moves off the loop.
    adaptive: bool = False
    slow_streak: int = 0
    warning: str | None = None
    #: The request counters of this version (set by the host when it has metrics).
    stats: ModelStats | None = None
    #: ``str(version)``, kept once for labels and responses on the request path.
    version_label: str = field(init=False)

    def __post_init__(self) -> None:
        self.version_label = str(self.version)


@dataclass
class ModelStatus:
    """What ``GET /models`` and the OIP ready endpoints say about one configured model."""

    name: str
    reference: str
    state: State = "loading"
    version: int | None = None
    reason: str | None = None
    warning: str | None = None
    selftest: dict[str, Any] | None = None
    load_seconds: float | None = None
    executor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        values = ((item.name, getattr(self, item.name)) for item in fields(self))
        return {name: value for name, value in values if value is not None}


def _merge_cases(stored: list[dict[str, Any]], current: Iterable[TestCase]) -> list[TestCase]:
    """The version's stored canaries, with the current code's expectations and new canaries."""
    cases = [
        TestCase(c["input"], c["expected"], str(c.get("name", i))) for i, c in enumerate(stored)
    ]
    index = {_key(case.input): i for i, case in enumerate(cases)}
    for case in current:
        key = _key(to_jsonable(case.input))
        if key in index:
            old = cases[index[key]]
            cases[index[key]] = TestCase(old.input, to_jsonable(case.expected), old.name)
        else:
            cases.append(case)
    return cases


def _key(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def load_version(
    registry: Registry,
    name: str,
    config: ModelConfig,
    *,
    manifest: Manifest | None = None,
) -> ResidentModel:
    """Resolve, fetch, load and self-test one model version (checkpoints 2 and 3).

    Raises :class:`SelfTestFailedError` (with the report) when the policy is ``refuse`` and a
    case fails; with ``warn`` the failure is returned as the resident model's warning.
    """
    started = time.perf_counter()
    manifest = manifest or registry.get(name, config.reference)
    cls = import_model_class(config.class_path)
    path = registry.fetch(manifest)
    model = load_model(cls, path, f"{name} v{manifest.version}")
    tolerance = Tolerance.for_model(cls, atol=config.atol, rtol=config.rtol)
    stored = list(manifest.test_data)
    cases = _merge_cases(stored, test_cases(model))
    golden = list(manifest.golden) + [None] * (len(cases) - len(stored))
    report = run_selftest(
        model, cases, tolerance, name=name, version=manifest.version, golden=golden
    )
    policy = config.selftest_policy or cls.selftest_policy
    warning = None
    if not report.passed:
        if policy == "refuse":
            raise SelfTestFailedError(f"self-test failed: {report.summary()}", report)
        warning = f"self-test failed, serving anyway (policy warn): {report.summary()}"
    return ResidentModel(
        name=name,
        version=manifest.version,
        model=model,
        model_cls=cls,
        manifest=manifest,
        report=report,
        load_seconds=time.perf_counter() - started,
        warning=warning,
    )


def _typical_predict_seconds(report: SelfTestReport) -> float:
    # The median canary: the first call into a library is often cold (lazy imports, caches)
    # and says little about the steady state; a slow steady state is caught on the request
    # path too (the data plane moves a model off the event loop when predict gets slow).
    times = sorted(case.seconds for case in report.cases)
    return times[len(times) // 2] if times else 0.0


class ModelHost:
    """Loads the configured models in the background and holds the resident versions.

    Lookups on the request path are one dict access; a model appears in :attr:`resident`
    only once it is loaded and self-tested (or serving under the ``warn`` policy).
    """

    def __init__(
        self,
        settings: Settings,
        registry_factory: Callable[[], Registry],
        *,
        metrics: Any = None,
    ) -> None:
        self.settings = settings
        self.registry_factory = registry_factory
        self.metrics = metrics
        self.resident: dict[str, ResidentModel] = {}
        self.status: dict[str, ModelStatus] = {
            name: ModelStatus(name=name, reference=str(cfg.reference))
            for name, cfg in settings.models.items()
        }
        self.ready = not settings.models
        self._loader: threading.Thread | None = None

    def start(self, on_done: Callable[[], None] | None = None) -> None:
        """Load every configured model in a background thread (liveness answers meanwhile).

        ``on_done`` is called from that thread once every model is loaded or has failed.
        """

        def load() -> None:
            try:
                self.load_all()
            finally:
                if on_done is not None:
                    on_done()

        self._loader = threading.Thread(target=load, name="modelserve-loader", daemon=True)
        self._loader.start()

    def load_all(self) -> None:
        """Load every configured model, one after the other, recording each outcome."""
        registry: Registry | None = None
        try:
            registry = self.registry_factory()
            for name, config in self.settings.models.items():
                self._load_one(registry, name, config)
        except ModelserveError as exc:
            for status in self.status.values():
                if status.state == "loading":
                    status.state, status.reason = "failed", str(exc)
            log.error("registry unavailable, models not loaded", extra={"reason": str(exc)})
        finally:
            if registry is not None:
                registry.close()
        self.ready = all(s.state == "ready" for s in self.status.values())
        states = {name: status.state for name, status in self.status.items()}
        log.info("models loaded", extra={"ready": self.ready, "models": states})

    def _load_one(self, registry: Registry, name: str, config: ModelConfig) -> None:
        status = self.status[name]
        started = time.perf_counter()
        try:
            resident = load_version(registry, name, config)
        except SelfTestFailedError as exc:
            report = exc.report
            version = getattr(report, "version", None)
            status.state, status.reason = "failed", str(exc)
            status.version = version
            status.selftest = report.to_dict() if isinstance(report, SelfTestReport) else None
            self._record(name, str(version or ""), "fail", time.perf_counter() - started)
            log.error(
                "self-test failed, model not served",
                extra={"model": name, "version": version, "selftest": status.selftest},
            )
            return
        except Exception as exc:
            status.state, status.reason = "failed", f"{type(exc).__name__}: {exc}"
            self._record(name, "", "error", time.perf_counter() - started)
            log.error("model failed to load", extra={"model": name}, exc_info=True)
            return
        resident.inline = self._inline(config.executor, _typical_predict_seconds(resident.report))
        resident.adaptive = config.executor == "auto"
        if self.metrics is not None:
            resident.stats = self.metrics.stats_for(name, resident.version_label)
        self.resident[name] = resident
        status.state = "ready"
        status.version = resident.version
        status.warning = resident.warning
        status.selftest = resident.report.to_dict()
        status.load_seconds = round(resident.load_seconds, 4)
        status.executor = "inline" if resident.inline else "thread"
        outcome = "warn" if resident.warning else "pass"
        self._record(name, resident.version_label, outcome, resident.load_seconds, ready=True)
        level = logging.WARNING if resident.warning else logging.INFO
        log.log(
            level,
            resident.warning or "model ready",
            extra={
                "model": name,
                "version": resident.version,
                "load_seconds": status.load_seconds,
                "selftest": resident.report.summary(),
                "executor": status.executor,
            },
        )

    def _inline(self, executor: str, predict_seconds: float) -> bool:
        if executor != "auto":
            return executor == "inline"
        return predict_seconds * 1000.0 <= self.settings.server.inline_predict_ms

    def _record(
        self, name: str, version: str, outcome: str, seconds: float, ready: bool = False
    ) -> None:
        if self.metrics is None:
            return
        self.metrics.load_seconds.labels(name, version, outcome).observe(seconds)
        self.metrics.selftests.labels(name, version, outcome).inc()
        # 0 for a version that failed: with the gauge's minimum over live workers, one worker
        # that could not load the model makes the service-wide value 0.
        self.metrics.model_ready.labels(name, version).set(1 if ready else 0)

    def summary(self) -> list[dict[str, Any]]:
        """Status of every configured model, JSON-able."""
        return [status.to_dict() for status in self.status.values()]
