"""Fresh PostgreSQL schemas for tests that run against the real server on 127.0.0.1:5432.

Each test gets a schema with a random name (the URL's ``search_path`` option points there, so
the tables and Alembic's version table land in it), dropped afterwards.
``TEST_POSTGRES_URL`` overrides the server's URL. An unreachable server fails the
test: the README's test command starts PostgreSQL, and a skipped registry test proves nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_schema_url(prefix: str = "ms_test") -> Iterator[str]:
    """Yield the URL of a new, empty schema; drop it when the generator is closed."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {error.orig}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
