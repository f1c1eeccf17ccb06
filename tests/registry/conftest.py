"""Registry fixtures: the same tests run on a SQLite file and on the real PostgreSQL.

Each PostgreSQL test gets a fresh schema (tests/postgres_schemas.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from modelserve.registry import Manifest, Registry
from postgres_schemas import postgres_schema_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty registry database: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/registry.db"
    else:
        yield from postgres_schema_url("ms_registry_test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, for the tests that only make sense there."""
    yield from postgres_schema_url("ms_registry_test")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def registry(registry_url: str, store_dir: Path, cache_dir: Path) -> Iterator[Registry]:
    with Registry(registry_url, str(store_dir), cache_dir) as reg:
        yield reg


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "model.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("weights v1\n")
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "bundle"
    (root / "sub").mkdir(parents=True)
    (root / "model.json").write_text('{"trees": 3}')
    (root / "sub" / "vocab.txt").write_text("a\nb\nc\n")
    (root / "empty").mkdir()
    return root


class Publish(Protocol):
    def __call__(
        self, registry: Registry, name: str, artifact: Path, **overrides: Any
    ) -> Manifest: ...


@pytest.fixture
def publish() -> Publish:
    """``publish(registry, name, artifact, **overrides)`` with ordinary metadata."""
    return _publish


def _publish(registry: Registry, name: str, artifact: Path, **overrides: Any) -> Manifest:
    arguments: dict[str, Any] = {
        "class_path": "team.models:Fraud",
        "test_data": [{"name": "small", "input": {"amount": 12.0}, "expected": 0.03}],
        "golden": [0.0301],
        "tolerance": {"atol": 1e-3, "rtol": 0.0},
        "environment": {"python": "3.11.7", "platform": "linux", "packages": {"lightgbm": "4"}},
        "actor": "alice",
        "git_commit": "0123abcd",
    }
    arguments.update(overrides)
    return registry.publish(name, artifact, **arguments)
