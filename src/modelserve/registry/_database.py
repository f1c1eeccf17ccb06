"""Connecting to the registry database and bringing its schema up to date.

SQLite (the default, one file) and PostgreSQL (shared use) are supported. Opening runs the
Alembic migrations shipped in ``migrations/``; concurrent openers are serialized by a
transaction-scoped advisory lock on PostgreSQL and by ``BEGIN IMMEDIATE`` on SQLite, so two
processes starting at once never race on the DDL.

On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (it takes the database's
write lock up front, waiting up to the busy timeout), which makes read-then-write sequences
such as "next version number" atomic across processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from modelserve.errors import RegistryError, RegistryUnavailableError

__all__ = [
    "VERSION_TABLE",
    "create_engine",
    "display_url",
    "read_transaction",
    "translate_errors",
    "upgrade",
    "write_transaction",
]

#: Alembic's bookkeeping table, named for modelserve so a shared database can hold others.
VERSION_TABLE = "modelserve_alembic_version"
MIGRATIONS = Path(__file__).parent / "migrations"
#: Key of the PostgreSQL advisory lock held while migrating (any fixed 64-bit number).
_MIGRATION_LOCK = 0x6D6F64656C737276  # "modelsrv"
_WRITE = "modelserve_write"
SQLITE_BUSY_TIMEOUT = 30.0
PG_CONNECT_TIMEOUT = 10


def display_url(url: str | URL) -> str:
    """The URL with any password replaced by ``***``, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparsable URL>"


def create_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's parent directory is created if missing."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise RegistryError(f"invalid registry database URL {url!r}: {error}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT}
    try:
        return sa.create_engine(parsed, **kwargs)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
        raise RegistryError(
            f"cannot use registry database {display_url(parsed)}: {_first_line(error)}"
        ) from None


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RegistryUnavailableError(
                f"registry database {display_url(url)} is unreachable: {error}"
            ) from None
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    # pysqlite's own transaction handling starts transactions lazily and never with
    # IMMEDIATE; take it over so that writers lock the database before they read.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its start."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (one consistent snapshot on PostgreSQL)."""
    with engine.connect() as connection, connection.begin():
        yield connection


@contextmanager
def translate_errors(engine: Engine) -> Iterator[None]:
    """Turn a lost or refused database connection into one-line RegistryUnavailableError."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise RegistryUnavailableError(
            f"registry database {display_url(engine.url)} is unreachable: {_reason(error)}"
        ) from None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to call from many processes at once."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    with translate_errors(engine):
        try:
            with write_transaction(engine) as connection:
                if engine.dialect.name == "postgresql":
                    # Held until this transaction ends; a second opener waits here and then
                    # finds the schema already at head.
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except (exc.OperationalError, exc.InterfaceError):
            raise
        except exc.SQLAlchemyError as error:
            raise RegistryError(
                f"cannot prepare registry database {display_url(engine.url)}: {_first_line(error)}"
            ) from None


def _reason(error: exc.DBAPIError) -> str:
    """The useful part of a driver's connection error, on one line."""
    line = _first_line(error.orig if error.orig is not None else error)
    # psycopg: 'connection failed: connection to server at "h", port 1 failed: Connection refused'
    reason = line.rsplit(" failed: ", 1)[-1].strip()
    if not reason:
        return "unknown error"
    if reason[:1].isupper() and reason[1:2].islower():
        reason = reason[0].lower() + reason[1:]
    return reason


def _first_line(error: BaseException) -> str:
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
