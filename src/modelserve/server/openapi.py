"""The OpenAPI 3.1 document served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                "INT64", "FP16", "FP32", "FP64", "BYTES",
            ],
        },
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}  # fmt: skip


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": _json(_ERROR)} for s in statuses}


def _get(summary: str, schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": _json(schema)},
                **_errors(*errors),
            },
        }
    }


def openapi_document(service: str, version: str) -> dict[str, Any]:
    """Describe every route of the serving port."""
    infer_request = {
        "type": "object",
        "required": ["model_id"],
        "properties": {
            "model_id": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "features": {"description": "any JSON value, passed to predict unchanged"},
            "instances": {"type": "array", "description": "several feature sets at once"},
        },
    }
    infer_response = {
        "type": "object",
        "properties": {
            "model_id": {"type": "string"},
            "model_version": {"type": "integer"},
            "output": {},
            "outputs": {"type": "array"},
            "request_id": {"type": "string"},
        },
    }
    v2_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
            },
        },
    }
    v2_response = {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    }
    metadata = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array"},
            "outputs": {"type": "array"},
        },
    }
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    v2_infer = {
        "post": {
            "summary": "Open Inference Protocol v2 inference",
            "requestBody": {"required": True, "content": _json(v2_request)},
            "responses": {
                "200": {"description": "OK", "content": _json(v2_response)},
                **_errors(400, 404, 413, 415, 500, 503),
            },
        }
    }
    paths: dict[str, Any] = {
        "/infer": {
            "post": {
                "summary": "Predict with a model: {model_id, features} or {model_id, instances}",
                "requestBody": {"required": True, "content": _json(infer_request)},
                "responses": {
                    "200": {"description": "OK", "content": _json(infer_response)},
                    **_errors(400, 404, 413, 415, 500, 503),
                },
            }
        },
        "/health/live": _get("Liveness: the process answers", {"type": "object"}),
        "/health/ready": _get(
            "Readiness: every model loaded and self-tested", {"type": "object"}, 503
        ),
        "/models": _get("Status of every configured model", {"type": "object"}),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "text exposition", "content": {"text/plain": {}}}
                },
            }
        },
        "/v2": _get("OIP server metadata", {"type": "object"}),
        "/v2/health/live": _get("OIP server live", {"type": "object"}),
        "/v2/health/ready": _get("OIP server ready", {"type": "object"}, 503),
        "/v2/models/{name}": {
            **_get("OIP model metadata", metadata, 404, 503),
            "parameters": [name_param],
        },
        "/v2/models/{name}/ready": {
            **_get("OIP model ready", {"type": "object"}, 404, 503),
            "parameters": [name_param],
        },
        "/v2/models/{name}/infer": {**v2_infer, "parameters": [name_param]},
        "/v2/models/{name}/versions/{version}": {
            **_get("OIP model version metadata", metadata, 404, 503),
            "parameters": [name_param, version_param],
        },
        "/v2/models/{name}/versions/{version}/ready": {
            **_get("OIP model version ready", {"type": "object"}, 404, 503),
            "parameters": [name_param, version_param],
        },
        "/v2/models/{name}/versions/{version}/infer": {
            **v2_infer,
            "parameters": [name_param, version_param],
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{service} (modelserve)", "version": version},
        "paths": paths,
    }
