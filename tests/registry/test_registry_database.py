"""The registry database: migrations, unreachable servers, concurrent processes."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from modelserve.errors import RegistryError, RegistryUnavailableError
from modelserve.registry import Manifest, Registry
from modelserve.registry import _schema as schema

Publish = Callable[..., Manifest]

TABLES = {
    "modelserve_alembic_version",
    "modelserve_alias_moves",
    "modelserve_aliases",
    "modelserve_models",
    "modelserve_versions",
}


def _tables_and_revision(url: str) -> tuple[set[str], list[str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            revisions = list(
                conn.scalars(sa.text("SELECT version_num FROM modelserve_alembic_version"))
            )
        return tables, revisions
    finally:
        engine.dispose()


def test_opening_creates_the_schema_through_alembic(
    registry_url: str, store_dir: Path, cache_dir: Path
) -> None:
    Registry(registry_url, str(store_dir), cache_dir).close()

    tables, revisions = _tables_and_revision(registry_url)
    assert tables >= TABLES
    assert revisions == ["0001"]


def test_the_migrations_build_exactly_the_tables_the_code_queries(
    registry_url: str, store_dir: Path, cache_dir: Path
) -> None:
    Registry(registry_url, str(store_dir), cache_dir).close()

    engine = sa.create_engine(registry_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": "modelserve_alembic_version"}
            )
            assert compare_metadata(context, schema.metadata) == []
    finally:
        engine.dispose()


def test_opening_twice_keeps_the_data_and_the_schema(
    registry_url: str, store_dir: Path, cache_dir: Path, model_file: Path, publish: Publish
) -> None:
    with Registry(registry_url, str(store_dir), cache_dir) as first:
        manifest = publish(first, "fraud", model_file)
        first.set_alias("fraud", "production", 1)
    with (
        Registry(registry_url, str(store_dir), cache_dir) as second,
        Registry(registry_url, str(store_dir), cache_dir) as third,
    ):
        assert second.resolve("fraud@production") == manifest
        assert third.versions("fraud") == [manifest]

    assert _tables_and_revision(registry_url)[1] == ["0001"]


def test_an_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"

    with pytest.raises(RegistryUnavailableError) as caught:
        Registry(url, str(tmp_path / "store"), tmp_path / "cache")

    message = str(caught.value)
    assert message == (
        "registry database postgresql+psycopg://postgres:***@127.0.0.1:1/test "
        "is unreachable: connection refused"
    )
    assert caught.value.http_status == 503


def test_an_sqlite_file_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    url = f"sqlite:///{tmp_path}/a-file/sub/registry.db"

    with pytest.raises(RegistryUnavailableError, match="is unreachable") as caught:
        Registry(url, str(tmp_path / "store"), tmp_path / "cache")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [("not a url", "invalid registry database URL"), ("nosuchdb://x/y", "cannot use")],
)
def test_an_unusable_url_is_a_registry_error(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        Registry(url, str(tmp_path / "store"), tmp_path / "cache")


# -- several processes at once ---------------------------------------------------------------

PROCESSES = 2
PUBLISHES = 5


def _publisher(
    url: str,
    store: str,
    cache: str,
    artifact: str,
    barrier: Any,
    out: str,
) -> None:
    """Open the registry and publish behind barriers, so the processes really overlap."""
    try:
        barrier.wait()
        with Registry(url, store, cache) as registry:  # concurrent migration of a fresh schema
            barrier.wait()
            versions = [
                registry.publish(
                    "fraud",
                    Path(artifact),
                    class_path="team.models:Fraud",
                    test_data=[],
                    golden=[],
                    tolerance={},
                    environment={},
                    actor=f"pid-{multiprocessing.current_process().pid}",
                ).version
                for _ in range(PUBLISHES)
            ]
    except BaseException:
        barrier.abort()  # release the other process at once instead of at the join timeout
        raise
    Path(out).write_text(json.dumps(versions))


def _publish_concurrently(url: str, tmp_path: Path, model_file: Path) -> list[list[int]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    outputs = [tmp_path / f"versions-{index}.json" for index in range(PROCESSES)]
    processes = [
        context.Process(
            target=_publisher,
            args=(
                url,
                str(tmp_path / "store"),
                str(tmp_path / f"cache-{index}"),
                str(model_file),
                barrier,
                str(out),
            ),
        )
        for index, out in enumerate(outputs)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    for process in processes:
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    return [json.loads(out.read_text()) for out in outputs]


@pytest.mark.postgres
def test_processes_publishing_at_once_on_postgres_get_distinct_versions(
    postgres_url: str, tmp_path: Path, model_file: Path
) -> None:
    results = _publish_concurrently(postgres_url, tmp_path, model_file)

    every = sorted(v for versions in results for v in versions)
    assert every == list(range(1, PROCESSES * PUBLISHES + 1))
    assert all(versions == sorted(versions) for versions in results)
    with Registry(postgres_url, str(tmp_path / "store"), tmp_path / "cache") as registry:
        assert [m.version for m in registry.versions("fraud")] == every
        assert len({m.created_by for m in registry.versions("fraud")}) == PROCESSES


def test_processes_publishing_at_once_on_sqlite_get_distinct_versions(
    tmp_path: Path, model_file: Path
) -> None:
    url = f"sqlite:///{tmp_path}/state/registry.db"
    results = _publish_concurrently(url, tmp_path, model_file)

    every = sorted(v for versions in results for v in versions)
    assert every == list(range(1, PROCESSES * PUBLISHES + 1))
