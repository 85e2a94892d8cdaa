"""Store URIs: tell local paths from ``s3://`` URIs, join parts, split buckets and keys.

A ``file:`` URI is a local path: ``file:///abs/path`` and ``file:/abs/path`` both mean ``/abs/path``
(:func:`to_path`; :func:`check_root` turns such a root into the plain path). Any other ``file:`` form
(``file://host/path``, ``file:relative``) is refused in one line, and so is any other scheme written
``name:/...`` (``gs://b``, ``http://h/x``): it is never taken for a relative folder named ``name:``.
"""

from __future__ import annotations

import re
from pathlib import Path

from synk8s.errors import UsageError

EMPTY_URI = "empty store URI; pass a folder or s3://bucket/prefix"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")  # "name:/" or "name://": a URI, never a folder
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a
# letter or digit, no ".." and not an IPv4 address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def _file_path(uri: str) -> str | None:
    """The local path of a ``file:`` URI; None when ``uri`` does not start with ``file:``.

    Raises:
        UsageError: a ``file:`` URI that is neither ``file:///abs/path`` nor ``file:/abs/path``.
    """
    if uri[:5].lower() != "file:":
        return None
    rest = uri[5:]
    if rest.startswith("///"):
        return rest[2:]
    if rest.startswith("/") and not rest.startswith("//"):
        return rest
    raise UsageError(f"malformed file URI {uri!r}; write file:///absolute/path, file:/absolute/path or a plain path")


def scheme(uri: str) -> str:
    """Return ``"s3"`` or ``"file"``; raise UsageError for an empty URI or any other scheme.

    A URI that starts with ``s3:`` but not ``s3://`` (``s3:/b/x``, ``s3:b``) is refused rather
    than taken for a local folder named ``s3:``; so is a malformed ``file:`` URI (see the module
    docstring) and any other ``name:/`` or ``name://`` scheme.
    """
    if not uri.strip():
        raise UsageError(EMPTY_URI)
    if uri[:3].lower() == "s3:" and uri[3:5] != "//":
        raise UsageError(f"malformed S3 URI {uri!r}; write s3://bucket/prefix")
    if _file_path(uri) is not None:
        return "file"
    match = _SCHEME.match(uri)
    if match is None:
        return "file"
    name = match.group(1).lower()
    if name != "s3":
        raise UsageError(f"unsupported URI scheme '{name}' in {uri}; use a local path or s3://bucket/key")
    return name


def is_remote(uri: str) -> bool:
    """Return True for ``s3://`` URIs, False for local paths."""
    return scheme(uri) == "s3"


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI with single ``/`` separators.

    Args:
        uri: A local path or ``s3://`` URI. An empty string gives the relative tail alone,
            never a path under the filesystem root.
        *parts: Path parts; leading and trailing slashes are dropped, empty parts skipped.

    Returns:
        The joined URI, e.g. ``join("s3://b/run", "a", "x.json") == "s3://b/run/a/x.json"``
        and ``join("", "runs", "x") == "runs/x"``.
    """
    tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
    if not tail:
        return uri
    if not uri:
        return tail
    return uri.rstrip("/") + "/" + tail


def to_path(uri: str) -> Path:
    """Return the local path of a local URI: a plain path, ``file:///path`` or ``file:/path``.

    Raises:
        UsageError: a malformed ``file:`` URI (``file://host/path``, ``file:relative``).
    """
    path = _file_path(uri)
    return Path(uri if path is None else path)


def split_s3(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key (key may be empty).

    Raises:
        UsageError: no bucket, or a bucket name S3 does not allow.
    """
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UsageError(f"S3 URI needs a bucket: s3://bucket/key, got {uri}")
    if not _BUCKET.match(bucket) or ".." in bucket or _IPV4.match(bucket):
        raise UsageError(
            f"invalid bucket name {bucket!r} in {uri}: use 3-63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return bucket, key


def check_root(uri: str) -> str:
    """Check a folder or ``s3://bucket[/prefix]`` root (scheme and bucket name).

    Returns:
        ``uri`` unchanged, except a ``file:`` URI, which becomes its plain local path
        (``file:///tmp/x`` and ``file:/tmp/x`` give ``/tmp/x``).

    Raises:
        UsageError: empty, an unsupported scheme, a malformed ``s3:`` or ``file:`` URI or a bad bucket name.
    """
    if scheme(uri) == "s3":
        split_s3(uri)
        return uri
    path = _file_path(uri)
    return uri if path is None else path


def object_key(uri: str) -> tuple[str, str]:
    """Split an S3 URI that names one object into bucket and key (the key is never empty)."""
    bucket, key = split_s3(uri)
    if not key or key.endswith("/"):
        raise UsageError(f"S3 URI must name an object (s3://bucket/key), got {uri}")
    return bucket, key


def prefix_base(uri: str) -> str:
    """Return the string every URI listed under ``uri`` starts with (``uri`` plus one ``/``)."""
    return uri.rstrip("/") + "/"
