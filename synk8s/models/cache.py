"""Model cache for clusters without hub access.

A cache is a local folder or an ``s3://bucket/prefix`` laid out as::

    <cache>/<model id with "/" replaced by "--">/   a save_pretrained folder (diffusers, transformers)
    <cache>/open_clip/<arch>-<pretrained>.pt        an open_clip state dict
    <cache>/backbones/<name>-imagenet1k.pth         a backbone's ImageNet-1K state dict (pre-training, fine-tuning)
    <cache>/torchvision/resnet50-0676ba61.pth       torchvision's ImageNet-1K ResNet-50 file (detection)

Fill one on a machine with hub access with ``synk8s models pull NAME --cache DIR_OR_S3_PREFIX``
(:mod:`synk8s.models.pull`). A tiny model pulled into a cache is read back from it too (its weights
are then those of the seed it was pulled with).

An S3 cache is copied once to a local folder (``SYNK8S_MODEL_CACHE_DIR``, default
``~/.cache/synk8s/models``) and read from there afterwards; a local cache is read in place.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from synk8s.errors import MissingDataError

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "SYNK8S_MODEL_CACHE_DIR"
_DEFAULT_CACHE_DIR = "~/.cache/synk8s/models"


#: torchvision's file of ResNet50_Weights.IMAGENET1K_V1, kept under its own name (detection's ImageNet start)
DETECTION_RESNET50_FILE = "resnet50-0676ba61.pth"


def backbone_entry(name: str) -> str:
    """The cache path of backbone ``name``'s ImageNet-1K weights, e.g. ``backbones/resnet50-imagenet1k.pth``."""
    return f"backbones/{name}-imagenet1k.pth"


def detection_entry() -> str:
    """The cache path of the ResNet-50 ImageNet-1K file detection starts from (``detect.init=imagenet``)."""
    return f"torchvision/{DETECTION_RESNET50_FILE}"


def entry_name(model_id: str) -> str:
    """The cache folder name of a hub model id: ``owner/name`` becomes ``owner--name``."""
    return model_id.strip("/").replace("/", "--")


def has_entry(cache: str, entry: str) -> bool:
    """Whether the model cache ``cache`` (folder or ``s3://`` prefix) holds ``entry``: a file, or a non-empty folder."""
    from synk8s import storage

    uri = storage.join(cache, entry)
    return storage.exists(uri) or bool(storage.list(uri.rstrip("/") + "/"))


def local_mirror_root() -> Path:
    """Where S3 caches are copied to: ``$SYNK8S_MODEL_CACHE_DIR`` or ``~/.cache/synk8s/models``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or _DEFAULT_CACHE_DIR).expanduser()


def pretrained_folder(cache: str, model_id: str, fill_hint: str) -> Path:
    """A local folder holding the ``save_pretrained`` files of ``model_id`` from ``cache``.

    Args:
        cache: a local folder or an ``s3://`` prefix laid out as described in this module.
        model_id: the hub model id, e.g. ``stabilityai/sd-turbo``.
        fill_hint: how to fill the entry, e.g. ``DiffusionPipeline.from_pretrained(id).save_pretrained(path)``;
            ``{path}`` in it is replaced by the expected location.

    Returns:
        The folder to pass to ``from_pretrained``.

    Raises:
        MissingDataError: the cache has no entry for ``model_id``.
    """
    from synk8s import storage

    location = storage.join(cache, entry_name(model_id))
    if storage.is_remote(cache):
        return _mirror_prefix(cache, location, model_id, fill_hint)
    folder = Path(location).expanduser()
    if not folder.is_dir() or not any(folder.iterdir()):
        raise _missing(model_id, str(folder), fill_hint)
    log.info("loading %s from the model cache folder %s", model_id, folder)
    return folder


def cached_file(cache: str, relative: str, what: str, fill_hint: str) -> Path:
    """A local copy of one file of ``cache`` (e.g. ``open_clip/RN50-openai.pt``).

    Args:
        cache: a local folder or an ``s3://`` prefix.
        relative: the file's path below the cache root, ``/``-separated.
        what: the model the file holds, for the error message.
        fill_hint: how to create the file; ``{path}`` in it is replaced by the expected location.

    Raises:
        MissingDataError: the file is not in the cache.
    """
    from synk8s import storage

    location = storage.join(cache, relative)
    if storage.is_remote(cache):
        local = _mirror_dir(cache) / relative
        if not local.is_file():
            if not storage.exists(location):
                raise _missing(what, location, fill_hint)
            log.info("copying %s from the model cache %s to %s", what, location, local)
            storage.get_file(location, local)
        return local
    local = Path(location).expanduser()
    if not local.is_file():
        raise _missing(what, str(local), fill_hint)
    return local


def _missing(what: str, location: str, fill_hint: str) -> MissingDataError:
    hint = fill_hint.replace("{path}", location)
    return MissingDataError(
        f"{what!r} is not in the model cache: expected {location}; on a machine with hub access run {hint} "
        "and copy the result there"
    )


def _mirror_dir(cache: str) -> Path:
    """The local folder that mirrors one S3 cache (one folder per cache URI)."""
    digest = hashlib.sha256(cache.rstrip("/").encode()).hexdigest()[:16]
    return local_mirror_root() / digest


def _mirror_prefix(cache: str, location: str, model_id: str, fill_hint: str) -> Path:
    """Copy every object under ``location`` once (see :func:`synk8s.mirror.mirror`), then return the local copy."""
    from synk8s import mirror, storage

    local = _mirror_dir(cache) / entry_name(model_id)
    try:
        mirror.mirror(location, local, model_id)
    except storage.ObjectNotFoundError:
        raise _missing(model_id, location.rstrip("/") + "/", fill_hint) from None
    return local
