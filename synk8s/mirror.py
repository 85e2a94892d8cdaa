"""Local copies of store prefixes, made once and reused.

``mirror("s3://synk8s/datasets/cifar100/cifar-100-python", Path("/cache/cifar-100-python"), "cifar100")``
copies every object under the prefix into the folder, keeping the layout below the prefix. The copy
is written to a hidden sibling folder and renamed into place when every file has arrived with the
size and SHA-256 the listing gave, so an interrupted copy never looks finished. A record of the
copied files (``.<folder>.mirror.json`` beside the folder) lets later calls check the copy against
the local disk alone: a folder whose files match the record in number and size is used as it is,
without reading the store again; one that does not (a file deleted or truncated) is copied anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from synk8s import storage
from synk8s.errors import StoreError

log = logging.getLogger(__name__)

_HASH_CHUNK = 1 << 20  # bytes read per step when checking a copied file


def record_path(dest: Path) -> Path:
    """Where the record of the copy in ``dest`` is kept: a hidden JSON file beside ``dest``."""
    return dest.with_name(f".{dest.name}.mirror.json")


def is_complete(dest: Path) -> bool:
    """True when ``dest`` holds exactly the files its record lists, each with the recorded size."""
    try:
        record = json.loads(record_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected = {rel: entry["size"] for rel, entry in record.get("files", {}).items()}
    return bool(expected) and dest.is_dir() and _local_sizes(dest) == expected


def mirror(prefix: str, dest: Path, desc: str) -> int:
    """Copy every object under ``prefix`` into ``dest`` unless a complete copy is there already.

    Args:
        prefix: A folder or ``s3://bucket/prefix`` (anything :func:`synk8s.storage.list` reads).
        dest: The local folder to fill; its parent is created when absent. An incomplete ``dest``
            (see :func:`is_complete`) is replaced.
        desc: What is copied, for the log and the progress bar (e.g. a dataset name).

    Returns:
        The number of files copied: 0 when ``dest`` was complete already.

    Raises:
        storage.ObjectNotFoundError: Nothing is stored under ``prefix``.
        StoreError: The store cannot be read, or a copied file's size or SHA-256 differs from the listing.
        OSError: ``dest`` cannot be written (permissions, full disk).
    """
    from tqdm import tqdm

    if is_complete(dest):
        log.debug("%s: using the complete copy in %s", desc, dest)
        return 0
    objects = storage.list(prefix)
    if not objects:
        raise storage.ObjectNotFoundError(f"nothing stored under {prefix.rstrip('/')}/")
    base = prefix.rstrip("/") + "/"
    total = sum(obj.size for obj in objects)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    log.info("%s: copying %d files (%d bytes) from %s to %s", desc, len(objects), total, prefix, dest)
    files = {}
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {desc}", disable=None) as bar:
            for obj in objects:
                rel = obj.uri[len(base) :]
                target = partial / rel
                storage.get_file(obj.uri, target)
                _check_copy(obj, target)
                files[rel] = {"size": obj.size, "sha256": obj.sha256}
                bar.update(obj.size)
        _put_in_place(partial, dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    tmp = record_path(dest).with_name(f"{record_path(dest).name}.{os.getpid()}")
    tmp.write_text(json.dumps({"source": prefix, "files": files}, sort_keys=True, indent=1), encoding="utf-8")
    os.replace(tmp, record_path(dest))
    return len(objects)


def _local_sizes(folder: Path) -> dict[str, int]:
    """``{path below folder ('/'-separated): size in bytes}`` of every file under ``folder``."""
    sizes = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent) / name
            sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
    return sizes


def _check_copy(obj: storage.ObjectInfo, path: Path) -> None:
    """Raise StoreError unless ``path`` has the size and (when listed) the SHA-256 of ``obj``."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != obj.size or (obj.sha256 is not None and digest.hexdigest() != obj.sha256):
        raise StoreError(
            f"copy of {obj.uri} to {path} has {size} bytes and SHA-256 {digest.hexdigest()[:12]}..., expected "
            f"{obj.size} bytes and {(obj.sha256 or '-')[:12]}...; run again, and re-upload the object if it repeats"
        )


def _put_in_place(partial: Path, dest: Path) -> None:
    """Rename the finished copy to ``dest``, first moving any incomplete old copy out of the way."""
    record_path(dest).unlink(missing_ok=True)
    if dest.exists():
        stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
        dest.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        partial.rename(dest)
    except OSError:  # another process put its copy in place first
        if not dest.is_dir():
            raise
