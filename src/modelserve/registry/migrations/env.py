"""Alembic environment of the registry: always run in code, on a connection it is handed.

:func:`modelserve.registry._database.upgrade` opens the transaction (and, on PostgreSQL, takes
an advisory lock) and passes the connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from modelserve.registry._database import VERSION_TABLE


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the modelserve registry migrations run through modelserve.registry, "
            "which passes a connection in config.attributes['connection']"
        )
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the modelserve registry migrations do not support offline mode")
run_migrations_online()
