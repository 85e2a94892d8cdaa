"""Artifact store: read and write artifacts by URI, on a local disk or on any S3 server.

Every stage reads and writes through this package, so one stage runs unchanged on a laptop
(local folders) and in a cluster (MinIO or AWS S3). No other module parses ``s3://`` URIs or
builds an S3 client. Modules: :mod:`.uri` (parsing, :func:`join`), :mod:`.local` (folders),
:mod:`.s3` (S3 servers), :mod:`.files` (temp files and their clean-up), :mod:`.objects`.

URIs:
    * a local path: ``/data/run1/prompts.jsonl``, ``./out/x.json``, ``file:///data/run1`` or
      ``file:/data/run1`` (a store root given as a ``file:`` URI is kept as its plain path);
    * an S3 object or prefix: ``s3://bucket/prefix/key``.

An empty URI is refused (UsageError), so an unset store root never writes under ``/``, and so is
one that starts with ``s3:`` but is not ``s3://bucket[/key]`` with a valid bucket name (``s3:/b``,
``s3:b`` and ``s3://`` would otherwise be folders). A ``file:`` URI with a host or a relative path
(``file://host/x``, ``file:x``) and any other scheme written ``name:/`` or ``name://`` (``gs://b``) are
refused too, never taken for a relative folder. :func:`check_root` checks a root up front.
A prefix URI (used by :func:`list`) names a folder: ``s3://b/a`` lists the keys under ``a/``,
never ``ab``.

Guarantees:
    * Writes are atomic. Local writes go to a hidden temp file in the destination folder and are
      renamed into place; S3 writes upload a finished local temp file (multipart above 5 MiB),
      and S3 shows an object only once its upload completes. A writer that fails or is killed
      leaves nothing visible.
    * A write that fills the disk or the quota (``ENOSPC``, ``EDQUOT``) raises a one-line StoreError
      naming the object, the folder that is full and the bytes it needed (or had written), and
      leaves the older object, if any, as it was.
    * A killed writer's hidden ``.synk8s-tmp-*`` file is removed by the next write into the same
      folder (or, for S3, the next upload from the same ``TMPDIR``) once it is over an hour old.
    * Every write records the SHA-256 of the content: S3 user metadata ``sha256``; locally a
      sidecar file in a hidden ``.synk8s-meta`` folder beside the object, checked against the
      file's size, mtime and inode (a file changed by another program is re-hashed).
      :func:`stat` and :func:`list` return it.
    * Every read of a whole object is checked against that recorded SHA-256 (or one the caller
      recorded): :func:`get_bytes` and :func:`get_json` hash the bytes they read, :func:`verify`
      streams an object through the hash. Bytes changed in place, even with size, mtime and inode
      kept, raise IntegrityError naming the object. Hashing costs one pass over the bytes read,
      about 0.05 s per 100 MB (docs/speed.md).
    * Hidden names starting with ``.synk8s-`` (temp files, sidecars) never appear in listings.

Environment variables (S3 only; read on each call, clients cached per configuration):
    SYNK8S_S3_ENDPOINT: URL of the S3 server, e.g. ``http://127.0.0.1:9000`` or
        ``https://minio.example:9000``. The scheme decides TLS. Default ``https://s3.amazonaws.com``.
        A user name or password in it (``http://user:pw@host``) is refused, never echoed.
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: credentials (``MINIO_ACCESS_KEY`` and
        ``MINIO_SECRET_KEY`` are accepted instead). ``AWS_SESSION_TOKEN`` is used when set.
    SYNK8S_S3_REGION: region name; optional (discovered per bucket when unset).
    SYNK8S_S3_CA_BUNDLE: path to a PEM file of CA certificates for a private TLS endpoint; optional.
    SYNK8S_S3_INSECURE_SKIP_VERIFY: ``1`` turns off TLS certificate checks (test clusters only).
    TMPDIR: where S3 uploads are staged and S3 objects are downloaded for :func:`local_path`.

Credentials never appear in logs or error messages. Connections time out after 5 s and are
retried twice, so an unreachable endpoint fails within seconds.

Example::

    from synk8s import storage

    info = storage.put_json("s3://artifacts/run1/manifest.json", {"images": 2000})
    with storage.writer(storage.join(out, "shard-000000.tar")) as f:
        f.write(tar_bytes)
    for obj in storage.list("s3://artifacts/run1"):
        print(obj.uri, obj.size, obj.sha256)
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from synk8s.errors import IntegrityError, StoreError
from synk8s.storage import s3
from synk8s.storage.files import full_disk_errors
from synk8s.storage.local import LocalStore
from synk8s.storage.objects import CHUNK, ObjectInfo, ObjectNotFoundError
from synk8s.storage.s3 import CREDENTIALS_MISSING, DEFAULT_ENDPOINT, ENDPOINT_ENV
from synk8s.storage.uri import check_root, is_remote, join, scheme, split_s3, to_path

__all__ = [
    "CREDENTIALS_MISSING",
    "DEFAULT_ENDPOINT",
    "ENDPOINT_ENV",
    "ObjectInfo",
    "ObjectNotFoundError",
    "check_root",
    "clear_cache",
    "copy",
    "delete",
    "ensure_bucket",
    "exists",
    "get_bytes",
    "get_file",
    "get_json",
    "is_remote",
    "join",
    "list",
    "list_prefixes",
    "local_path",
    "open_read",
    "put_bytes",
    "put_file",
    "put_json",
    "stat",
    "verify",
    "writer",
]

_LOCAL = LocalStore()


def _store(uri: str) -> LocalStore | s3.S3Store:
    """Return the store for ``uri``; raise UsageError for an empty URI or an unknown scheme."""
    if scheme(uri) == "s3":
        split_s3(uri)  # a missing bucket is a usage error, reported before any settings are read
        return s3.store()
    return _LOCAL


def clear_cache() -> None:
    """Drop cached S3 clients, e.g. after changing the S3 environment variables."""
    s3.clear_cache()


def put_bytes(uri: str, data: bytes) -> ObjectInfo:
    """Write ``data`` as the object at ``uri`` (atomically, replacing any old object)."""
    return _store(uri).put_bytes(uri, data)


def put_file(uri: str, local_path: str | os.PathLike[str]) -> ObjectInfo:
    """Copy the local file ``local_path`` to the object at ``uri`` (atomically)."""
    store = _store(uri)
    src = Path(local_path)
    if not src.is_file():
        raise ObjectNotFoundError(f"no file at {src}; cannot store it at {uri}")
    return store.put_file(uri, src)


def put_json(uri: str, obj: Any) -> ObjectInfo:
    """Write ``obj`` as JSON: sorted keys, indent 2, UTF-8, trailing newline.

    Equal objects give identical bytes (and hashes). NaN and infinity are refused (ValueError),
    since strict JSON readers cannot parse them.
    """
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return put_bytes(uri, text.encode("utf-8"))


def _check_hash(uri: str, actual: str, expected: str | None, recorded: str | None) -> None:
    """Raise IntegrityError when ``actual`` differs from the caller's or the store's recorded SHA-256."""
    for want in (expected, recorded):
        if want is not None and actual != want:
            raise IntegrityError(
                f"{uri} is damaged: its SHA-256 is {actual[:12]}..., not the {want[:12]}... recorded when it "
                "was written"
            )


def get_bytes(uri: str, sha256: str | None = None) -> bytes:
    """Return the whole content of the object at ``uri``, checked against its recorded SHA-256.

    The bytes read are hashed once and compared with the SHA-256 the store recorded when the object
    was written (a local sidecar that still matches the file, or S3 metadata) and with ``sha256``
    when given (e.g. a hash a manifest recorded).

    Raises:
        IntegrityError: the content differs from a recorded SHA-256 (changed, truncated or damaged).
    """
    data, recorded = _store(uri).read_all(uri)
    _check_hash(uri, hashlib.sha256(data).hexdigest(), sha256, recorded)
    return data


def verify(uri: str, sha256: str | None = None) -> ObjectInfo:
    """Stream the object at ``uri`` through SHA-256 and check it like :func:`get_bytes`, holding no copy.

    Raises:
        IntegrityError: the content differs from ``sha256`` or from the hash recorded for it.
    """
    recorded = _store(uri).recorded(uri)
    digest = hashlib.sha256()
    size = 0
    with open_read(uri) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    actual = digest.hexdigest()
    _check_hash(uri, actual, sha256, recorded)
    return ObjectInfo(uri=uri, size=size, sha256=actual)


def get_json(uri: str) -> Any:
    """Return the parsed JSON object stored at ``uri`` (checked like :func:`get_bytes`)."""
    data = get_bytes(uri)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreError(f"object at {uri} is not valid JSON ({exc})") from None


def get_file(uri: str, local_path: str | os.PathLike[str]) -> None:
    """Download the object at ``uri`` to ``local_path`` (parents created; renamed into place)."""
    _store(uri).get_file(uri, Path(local_path))


@contextlib.contextmanager
def open_read(uri: str) -> Iterator[BinaryIO]:
    """Open the object at ``uri`` for streaming reads.

    Yields:
        A binary file-like object. For S3 it reads the HTTP response as it arrives; the
        connection is released when the block exits.
    """
    with _store(uri).open_read(uri) as f:
        yield f


@contextlib.contextmanager
def writer(uri: str) -> Iterator[BinaryIO]:
    """Write an object through a file, made visible only when the block exits cleanly.

    The file is a local temp file (in the destination folder, or in ``TMPDIR`` for S3). On a
    clean exit it is committed atomically (renamed, or uploaded); if the block raises, or the
    process dies, no object appears and any older object at ``uri`` stays as it was; a full disk or
    quota (``ENOSPC``, ``EDQUOT``, raised by a write in the block too) is a one-line StoreError. Starting a
    writer removes temp files of dead writers in the same folder: those unchanged for over an
    hour (``synk8s.storage.files.STALE_TEMP_S``), so keep a live writer writing at least hourly.

    Yields:
        A writable binary file.
    """
    store = _store(uri)
    tmp = store.temp_path(uri)
    try:
        with full_disk_errors(uri, tmp):
            with open(tmp, "wb") as f:
                yield f
            store.commit(uri, tmp)
    finally:
        tmp.unlink(missing_ok=True)


def list(prefix_uri: str, recursive: bool = True) -> builtins.list[ObjectInfo]:  # noqa: A001
    """List the objects under a folder or S3 prefix, sorted by URI.

    Args:
        prefix_uri: A folder path or ``s3://bucket/prefix`` (``s3://b/a`` means ``a/``).
        recursive: True (default) lists all depths; False only objects directly under it
            (see :func:`list_prefixes` for the sub-folders).

    Returns:
        One ObjectInfo per object; an empty list when nothing is there.
    """
    return _store(prefix_uri).list(prefix_uri, recursive)


def list_prefixes(prefix_uri: str) -> builtins.list[str]:
    """Return the sub-folders directly under a folder or prefix, as URIs ending in ``/``."""
    return _store(prefix_uri).list_prefixes(prefix_uri)


def exists(uri: str) -> bool:
    """Return True when an object (not a folder) exists at ``uri``."""
    return _store(uri).exists(uri)


def stat(uri: str) -> ObjectInfo:
    """Return size and SHA-256 of the object at ``uri``; ObjectNotFoundError if missing."""
    return _store(uri).stat(uri)


def delete(uri: str) -> None:
    """Delete the object at ``uri``; a missing object is not an error."""
    _store(uri).delete(uri)


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[Path]:
    """Yield a local path holding the object's content.

    A local URI yields the file itself (do not modify it); an S3 URI yields a temp download
    that is removed when the block exits.
    """
    with _store(uri).local_path(uri) as path:
        yield path


def copy(src_uri: str, dst_uri: str) -> ObjectInfo:
    """Copy one object between any two URIs and check the content hash.

    Args:
        src_uri: The object to copy.
        dst_uri: The object to create or replace.

    Returns:
        The new object's info.

    Raises:
        StoreError: When the copy's SHA-256 differs from the hash recorded for the source.
    """
    _store(dst_uri)  # an empty or unsupported destination fails before any transfer
    expected = stat(src_uri).sha256
    if not is_remote(src_uri):
        info = put_file(dst_uri, to_path(src_uri))
    else:
        with open_read(src_uri) as src, writer(dst_uri) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        info = stat(dst_uri)
    if expected is not None and info.sha256 != expected:
        raise StoreError(f"copy of {src_uri} to {dst_uri} has SHA-256 {info.sha256}, expected {expected}")
    return info


def ensure_bucket(uri: str) -> None:
    """Create the bucket of an ``s3://`` URI (or the local folder) if it does not exist."""
    _store(uri).ensure_bucket(uri)
