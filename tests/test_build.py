"""The install compiled the request path (setup.py), unless it was told not to."""

from __future__ import annotations

import importlib
import os

import pytest

from compiled_modules import compiled_modules
from modelserve.server import worker


@pytest.mark.skipif(
    os.environ.get("MODELSERVE_COMPILE", "1") == "0",
    reason="installed as plain Python (MODELSERVE_COMPILE=0)",
)
@pytest.mark.parametrize("name", compiled_modules())
def test_the_request_path_modules_are_compiled(name: str) -> None:
    module = importlib.import_module(name)
    assert not (module.__file__ or "").endswith(".py"), (
        f"{name} runs as plain Python: reinstall (scripts/test does), or set "
        "MODELSERVE_COMPILE=0 for the tests too if the install was told not to compile"
    )
    assert worker.COMPILED
