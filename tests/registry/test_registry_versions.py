"""Publishing, listing and resolving model versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve.config import Settings
from modelserve.errors import (
    AliasNotFoundError,
    ArtifactError,
    ModelNotFoundError,
    RegistryError,
    VersionNotFoundError,
)
from modelserve.registry import Manifest, ModelSummary, Registry

Publish = Callable[..., Manifest]


def test_publish_records_a_complete_manifest(
    publish: Publish, registry: Registry, model_file: Path
) -> None:
    manifest = publish(registry, "fraud", model_file)

    assert manifest.name == "fraud"
    assert manifest.version == 1
    assert manifest.class_path == "team.models:Fraud"
    assert manifest.digest.startswith("sha256:") and len(manifest.hexdigest) == 64
    assert manifest.size == len("weights v1\n")
    assert (manifest.kind, manifest.filename) == ("file", "model.txt")
    assert manifest.golden == [0.0301]
    assert manifest.tolerance == {"atol": 1e-3, "rtol": 0.0}
    assert manifest.environment["packages"] == {"lightgbm": "4"}
    assert (manifest.created_by, manifest.git_commit) == ("alice", "0123abcd")
    assert manifest.created_at.endswith("+00:00")
    assert registry.get("fraud", 1) == manifest


def test_publish_defaults_the_actor_to_the_login_name(
    publish: Publish, registry: Registry, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    assert publish(registry, "fraud", model_file, actor=None).created_by == "carol"


def test_versions_are_numbered_per_model(
    publish: Publish, registry: Registry, model_file: Path
) -> None:
    numbers = [publish(registry, "fraud", model_file).version for _ in range(3)]
    other = publish(registry, "churn", model_file)

    assert numbers == [1, 2, 3]
    assert other.version == 1
    assert [m.version for m in registry.versions("fraud")] == [1, 2, 3]


def test_models_summarises_every_model(
    publish: Publish, registry: Registry, model_file: Path
) -> None:
    assert registry.models() == []
    for _ in range(3):
        publish(registry, "fraud", model_file)
    publish(registry, "churn", model_file)
    registry.set_alias("fraud", "production", 2)

    assert registry.models() == [
        ModelSummary("churn", latest_version=1, version_count=1, aliases={}),
        ModelSummary("fraud", latest_version=3, version_count=3, aliases={"production": 2}),
    ]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [(None, 3), ("latest", 3), (2, 2), ("2", 2), ("production", 1)],
)
def test_get_by_reference(
    publish: Publish, registry: Registry, model_file: Path, ref: str | int | None, expected: int
) -> None:
    for _ in range(3):
        publish(registry, "fraud", model_file)
    registry.set_alias("fraud", "production", 1)

    assert registry.get("fraud", ref).version == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("fraud", 3), ("fraud@latest", 3), ("fraud@2", 2), ("fraud@production", 1)],
)
def test_resolve_a_spec(
    publish: Publish, registry: Registry, model_file: Path, spec: str, expected: int
) -> None:
    for _ in range(3):
        publish(registry, "fraud", model_file)
    registry.set_alias("fraud", "production", 1)

    assert registry.resolve(spec).version == expected


def test_unknown_model_lists_the_registered_ones(
    publish: Publish, registry: Registry, model_file: Path
) -> None:
    publish(registry, "fraud", model_file)
    publish(registry, "churn", model_file)

    for call in (
        lambda: registry.get("nope"),
        lambda: registry.versions("nope"),
        lambda: registry.resolve("nope@production"),
        lambda: registry.aliases("nope"),
        lambda: registry.set_alias("nope", "production", 1),
        lambda: registry.alias_history("nope"),
    ):
        with pytest.raises(ModelNotFoundError, match=r"'nope' not found.*churn, fraud"):
            call()


@pytest.mark.parametrize("ref", [9, "9", 0])
def test_unknown_version_lists_the_existing_ones(
    publish: Publish, registry: Registry, model_file: Path, ref: int | str
) -> None:
    publish(registry, "fraud", model_file)
    publish(registry, "fraud", model_file)

    with pytest.raises(VersionNotFoundError, match=r"no version .*; versions: 1, 2"):
        registry.get("fraud", ref)


def test_unknown_alias_lists_the_existing_ones(
    publish: Publish, registry: Registry, model_file: Path
) -> None:
    publish(registry, "fraud", model_file)
    registry.set_alias("fraud", "shadow", 1)

    with pytest.raises(AliasNotFoundError, match=r"no alias 'production'; aliases: shadow"):
        registry.resolve("fraud@production")


@pytest.mark.parametrize(
    "name", ["", "-leading-dash", "has space", "slash/name", "at@sign", "x" * 129, "ünïcode"]
)
def test_invalid_model_names_are_refused(
    publish: Publish, registry: Registry, model_file: Path, name: str
) -> None:
    with pytest.raises(RegistryError, match="invalid model name"):
        publish(registry, name, model_file)
    assert registry.models() == []


def test_resolve_refuses_an_empty_reference(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="nothing after '@'"):
        registry.resolve("fraud@")


@pytest.mark.parametrize(
    ("artifact", "message"),
    [
        ("missing.bin", "does not exist"),
        ("empty.bin", "empty file"),
        ("hollow", "contains no files"),
    ],
)
def test_missing_or_empty_artifacts_are_refused_before_anything_is_written(
    publish: Publish,
    registry: Registry,
    tmp_path: Path,
    store_dir: Path,
    artifact: str,
    message: str,
) -> None:
    (tmp_path / "empty.bin").touch()
    (tmp_path / "hollow" / "only" / "dirs").mkdir(parents=True)

    with pytest.raises(ArtifactError, match=message):
        publish(registry, "fraud", tmp_path / artifact)

    assert registry.models() == []
    assert [p for p in store_dir.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("golden", [float("nan")], "golden must be plain JSON"),
        ("golden", [object()], "golden must be plain JSON"),
        ("test_data", [("input", 1)], "test_data must be a list of dicts"),
        ("tolerance", [1e-6], "tolerance must be a dict"),
        ("class_path", "", "class_path must name the model class"),
    ],
)
def test_bad_metadata_is_refused_before_anything_is_written(
    publish: Publish,
    registry: Registry,
    model_file: Path,
    store_dir: Path,
    field: str,
    value: object,
    message: str,
) -> None:
    with pytest.raises(RegistryError, match=message):
        publish(registry, "fraud", model_file, **{field: value})

    assert registry.models() == []
    assert [p for p in store_dir.rglob("*") if p.is_file()] == []


def test_manifest_round_trips_through_json(
    publish: Publish, registry: Registry, model_dir: Path
) -> None:
    manifest = publish(registry, "fraud", model_dir)

    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest


def test_manifest_from_dict_refuses_unknown_or_missing_keys(
    publish: Publish, registry: Registry, model_file: Path
) -> None:
    data = publish(registry, "fraud", model_file).to_dict()

    with pytest.raises(RegistryError, match="unknown keys: extra"):
        Manifest.from_dict({**data, "extra": 1})
    del data["digest"]
    with pytest.raises(RegistryError, match="incomplete"):
        Manifest.from_dict(data)


def test_from_settings_keeps_everything_under_the_root(
    publish: Publish, tmp_path: Path, model_file: Path
) -> None:
    settings = Settings(root=tmp_path / "service")

    with Registry.from_settings(settings) as registry:
        manifest = publish(registry, "fraud", model_file)
        fetched = registry.fetch(manifest)

    state = tmp_path / "service" / ".modelserve"
    assert (state / "registry.db").is_file()
    assert (state / "artifacts" / "sha256" / manifest.hexdigest).is_file()
    assert fetched == state / "cache" / manifest.hexdigest / "model.txt"
