"""Alembic migrations of the registry schema, run by :mod:`modelserve.registry._database`."""
