"""The example service (examples/service) end to end: train, promote and self-test both models.

This runs the real libraries (scikit-learn and LightGBM) through the CLI, in a copy of the
example so that its .modelserve/ state stays out of the repository.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import lightgbm  # noqa: F401
import pandas  # noqa: F401
import pytest
import sklearn  # noqa: F401
from click.testing import CliRunner, Result

from modelserve.cli import main

pytestmark = pytest.mark.usefixtures("clean_env")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "service"


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "service"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".modelserve", "__pycache__"))
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [
        n for n in sys.modules if n == "example_models" or n.startswith("example_models.")
    ]:
        del sys.modules[name]


def _run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def test_the_example_service_trains_promotes_and_self_tests(example: Path) -> None:
    churn = _run("train", "churn", "--promote", "production").stdout
    eta = _run("train", "eta", "--promote", "production").stdout

    assert "published churn version 1" in churn
    assert "churn v1: 3/3 cases passed" in churn
    assert "published eta version 1" in eta
    assert "eta v1: 3/3 cases passed" in eta

    junit = example / "selftest.xml"
    selftest = _run("selftest", "--junit", str(junit)).stdout
    assert " ".join(selftest.replace("│", " ").split()).count("pass 3/3 cases passed") == 2

    manifests = {
        name: json.loads(_run("show", f"{name}@production", "--json").stdout)
        for name in ("churn", "eta")
    }
    assert manifests["churn"]["golden"] == [0, 1, 1]
    assert "scikit-learn" in manifests["churn"]["environment"]["packages"]
    assert "pandas" in manifests["churn"]["environment"]["packages"]
    assert "lightgbm" in manifests["eta"]["environment"]["packages"]
    assert manifests["eta"]["tolerance"] == {"atol": 2.0, "rtol": 0.0}
    assert (example / ".modelserve" / "registry.db").is_file()
