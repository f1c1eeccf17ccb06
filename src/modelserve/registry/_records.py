"""The registry's value objects: manifests, alias moves, model summaries, and name rules."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from modelserve.errors import RegistryError

__all__ = ["AliasMove", "Manifest", "ModelSummary", "check_alias", "check_model_name"]

ArtifactKind = Literal["file", "dir"]
MoveAction = Literal["set", "delete", "rollback"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Words a version reference can mean besides an alias, so no alias may take them.
RESERVED_ALIASES = frozenset({"latest"})


@dataclass(frozen=True)
class Manifest:
    """One published model version: what the artifact is and how to check it.

    Immutable once published; ``to_dict``/``from_dict`` round-trip it through JSON.
    """

    name: str
    version: int
    class_path: str
    digest: str  # "sha256:<hex>" of the file's bytes, or of the directory's deterministic tar
    size: int  # bytes in the artifact store
    kind: ArtifactKind
    filename: str  # the published file's or directory's own name, restored by fetch
    test_data: list[dict[str, Any]]
    golden: list[Any]
    tolerance: dict[str, Any]
    environment: dict[str, Any]
    created_at: str  # ISO 8601, UTC
    created_by: str
    git_commit: str | None = None

    @property
    def hexdigest(self) -> str:
        """The digest without its ``sha256:`` prefix (the artifact's key in store and cache)."""
        return self.digest.partition(":")[2]

    @property
    def spec(self) -> str:
        """``name@version``, the reference that names exactly this version."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from :meth:`to_dict`'s output; unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RegistryError(f"manifest has unknown keys: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise RegistryError(f"manifest is incomplete: {exc}") from None


@dataclass(frozen=True)
class AliasMove:
    """One recorded change of an alias: who moved it, when, from which version to which.

    ``from_version`` is None when the alias is set for the first time, ``to_version`` is None
    when it is deleted. ``action`` tells a ``rollback`` apart from an ordinary ``set``.
    """

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    at: str  # ISO 8601, UTC
    action: MoveAction = "set"


@dataclass(frozen=True)
class ModelSummary:
    """One registered model at a glance."""

    name: str
    latest_version: int
    version_count: int
    aliases: dict[str, int] = field(default_factory=dict)


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`RegistryError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(
            f"invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias name, else raise :class:`RegistryError`."""
    if not isinstance(alias, str) or not _NAME.fullmatch(alias):
        raise RegistryError(
            f"invalid alias {alias!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if alias.isdigit():
        raise RegistryError(f"invalid alias {alias!r}: an alias cannot be a version number")
    if alias in RESERVED_ALIASES:
        raise RegistryError(f"invalid alias {alias!r}: {alias!r} always means the newest version")
    return alias
