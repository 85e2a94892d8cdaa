"""The S3 store: objects are keys in a bucket on any S3 server (MinIO, AWS); hashes are user metadata.

Connection settings come from the environment (see :mod:`synk8s.storage`); clients are cached per
settings. Connections time out after 5 s and are retried twice, so an unreachable endpoint fails
within seconds. Credentials never appear in logs or error messages.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import hashlib
import io
import logging
import math
import mimetypes
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from synk8s.errors import StoreError, UsageError
from synk8s.storage.files import TMP_PREFIX, copy_to_local_file, new_temp
from synk8s.storage.objects import ObjectInfo, ObjectNotFoundError, hash_file
from synk8s.storage.uri import object_key, prefix_base, split_s3

logger = logging.getLogger(__name__)

ENDPOINT_ENV = "SYNK8S_S3_ENDPOINT"
DEFAULT_ENDPOINT = "https://s3.amazonaws.com"
CREDENTIALS_MISSING = (
    "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or MINIO_ACCESS_KEY/MINIO_SECRET_KEY)"
)

_MIN_PART = 5 << 20  # S3's smallest multipart part; larger objects upload in parts
_MAX_PARTS = 10_000  # S3's largest part count
_CONNECT_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 120.0
_RETRIES = 2
_STAT_THREADS = 8  # concurrent HEAD requests when listing an S3 prefix


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """S3 connection settings read from the environment (secrets hidden from repr).

    Attributes:
        endpoint: ``scheme://host[:port]``, lower-case scheme, no path.
        host: ``host[:port]`` as the S3 client takes it.
        secure: True for ``https``.
    """

    endpoint: str
    host: str
    secure: bool
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(repr=False)
    region: str | None
    ca_bundle: str | None
    insecure: bool


def parse_endpoint(text: str) -> tuple[str, str, bool]:
    """Parse an S3 endpoint URL once; every problem is a one-line StoreError.

    Args:
        text: e.g. ``http://127.0.0.1:9000``, ``https://minio.example`` or ``http://[::1]:9000``.

    Returns:
        ``(endpoint, host, secure)``: ``scheme://host[:port]``, ``host[:port]`` and whether TLS is on.

    Raises:
        StoreError: not ``http(s)://host[:port]``, a bad port, a path, query or fragment, or a
            user name or password in the URL (refused, and never echoed).
    """
    shape = f"{ENDPOINT_ENV} must look like http://host:port or https://host (no path)"
    if "@" in text:
        raise StoreError(
            f"{ENDPOINT_ENV} holds a user name or password (the part before '@'); remove it and set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise StoreError(f"{shape}, got '{text}' ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise StoreError(f"{shape}, got '{text}'")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise StoreError(f"{shape}, got '{text}'")
    if port == 0 or parts.netloc.endswith(":"):
        raise StoreError(f"{shape}, got '{text}' (the port must be in 1-65535)")
    return f"{parts.scheme.lower()}://{parts.netloc}", parts.netloc, parts.scheme.lower() == "https"


def s3_settings() -> S3Settings:
    """Read and check the S3 environment variables."""
    endpoint, host, secure = parse_endpoint(os.environ.get(ENDPOINT_ENV, "").strip() or DEFAULT_ENDPOINT)
    access_key = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("MINIO_ACCESS_KEY")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("MINIO_SECRET_KEY")
    if not access_key or not secret_key:
        raise StoreError(CREDENTIALS_MISSING)
    ca_bundle = os.environ.get("SYNK8S_S3_CA_BUNDLE") or None
    if ca_bundle and not Path(ca_bundle).is_file():
        raise StoreError(f"SYNK8S_S3_CA_BUNDLE points to {ca_bundle}, which is not a file; give a PEM CA file")
    return S3Settings(
        endpoint=endpoint,
        host=host,
        secure=secure,
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


class S3Store:
    """Objects are keys in an S3 bucket; hashes are the ``sha256`` user metadata."""

    def __init__(self, settings: S3Settings):
        import certifi
        import urllib3
        from minio import Minio

        self.endpoint = settings.endpoint
        if settings.insecure:
            logger.warning(
                "TLS certificate checks are off for %s (SYNK8S_S3_INSECURE_SKIP_VERIFY)",
                self.endpoint,
            )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=_READ_TIMEOUT_S),
            retries=urllib3.Retry(
                total=_RETRIES,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
            ),
            maxsize=_STAT_THREADS + 2,
            cert_reqs="CERT_NONE" if settings.insecure else "CERT_REQUIRED",
            ca_certs=settings.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        try:
            self.client = Minio(
                endpoint=settings.host,
                access_key=settings.access_key,
                secret_key=settings.secret_key,
                session_token=settings.session_token,
                secure=settings.secure,
                region=settings.region,
                http_client=http,
            )
        except ValueError as exc:  # minio's own endpoint checks
            raise StoreError(f"the S3 client refuses the endpoint {self.endpoint} ({exc}); fix {ENDPOINT_ENV}") from exc

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
        bucket = exc.bucket_name or split_s3(uri)[0]
        if code == "NoSuchKey":
            return ObjectNotFoundError(f"no object at {uri}")
        if code == "NoSuchBucket":
            return StoreError(
                f"bucket '{bucket}' does not exist at {self.endpoint}; create it with `synk8s store mb s3://{bucket}`"
            )
        if code in (
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        ):
            return StoreError(
                f"S3 at {self.endpoint} refused access to {uri} ({code}); check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        return StoreError(f"S3 at {self.endpoint} failed on {uri}: {code}: {exc.message}")

    def _upload(self, uri: str, data: BinaryIO, size: int, sha256: str) -> ObjectInfo:
        bucket, key = object_key(uri)
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
        """Create an empty private temp file in ``TMPDIR`` (stale ``.synk8s-tmp-*`` entries there are removed)."""
        object_key(uri)
        return new_temp(Path(tempfile.gettempdir()), mode=0o600)

    def commit(self, uri: str, tmp: Path) -> ObjectInfo:
        """Upload a finished temp file; the object appears only when the upload completes."""
        return self.put_file(uri, tmp)

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        return self._upload(uri, io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest())

    def put_file(self, uri: str, src: Path) -> ObjectInfo:
        sha256, size = hash_file(src)
        with open(src, "rb") as f:
            return self._upload(uri, f, size, sha256)

    @contextlib.contextmanager
    def open_read(self, uri: str) -> Iterator[BinaryIO]:
        bucket, key = object_key(uri)
        with self._errors(uri):
            response = self.client.get_object(bucket_name=bucket, object_name=key)
        try:
            with self._stream_errors():
                yield response
        finally:
            response.close()
            response.release_conn()

    def recorded(self, uri: str) -> str | None:
        """The ``sha256`` user metadata of the object (None for an object written by another tool)."""
        return self.stat(uri).sha256

    def read_all(self, uri: str) -> tuple[bytes, str | None]:
        """The object's content and its ``sha256`` user metadata (None for an object written by another tool)."""
        with self.open_read(uri) as f:
            headers = getattr(f, "headers", None) or {}
            return f.read(), headers.get("x-amz-meta-sha256")

    def get_file(self, uri: str, dest: Path) -> None:
        with self.open_read(uri) as src:
            copy_to_local_file(src, dest)

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        _, key = object_key(uri)
        with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            self.get_file(uri, path)
            yield path

    def stat(self, uri: str) -> ObjectInfo:
        bucket, key = object_key(uri)
        with self._errors(uri):
            obj = self.client.stat_object(bucket_name=bucket, object_name=key)
        return ObjectInfo(uri=uri, size=obj.size, sha256=obj.metadata.get("x-amz-meta-sha256"))

    def exists(self, uri: str) -> bool:
        _, key = split_s3(uri)
        if not key or key.endswith("/"):  # a bucket or prefix is never an object
            return False
        try:
            self.stat(uri)
        except ObjectNotFoundError:
            return False
        return True

    def delete(self, uri: str) -> None:
        bucket, key = object_key(uri)
        with self._errors(uri):
            self.client.remove_object(bucket_name=bucket, object_name=key)

    def _list_below(self, uri: str, recursive: bool) -> tuple[builtins.list[str], builtins.list[str]]:
        """Return (object names, sub-prefix names) under ``uri``, relative to its prefix."""
        bucket, key = split_s3(uri)
        prefix = key.strip("/") + "/" if key.strip("/") else ""
        names, dirs = [], []
        with self._errors(uri):
            for o in self.client.list_objects(bucket_name=bucket, prefix=prefix, recursive=recursive):
                (dirs if o.is_dir else names).append(o.object_name[len(prefix) :])
        return names, dirs

    def list(self, uri: str, recursive: bool) -> builtins.list[ObjectInfo]:
        base = prefix_base(uri)
        names, _ = self._list_below(uri, recursive)

        def stat_or_none(name: str) -> ObjectInfo | None:
            try:
                return self.stat(base + name)
            except ObjectNotFoundError:  # deleted since it was listed
                return None

        with ThreadPoolExecutor(max_workers=_STAT_THREADS) as pool:
            return sorted(
                (i for i in pool.map(stat_or_none, names) if i is not None),
                key=lambda o: o.uri,
            )

    def list_prefixes(self, uri: str) -> builtins.list[str]:
        base = prefix_base(uri)
        return sorted(base + name for name in self._list_below(uri, False)[1])

    def ensure_bucket(self, uri: str) -> None:
        bucket, _ = split_s3(uri)
        with self._errors(uri):
            if not self.client.bucket_exists(bucket_name=bucket):
                self.client.make_bucket(bucket_name=bucket)
                logger.info("created bucket %s at %s", bucket, self.endpoint)


@functools.lru_cache(maxsize=8)
def _cached_store(settings: S3Settings) -> S3Store:
    return S3Store(settings)


def store() -> S3Store:
    """Return the S3 store for the current environment (one client per distinct setting)."""
    return _cached_store(s3_settings())


def clear_cache() -> None:
    """Drop cached S3 clients."""
    _cached_store.cache_clear()
