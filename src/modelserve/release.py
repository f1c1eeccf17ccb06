"""Publishing a model version: self-test checkpoint 1.

``publish`` loads the artifact with the model class, runs ``test_data`` through ``predict``,
refuses when the hand-written expectations fail, and only then registers the version with the
actual outputs as its golden outputs and a fingerprint of the environment that made them.
``train_and_publish`` runs the class's ``train`` into a temporary directory first.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelserve.errors import ArtifactError, ModelClassError, ModelLoadError, SelfTestFailedError
from modelserve.model import (
    Model,
    TestCase,
    class_path,
    import_model_class,
    instantiate,
    load_model,
    test_cases,
)
from modelserve.registry import Manifest, Registry
from modelserve.selftest import SelfTestReport, Tolerance, run_selftest, to_jsonable

__all__ = ["environment_fingerprint", "publish", "train_and_publish"]


def publish(
    registry: Registry,
    name: str,
    model_class: str | type[Model],
    artifact: Path | str,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    actor: str | None = None,
    repo_dir: Path | None = None,
) -> tuple[Manifest, SelfTestReport]:
    """Self-test ``artifact`` with ``model_class`` and register it as the next version of ``name``.

    Raises :class:`SelfTestFailedError` (with the report) when an expectation fails; nothing
    is registered then, nor when ``load`` raises or the artifact is missing or empty.
    """
    artifact = Path(artifact)
    _check_artifact(artifact)
    cls = import_model_class(model_class) if isinstance(model_class, str) else model_class
    tolerance = Tolerance.for_model(cls, atol=atol, rtol=rtol)
    model = load_model(cls, artifact, class_path(cls))
    cases = test_cases(model)
    report = run_selftest(model, cases, tolerance, name=name)
    if not report.passed:
        raise SelfTestFailedError(
            f"self-test failed, nothing published: {report.summary()}", report
        )
    manifest = registry.publish(
        name,
        artifact,
        class_path=class_path(cls),
        test_data=_recorded_test_data(cls, cases),
        golden=[result.actual for result in report.cases],
        tolerance={"atol": tolerance.atol, "rtol": tolerance.rtol},
        environment=environment_fingerprint(model),
        actor=actor,  # None: the registry's default (login name, or 'unknown')
        git_commit=git_commit(repo_dir or Path.cwd()),
    )
    report.version = manifest.version
    return manifest, report


def train_and_publish(
    registry: Registry,
    name: str,
    model_class: str | type[Model],
    **options: Any,
) -> tuple[Manifest, SelfTestReport]:
    """Run the class's ``train`` into a temporary directory, then :func:`publish` that."""
    cls = import_model_class(model_class) if isinstance(model_class, str) else model_class
    if getattr(cls, "train", None) is None:
        raise ModelClassError(f"{class_path(cls)} has no train(out_dir) method")
    with tempfile.TemporaryDirectory(prefix=f"modelserve-train-{name}-") as tmp:
        out_dir = Path(tmp) / name
        out_dir.mkdir()
        try:
            instantiate(cls).train(out_dir)  # type: ignore[attr-defined]
        except Exception as exc:
            raise ModelLoadError(
                f"{class_path(cls)}.train raised {type(exc).__name__}: {exc}"
            ) from exc
        return publish(registry, name, cls, out_dir, **options)


def _recorded_test_data(cls: type[Model], cases: list[TestCase]) -> list[dict[str, Any]]:
    """The cases as the manifest stores them: JSON, so every later load can replay them."""
    recorded = []
    for case in cases:
        try:
            recorded.append(
                {
                    "name": case.name,
                    "input": to_jsonable(case.input),
                    "expected": to_jsonable(case.expected),
                }
            )
        except TypeError as exc:
            raise ModelClassError(
                f"{class_path(cls)}.test_data case {case.name} cannot be recorded: {exc}"
            ) from None
    return recorded


def _check_artifact(artifact: Path) -> None:
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    if artifact.is_file() and artifact.stat().st_size == 0:
        raise ArtifactError(f"artifact {artifact} is an empty file")
    if artifact.is_dir() and not any(p.is_file() for p in artifact.rglob("*")):
        raise ArtifactError(f"artifact {artifact} is a directory without files")


def environment_fingerprint(model: Model) -> dict[str, Any]:
    """Python, platform and the versions of the libraries the model's code and state use.

    The libraries are the top-level packages of the model module's imports and of the
    objects ``load`` left on the model, mapped to their installed distributions.
    """
    modules = set()
    module = sys.modules.get(type(model).__module__)
    if module is not None:
        for value in vars(module).values():
            name = getattr(value, "__name__", None) if _is_module(value) else None
            name = name or getattr(value, "__module__", None)
            if isinstance(name, str):
                modules.add(name.split(".")[0])
    for value in vars(model).values():
        modules.add(type(value).__module__.split(".")[0])
    distributions = _distributions()
    packages: dict[str, str] = {}
    for top in sorted(modules):
        for dist in distributions.get(top, []):
            try:
                packages[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "packages": packages,
    }


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    # Scans every installed distribution (~0.4 s); the set does not change within a process.
    return importlib.metadata.packages_distributions()


def _is_module(value: object) -> bool:
    return type(value).__name__ == "module"


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory``, or None outside a git repository."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
