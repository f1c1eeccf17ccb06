"""The registry: model versions and aliases in SQL, artifacts in an fsspec store.

Versions are numbered per model, 1, 2, 3, ... in publish order. The next number is taken
inside one transaction that first locks the model's row (``SELECT ... FOR UPDATE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent publishers, even in different
processes or on different machines, get distinct numbers; the unique ``(model, version)``
constraint backs this up and a violation is retried. Alias moves take the same lock and are
recorded in a history table, from which :meth:`Registry.rollback` undoes the last move.
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from modelserve.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    RegistryError,
    VersionNotFoundError,
)
from modelserve.registry import _schema as t
from modelserve.registry._artifacts import ArtifactCache, ArtifactStore, pack
from modelserve.registry._database import (
    create_engine,
    display_url,
    read_transaction,
    translate_errors,
    upgrade,
    write_transaction,
)
from modelserve.registry._records import (
    AliasMove,
    Manifest,
    ModelSummary,
    MoveAction,
    check_alias,
    check_model_name,
)

if TYPE_CHECKING:
    from modelserve.config import Settings

__all__ = ["Registry"]

PUBLISH_ATTEMPTS = 5
#: How many names an error message lists before it says "... and N more".
LISTED_NAMES = 50


class Registry:
    """Model versions, aliases and their artifacts; one instance per process is enough.

    ``url`` is an SQLAlchemy database URL (``sqlite:////abs/path/registry.db`` or
    ``postgresql+psycopg://user@host/db``); ``artifact_store`` a local directory or any fsspec
    URL (``s3://bucket/prefix`` with the ``s3`` extra), with ``storage_options`` passed to
    fsspec; ``cache_dir`` the local directory that :meth:`fetch` fills. Opening connects and
    applies any pending schema migration, so an unreachable database fails here with
    :class:`~modelserve.errors.RegistryUnavailableError`.
    """

    def __init__(
        self,
        url: str,
        artifact_store: str,
        cache_dir: str | Path,
        *,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self._engine = create_engine(url)
        try:
            upgrade(self._engine)
            self._store = ArtifactStore(str(artifact_store), storage_options)
        except BaseException:
            self._engine.dispose()
            raise
        self._cache = ArtifactCache(Path(cache_dir))

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """The registry a service's settings name (``registry_url``, ``artifact_store``...)."""
        return cls(
            settings.registry_url,
            settings.artifact_store,
            settings.cache_dir,
            storage_options=dict(settings.artifact_store_options) or None,
        )

    def __repr__(self) -> str:
        return (
            f"Registry({display_url(self._engine.url)!r}, {self._store.location!r}, "
            f"{str(self._cache.directory)!r})"
        )

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- versions -------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        artifact: Path,
        *,
        class_path: str,
        test_data: list[dict[str, Any]],
        golden: list[Any],
        tolerance: dict[str, Any],
        environment: dict[str, Any],
        actor: str | None = None,
        git_commit: str | None = None,
    ) -> Manifest:
        """Store ``artifact`` (a file or a directory) as the next version of model ``name``.

        Everything is checked before anything is written. The artifact is uploaded first
        (content-addressed, skipped when the store already has the digest), then the version
        is recorded, so a recorded version always has its artifact.
        """
        check_model_name(name)
        if not isinstance(class_path, str) or not class_path.strip():
            raise RegistryError("class_path must name the model class ('package.module:Class')")
        documents = {
            "test_data": _json_document("test_data", test_data, list),
            "golden": _json_document("golden", golden, list),
            "tolerance": _json_document("tolerance", tolerance, dict),
            "environment": _json_document("environment", environment, dict),
        }
        actor = actor or default_actor()
        with pack(Path(artifact), self._cache.directory) as packed:
            self._store.put(packed)
        created = datetime.now(UTC)
        row = {
            "class_path": class_path,
            "digest": packed.digest,
            "size": packed.size,
            "kind": packed.kind,
            "filename": packed.filename,
            **documents,
            "created_at": created,
            "created_by": actor,
            "git_commit": git_commit,
        }
        version = self._insert_version(name, row)
        return Manifest(
            name=name,
            version=version,
            class_path=class_path,
            digest=packed.digest,
            size=packed.size,
            kind=packed.kind,
            filename=packed.filename,
            test_data=documents["test_data"],
            golden=documents["golden"],
            tolerance=documents["tolerance"],
            environment=documents["environment"],
            created_at=_iso(created),
            created_by=actor,
            git_commit=git_commit,
        )

    def _insert_version(self, name: str, row: dict[str, Any]) -> int:
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                with translate_errors(self._engine), write_transaction(self._engine) as conn:
                    model_id = self._lock_model(conn, name, create_at=row["created_at"])
                    latest = conn.scalar(
                        sa.select(sa.func.max(t.versions.c.version)).where(
                            t.versions.c.model_id == model_id
                        )
                    )
                    version = int(latest or 0) + 1
                    conn.execute(
                        t.versions.insert().values(model_id=model_id, version=version, **row)
                    )
                return version
            except exc.IntegrityError as error:
                # Only reachable if another writer slipped past the row lock (a database
                # without FOR UPDATE); the unique constraint caught it, so try again.
                if attempt == PUBLISH_ATTEMPTS:
                    raise RegistryError(
                        f"could not assign a version to model {name!r} after "
                        f"{PUBLISH_ATTEMPTS} attempts: {str(error.orig).splitlines()[0]}"
                    ) from error
        raise AssertionError("unreachable")

    def versions(self, name: str) -> list[Manifest]:
        """Every version of model ``name``, oldest first."""
        check_model_name(name)
        with translate_errors(self._engine), read_transaction(self._engine) as conn:
            model_id = self._model_id(conn, name)
            rows = conn.execute(
                sa.select(t.versions)
                .where(t.versions.c.model_id == model_id)
                .order_by(t.versions.c.version)
            ).mappings()
            return [_manifest(name, row) for row in rows]

    def get(self, name: str, ref: str | int | None = None) -> Manifest:
        """One version of ``name``: by number (``7`` or ``"7"``), alias, or newest (None/latest)."""
        check_model_name(name)
        with translate_errors(self._engine), read_transaction(self._engine) as conn:
            model_id = self._model_id(conn, name)
            version = self._version_for(conn, model_id, name, ref)
            row = (
                conn.execute(
                    sa.select(t.versions).where(
                        t.versions.c.model_id == model_id, t.versions.c.version == version
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise VersionNotFoundError(name, version, self._version_numbers(conn, model_id))
            return _manifest(name, row)

    def resolve(self, spec: str) -> Manifest:
        """The version a ``name``, ``name@7``, ``name@production`` or ``name@latest`` means.

        A bare ``name`` means its newest version.
        """
        name, at, ref = spec.partition("@")
        if at and not ref:
            raise RegistryError(f"model reference {spec!r} has nothing after '@'")
        return self.get(name, ref or None)

    def models(self) -> list[ModelSummary]:
        """Every registered model with its newest version, version count and aliases."""
        with translate_errors(self._engine), read_transaction(self._engine) as conn:
            counts = conn.execute(
                sa.select(
                    t.models.c.id,
                    t.models.c.name,
                    sa.func.max(t.versions.c.version),
                    sa.func.count(t.versions.c.version),
                )
                .join(t.versions, t.versions.c.model_id == t.models.c.id)
                .group_by(t.models.c.id, t.models.c.name)
                .order_by(t.models.c.name)
            ).all()
            pointers: dict[int, dict[str, int]] = {}
            for model_id, alias, version in conn.execute(
                sa.select(t.aliases.c.model_id, t.aliases.c.alias, t.aliases.c.version).order_by(
                    t.aliases.c.alias
                )
            ):
                pointers.setdefault(model_id, {})[alias] = version
        return [
            ModelSummary(name, int(latest), int(count), pointers.get(model_id, {}))
            for model_id, name, latest, count in counts
        ]

    # -- aliases --------------------------------------------------------------------------

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of model ``name`` and the versions they point to."""
        check_model_name(name)
        with translate_errors(self._engine), read_transaction(self._engine) as conn:
            return self._aliases(conn, self._model_id(conn, name))

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str | None = None
    ) -> AliasMove:
        """Point ``alias`` at ``version`` and record the move.

        A missing version raises :class:`VersionNotFoundError` and leaves the alias as it was.
        Setting an alias to the version it already points to changes and records nothing.
        """
        check_model_name(name)
        check_alias(alias)
        if isinstance(version, bool) or not isinstance(version, int):
            raise RegistryError(f"version must be an integer, got {version!r}")
        with translate_errors(self._engine), write_transaction(self._engine) as conn:
            model_id = self._lock_model(conn, name)
            if version not in (numbers := self._version_numbers(conn, model_id)):
                raise VersionNotFoundError(name, version, numbers)
            current = self._aliases(conn, model_id).get(alias)
            if current == version:
                return AliasMove(name, alias, current, version, actor or default_actor(), _now())
            return self._move(conn, model_id, name, alias, current, version, "set", actor)

    def delete_alias(self, name: str, alias: str, *, actor: str | None = None) -> AliasMove:
        """Remove ``alias`` from model ``name`` and record the move."""
        check_model_name(name)
        check_alias(alias)
        with translate_errors(self._engine), write_transaction(self._engine) as conn:
            model_id = self._lock_model(conn, name)
            pointers = self._aliases(conn, model_id)
            if alias not in pointers:
                raise AliasNotFoundError(name, alias, pointers)
            return self._move(conn, model_id, name, alias, pointers[alias], None, "delete", actor)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Recorded moves of one alias (or of all aliases) of model ``name``, newest last."""
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        with translate_errors(self._engine), read_transaction(self._engine) as conn:
            model_id = self._model_id(conn, name)
            moves = self._moves(conn, model_id, name, alias)
            if alias is not None and not moves:
                raise AliasNotFoundError(name, alias, self._aliases(conn, model_id))
            return moves

    def rollback(
        self, name: str, alias: str = "production", *, actor: str | None = None
    ) -> AliasMove:
        """Undo the last move of ``alias``: point it back where it pointed before.

        Rollbacks stack: after 1 -> 2 -> 3, a rollback goes to 2, the next one to 1. Raises
        :class:`RegistryError` when there is no earlier version to go back to.
        """
        check_model_name(name)
        check_alias(alias)
        with translate_errors(self._engine), write_transaction(self._engine) as conn:
            model_id = self._lock_model(conn, name)
            moves = self._moves(conn, model_id, name, alias)
            if not moves:
                raise AliasNotFoundError(name, alias, self._aliases(conn, model_id))
            undoable: list[AliasMove] = []
            for move in moves:
                if move.action == "rollback":
                    if undoable:
                        undoable.pop()
                else:
                    undoable.append(move)
            target = undoable[-1].from_version if undoable else None
            if target is None:
                raise RegistryError(
                    f"alias {alias!r} of model {name!r} has no earlier version to roll back to"
                )
            current = self._aliases(conn, model_id).get(alias)
            return self._move(conn, model_id, name, alias, current, target, "rollback", actor)

    # -- artifacts ------------------------------------------------------------------------

    def fetch(self, manifest: Manifest) -> Path:
        """A verified local copy of the manifest's artifact: the file, or the directory."""
        return self._cache.fetch(self._store, manifest)

    # -- helpers (all run inside a caller's transaction) ----------------------------------

    def _lock_model(self, conn: Connection, name: str, create_at: datetime | None = None) -> int:
        """The model's id, with its row locked until the transaction ends.

        With ``create_at`` a missing model is created; without, it raises ModelNotFoundError.
        """
        if create_at is not None:
            dialect = conn.dialect.name
            values = {"name": name, "created_at": create_at}
            if dialect == "postgresql":
                conn.execute(postgresql.insert(t.models).values(values).on_conflict_do_nothing())
            elif dialect == "sqlite":
                conn.execute(sqlite.insert(t.models).values(values).on_conflict_do_nothing())
            elif conn.scalar(sa.select(t.models.c.id).where(t.models.c.name == name)) is None:
                with conn.begin_nested():
                    conn.execute(t.models.insert().values(values))
        model_id = conn.scalar(
            sa.select(t.models.c.id).where(t.models.c.name == name).with_for_update()
        )
        if model_id is None:
            raise ModelNotFoundError(name, self._model_names(conn))
        return int(model_id)

    def _model_id(self, conn: Connection, name: str) -> int:
        model_id = conn.scalar(sa.select(t.models.c.id).where(t.models.c.name == name))
        if model_id is None:
            raise ModelNotFoundError(name, self._model_names(conn))
        return int(model_id)

    def _model_names(self, conn: Connection) -> list[str]:
        names = list(
            conn.scalars(sa.select(t.models.c.name).order_by(t.models.c.name).limit(LISTED_NAMES))
        )
        if len(names) == LISTED_NAMES:
            total = conn.scalar(sa.select(sa.func.count()).select_from(t.models)) or 0
            if total > LISTED_NAMES:
                names.append(f"... and {total - LISTED_NAMES} more")
        return names

    def _version_numbers(self, conn: Connection, model_id: int) -> list[int]:
        return list(
            conn.scalars(
                sa.select(t.versions.c.version)
                .where(t.versions.c.model_id == model_id)
                .order_by(t.versions.c.version)
            )
        )

    def _version_for(
        self, conn: Connection, model_id: int, name: str, ref: str | int | None
    ) -> int:
        if ref is None or ref == "latest":
            latest = conn.scalar(
                sa.select(sa.func.max(t.versions.c.version)).where(
                    t.versions.c.model_id == model_id
                )
            )
            return int(latest or 0)
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise RegistryError(f"a version reference is a number or an alias, got {ref!r}")
        if isinstance(ref, int):
            return ref
        if ref.isdigit():
            return int(ref)
        check_alias(ref)
        pointers = self._aliases(conn, model_id)
        if ref not in pointers:
            raise AliasNotFoundError(name, ref, pointers)
        return pointers[ref]

    def _aliases(self, conn: Connection, model_id: int) -> dict[str, int]:
        rows = conn.execute(
            sa.select(t.aliases.c.alias, t.aliases.c.version)
            .where(t.aliases.c.model_id == model_id)
            .order_by(t.aliases.c.alias)
        )
        return {alias: int(version) for alias, version in rows}

    def _moves(
        self, conn: Connection, model_id: int, name: str, alias: str | None
    ) -> list[AliasMove]:
        query = sa.select(t.alias_moves).where(t.alias_moves.c.model_id == model_id)
        if alias is not None:
            query = query.where(t.alias_moves.c.alias == alias)
        rows = conn.execute(query.order_by(t.alias_moves.c.id)).mappings()
        return [
            AliasMove(
                name=name,
                alias=row["alias"],
                from_version=row["from_version"],
                to_version=row["to_version"],
                actor=row["actor"],
                at=_iso(row["at"]),
                action=row["action"],
            )
            for row in rows
        ]

    def _move(
        self,
        conn: Connection,
        model_id: int,
        name: str,
        alias: str,
        current: int | None,
        target: int | None,
        action: MoveAction,
        actor: str | None,
    ) -> AliasMove:
        actor = actor or default_actor()
        at = datetime.now(UTC)
        where = (t.aliases.c.model_id == model_id) & (t.aliases.c.alias == alias)
        if target is None:
            conn.execute(t.aliases.delete().where(where))
        elif current is None:
            conn.execute(
                t.aliases.insert().values(
                    model_id=model_id, alias=alias, version=target, updated_at=at, updated_by=actor
                )
            )
        else:
            conn.execute(
                t.aliases.update()
                .where(where)
                .values(version=target, updated_at=at, updated_by=actor)
            )
        conn.execute(
            t.alias_moves.insert().values(
                model_id=model_id,
                alias=alias,
                from_version=current,
                to_version=target,
                action=action,
                actor=actor,
                at=at,
            )
        )
        return AliasMove(name, alias, current, target, actor, _iso(at), action)


def default_actor() -> str:
    """Who is acting when the caller does not say: the login name, else ``unknown``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "unknown"


def _json_document(label: str, value: Any, kind: type) -> Any:
    """``value`` as it will read back from the database, or a RegistryError saying why not."""
    if not isinstance(value, kind):
        raise RegistryError(f"{label} must be a {kind.__name__}, got {type(value).__name__}")
    items: Any = value
    if label == "test_data" and not all(isinstance(item, dict) for item in items):
        raise RegistryError("test_data must be a list of dicts with 'input' and 'expected'")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise RegistryError(f"{label} must be plain JSON (no NaN or infinity): {error}") from None


def _manifest(name: str, row: Any) -> Manifest:
    return Manifest(
        name=name,
        version=int(row["version"]),
        class_path=row["class_path"],
        digest=row["digest"],
        size=int(row["size"]),
        kind=row["kind"],
        filename=row["filename"],
        test_data=row["test_data"],
        golden=row["golden"],
        tolerance=row["tolerance"],
        environment=row["environment"],
        created_at=_iso(row["created_at"]),
        created_by=row["created_by"],
        git_commit=row["git_commit"],
    )


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which were stored as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _now() -> str:
    return _iso(datetime.now(UTC))
