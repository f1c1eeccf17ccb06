"""Aliases: setting, moving, deleting, their recorded history, and rollback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelserve.errors import AliasNotFoundError, RegistryError, VersionNotFoundError
from modelserve.registry import AliasMove, Manifest, Registry

Publish = Callable[..., Manifest]


@pytest.fixture
def three_versions(registry: Registry, model_file: Path, publish: Publish) -> Registry:
    for _ in range(3):
        publish(registry, "fraud", model_file)
    return registry


def _moves(registry: Registry, alias: str | None = "production") -> list[tuple[object, ...]]:
    return [
        (m.alias, m.from_version, m.to_version, m.action, m.actor)
        for m in registry.alias_history("fraud", alias)
    ]


def test_set_and_move_an_alias_records_every_move(three_versions: Registry) -> None:
    registry = three_versions
    first = registry.set_alias("fraud", "production", 1, actor="alice")
    second = registry.set_alias("fraud", "production", 3, actor="bob")

    assert (first.from_version, first.to_version) == (None, 1)
    assert (second.from_version, second.to_version, second.actor) == (1, 3, "bob")
    assert registry.aliases("fraud") == {"production": 3}
    assert registry.resolve("fraud@production").version == 3
    assert registry.alias_history("fraud", "production") == [first, second]
    assert second.at.endswith("+00:00") and second.at >= first.at


def test_aliases_are_independent(three_versions: Registry) -> None:
    registry = three_versions
    registry.set_alias("fraud", "production", 2, actor="alice")
    registry.set_alias("fraud", "shadow", 3, actor="alice")

    assert registry.aliases("fraud") == {"production": 2, "shadow": 3}
    assert _moves(registry, None) == [
        ("production", None, 2, "set", "alice"),
        ("shadow", None, 3, "set", "alice"),
    ]
    assert _moves(registry, "shadow") == [("shadow", None, 3, "set", "alice")]


def test_setting_the_current_version_again_records_nothing(three_versions: Registry) -> None:
    registry = three_versions
    registry.set_alias("fraud", "production", 2)
    again = registry.set_alias("fraud", "production", 2)

    assert (again.from_version, again.to_version) == (2, 2)
    assert len(registry.alias_history("fraud", "production")) == 1


def test_promote_to_a_missing_version_leaves_the_alias_unchanged(
    three_versions: Registry,
) -> None:
    registry = three_versions
    registry.set_alias("fraud", "production", 2)

    with pytest.raises(VersionNotFoundError, match=r"no version 7; versions: 1, 2, 3"):
        registry.set_alias("fraud", "production", 7)

    assert registry.aliases("fraud") == {"production": 2}
    assert len(registry.alias_history("fraud", "production")) == 1


def test_delete_an_alias(three_versions: Registry) -> None:
    registry = three_versions
    registry.set_alias("fraud", "production", 2, actor="alice")
    move = registry.delete_alias("fraud", "production", actor="bob")

    assert (move.from_version, move.to_version, move.action) == (2, None, "delete")
    assert registry.aliases("fraud") == {}
    with pytest.raises(AliasNotFoundError):
        registry.resolve("fraud@production")
    with pytest.raises(AliasNotFoundError, match="no alias 'production'"):
        registry.delete_alias("fraud", "production")


def test_rollback_steps_back_through_the_history(three_versions: Registry) -> None:
    registry = three_versions
    for version in (1, 2, 3):
        registry.set_alias("fraud", "production", version, actor="alice")

    first = registry.rollback("fraud", actor="oncall")
    assert (first.from_version, first.to_version, first.action) == (3, 2, "rollback")
    assert registry.aliases("fraud") == {"production": 2}

    registry.rollback("fraud", actor="oncall")
    assert registry.aliases("fraud") == {"production": 1}

    with pytest.raises(RegistryError, match="no earlier version to roll back to"):
        registry.rollback("fraud")
    assert registry.aliases("fraud") == {"production": 1}
    assert _moves(registry)[-2:] == [
        ("production", 3, 2, "rollback", "oncall"),
        ("production", 2, 1, "rollback", "oncall"),
    ]


def test_rollback_after_a_new_promotion_undoes_that_promotion(three_versions: Registry) -> None:
    registry = three_versions
    registry.set_alias("fraud", "production", 1)
    registry.set_alias("fraud", "production", 2)
    registry.rollback("fraud")  # back to 1
    registry.set_alias("fraud", "production", 3)

    assert registry.rollback("fraud").to_version == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("fraud")  # the 1 -> 2 move was already undone


def test_rollback_restores_a_deleted_alias(three_versions: Registry) -> None:
    registry = three_versions
    registry.set_alias("fraud", "canary", 3)
    registry.delete_alias("fraud", "canary")

    move = registry.rollback("fraud", "canary")

    assert (move.from_version, move.to_version) == (None, 3)
    assert registry.aliases("fraud") == {"canary": 3}


def test_rollback_of_a_first_assignment_is_an_error(three_versions: Registry) -> None:
    registry = three_versions
    registry.set_alias("fraud", "production", 1)

    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("fraud")
    assert registry.aliases("fraud") == {"production": 1}


def test_an_alias_never_set_has_no_history_and_no_rollback(three_versions: Registry) -> None:
    registry = three_versions
    with pytest.raises(AliasNotFoundError):
        registry.alias_history("fraud", "production")
    with pytest.raises(AliasNotFoundError):
        registry.rollback("fraud")
    assert registry.alias_history("fraud") == []


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("42", "cannot be a version number"),
        ("latest", "always means the newest version"),
        ("has space", "invalid alias"),
        ("", "invalid alias"),
        ("_private", "invalid alias"),
    ],
)
def test_invalid_alias_names_are_refused(
    three_versions: Registry, alias: str, message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        three_versions.set_alias("fraud", alias, 1)
    assert three_versions.aliases("fraud") == {}


def test_alias_move_is_a_value(three_versions: Registry) -> None:
    move = three_versions.set_alias("fraud", "production", 1, actor="alice")

    assert isinstance(move, AliasMove)
    with pytest.raises(AttributeError):
        move.to_version = 2  # type: ignore[misc]
