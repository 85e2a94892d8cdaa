"""Artifact store: read and write artifacts by URI, on a local disk or on any S3 server.

Every stage reads and writes through this module, so one stage runs unchanged on a laptop
(local folders) and in a cluster (MinIO or AWS S3). No other module parses ``s3://`` URIs or
builds an S3 client.

URIs:
    * a local path: ``/data/run1/prompts.jsonl``, ``./out/x.json``, ``file:///data/run1``;
    * an S3 object or prefix: ``s3://bucket/prefix/key``.

A prefix URI (used by :func:`list`) names a folder: ``s3://b/a`` lists the keys under ``a/``,
never ``ab``.

Guarantees:
    * Writes are atomic. Local writes go to a hidden temp file in the destination folder and are
      renamed into place; S3 writes upload a finished local temp file (multipart above 5 MiB),
      and S3 shows an object only once its upload completes. A writer that fails or is killed
      leaves nothing visible.
    * Every write records the SHA-256 of the content: S3 user metadata ``sha256``; locally a
      sidecar file in a hidden ``.synk8s-meta`` folder beside the object, checked against the
      file's size, mtime and inode (a file changed by another program is re-hashed).
      :func:`stat` and :func:`list` return it.
    * Hidden names starting with ``.synk8s-`` (temp files, sidecars) never appear in listings.

Environment variables (S3 only; read on each call, clients cached per configuration):
    SYNK8S_S3_ENDPOINT: URL of the S3 server, e.g. ``http://127.0.0.1:9000`` or
        ``https://minio.example:9000``. The scheme decides TLS. Default ``https://s3.amazonaws.com``.
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: credentials (``MINIO_ACCESS_KEY`` and
        ``MINIO_SECRET_KEY`` are accepted instead). ``AWS_SESSION_TOKEN`` is used when set.
    SYNK8S_S3_REGION: region name; optional (discovered per bucket when unset).
    SYNK8S_S3_CA_BUNDLE: path to a PEM file of CA certificates for a private TLS endpoint; optional.
    SYNK8S_S3_INSECURE_SKIP_VERIFY: ``1`` turns off TLS certificate checks (test clusters only).

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
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO

from synk8s.errors import StoreError, UsageError

logger = logging.getLogger(__name__)

ENDPOINT_ENV = "SYNK8S_S3_ENDPOINT"
DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
CREDENTIALS_MISSING = (
    "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or MINIO_ACCESS_KEY/MINIO_SECRET_KEY)"
)

_HIDDEN_PREFIX = ".synk8s-"  # temp files and the sidecar folder; never listed
_META_DIR = ".synk8s-meta"
_TMP_PREFIX = ".synk8s-tmp-"
_CHUNK = 1 << 20  # bytes read per step when hashing or copying
_MIN_PART = 5 << 20  # S3's smallest multipart part; larger objects upload in parts
_MAX_PARTS = 10_000  # S3's largest part count
_CONNECT_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 120.0
_RETRIES = 2
_STAT_THREADS = 8  # concurrent HEAD requests when listing an S3 prefix
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One stored object.

    Attributes:
        uri: The object's URI, in the same form as the URI it was listed or written under.
        size: Content length in bytes.
        sha256: Hex SHA-256 of the content; None for an S3 object written by another tool.
    """

    uri: str
    size: int
    sha256: str | None


class ObjectNotFoundError(StoreError, FileNotFoundError):
    """No object at a URI (local or S3). Also a ``FileNotFoundError``."""


# ----------------------------------------------------------------------------- URIs


def _scheme(uri: str) -> str:
    """Return ``"s3"`` or ``"file"``; raise UsageError for any other scheme."""
    match = _SCHEME.match(uri)
    if match is None:
        return "file"
    scheme = match.group(1).lower()
    if scheme not in ("s3", "file"):
        raise UsageError(f"unsupported URI scheme '{scheme}' in {uri}; use a local path or s3://bucket/key")
    return scheme


