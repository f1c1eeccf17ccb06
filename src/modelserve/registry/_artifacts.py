"""Artifacts: packing them content-addressed, storing them through fsspec, caching them locally.

A published file is stored as its bytes; a directory as a deterministic tar (entries sorted by
name, mtime/uid/gid zeroed, modes normalized to 0644/0755), so the same files always give the
same sha256 digest. The store keeps one blob per digest at ``<store>/sha256/<hex>``. A blob is
uploaded to ``<store>/tmp/<hex>.<random>.partial`` first and then moved to its final key, so a
reader never sees half an artifact (a local rename is atomic; on object stores the final object
is written by a single server-side copy). Left-over ``tmp/`` keys from a crashed upload are
never read and can be expired by a lifecycle rule.

The local cache keeps ``<cache>/<hex>/<filename>``. ``<cache>/<hex>`` is built in a temporary
directory beside it, after the downloaded bytes matched the digest, and renamed into place in
one step: if it exists, it is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from modelserve.errors import ArtifactError, DigestMismatchError
from modelserve.registry._records import ArtifactKind, Manifest

__all__ = ["ArtifactCache", "ArtifactStore", "PackedArtifact", "pack"]

CHUNK = 1 << 20
BLOB_PREFIX = "sha256"
TMP_PREFIX = "tmp"


@dataclass(frozen=True)
class PackedArtifact:
    """An artifact staged locally for upload: the exact bytes whose digest is recorded."""

    path: Path
    hexdigest: str
    size: int
    kind: ArtifactKind
    filename: str

    @property
    def digest(self) -> str:
        return f"sha256:{self.hexdigest}"


@contextmanager
def pack(artifact: Path, staging_dir: Path) -> Iterator[PackedArtifact]:
    """Stage ``artifact`` (a file or a directory) as one blob; the staged copy is removed after.

    Raises :class:`ArtifactError` if the artifact is missing, empty or unreadable, before
    anything is written anywhere but ``staging_dir``.
    """
    artifact = Path(artifact)
    kind = _check_artifact(artifact)
    filename = artifact.resolve().name
    check_filename(filename)
    staging_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".publish-", dir=staging_dir)
    staged = Path(name)
    try:
        try:
            with os.fdopen(handle, "wb") as out:
                if kind == "file":
                    _copy_file(artifact, out)
                else:
                    _write_tar(artifact, out)
            hexdigest, size = _hash_file(staged)
        except OSError as error:
            raise ArtifactError(f"cannot read artifact {artifact}: {error}") from error
        yield PackedArtifact(staged, hexdigest, size, kind, filename)
    finally:
        staged.unlink(missing_ok=True)


def check_filename(filename: str) -> str:
    """Refuse a recorded file name that is not one plain path component."""
    if not filename or filename in {".", ".."} or "/" in filename or "\\" in filename:
        raise ArtifactError(f"artifact file name {filename!r} is not a plain file name")
    return filename


def _check_artifact(artifact: Path) -> ArtifactKind:
    if not artifact.exists():
        raise ArtifactError(f"artifact {artifact} does not exist")
    if artifact.is_file():
        if artifact.stat().st_size == 0:
            raise ArtifactError(f"artifact {artifact} is an empty file")
        return "file"
    if artifact.is_dir():
        if not any(is_dir is False for _, _, is_dir in _tree(artifact)):
            raise ArtifactError(f"artifact directory {artifact} contains no files")
        return "dir"
    raise ArtifactError(f"artifact {artifact} is neither a file nor a directory")


def _tree(root: Path, prefix: str = "") -> Iterator[tuple[str, Path, bool]]:
    """(archive name, path, is_dir) of everything under ``root``, sorted by name."""
    try:
        children = sorted(root.iterdir(), key=lambda child: child.name)
    except OSError as error:
        raise ArtifactError(f"cannot list artifact directory {root}: {error}") from error
    for child in children:
        name = prefix + child.name
        if child.is_dir():
            if child.is_symlink():
                raise ArtifactError(
                    f"artifact entry {child} is a symbolic link to a directory; "
                    "copy the directory in instead"
                )
            yield name, child, True
            yield from _tree(child, name + "/")
        elif child.is_file():  # a symlink to a file is stored as the file's content
            yield name, child, False
        else:
            raise ArtifactError(
                f"artifact entry {child} is not a regular file or directory "
                "(a broken link, a socket or a device)"
            )


def _normalized(info: tarfile.TarInfo, executable: bool) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() or executable else 0o644
    return info


def _write_tar(directory: Path, out: BinaryIO) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path, is_dir in _tree(directory):
            if is_dir:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(_normalized(info, executable=True))
                continue
            st = path.stat()
            info = tarfile.TarInfo(name)
            info.size = st.st_size
            with path.open("rb") as source:
                tar.addfile(_normalized(info, bool(st.st_mode & stat.S_IXUSR)), source)


def _copy_file(source: Path, out: BinaryIO) -> None:
    with source.open("rb") as handle:
        shutil.copyfileobj(handle, out, CHUNK)


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore:
    """Content-addressed blobs in any fsspec location (a local directory by default)."""

    def __init__(self, location: str, storage_options: dict[str, Any] | None = None) -> None:
        self.location = location
        try:
            fs, root = fsspec.core.url_to_fs(location, **(storage_options or {}))
        except (ImportError, ValueError) as error:
            raise ArtifactError(f"cannot use artifact store {location!r}: {error}") from error
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = str(root).rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        if self._local:
            try:
                fs.makedirs(f"{self.root}/{BLOB_PREFIX}", exist_ok=True)
                fs.makedirs(f"{self.root}/{TMP_PREFIX}", exist_ok=True)
            except OSError as error:
                raise ArtifactError(
                    f"cannot create artifact store {location!r}: {error}"
                ) from error

    def blob_key(self, hexdigest: str) -> str:
        """The final key of the blob with this digest."""
        return f"{self.root}/{BLOB_PREFIX}/{hexdigest}"

    def exists(self, hexdigest: str) -> bool:
        key = self.blob_key(hexdigest)
        self.fs.invalidate_cache(key)
        return bool(self.fs.exists(key))

    def put(self, packed: PackedArtifact) -> None:
        """Upload a staged blob under its digest unless the store already has it."""
        if self.exists(packed.hexdigest):
            return
        final = self.blob_key(packed.hexdigest)
        partial = f"{self.root}/{TMP_PREFIX}/{packed.hexdigest}.{uuid.uuid4().hex}.partial"
        try:
            self.fs.put_file(str(packed.path), partial)
            self.fs.mv(partial, final)
        except Exception as error:  # any backend failure: leave no partial key behind
            with suppress(Exception):
                self.fs.invalidate_cache(partial)
                if self.fs.exists(partial):
                    self.fs.rm(partial)
            raise ArtifactError(
                f"cannot upload artifact {packed.digest} to {self.location}: "
                f"{type(error).__name__}: {error}"
            ) from error

    def open(self, hexdigest: str) -> BinaryIO:
        """Open the blob for reading; :class:`ArtifactError` if the store lacks it."""
        key = self.blob_key(hexdigest)
        try:
            handle: BinaryIO = self.fs.open(key, "rb")
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact sha256:{hexdigest} is missing from the store {self.location}"
            ) from None
        except OSError as error:
            raise ArtifactError(
                f"cannot read artifact sha256:{hexdigest} from {self.location}: {error}"
            ) from error
        return handle


class ArtifactCache:
    """Verified local copies of artifacts, one directory per digest."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def fetch(self, store: ArtifactStore, manifest: Manifest) -> Path:
        """The local path of the manifest's artifact, downloading and verifying it if needed."""
        filename = check_filename(manifest.filename)
        hexdigest = manifest.hexdigest
        if manifest.digest != f"sha256:{hexdigest}" or not hexdigest:
            raise ArtifactError(f"{manifest.spec} has an unsupported digest {manifest.digest!r}")
        final = self.directory / hexdigest
        if (final / filename).exists():
            return final / filename
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArtifactError(f"cannot create cache {self.directory}: {error}") from error
        if not final.exists():
            self._download(store, manifest, final)
        if not (final / filename).exists():
            # The digest is cached under another name (the same bytes published as another
            # file or directory name): add this name beside it, atomically as well.
            self._add_name(final, filename)
        return final / filename

    def _download(self, store: ArtifactStore, manifest: Manifest, final: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.directory))
        try:
            blob = work / "blob"
            digest = hashlib.sha256()
            with store.open(manifest.hexdigest) as source, blob.open("wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = f"sha256:{digest.hexdigest()}"
            if actual != manifest.digest:
                raise DigestMismatchError(
                    f"artifact of model {manifest.name!r} version {manifest.version} does not "
                    f"match its manifest: expected {manifest.digest}, got {actual} "
                    f"(from {store.location}); nothing was cached"
                )
            entry = work / "entry"
            entry.mkdir()
            if manifest.kind == "file":
                os.replace(blob, entry / manifest.filename)
            else:
                with tarfile.open(blob, mode="r:") as tar:
                    tar.extractall(entry / manifest.filename, filter="data")
            try:
                os.rename(entry, final)
            except OSError:
                if not final.exists():  # not a concurrent fetch that finished first
                    raise
        except OSError as error:
            raise ArtifactError(
                f"cannot cache artifact of {manifest.spec} in {self.directory}: {error}"
            ) from error
        except tarfile.TarError as error:
            raise ArtifactError(
                f"artifact of {manifest.spec} is not a valid directory archive: {error}"
            ) from error
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _add_name(self, final: Path, filename: str) -> None:
        existing = next(c for c in final.iterdir() if not c.name.startswith(".partial-"))
        work = Path(tempfile.mkdtemp(prefix=".partial-", dir=final))
        try:
            copy = work / filename
            if existing.is_dir():
                shutil.copytree(existing, copy)
            else:
                shutil.copy2(existing, copy)
            try:
                os.rename(copy, final / filename)
            except OSError:
                if not (final / filename).exists():  # not a concurrent fetch's copy
                    raise
        except OSError as error:
            raise ArtifactError(f"cannot cache artifact as {final / filename}: {error}") from error
        finally:
            shutil.rmtree(work, ignore_errors=True)
