"""Fixtures for tests of ``modelserve serve`` over a real socket (helpers: serve_helpers.py)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import (
    MAIN_MAX_BODY,
    MAIN_MODELS,
    MODELS_SOURCE,
    PUBLISHED,
    StartService,
    running_service,
)

from modelserve.config import load_settings
from modelserve.registry import Registry
from modelserve.release import publish
from modelserve.testing import RunningService


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A service directory whose registry holds every model of :data:`PUBLISHED`."""
    root = tmp_path_factory.mktemp("service")
    (root / "svc_models.py").write_text(MODELS_SOURCE)
    (root / "modelserve.toml").write_text('service = "svc-test"\n')
    artifact = root / "factor.txt"
    artifact.write_text("2")
    sys.path.insert(0, str(root))
    try:
        with Registry.from_settings(load_settings(root, environ={})) as registry:
            for name, cls in PUBLISHED.items():
                manifest, _ = publish(registry, name, f"svc_models:{cls}", artifact, repo_dir=root)
                registry.set_alias(name, "production", manifest.version)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("svc_models", None)
    return root


@pytest.fixture
def start_service(service_dir: Path) -> Iterator[StartService]:
    """Start a service for one test: ``start_service(label, models, workers=..., ...)``."""
    with contextlib.ExitStack() as stack:

        def start(label: str, models: Mapping[str, Mapping[str, Any]], **options: Any) -> Any:
            return stack.enter_context(running_service(service_dir, label, models, **options))

        yield start


@pytest.fixture(scope="session")
def main_service(service_dir: Path) -> Iterator[RunningService]:
    """One two-worker service for the tests that only send requests to it."""
    with running_service(
        service_dir, "main", MAIN_MODELS, workers=2, server={"max_body_bytes": MAIN_MAX_BODY}
    ) as service:
        yield service
