"""Artifacts: content addressing, atomic upload, verified fetch into the cache, S3."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelserve.errors import ArtifactError, DigestMismatchError
from modelserve.registry import Manifest, Registry

Publish = Callable[..., Manifest]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _store_keys(store_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(store_dir)) for p in store_dir.rglob("*") if p.is_file())


def test_fetch_a_file_artifact(
    registry: Registry, model_file: Path, cache_dir: Path, publish: Publish
) -> None:
    manifest = publish(registry, "fraud", model_file)

    path = registry.fetch(manifest)

    assert path == cache_dir / manifest.hexdigest / "model.txt"
    assert path.read_bytes() == model_file.read_bytes()
    assert manifest.digest == "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()


def test_fetch_a_directory_artifact(
    registry: Registry, model_dir: Path, cache_dir: Path, publish: Publish
) -> None:
    manifest = publish(registry, "fraud", model_dir)

    path = registry.fetch(manifest)

    assert (manifest.kind, manifest.filename) == ("dir", "bundle")
    assert path == cache_dir / manifest.hexdigest / "bundle"
    assert path.is_dir()
    assert _files(path) == _files(model_dir)
    assert (path / "empty").is_dir()


def test_directory_digest_ignores_times_owners_and_modes(
    registry: Registry, model_dir: Path, tmp_path: Path, publish: Publish
) -> None:
    first = publish(registry, "fraud", model_dir)
    os.utime(model_dir / "model.json", (1_000_000, 1_000_000))
    (model_dir / "sub" / "vocab.txt").chmod(0o600)
    renamed = model_dir.rename(tmp_path / "renamed")

    second = publish(registry, "fraud", renamed)

    assert second.digest == first.digest
    assert (second.filename, second.version) == ("renamed", 2)


def test_directory_digest_changes_with_content(
    registry: Registry, model_dir: Path, publish: Publish
) -> None:
    first = publish(registry, "fraud", model_dir)
    (model_dir / "sub" / "vocab.txt").write_text("a\nb\nd\n")

    assert publish(registry, "fraud", model_dir).digest != first.digest


def test_executable_bit_survives_the_round_trip(
    registry: Registry, model_dir: Path, publish: Publish
) -> None:
    (model_dir / "run.sh").write_text("#!/bin/sh\n")
    (model_dir / "run.sh").chmod(0o755)

    path = registry.fetch(publish(registry, "fraud", model_dir))

    assert os.access(path / "run.sh", os.X_OK)
    assert not os.access(path / "model.json", os.X_OK)


def test_a_symlinked_file_is_stored_as_its_content(
    registry: Registry, model_dir: Path, model_file: Path, publish: Publish
) -> None:
    (model_dir / "link.txt").symlink_to(model_file)

    path = registry.fetch(publish(registry, "fraud", model_dir))

    assert not (path / "link.txt").is_symlink()
    assert (path / "link.txt").read_bytes() == model_file.read_bytes()


def test_same_bytes_are_stored_once(
    registry: Registry, model_file: Path, store_dir: Path, publish: Publish
) -> None:
    first = publish(registry, "fraud", model_file)
    publish(registry, "churn", model_file)

    assert _store_keys(store_dir) == [f"sha256/{first.hexdigest}"]


def test_only_final_keys_exist_after_publish(
    registry: Registry, model_file: Path, model_dir: Path, store_dir: Path, publish: Publish
) -> None:
    one = publish(registry, "fraud", model_file)
    two = publish(registry, "fraud", model_dir)

    assert _store_keys(store_dir) == sorted([f"sha256/{one.hexdigest}", f"sha256/{two.hexdigest}"])


@pytest.mark.parametrize("failing", ["put_file", "mv"])
def test_a_failed_upload_leaves_no_key_and_no_version(
    registry: Registry,
    model_file: Path,
    store_dir: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    publish: Publish,
    failing: str,
) -> None:
    fs = registry._store.fs

    def half_written_put(local: str, remote: str, **_: Any) -> None:
        Path(remote).write_bytes(Path(local).read_bytes()[:3])
        raise OSError("connection reset")

    def failing_move(source: str, target: str, **_: Any) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(fs, failing, half_written_put if failing == "put_file" else failing_move)

    with pytest.raises(ArtifactError, match=r"cannot upload artifact sha256:.*connection reset"):
        publish(registry, "fraud", model_file)

    monkeypatch.undo()
    assert _store_keys(store_dir) == []
    assert registry.models() == []
    assert list(cache_dir.iterdir()) == []  # the staged copy is gone too


def test_a_tampered_blob_is_refused_and_nothing_is_cached(
    registry: Registry, model_dir: Path, store_dir: Path, cache_dir: Path, publish: Publish
) -> None:
    manifest = publish(registry, "fraud", model_dir)
    blob = store_dir / "sha256" / manifest.hexdigest
    blob.write_bytes(blob.read_bytes().replace(b"trees", b"TREES"))
    actual = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()

    with pytest.raises(DigestMismatchError) as caught:
        registry.fetch(manifest)

    message = str(caught.value)
    assert "'fraud' version 1" in message
    assert f"expected {manifest.digest}" in message
    assert f"got {actual}" in message
    assert list(cache_dir.iterdir()) == []


def test_fetch_uses_the_cache_without_the_store(
    registry: Registry, model_file: Path, store_dir: Path, publish: Publish
) -> None:
    manifest = publish(registry, "fraud", model_file)
    first = registry.fetch(manifest)
    (store_dir / "sha256" / manifest.hexdigest).unlink()

    assert registry.fetch(manifest) == first


def test_a_blob_missing_from_the_store_is_an_artifact_error(
    registry: Registry, model_file: Path, store_dir: Path, cache_dir: Path, publish: Publish
) -> None:
    manifest = publish(registry, "fraud", model_file)
    (store_dir / "sha256" / manifest.hexdigest).unlink()

    with pytest.raises(ArtifactError, match="missing from the store"):
        registry.fetch(manifest)
    assert list(cache_dir.iterdir()) == []


def test_the_same_bytes_under_two_names_fetch_under_each_name(
    registry: Registry, model_file: Path, tmp_path: Path, publish: Publish
) -> None:
    copy = tmp_path / "weights.bin"
    copy.write_bytes(model_file.read_bytes())
    first = registry.fetch(publish(registry, "fraud", model_file))
    second = registry.fetch(publish(registry, "fraud", copy))

    assert (first.name, second.name) == ("model.txt", "weights.bin")
    assert first.parent == second.parent
    assert second.read_bytes() == first.read_bytes()


def test_an_archive_escaping_its_directory_is_refused(
    registry: Registry, model_file: Path, store_dir: Path, tmp_path: Path, publish: Publish
) -> None:
    manifest = publish(registry, "fraud", model_file)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    data = buffer.getvalue()
    hexdigest = hashlib.sha256(data).hexdigest()
    (store_dir / "sha256" / hexdigest).write_bytes(data)
    forged = Manifest.from_dict(
        {**manifest.to_dict(), "digest": f"sha256:{hexdigest}", "kind": "dir", "filename": "d"}
    )

    with pytest.raises(ArtifactError, match="not a valid directory archive"):
        registry.fetch(forged)
    assert not list(tmp_path.rglob("escaped.txt"))


@pytest.mark.parametrize("filename", ["..", "a/b", ""])
def test_a_manifest_with_an_unsafe_file_name_is_refused(
    registry: Registry, model_file: Path, publish: Publish, filename: str
) -> None:
    manifest = publish(registry, "fraud", model_file)
    forged = Manifest.from_dict({**manifest.to_dict(), "filename": filename})

    with pytest.raises(ArtifactError, match="not a plain file name"):
        registry.fetch(forged)


# -- S3 through moto's server ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    import s3fs  # noqa: F401
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(
        ip_address="127.0.0.1", port=_free_port(), verbose=False
    )
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_publish_and_fetch_through_s3(
    s3_endpoint: str, tmp_path: Path, model_file: Path, model_dir: Path, publish: Publish
) -> None:
    import boto3

    options = {"client_kwargs": {"endpoint_url": s3_endpoint}, "key": "x", "secret": "x"}
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="models")
    url = f"sqlite:///{tmp_path}/registry.db"

    with Registry(
        url, "s3://models/team-a", tmp_path / "cache", storage_options=options
    ) as registry:
        one = publish(registry, "fraud", model_file)
        two = publish(registry, "fraud", model_dir)
        publish(registry, "churn", model_file)  # same digest: not uploaded again
        file_path = registry.fetch(one)
        dir_path = registry.fetch(two)

    keys = sorted(obj["Key"] for obj in client.list_objects_v2(Bucket="models")["Contents"])
    assert keys == sorted([f"team-a/sha256/{one.hexdigest}", f"team-a/sha256/{two.hexdigest}"])
    assert file_path.read_bytes() == model_file.read_bytes()
    assert _files(dir_path) == _files(model_dir)

    client.put_object(Bucket="models", Key=f"team-a/sha256/{one.hexdigest}", Body=b"tampered")
    with (
        Registry(
            url, "s3://models/team-a", tmp_path / "other-cache", storage_options=options
        ) as registry,
        pytest.raises(DigestMismatchError),
    ):
        registry.fetch(one)
    assert list((tmp_path / "other-cache").iterdir()) == []


def test_settings_pass_artifact_store_options_to_s3(
    s3_endpoint: str, tmp_path: Path, model_file: Path, publish: Publish
) -> None:
    import boto3

    from modelserve.config import load_settings

    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
    ).create_bucket(Bucket="settings-bucket")
    (tmp_path / "modelserve.toml").write_text(
        'artifact_store = "s3://settings-bucket/svc"\n'
        "[artifact_store_options]\n"
        'key = "x"\nsecret = "x"\n'
        f'client_kwargs = {{endpoint_url = "{s3_endpoint}"}}\n'
    )
    settings = load_settings(tmp_path, environ={})
    with Registry.from_settings(settings) as registry:
        manifest = publish(registry, "fraud", model_file)
        assert registry.fetch(manifest).read_bytes() == model_file.read_bytes()