def is_remote(uri: str) -> bool:
    """Return True for ``s3://`` URIs, False for local paths."""
    return _scheme(uri) == "s3"


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI with single ``/`` separators.

    Args:
        uri: A local path or ``s3://`` URI.
        *parts: Path parts; leading and trailing slashes are dropped, empty parts skipped.

    Returns:
        The joined URI, e.g. ``join("s3://b/run", "a", "x.json") == "s3://b/run/a/x.json"``.
    """
    tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
    if not tail:
        return uri
    return uri.rstrip("/") + "/" + tail


def _local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if not path.startswith("/"):
            raise UsageError(f"file URI must be absolute (file:///path), got {uri}")
        return Path(path)
    return Path(uri)


def _split_s3(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (key may be empty)."""
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UsageError(f"S3 URI needs a bucket: s3://bucket/key, got {uri}")
    return bucket, key


def _object_key(uri: str) -> tuple[str, str]:
    bucket, key = _split_s3(uri)
    if not key or key.endswith("/"):
        raise UsageError(f"S3 URI must name an object (s3://bucket/key), got {uri}")
    return bucket, key


def _prefix_base(uri: str) -> str:
    """Return the string every URI listed under ``uri`` starts with (``uri`` plus one ``/``)."""
    return uri.rstrip("/") + "/"


# ----------------------------------------------------------------------------- hashing


