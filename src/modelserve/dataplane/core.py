"""The data plane: route a parsed request to a resident model, call predict, shape the answer.

It knows nothing of HTTP. The server hands it parsed JSON and a request id and gets back a
JSON-able dict or a typed :class:`~modelserve.errors.RequestError`. Each call happens in two
steps so the server can choose where ``predict`` runs: :meth:`DataPlane.plan_infer` validates
the envelope and picks the model (cheap, on the event loop); the returned :class:`Call` runs
``predict`` either inline or in a worker thread (models whose predict is slow), so health
checks keep answering while a long prediction runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

from modelserve.dataplane import oip
from modelserve.errors import (
    InvalidRequestError,
    NotReadyError,
    PredictError,
    UnknownModelError,
)
from modelserve.host import ModelHost, ResidentModel

__all__ = ["Call", "DataPlane"]

log = logging.getLogger("modelserve.dataplane")

#: Consecutive predictions slower than ``inline_predict_ms`` that move a model to the pool.
SLOW_STREAK = 5


class Call:
    """One planned prediction.

    ``call.runner(call)`` runs it and returns the response dict or raises a
    :class:`~modelserve.errors.RequestError` (a :class:`~modelserve.errors.PredictError` when
    ``predict`` fails); the caller chooses the thread.
    """

    __slots__ = ("argument", "inline", "predict_seconds", "request_id", "resident", "runner")

    def __init__(
        self,
        resident: ResidentModel,
        runner: Callable[[Call], dict[str, Any]],
        argument: Any,
        request_id: str,
    ) -> None:
        self.resident = resident
        self.runner = runner
        self.argument = argument
        self.request_id = request_id
        self.inline = resident.inline
        self.predict_seconds: float | None = None


_MISSING = object()


class DataPlane:
    """Protocol-agnostic request handling over a :class:`ModelHost`."""

    def __init__(self, host: ModelHost, *, inline_predict_ms: float = 2.0) -> None:
        self.host = host
        #: name -> resident version: the host's own dict, updated in place as models load
        self.resident = host.resident
        self.inline_limit = inline_predict_ms / 1000.0
        self.draining = False

    # -- health -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every configured model loaded and self-tested, and not shutting down."""
        return self.host.ready and not self.draining

    # -- Lyft-style /infer ----------------------------------------------------------------

    def plan_infer(self, payload: Any, request_id: str) -> Call:
        """Validate ``{"model_id", "features" | "instances", "version"?}`` and pick the model."""
        # The common request, {"model_id": <served model>, "features": ...}, in few steps;
        # everything else (and every error) takes the full path below.
        if type(payload) is dict and len(payload) == 2:
            model_id = payload.get("model_id")
            if type(model_id) is str:
                resident = self.resident.get(model_id)
                features = payload.get("features", _MISSING)
                if resident is not None and features is not _MISSING:
                    return Call(resident, self._predict_one, features, request_id)
        return self._plan_infer(payload, request_id)

    def _plan_infer(self, payload: Any, request_id: str) -> Call:
        if type(payload) is not dict:
            raise InvalidRequestError("body: expected a JSON object")
        model_id = payload.get("model_id")
        if type(model_id) is not str:
            raise InvalidRequestError(
                "model_id: required string" if model_id is None else "model_id: must be a string"
            )
        resident = self._resident(model_id, payload.get("version"))
        if "features" in payload:
            if "instances" in payload:
                raise InvalidRequestError("features, instances: send one of them, not both")
            return Call(resident, self._predict_one, payload["features"], request_id)
        instances = payload.get("instances")
        if instances is None:
            raise InvalidRequestError("features: required (or 'instances': a list)")
        if type(instances) is not list:
            raise InvalidRequestError("instances: must be a list")
        return Call(resident, self._predict_many, instances, request_id)

    def _resident(self, name: str, version: Any) -> ResidentModel:
        resident = self.host.resident.get(name)
        if resident is None:
            status = self.host.status.get(name)
            if status is None:
                served = ", ".join(sorted(self.host.status)) or "(none)"
                raise UnknownModelError(f"model {name!r} is not served here; models: {served}")
            raise NotReadyError(f"model {name!r} is not ready ({status.state})")
        if version is not None and version != resident.version:
            if type(version) is not int:
                raise InvalidRequestError("version: must be an integer")
            raise UnknownModelError(
                f"model {name!r} has no version {version} served here; versions: {resident.version}"
            )
        return resident

    def _predict_one(self, call: Call) -> dict[str, Any]:
        resident = call.resident
        started = perf_counter()
        try:
            output = resident.model.predict(call.argument)
        except Exception as exc:
            call.predict_seconds = perf_counter() - started
            raise self._predict_failed(resident, exc) from exc
        elapsed = call.predict_seconds = perf_counter() - started
        if elapsed > self.inline_limit:
            self._slow_call(call, elapsed)
        elif resident.slow_streak:
            resident.slow_streak = 0
        return {
            "model_id": resident.name,
            "model_version": resident.version,
            "output": output,
            "request_id": call.request_id,
        }

    def _predict_many(self, call: Call) -> dict[str, Any]:
        resident = call.resident
        outputs = self._predict_rows(call, call.argument)
        return {
            "model_id": resident.name,
            "model_version": resident.version,
            "outputs": outputs,
            "request_id": call.request_id,
        }

    def _predict_rows(self, call: Call, rows: list[Any]) -> list[Any]:
        resident = call.resident
        model = resident.model
        batch = getattr(model, "predict_batch", None)
        started = perf_counter()
        try:
            if batch is not None:
                outputs = list(batch(rows))
                if len(outputs) != len(rows):
                    raise ValueError(
                        f"predict_batch returned {len(outputs)} outputs for {len(rows)} inputs"
                    )
            else:
                outputs = [model.predict(row) for row in rows]
        except Exception as exc:
            raise self._predict_failed(resident, exc) from exc
        finally:
            call.predict_seconds = elapsed = perf_counter() - started
            per_row = elapsed / max(len(rows), 1)
            if per_row > self.inline_limit:
                self._slow_call(call, per_row)
            elif resident.slow_streak:
                resident.slow_streak = 0
        return outputs

    def _predict_failed(self, resident: ResidentModel, exc: Exception) -> PredictError:
        log.error(
            "predict raised",
            extra={"model": resident.name, "version": resident.version},
            exc_info=exc,
        )
        return PredictError(
            f"model {resident.name!r} version {resident.version} failed to predict "
            f"({type(exc).__name__}); see the service log for this request id"
        )

    def _slow_call(self, call: Call, seconds: float) -> None:
        # One slow call proves little (the OS preempted us, a GC pass ran); a run of them
        # means predict itself is slow and would stall every connection of this worker.
        # Only models left to the "auto" executor move; "inline" is the team's explicit choice.
        resident = call.resident
        if not (call.inline and resident.adaptive):
            return
        resident.slow_streak += 1
        if resident.slow_streak >= SLOW_STREAK:
            self._move_to_thread(resident, seconds)

    def _move_to_thread(self, resident: ResidentModel, seconds: float) -> None:
        if resident.inline:
            resident.inline = False
            status = self.host.status.get(resident.name)
            if status is not None:
                status.executor = "thread"
            log.warning(
                "predict is slow, moving it off the event loop",
                extra={"model": resident.name, "predict_ms": round(seconds * 1000, 3)},
            )

    # -- Open Inference Protocol v2 ---------------------------------------------------------

    def model_for_v2(self, name: str, version: str | None) -> ResidentModel:
        """The resident model for ``/v2/models/{name}[/versions/{version}]``."""
        status = self.host.status.get(name)
        if status is None:
            served = ", ".join(sorted(self.host.status)) or "(none)"
            raise UnknownModelError(f"model {name!r} is not served here; models: {served}")
        resident = self.host.resident.get(name)
        if version is not None:
            current = resident.version if resident else status.version
            if current is None or version != str(current):
                raise UnknownModelError(
                    f"model {name!r} has no version {version} served here; "
                    f"versions: {current if current is not None else '(none loaded)'}"
                )
        if resident is None:
            raise NotReadyError(f"model {name!r} is not ready ({status.state})")
        return resident

    def model_ready_v2(self, name: str, version: str | None) -> bool:
        """Whether the named model (version) is ready; 404 for an unknown name or version."""
        try:
            self.model_for_v2(name, version)
        except NotReadyError:
            return False
        return True

    def model_metadata_v2(self, name: str, version: str | None) -> dict[str, Any]:
        resident = self.model_for_v2(name, version)
        return oip.model_metadata(resident.model_cls, name, [resident.version_label])

    def plan_infer_v2(self, name: str, version: str | None, payload: Any) -> Call:
        """Decode an OIP inference request for the model and plan its prediction."""
        resident = self.model_for_v2(name, version)
        decoded = oip.decode_infer_request(payload, resident.model_cls)
        return Call(resident, self._predict_oip, decoded, decoded.id or "")

    def _predict_oip(self, call: Call) -> dict[str, Any]:
        resident = call.resident
        decoded: oip.DecodedRequest = call.argument
        if decoded.rows is not None:
            output: Any = self._predict_rows(call, decoded.rows)
        else:
            started = perf_counter()
            try:
                output = resident.model.predict(decoded.value)
            except Exception as exc:
                raise self._predict_failed(resident, exc) from exc
            finally:
                call.predict_seconds = perf_counter() - started
        return oip.encode_infer_response(
            output,
            resident.model_cls,
            model_name=resident.name,
            model_version=resident.version_label,
            request_id=decoded.id,
            requested_outputs=decoded.requested_outputs,
        )
