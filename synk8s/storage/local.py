"""The local store: objects are files; their SHA-256 lives in hidden sidecar files."""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from synk8s.errors import StoreError
from synk8s.storage.files import (
    HIDDEN_PREFIX,
    copy_to_local_file,
    full_disk_errors,
    make_folder,
    new_temp,
)
from synk8s.storage.objects import ObjectInfo, ObjectNotFoundError, hash_file
from synk8s.storage.uri import prefix_base, to_path

logger = logging.getLogger(__name__)

_META_DIR = ".synk8s-meta"


def _os_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an OSError of a local-store method (permissions, full disk) into a StoreError naming the URI."""

    @functools.wraps(method)
    def wrapped(self: Any, uri: str, *args: Any) -> Any:
        try:
            return method(self, uri, *args)
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot access {uri}: {exc.strerror or exc}") from exc

    return wrapped


class LocalStore:
    """Objects are files; hashes live in sidecars under ``<folder>/.synk8s-meta/``.

    A sidecar records the hash with the file's size, mtime and inode; a file changed by another
    program no longer matches and is re-hashed by :meth:`stat`. The sidecar only says which hash was
    recorded: :meth:`read_all` hashes what it reads and the caller compares, so bytes changed in place
    (same size, mtime and inode) are caught on every read.
    """

    @staticmethod
    def _sidecar(path: Path) -> Path:
        # Hash the name so that any file name (up to NAME_MAX) has a valid sidecar name.
        name = hashlib.sha256(path.name.encode()).hexdigest()[:32] + ".json"
        return path.parent / _META_DIR / name

    @staticmethod
    def _fingerprint(st: os.stat_result) -> dict[str, int]:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}

    def _write_sidecar(self, path: Path, sha256: str, st: os.stat_result) -> None:
        sidecar = self._sidecar(path)
        record = {"name": path.name, "sha256": sha256, **self._fingerprint(st)}
        tmp = new_temp(sidecar.parent)
        try:
            tmp.write_text(json.dumps(record, sort_keys=True))
            os.replace(tmp, sidecar)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _check_file(uri: str, path: Path) -> None:
        if path.is_dir():
            raise StoreError(f"{uri} is a folder, not an object")
        if not path.is_file():
            raise ObjectNotFoundError(f"no object at {uri}")

    def _recorded(self, path: Path, st: os.stat_result) -> str | None:
        """The SHA-256 the sidecar recorded for this very file (same size, mtime and inode); else None."""
        try:
            record = json.loads(self._sidecar(path).read_text())
        except (OSError, ValueError):
            return None
        if all(record.get(k) == v for k, v in self._fingerprint(st).items()):
            return record.get("sha256")
        return None

    def _info(self, uri: str, path: Path) -> ObjectInfo:
        self._check_file(uri, path)
        try:
            st = path.stat()
            recorded = self._recorded(path, st)
            if recorded:
                return ObjectInfo(uri=uri, size=st.st_size, sha256=recorded)
            sha256, size = hash_file(path)
        except FileNotFoundError:  # deleted a moment ago
            raise ObjectNotFoundError(f"no object at {uri}") from None
        return ObjectInfo(uri=uri, size=size, sha256=sha256)

    def _listed(self, uri: str, path: Path) -> builtins.list[ObjectInfo]:
        """Return ``[info]`` for a listed file, or ``[]`` if it was deleted since it was listed."""
        try:
            return [self._info(uri, path)]
        except ObjectNotFoundError:
            return []

    @_os_errors
    def temp_path(self, uri: str) -> Path:
        """Create an empty hidden temp file in the destination's folder (stale ones there are removed)."""
        return new_temp(to_path(uri).parent)

    @_os_errors
    def commit(self, uri: str, tmp: Path) -> ObjectInfo:
        """Flush ``tmp`` to disk, hash it and rename it onto the destination."""
        dest = to_path(uri)
        if dest.is_dir():
            raise StoreError(f"{uri} is a folder; choose an object path inside it")
        sha256, size = hash_file(tmp, fsync=True)
        # Fingerprint the temp file (a rename keeps inode and mtime): if another writer replaces
        # the destination before the sidecar lands, the sidecar no longer matches and is ignored.
        st = tmp.stat()
        os.replace(tmp, dest)
        self._write_sidecar(dest, sha256, st)
        logger.debug("wrote %s (%d bytes)", uri, size)
        return ObjectInfo(uri=uri, size=size, sha256=sha256)

    @_os_errors
    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        tmp = self.temp_path(uri)
        try:
            with full_disk_errors(uri, tmp, len(data)):
                tmp.write_bytes(data)
                return self.commit(uri, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    @_os_errors
    def put_file(self, uri: str, src: Path) -> ObjectInfo:
        tmp = self.temp_path(uri)
        try:
            with full_disk_errors(uri, tmp, src.stat().st_size):
                shutil.copyfile(src, tmp)
                return self.commit(uri, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def open_read(self, uri: str) -> Iterator[BinaryIO]:
        path = to_path(uri)
        self._check_file(uri, path)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise StoreError(f"cannot access {uri}: {exc.strerror or exc}") from exc
        with f:
            yield f

    @_os_errors
    def recorded(self, uri: str) -> str | None:
        """The SHA-256 recorded when the object was written, if its sidecar still matches the file (no hashing)."""
        path = to_path(uri)
        self._check_file(uri, path)
        return self._recorded(path, path.stat())

    @_os_errors
    def read_all(self, uri: str) -> tuple[bytes, str | None]:
        """The object's content and the SHA-256 recorded when it was written (None when no sidecar vouches)."""
        with self.open_read(uri) as f:
            recorded = self._recorded(to_path(uri), os.fstat(f.fileno()))
            return f.read(), recorded

    @_os_errors
    def get_file(self, uri: str, dest: Path) -> None:
        with self.open_read(uri) as src:
            copy_to_local_file(src, dest)

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        path = to_path(uri)
        self._check_file(uri, path)
        yield path

    @_os_errors
    def stat(self, uri: str) -> ObjectInfo:
        return self._info(uri, to_path(uri))

    def exists(self, uri: str) -> bool:
        return to_path(uri).is_file()

    @_os_errors
    def delete(self, uri: str) -> None:
        path = to_path(uri)
        if path.is_dir():
            raise StoreError(f"{uri} is a folder; delete removes one object")
        path.unlink(missing_ok=True)
        self._sidecar(path).unlink(missing_ok=True)

    @_os_errors
    def list(self, uri: str, recursive: bool) -> builtins.list[ObjectInfo]:
        root = to_path(uri)
        if not root.is_dir():
            return []
        base = prefix_base(uri)
        found = []
        if recursive:
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(HIDDEN_PREFIX)]
                rel_folder = Path(folder).relative_to(root)
                for name in files:
                    if not name.startswith(HIDDEN_PREFIX):
                        rel = (rel_folder / name).as_posix()
                        found += self._listed(base + rel, Path(folder) / name)
        else:
            for entry in os.scandir(root):
                if entry.is_file() and not entry.name.startswith(HIDDEN_PREFIX):
                    found += self._listed(base + entry.name, Path(entry.path))
        return sorted(found, key=lambda o: o.uri)

    @_os_errors
    def list_prefixes(self, uri: str) -> builtins.list[str]:
        root = to_path(uri)
        if not root.is_dir():
            return []
        base = prefix_base(uri)
        return sorted(
            base + e.name + "/" for e in os.scandir(root) if e.is_dir() and not e.name.startswith(HIDDEN_PREFIX)
        )

    @_os_errors
    def ensure_bucket(self, uri: str) -> None:
        make_folder(to_path(uri))
