"""Where loaded weights came from: one-line load errors and the revision actually loaded.

Real models load with ``from_pretrained`` (or open_clip's downloader) from the Hugging Face hub or from
a model cache (see :mod:`synk8s.models.cache`). :func:`weight_load` wraps such a load and turns a
failure to fetch or read the weights into a one-line :class:`MissingDataError` that says how to fill a
cache. :func:`hub_commit` and :func:`listing_digest` name the exact weights a load used, for provenance.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from synk8s.errors import MissingDataError
from synk8s.models.cache import entry_name

# The hub cache keeps each commit's files in <cache>/models--<owner>--<name>/snapshots/<40-hex sha>/.
_SNAPSHOT = re.compile(r"[\\/]snapshots[\\/]([0-9a-f]{40})(?:[\\/]|$)")
# Top-level packages whose exceptions mean the weights could not be fetched.
_FETCH_PACKAGES = ("huggingface_hub", "httpx", "httpx2", "requests", "urllib3")


def pretrained_layout(model_id: str) -> str:
    """Where a ``save_pretrained`` copy of ``model_id`` goes in a model cache, for messages."""
    return f"`save_pretrained` into <cache>/{entry_name(model_id)}"


def clip_file(arch: str, pretrained: str) -> str:
    """The cache path of an open_clip state dict, relative to the cache root: ``open_clip/RN50-openai.pt``."""
    return f"open_clip/{arch}-{pretrained}.pt"


def clip_layout(arch: str, pretrained: str) -> str:
    """Where an open_clip state dict goes in a model cache, for messages."""
    return f"`torch.save` of its state_dict into <cache>/{clip_file(arch, pretrained)}"


@contextlib.contextmanager
def weight_load(kind: str, model_id: str, layout: str, source: Path | None = None) -> Iterator[None]:
    """Report a failure to fetch or read weights inside the block as a one-line MissingDataError.

    Failures are ``OSError`` (which covers the hub client's missing-entry and HTTP errors and requests'
    connection errors), ``ValueError`` (e.g. a malformed repo id), errors of the hub and HTTP client
    packages, and a ``RuntimeError`` raised while handling one of these (open_clip wraps its download
    errors so). Anything else is a programming error and propagates unchanged; the original error stays
    chained as ``__cause__``.

    Args:
        kind: what is loaded, e.g. ``generator``, ``LE model``, ``CLIP model``.
        model_id: the hub model id, or ``<arch>/<pretrained>`` for open_clip.
        layout: how the model is stored in a cache, from :func:`pretrained_layout` or :func:`clip_layout`.
        source: the local cache folder or file being read; None when loading from the hub.

    Raises:
        MissingDataError: the weights could not be fetched or read.
    """
    try:
        yield
    except Exception as error:
        if not _is_fetch_failure(error):
            raise
        reason = _short_reason(error)
        if source is None:
            message = (
                f"cannot load {kind} {model_id!r} ({reason}): this machine cannot reach the Hugging Face hub "
                f"or the model is not there; put a copy in a model cache ({layout}) and pass "
                "--set models.cache=DIR_OR_S3_PREFIX"
            )
        else:
            message = (
                f"cannot load {kind} {model_id!r} from the model cache copy {source} ({reason}); "
                f"replace it with a complete copy ({layout}) made on a machine with hub access"
            )
        raise MissingDataError(message) from error


def _is_fetch_failure(error: BaseException) -> bool:
    def fetch_error(e: BaseException) -> bool:
        package = type(e).__module__.split(".")[0]
        return isinstance(e, OSError | ValueError) or package in _FETCH_PACKAGES

    if fetch_error(error):
        return True
    inner = error.__cause__ or error.__context__
    return isinstance(error, RuntimeError) and inner is not None and fetch_error(inner)


def _short_reason(error: BaseException, limit: int = 120) -> str:
    """The error's type and first sentence on one line, cut to ``limit`` characters."""
    text = " ".join(str(error).split())
    end = text.find(". ")
    if end > 0:
        text = text[: end + 1]
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def hub_commit(paths: Iterable[Any]) -> str | None:
    """The hub commit sha in the first of ``paths`` that lies in a hub cache snapshot folder.

    ``from_pretrained`` from the hub reads files from ``.../snapshots/<sha>/``, and the loaded objects
    remember that folder (``config._name_or_path``, ``tokenizer.name_or_path``), so the sha names the
    weights actually loaded even when a branch such as ``main`` was requested.

    Args:
        paths: file or folder paths (str or Path); None entries are skipped.

    Returns:
        The 40-hex commit sha, or None when no path is in a snapshot folder.
    """
    for path in paths:
        match = _SNAPSHOT.search(str(path)) if path is not None else None
        if match:
            return match.group(1)
    return None


def listing_digest(folder: Path) -> str:
    """``cache:<sha256>`` of the relative paths and sizes of every file below ``folder``.

    Names the weights of a model loaded from a model cache folder without reading them; a copy of the
    folder (e.g. the local mirror of an S3 cache) has the same digest.
    """
    lines = [
        f"{path.relative_to(folder).as_posix()}\t{path.stat().st_size}"
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    return "cache:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
