"""In-process helpers for the harness (run with the project's venv Python).

``python inproc.py train ART_DIR``  train both models into ART_DIR/<model_id>/ (checks canaries)
``python inproc.py floor ART_DIR [REPEAT]``
    print JSON: the request row, each model's expected output for it, and the in-process
    floor per model, timeit best of REPEAT: ``predict`` alone, and orjson parse + predict +
    orjson dump of the same request body (what any server must do at least).
"""

from __future__ import annotations

import json
import sys
import timeit
from importlib import metadata

import orjson
from models import MODELS, ROWS, load_all, train_all

REQUEST_ROW = ROWS[0]


def _best_us(fn, repeat: int) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # enough calls for >= 0.2 s
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def floor(artifacts: str, repeat: int) -> dict:
    models = load_all(artifacts)
    out: dict = {"row": REQUEST_ROW, "expected": {}, "predict_us": {}, "json_predict_us": {}}
    for model_id, model in models.items():
        body = orjson.dumps({"model_id": model_id, "features": REQUEST_ROW})
        out["expected"][model_id] = model.predict(REQUEST_ROW)

        def predict(model=model):
            return model.predict(REQUEST_ROW)

        def full(model=model, body=body, model_id=model_id):
            req = orjson.loads(body)
            return orjson.dumps({"model_id": model_id, "output": model.predict(req["features"])})

        out["predict_us"][model_id] = _best_us(predict, repeat)
        out["json_predict_us"][model_id] = _best_us(full, repeat)
    versions = {}
    for dist in (
        "numpy",
        "scikit-learn",
        "flask",
        "gunicorn",
        "uvloop",
        "httptools",
        "orjson",
        "modelserve",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["python"] = sys.version.split()[0]
    try:  # the request path compiled by mypyc at install (setup.py), or plain Python
        from modelserve.server import worker

        versions["modelserve_compiled"] = worker.COMPILED
    except ImportError:
        versions["modelserve_compiled"] = None
    out["versions"] = versions
    out["model_ids"] = list(MODELS)
    return out


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "train":
        train_all(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "floor":
        repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 7
        print(json.dumps(floor(sys.argv[2], repeat)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
