"""What the store returns and raises about one object, and how it hashes content."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from synk8s.errors import StoreError

CHUNK = 1 << 20  # bytes read per step when hashing or copying


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


def hash_file(path: Path, fsync: bool = False) -> tuple[str, int]:
    """Return (hex SHA-256, size in bytes) of a file; optionally flush it to disk first."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        if fsync:
            os.fsync(f.fileno())
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
