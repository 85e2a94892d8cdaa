"""Local files the store writes: folders, hidden temp files, and clean-up after dead writers.

Every write first goes to a hidden temp file named ``.synk8s-tmp-<random>``: in the destination
folder for local objects, in the system temp folder (``TMPDIR``) for S3 uploads. A writer that is
killed (SIGKILL, out of memory) cannot remove its temp file, so each new temp file starts with a
sweep of its folder: temp entries whose mtime is over :data:`STALE_TEMP_S` old belong to dead
writers and are removed. A live writer updates the mtime whenever its data reaches the disk, so
only a writer silent for that long could lose its file (its commit then fails; nothing wrong is
published).

A write that fills the disk (``ENOSPC``) or the user's quota (``EDQUOT``) fails with a one-line
StoreError naming the object, the folder and the bytes involved (:func:`full_disk_errors`); its temp
file is removed like any failed write's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from synk8s.errors import StoreError
from synk8s.storage.objects import CHUNK

logger = logging.getLogger(__name__)

HIDDEN_PREFIX = ".synk8s-"  # temp files and the sidecar folder; never listed
TMP_PREFIX = ".synk8s-tmp-"
STALE_TEMP_S = 3600.0  # seconds since a temp entry's last change after which its writer counts as dead
_FULL = {errno.ENOSPC: "no space left on the device of {folder}", errno.EDQUOT: "the disk quota is used up in {folder}"}


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents; a file in the way raises a StoreError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(
            (p for p in reversed([folder, *folder.parents]) if p.exists() and not p.is_dir()),
            None,
        )
        if blocker is None:
            raise
        raise StoreError(f"{blocker} is a file, not a folder; choose a destination outside it") from None


def remove_stale_temps(folder: Path, max_age_s: float = STALE_TEMP_S) -> int:
    """Remove the ``.synk8s-tmp-*`` files and folders directly in ``folder`` unchanged for ``max_age_s``.

    Entries that vanish meanwhile or belong to another user are skipped.

    Returns:
        The number of entries removed.
    """
    now = time.time()
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(TMP_PREFIX)]
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age_s:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed += 1
        logger.info("removed %s, left behind by a writer that died", entry.path)
    return removed


def new_temp(folder: Path, mode: int = 0o666) -> Path:
    """Create an empty hidden temp file in ``folder`` after sweeping out stale ones.

    Args:
        folder: Where the temp file goes; created if missing.
        mode: Permission bits for the new file (the umask still applies); 0o600 in shared folders.

    Returns:
        The new file's path.
    """
    make_folder(folder)
    remove_stale_temps(folder)
    tmp = folder / (TMP_PREFIX + secrets.token_hex(8))
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    return tmp


def copy_to_local_file(src: IO[bytes], dest: Path) -> None:
    """Stream ``src`` into a plain local file, renamed into place when complete."""
    tmp = new_temp(dest.parent)
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def full_disk_errors(uri: str, tmp: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk or quota while writing ``tmp`` for ``uri`` into a one-line StoreError.

    Other errors pass through unchanged; removing ``tmp`` is left to the caller.

    Args:
        uri: the object being written.
        tmp: its temp file; the message names its folder (the destination's, or ``TMPDIR`` for S3).
        needed: the object's size when known; otherwise the message gives the bytes written so far.

    Raises:
        StoreError: the write failed with ``ENOSPC`` or ``EDQUOT``.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        if needed is None:
            try:
                size = f"after {tmp.stat().st_size} bytes"
            except OSError:
                size = "midway"
        else:
            size = f"it needs {needed} bytes"
        raise StoreError(
            f"cannot write {uri}: {_FULL[exc.errno].format(folder=tmp.parent)} ({size}); free space there and rerun"
        ) from None
