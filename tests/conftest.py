"""Generic fixtures: a clean environment, a registry database per test, team code on disk.

The registry tests (``tests/registry``) keep their own richer fixtures; the ones here serve
the tests that drive modelserve from the outside (CLI, config, publishing, examples).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compiled_modules import compiled_modules
from postgres_schemas import postgres_schema_url


def pytest_report_header() -> str:
    """Whether the request path under test is compiled (setup.py), and whether the compiled
    modules are older than their sources (then run ``scripts/test``: it rebuilds them)."""
    from modelserve.server import worker

    if not worker.COMPILED:
        return "modelserve request path: pure Python"
    stale = []
    for name in compiled_modules():
        module = importlib.import_module(name)
        compiled = Path(getattr(module, "__file__", "") or "")
        source = compiled.parent / (compiled.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
            stale.append(source.name)
    if stale:
        return f"modelserve request path: compiled, STALE (older than {', '.join(stale)})"
    return "modelserve request path: compiled (mypyc)"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MODELSERVE_* variable of the developer's shell leaks into the test; wide tables."""
    for name in list(os.environ):
        if name.upper().startswith("MODELSERVE_"):
            monkeypatch.delenv(name)
    # rich wraps table cells at the terminal width; keep whole messages on one line
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="session")
def installed_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@pytest.fixture
def fast_fingerprint(
    monkeypatch: pytest.MonkeyPatch, installed_distributions: dict[str, list[str]]
) -> None:
    """Publishing maps imports to distributions; scan site-packages once per session, not
    once per publish (~0.4 s each). The result is the real scan's."""
    monkeypatch.setattr(
        importlib.metadata, "packages_distributions", lambda: installed_distributions
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty registry database: a SQLite file, or a fresh PostgreSQL schema (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db/registry.db"
        return
    yield from postgres_schema_url()


class TeamCode:
    """Writes team modules into a directory on ``sys.path`` and forgets them afterwards."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, source: str, name: str | None = None) -> str:
        """Write ``source`` as a module (a fresh unique name by default); return its name."""
        name = name or f"team_{uuid.uuid4().hex[:10]}"
        (self.directory / f"{name}.py").write_text(source)
        self.forget(name)
        return name

    def forget(self, name: str) -> None:
        """Drop ``name`` from ``sys.modules`` so that the next import reads the file again."""
        sys.modules.pop(name, None)

    def forget_all(self) -> None:
        prefix = str(self.directory)
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(prefix):
                del sys.modules[name]


@pytest.fixture
def team_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TeamCode]:
    """Team modules in ``tmp_path/service``, importable for the duration of one test."""
    directory = tmp_path / "service"
    directory.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(directory))
    # rewritten modules must be re-read from source, never from a same-second stale .pyc
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    code = TeamCode(directory)
    yield code
    code.forget_all()
