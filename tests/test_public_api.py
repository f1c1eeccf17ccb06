"""The public surface: ``modelserve.__all__`` is guarded, and importing modelserve is cheap."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import modelserve

PUBLIC_NAMES = {
    "Model",
    "ModelConfig",
    "ServerConfig",
    "Settings",
    "TensorSpec",
    "TestCase",
    "__version__",
    "errors",
    "load_settings",
}

#: Top-level packages that ``import modelserve`` must not pull in: ML libraries (the platform
#: imports one only when team code does), and everything only serving or the CLI needs.
HEAVY_PACKAGES = [
    "numpy",
    "pandas",
    "sklearn",
    "lightgbm",
    "xgboost",
    "torch",
    "onnxruntime",
    "uvicorn",
    "starlette",
    "fastapi",
    "granian",
    "gunicorn",
    "httptools",
    "uvloop",
    "sqlalchemy",
    "alembic",
    "fsspec",
    "click",
    "rich",
    "prometheus_client",
]


def _run_python(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_all_lists_exactly_the_public_names() -> None:
    assert set(modelserve.__all__) == PUBLIC_NAMES
    assert len(modelserve.__all__) == len(PUBLIC_NAMES), "duplicates in __all__"


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from modelserve import {name}", namespace)
    assert namespace[name] is getattr(modelserve, name)


def test_every_error_class_is_reachable_through_the_errors_module() -> None:
    for name in modelserve.errors.__all__:
        error = getattr(modelserve.errors, name)
        assert issubclass(error, modelserve.errors.ModelserveError)


def test_importing_modelserve_does_not_import_ml_libraries_or_servers() -> None:
    output = _run_python(
        """
        import json, sys
        import modelserve
        print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
        """
    )
    loaded = set(json.loads(output))

    assert "modelserve" in loaded  # the probe itself works
    assert sorted(loaded & set(HEAVY_PACKAGES)) == []


def test_importing_modelserve_reads_no_modelserve_variable() -> None:
    # os.environ is swapped for a recording subclass before modelserve is imported
    output = _run_python(
        """
        import json, os

        seen = []

        class Recording(type(os.environ)):
            def __getitem__(self, key):
                seen.append(key)
                return super().__getitem__(key)

            def __contains__(self, key):
                seen.append(key)
                return super().__contains__(key)

            def __iter__(self):
                seen.append("<iterated>")
                return super().__iter__()

        os.environ.__class__ = Recording
        os.environ["MODELSERVE_SERVER__PORT"] = "not-a-number"
        seen.clear()
        import modelserve
        print(json.dumps(seen))
        """
    )
    seen = json.loads(output)

    assert [key for key in seen if key.upper().startswith("MODELSERVE")] == []
    assert "<iterated>" not in seen


def test_a_bad_modelserve_variable_does_not_break_the_import() -> None:
    env = {"MODELSERVE_SERVER__PORT": "not-a-number", "MODELSERVE_MODELS": "{broken"}
    output = _run_python(
        "import modelserve; print(modelserve.__version__)",
        env={**_minimal_env(), **env},
    )
    assert output.strip() == modelserve.__version__


def _minimal_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.upper().startswith("MODELSERVE_")}
