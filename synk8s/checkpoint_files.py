"""Verified training checkpoints in the store, and the content names a checkpoint gives its inputs.

The one checkpoint format of every training stage, which the stages write and read through
:func:`synk8s.training.save_checkpoint` and :func:`synk8s.training.load_checkpoint`. A checkpoint
folder holds at most :data:`KEEP` checkpoint files, ``checkpoint.NNNNNNN.pt`` (the step in seven
digits), and one record, ``checkpoint.json``, listing them newest first with each file's size and
SHA-256. A save writes the new file and checks the hash the store computed of the bytes it
committed, then writes the record naming it and the newest file of the old record, then deletes
every other checkpoint file; each write is atomic, so a run killed at any point leaves a record
whose files are whole. A load hashes each listed file while reading it and returns the newest one
whose size and hash match and which unpickles. A file that does not (truncated, altered, garbage)
or that no record lists is set aside as ``<file>.damaged`` (never deleted) with a warning, and the
load falls back to the previous checkpoint, or to none (training from the start).

A checkpoint names its inputs by content (:func:`digest`, :func:`object_digest`), never by URI, so a
store copied or moved elsewhere resumes from its checkpoints.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable
from typing import Any

from synk8s import storage
from synk8s.errors import StoreError
from synk8s.storage import ObjectNotFoundError

log = logging.getLogger(__name__)

KEEP = 2  # the newest checkpoint and the one before it
PREFIX = "checkpoint."  # checkpoint.0000008.pt
RECORD = "checkpoint.json"
DAMAGED = ".damaged"
_CHUNK = 1 << 20


def _file_name(step: int) -> str:
    """The name of the checkpoint file of ``step``."""
    return f"{PREFIX}{step:07d}.pt"


def _is_checkpoint(name: str) -> bool:
    """True for the name of a checkpoint file (kept or not)."""
    return name.startswith(PREFIX) and name.endswith(".pt")


def digest(parts: Iterable[str]) -> str:
    """SHA-256 of a sequence of strings (e.g. the SHA-256 of each input tar), order included."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def object_digest(uri: str) -> str:
    """SHA-256 of the object at ``uri``: the store's record of it, else hashed while reading."""
    known = storage.stat(uri).sha256
    if known is not None:
        return known
    return _read(uri)[1]


def save(folder: str, step: int, state: dict[str, Any]) -> str:
    """Write ``state`` as the checkpoint of ``step`` in ``folder``, keep the one before it; return its URI.

    Raises:
        StoreError: the store committed bytes of another SHA-256 than those written.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    name = _file_name(step)
    uri = storage.join(folder, name)
    sha256 = hashlib.sha256(data).hexdigest()
    written = storage.put_bytes(uri, data).sha256
    if written is not None and written != sha256:
        raise StoreError(f"checkpoint {uri} was stored with SHA-256 {written}, expected {sha256}")
    older = [e for e in _entries(storage.join(folder, RECORD)) or [] if e["file"] != name]
    kept = [{"file": name, "step": step, "size": len(data), "sha256": sha256}, *older[: KEEP - 1]]
    storage.put_json(storage.join(folder, RECORD), {"checkpoints": kept})
    names = {e["file"] for e in kept}
    for info in storage.list(folder, recursive=False):
        if _is_checkpoint(_name(info.uri)) and _name(info.uri) not in names:
            storage.delete(info.uri)
    return uri


def load(folder: str, *, writer: bool = True) -> dict[str, Any] | None:
    """The newest checkpoint in ``folder`` that verifies, or None when there is none.

    Args:
        folder: the checkpoint folder URI.
        writer: this process sets damaged files aside, warns and rewrites the record (rank 0); the
            other processes of a run only skip what does not verify.
    """
    record = storage.join(folder, RECORD)
    entries = _entries(record)
    if entries is None:
        if writer:
            _set_aside(record, storage.get_bytes(record), "is not a checkpoint record")
        entries = []
    if writer:
        listed = {e["file"] for e in entries}
        for info in storage.list(folder, recursive=False):
            if _is_checkpoint(_name(info.uri)) and _name(info.uri) not in listed:
                _set_aside(info.uri, storage.get_bytes(info.uri), f"is not listed in {RECORD}")
    for index, entry in enumerate(entries):
        state = _verified(storage.join(folder, entry["file"]), entry, writer)
        if state is not None:
            if writer and index:
                storage.put_json(record, {"checkpoints": entries[index:]})
            return state
    if writer and entries:
        storage.delete(record)
    return None


def _verified(uri: str, entry: dict[str, Any], writer: bool) -> dict[str, Any] | None:
    """The state in the file of ``entry``, or None (set aside when ``writer``) if it does not verify."""
    import torch

    try:
        data, sha256 = _read(uri)
    except ObjectNotFoundError:
        if writer:
            log.warning("checkpoint %s is listed but missing; trying the one before it", uri)
        return None
    problem = None
    if len(data) != entry["size"]:
        problem = f"has {len(data)} bytes, {entry['size']} recorded"
    elif sha256 != entry["sha256"]:
        problem = "does not match its recorded SHA-256"
    else:
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unpickling failure means a damaged file
            problem = f"cannot be read ({type(error).__name__})"
    if writer:
        _set_aside(uri, data, problem)
    return None


def _set_aside(uri: str, data: bytes, problem: str) -> None:
    """Move a damaged object to ``<uri>.damaged`` and say so in one warning line."""
    storage.put_bytes(uri + DAMAGED, data)
    storage.delete(uri)
    log.warning("checkpoint file %s %s; set aside as %s%s", uri, problem, uri, DAMAGED)


def _entries(record: str) -> list[dict[str, Any]] | None:
    """The files a record lists, newest first; [] without a record, None for one that is not a record."""
    if not storage.exists(record):
        return []
    try:
        entries = storage.get_json(record)["checkpoints"]
    except (StoreError, TypeError, KeyError):
        return None
    fields = {"file": str, "step": int, "size": int, "sha256": str}
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in fields.items()) for e in entries
    ):
        return None
    return entries


def _read(uri: str) -> tuple[bytes, str]:
    """The bytes of an object and their SHA-256, hashed while reading."""
    hasher, buffer = hashlib.sha256(), io.BytesIO()
    with storage.open_read(uri) as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            buffer.write(chunk)
    return buffer.getvalue(), hasher.hexdigest()


def _name(uri: str) -> str:
    """The last part of an object URI."""
    return uri.rsplit("/", 1)[-1]