def _hash_file(path: Path, fsync: bool = False) -> tuple[str, int]:
    """Return (hex SHA-256, size in bytes) of a file; optionally flush it to disk first."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        if fsync:
            os.fsync(f.fileno())
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# ----------------------------------------------------------------------------- local store


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


class _LocalStore:
    """Objects are files; hashes live in sidecars under ``<folder>/.synk8s-meta/``."""

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
        sidecar.parent.mkdir(exist_ok=True)
        record = {"name": path.name, "sha256": sha256, **self._fingerprint(st)}
        tmp = sidecar.parent / (_TMP_PREFIX + secrets.token_hex(8))
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.replace(tmp, sidecar)

    @staticmethod
    def _check_file(uri: str, path: Path) -> None:
        if path.is_dir():
            raise StoreError(f"{uri} is a folder, not an object")
        if not path.is_file():
            raise ObjectNotFoundError(f"no object at {uri}")

    def _info(self, uri: str, path: Path) -> ObjectInfo:
        self._check_file(uri, path)
        try:
            st = path.stat()
            try:
                record = json.loads(self._sidecar(path).read_text())
            except (OSError, ValueError):
                record = {}
            if record and all(record.get(k) == v for k, v in self._fingerprint(st).items()):
                return ObjectInfo(uri=uri, size=st.st_size, sha256=record["sha256"])
            sha256, size = _hash_file(path)
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
        """Create an empty hidden temp file in the destination's folder."""
        dest = _local_path(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / (_TMP_PREFIX + secrets.token_hex(8))
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        return tmp

    @_os_errors
    def commit(self, uri: str, tmp: Path) -> ObjectInfo:
        """Flush ``tmp`` to disk, hash it and rename it onto the destination."""
        dest = _local_path(uri)
        if dest.is_dir():
            raise StoreError(f"{uri} is a folder; choose an object path inside it")
        sha256, size = _hash_file(tmp, fsync=True)
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
            tmp.write_bytes(data)
            return self.commit(uri, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    @_os_errors
    def put_file(self, uri: str, src: Path) -> ObjectInfo:
        tmp = self.temp_path(uri)
        try:
            shutil.copyfile(src, tmp)
            return self.commit(uri, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def open_read(self, uri: str) -> Iterator[BinaryIO]:
        path = _local_path(uri)
        self._check_file(uri, path)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise StoreError(f"cannot access {uri}: {exc.strerror or exc}") from exc
        with f:
            yield f

    @_os_errors
    def get_file(self, uri: str, dest: Path) -> None:
        with self.open_read(uri) as src:
            _copy_to_local_file(src, dest)

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        path = _local_path(uri)
        self._check_file(uri, path)
        yield path

    @_os_errors
    def stat(self, uri: str) -> ObjectInfo:
        return self._info(uri, _local_path(uri))

    def exists(self, uri: str) -> bool:
        return _local_path(uri).is_file()

    @_os_errors
    def delete(self, uri: str) -> None:
        path = _local_path(uri)
        if path.is_dir():
            raise StoreError(f"{uri} is a folder; delete removes one object")
        path.unlink(missing_ok=True)
        self._sidecar(path).unlink(missing_ok=True)

    @_os_errors
    def list(self, uri: str, recursive: bool) -> builtins.list[ObjectInfo]:
        root = _local_path(uri)
        if not root.is_dir():
            return []
        base = _prefix_base(uri)
        found = []
        if recursive:
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not d.startswith(_HIDDEN_PREFIX)]
                rel_folder = Path(folder).relative_to(root)
                for name in files:
                    if not name.startswith(_HIDDEN_PREFIX):
                        rel = (rel_folder / name).as_posix()
                        found += self._listed(base + rel, Path(folder) / name)
        else:
            for entry in os.scandir(root):
                if entry.is_file() and not entry.name.startswith(_HIDDEN_PREFIX):
                    found += self._listed(base + entry.name, Path(entry.path))
        return sorted(found, key=lambda o: o.uri)

    @_os_errors
    def list_prefixes(self, uri: str) -> builtins.list[str]:
        root = _local_path(uri)
        if not root.is_dir():
            return []
        base = _prefix_base(uri)
        return sorted(
            base + e.name + "/" for e in os.scandir(root) if e.is_dir() and not e.name.startswith(_HIDDEN_PREFIX)
        )

    @_os_errors
    def ensure_bucket(self, uri: str) -> None:
        _local_path(uri).mkdir(parents=True, exist_ok=True)


def _copy_to_local_file(src: IO[bytes], dest: Path) -> None:
    """Stream ``src`` into a plain local file, renamed into place when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / (_TMP_PREFIX + secrets.token_hex(8))
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- S3 store


@dataclasses.dataclass(frozen=True)
class _S3Settings:
    """S3 connection settings read from the environment (secrets hidden from repr)."""

    endpoint: str
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(repr=False)
    region: str | None
    ca_bundle: str | None
    insecure: bool

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.endpoint).netloc

    @property
    def secure(self) -> bool:
        return self.endpoint.lower().startswith("https://")


def _s3_settings() -> _S3Settings:
    """Read and check the S3 environment variables."""
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip() or DEFAULT_ENDPOINT
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise StoreError(f"{ENDPOINT_ENV} must look like http://host:port or https://host (no path), got '{endpoint}'")
    endpoint = f"{parts.scheme.lower()}://{parts.netloc}"
    access_key = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("MINIO_ACCESS_KEY")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("MINIO_SECRET_KEY")
    if not access_key or not secret_key:
        raise StoreError(CREDENTIALS_MISSING)
    ca_bundle = os.environ.get("SYNK8S_S3_CA_BUNDLE") or None
    if ca_bundle and not Path(ca_bundle).is_file():
        raise StoreError(f"SYNK8S_S3_CA_BUNDLE points to {ca_bundle}, which is not a file; give a PEM CA file")
    return _S3Settings(
        endpoint=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        region=os.environ.get("SYNK8S_S3_REGION") or None,
        ca_bundle=ca_bundle,
        insecure=os.environ.get("SYNK8S_S3_INSECURE_SKIP_VERIFY", "") in ("1", "true", "True", "yes"),
    )


def _part_size(size: int) -> int:
    """Multipart part size in bytes: 5 MiB, grown in MiB steps to stay within 10,000 parts."""
    return max(_MIN_PART, math.ceil(size / _MAX_PARTS / (1 << 20)) * (1 << 20))


class _S3Store:
    """Objects are keys in an S3 bucket; hashes are the ``sha256`` user metadata."""

    def __init__(self, settings: _S3Settings):
        import certifi
        import urllib3
        from minio import Minio

        self.endpoint = settings.endpoint
        if settings.insecure:
            logger.warning("TLS certificate checks are off for %s (SYNK8S_S3_INSECURE_SKIP_VERIFY)", self.endpoint)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=_READ_TIMEOUT_S),
            retries=urllib3.Retry(total=_RETRIES, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=_STAT_THREADS + 2,
            cert_reqs="CERT_NONE" if settings.insecure else "CERT_REQUIRED",
            ca_certs=settings.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self.client = Minio(
            endpoint=settings.host,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            session_token=settings.session_token,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    @contextlib.contextmanager
    def _errors(self, uri: str) -> Iterator[None]:
        """Turn minio and urllib3 failures into one-line StoreErrors (no credentials in them)."""
        import urllib3
        from minio.error import MinioException, S3Error

        try:
            yield
        except S3Error as exc:
            raise self._s3_error(exc, uri) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._network_error(exc) from exc
        except MinioException as exc:
            detail = (str(exc).splitlines() or [""])[0][:200]
            raise StoreError(f"S3 request for {uri} to {self.endpoint} failed: {type(exc).__name__}: {detail}") from exc
        except ValueError as exc:  # minio's checks of bucket and object names
            raise UsageError(f"invalid S3 URI {uri}: {exc}") from exc

    @contextlib.contextmanager
    def _stream_errors(self) -> Iterator[None]:
        """Turn a connection failure while reading a response body into a StoreError."""
        import urllib3

        try:
            yield
        except urllib3.exceptions.HTTPError as exc:
            raise self._network_error(exc) from exc

    def _network_error(self, exc: Exception) -> StoreError:
        import urllib3

        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, urllib3.exceptions.SSLError):
            return StoreError(
                f"TLS handshake with the S3 endpoint {self.endpoint} failed; set SYNK8S_S3_CA_BUNDLE to its CA "
                f"file (or SYNK8S_S3_INSECURE_SKIP_VERIFY=1 on a test cluster), or fix {ENDPOINT_ENV}"
            )
        detail = str(reason).rsplit(": ", 1)[-1]
        return StoreError(
            f"cannot reach the S3 endpoint {self.endpoint} ({detail}); check {ENDPOINT_ENV} "
            "and that the server is running"
        )

    def _s3_error(self, exc: Any, uri: str) -> StoreError:
        code = exc.code or "error"
        bucket = exc.bucket_name or _split_s3(uri)[0]
        if code == "NoSuchKey":
            return ObjectNotFoundError(f"no object at {uri}")
        if code == "NoSuchBucket":
            return StoreError(
                f"bucket '{bucket}' does not exist at {self.endpoint}; create it with `synk8s store mb s3://{bucket}`"
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return StoreError(
                f"S3 at {self.endpoint} refused access to {uri} ({code}); check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        return StoreError(f"S3 at {self.endpoint} failed on {uri}: {code}: {exc.message}")

    def _upload(self, uri: str, data: BinaryIO, size: int, sha256: str) -> ObjectInfo:
        bucket, key = _object_key(uri)
        with self._errors(uri):
            self.client.put_object(
                bucket_name=bucket,
                object_name=key,
                data=data,
                length=size,
                content_type=mimetypes.guess_type(key)[0] or "application/octet-stream",
                metadata={"sha256": sha256},
                part_size=_part_size(size),
            )
        logger.debug("uploaded %s (%d bytes)", uri, size)
        return ObjectInfo(uri=uri, size=size, sha256=sha256)

    def temp_path(self, uri: str) -> Path:
        """Create an empty temp file in the system temp folder (``TMPDIR``)."""
        _object_key(uri)
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX)
        os.close(fd)
        return Path(name)

    def commit(self, uri: str, tmp: Path) -> ObjectInfo:
        """Upload a finished temp file; the object appears only when the upload completes."""
        return self.put_file(uri, tmp)

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        return self._upload(uri, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    def put_file(self, uri: str, src: Path) -> ObjectInfo:
        sha256, size = _hash_file(src)
        with open(src, "rb") as f:
            return self._upload(uri, f, size, sha256)

    @contextlib.contextmanager
    def open_read(self, uri: str) -> Iterator[BinaryIO]:
        bucket, key = _object_key(uri)
        with self._errors(uri):
            response = self.client.get_object(bucket_name=bucket, object_name=key)
        try:
            with self._stream_errors():
                yield response
        finally:
            response.close()
            response.release_conn()

    def get_file(self, uri: str, dest: Path) -> None:
        with self.open_read(uri) as src:
            _copy_to_local_file(src, dest)

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        _, key = _object_key(uri)
        with tempfile.TemporaryDirectory(prefix=_TMP_PREFIX) as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            self.get_file(uri, path)
            yield path

    def stat(self, uri: str) -> ObjectInfo:
        bucket, key = _object_key(uri)
        with self._errors(uri):
            obj = self.client.stat_object(bucket_name=bucket, object_name=key)
        return ObjectInfo(uri=uri, size=obj.size, sha256=obj.metadata.get("x-amz-meta-sha256"))

    def exists(self, uri: str) -> bool:
        _, key = _split_s3(uri)
        if not key or key.endswith("/"):  # a bucket or prefix is never an object
            return False
        try:
            self.stat(uri)
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, uri: str) -> None:
        bucket, key = _object_key(uri)
        with self._errors(uri):
            self.client.remove_object(bucket_name=bucket, object_name=key)

    def _list_below(self, uri: str, recursive: bool) -> tuple[builtins.list[str], builtins.list[str]]:
        """Return (object names, sub-prefix names) under ``uri``, relative to its prefix."""
        bucket, key = _split_s3(uri)
        prefix = key.strip("/") + "/" if key.strip("/") else ""
        names, dirs = [], []
        with self._errors(uri):
            for o in self.client.list_objects(bucket_name=bucket, prefix=prefix, recursive=recursive):
                (dirs if o.is_dir else names).append(o.object_name[len(prefix) :])
        return names, dirs

    def list(self, uri: str, recursive: bool) -> builtins.list[ObjectInfo]:
        base = _prefix_base(uri)
        names, _ = self._list_below(uri, recursive)

        def stat_or_none(name: str) -> ObjectInfo | None:
            try:
                return self.stat(base + name)
            except ObjectNotFoundError:  # deleted since it was listed
                return None

        with ThreadPoolExecutor(max_workers=_STAT_THREADS) as pool:
            return sorted((i for i in pool.map(stat_or_none, names) if i is not None), key=lambda o: o.uri)

    def list_prefixes(self, uri: str) -> builtins.list[str]:
        base = _prefix_base(uri)
        return sorted(base + name for name in self._list_below(uri, False)[1])

    def ensure_bucket(self, uri: str) -> None:
        bucket, _ = _split_s3(uri)
        with self._errors(uri):
            if not self.client.bucket_exists(bucket_name=bucket):
                self.client.make_bucket(bucket_name=bucket)
                logger.info("created bucket %s at %s", bucket, self.endpoint)


@functools.lru_cache(maxsize=8)
def _s3_store(settings: _S3Settings) -> _S3Store:
    return _S3Store(settings)


_LOCAL = _LocalStore()


def _store(uri: str) -> _LocalStore | _S3Store:
    if _scheme(uri) == "s3":
        _split_s3(uri)
        return _s3_store(_s3_settings())
    return _LOCAL


def clear_cache() -> None:
    """Drop cached S3 clients, e.g. after changing the S3 environment variables."""
    _s3_store.cache_clear()


# ----------------------------------------------------------------------------- public API


def put_bytes(uri: str, data: bytes) -> ObjectInfo:
    """Write ``data`` as the object at ``uri`` (atomically, replacing any old object)."""
    return _store(uri).put_bytes(uri, data)


def put_file(uri: str, local_path: str | os.PathLike[str]) -> ObjectInfo:
    """Copy the local file ``local_path`` to the object at ``uri`` (atomically)."""
    src = Path(local_path)
    if not src.is_file():
        raise ObjectNotFoundError(f"no file at {src}; cannot store it at {uri}")
    return _store(uri).put_file(uri, src)


def put_json(uri: str, obj: Any) -> ObjectInfo:
    """Write ``obj`` as JSON: sorted keys, indent 2, UTF-8, trailing newline.

    Equal objects give identical bytes (and hashes). NaN and infinity are refused (ValueError),
    since strict JSON readers cannot parse them.
    """
    text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return put_bytes(uri, text.encode("utf-8"))


def get_bytes(uri: str) -> bytes:
    """Return the whole content of the object at ``uri``."""
    with open_read(uri) as f:
        return f.read()


def get_json(uri: str) -> Any:
    """Return the parsed JSON object stored at ``uri``."""
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
    process dies, no object appears and any older object at ``uri`` stays as it was.

    Yields:
        A writable binary file.
    """
    store = _store(uri)
    tmp = store.temp_path(uri)
    try:
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
    expected = stat(src_uri).sha256
    if not is_remote(src_uri):
        info = put_file(dst_uri, _local_path(src_uri))
    else:
        with open_read(src_uri) as src, writer(dst_uri) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        info = stat(dst_uri)
    if expected is not None and info.sha256 != expected:
        raise StoreError(f"copy of {src_uri} to {dst_uri} has SHA-256 {info.sha256}, expected {expected}")
    return info


def ensure_bucket(uri: str) -> None:
    """Create the bucket of an ``s3://`` URI (or the local folder) if it does not exist."""
    _store(uri).ensure_bucket(uri)
