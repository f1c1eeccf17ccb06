"""Registry fixtures: the same tests run on a SQLite file and on the real PostgreSQL.

Each PostgreSQL test gets a fresh schema with a random name (the URL's ``search_path``
option points there, so the tables and Alembic's version table land in it) that is dropped
afterwards. ``MODELSERVE_TEST_POSTGRES_URL`` overrides the server's URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa

from modelserve.registry import Manifest, Registry

POSTGRES_URL = os.environ.get(
    "MODELSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_schema_url() -> Iterator[str]:
    schema = f"ms_registry_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error.orig}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty registry database: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/registry.db"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, for the tests that only make sense there."""
    yield from _postgres_schema_url()


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
