"""Baseline server: plain Flask behind Gunicorn's sync worker (LyftLearn-Serving's stack).

Run (the harness does this): ``gunicorn -w 1 -b 127.0.0.1:PORT ref_flask:app`` with
``BENCH_ARTIFACTS`` pointing at the trained artifacts and ``bench/`` on ``PYTHONPATH``.

``POST /infer`` ``{"model_id": ..., "features": [...]}`` -> ``{"model_id": ..., "output": ...}``;
``GET /health/ready`` -> 200 once the worker answers. No per-request logging (Gunicorn's access
log is off unless asked for).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from models import load_all

MODELS = load_all(os.environ["BENCH_ARTIFACTS"])

app = Flask(__name__)


@app.get("/health/ready")
def ready():
    return jsonify({"ready": True})


@app.post("/infer")
def infer():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"error": "body must be a JSON object"}), 400
    model_id = body.get("model_id")
    model = MODELS.get(model_id)
    if model is None:
        return jsonify({"error": f"unknown model_id {model_id!r}"}), 404
    features = body.get("features")
    if not isinstance(features, list):
        return jsonify({"error": "features must be a list"}), 400
    try:
        output = model.predict(features)
    except Exception:
        return jsonify({"error": "predict failed"}), 500
    return jsonify({"model_id": model_id, "output": output})
