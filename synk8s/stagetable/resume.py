"""Resuming a run: a stage whose folder already holds its complete, valid output is not run again.

After a stage (or a sharded stage's collect step) finishes, :func:`record` adds two fields to the
``manifest.json`` the stage wrote: ``stage_digest``, the digest of every config field the stage's
output depends on (the same fields that name its folder), and ``result``, the stage's result. A
later call with the same config finds, through :func:`recorded`:

1. ``manifest.json`` present, with a ``stage_digest`` (a stage that crashed after writing its
   manifest has none, so it runs again);
2. that digest equal to the digest of the stage's fields under the new config;
3. every output the row declares present, its content (streamed through SHA-256, not taken from
   the store's size/mtime/inode shortcut) equal to the SHA-256 recorded at completion, and readable
   where the row gives a one-argument reader (an iterator's first item is read);

and then hands back the recorded result instead of running the stage. Anything else runs the
stage as usual, overwriting what is there; a damaged output (bytes changed, even in place with
size and mtime kept, or truncated) is named in one warning line. Hashing costs one read of the
outputs, about 0.05 s per 100 MB (docs/speed.md). Shards of a sharded stage resume on their own (they
keep finished tars); the collect step resumes here.
"""

from __future__ import annotations

import fnmatch
import inspect
import logging
import typing
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel

from synk8s import storage
from synk8s.errors import IntegrityError, Synk8sError
from synk8s.stagetable.spec import StageSpec

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def result_type(func: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic result class a stage function (or collect step) is annotated to return."""
    return typing.get_type_hints(func)["return"]


def record(spec: StageSpec, out: str, digest: str, result: BaseModel) -> None:
    """Mark the stage output in ``out`` complete: its manifest gets ``stage_digest``, ``result`` and ``outputs``.

    Args:
        spec: the stage's row; the SHA-256 of each file matching its declared outputs is recorded.
        out: the stage's folder URI, holding the ``manifest.json`` the stage just wrote.
        digest: the digest of the config fields the stage's output depends on.
        result: what the stage returned.
    """
    uri = storage.join(out, MANIFEST)
    manifest = storage.get_json(uri)
    manifest["stage_digest"] = digest
    manifest["result"] = result.model_dump(mode="json")
    manifest["outputs"] = {name: info.sha256 for name, info in _declared(spec, out).items()}
    storage.put_json(uri, manifest)


def recorded(spec: StageSpec, out: str, digest: str, func: Callable[..., Any]) -> BaseModel | None:
    """The recorded result of a complete, valid output of ``spec`` in ``out``; None when it must run.

    Args:
        spec: the stage's row (its ``outputs`` are checked).
        out: the stage's folder URI.
        digest: the digest of the stage's fields under the config of this call.
        func: the function whose result type the recorded result is read back as.
    """
    uri = storage.join(out, MANIFEST)
    try:
        if not storage.exists(uri):
            return None
        manifest = storage.get_json(uri)
        if manifest.get("stage_digest") != digest or "result" not in manifest:
            return None
        missing = _unreadable(spec, out, manifest.get("outputs") or {})
        if missing:
            log.info("%s: %s in %s is missing or unreadable; running it again", spec.name, missing, out)
            return None
        return result_type(func).model_validate(manifest["result"])
    except IntegrityError as error:
        log.warning("%s: %s; running the stage again", spec.name, error)
        return None
    except (Synk8sError, OSError, ValueError) as error:
        log.info("%s: the output in %s cannot be reused (%s); running it again", spec.name, out, error)
        return None


def _declared(spec: StageSpec, out: str) -> dict[str, storage.ObjectInfo]:
    """The files of ``out`` matching the outputs ``spec`` declares (``manifest.json`` aside), by relative name."""
    found = {}
    for info in storage.list(out):
        name = info.uri[len(out) :].lstrip("/")
        if name != MANIFEST and any(fnmatch.fnmatchcase(name, pattern) for pattern in spec.outputs):
            found[name] = info
    return found


def _unreadable(spec: StageSpec, out: str, hashes: dict[str, str | None]) -> str | None:
    """The first declared output of ``spec`` in ``out`` that is absent or fails its reader; None when all are fine.

    Raises:
        IntegrityError: an output's content differs from the SHA-256 recorded at completion.
    """
    present = _declared(spec, out)
    if set(present) != set(hashes):
        return ", ".join(sorted(set(present) ^ set(hashes)))
    for name, info in present.items():
        storage.verify(info.uri, hashes[name])
    names = [*present, MANIFEST]
    for pattern, reader in spec.outputs.items():
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return pattern
        if reader is not None and _one_argument(reader):
            value = reader(out)
            if isinstance(value, Iterator):
                next(value, None)
    return None


def _one_argument(reader: Callable[..., Any]) -> bool:
    """Whether ``reader`` can be called with the folder URI alone."""
    required = [
        p
        for p in list(inspect.signature(reader).parameters.values())[1:]
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return not required
