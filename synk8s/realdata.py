"""Where the run's real dataset is: read in place, copied from the store, downloaded, or drawn.

``dataset.root`` (``{name}`` filled in) is a local folder or a store prefix such as
``s3://synk8s/datasets/cifar100``; either way the dataset lives in ``<root>/<base_dir>`` (e.g.
``cifar-100-python``), in its standard on-disk format. For a prefix, that folder is copied once to
``$SYNK8S_DATA_CACHE_DIR/<prefix as a folder name>/`` (default ``~/.cache/synk8s/data``) and read from
there; later calls reuse the copy without reading the store (see :mod:`synk8s.mirror`).

A local root without the data is filled by :func:`synk8s.datasets.download` (pods with internet
access fetch CIFAR and the like themselves), or, with ``dataset.standin: true``, by a drawn stand-in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from synk8s import datasets, mirror, storage
from synk8s.config import ExperimentConfig
from synk8s.datasets import DatasetInfo
from synk8s.errors import MissingDataError, UsageError

logger = logging.getLogger(__name__)

DATA_CACHE_DIR_ENV = "SYNK8S_DATA_CACHE_DIR"
# Seed of the drawn stand-in: it stands for data, which does not change with a run's seed, and whichever
# seed's run writes it first, every seed reads the same images.
STANDIN_SEED = 0
_DEFAULT_DATA_CACHE_DIR = "~/.cache/synk8s/data"


def data_cache_dir() -> Path:
    """Where store prefixes are copied to: ``$SYNK8S_DATA_CACHE_DIR`` or ``~/.cache/synk8s/data``."""
    return Path(os.environ.get(DATA_CACHE_DIR_ENV) or _DEFAULT_DATA_CACHE_DIR).expanduser()


def local_root(prefix: str) -> Path:
    """The local data root that mirrors the store prefix ``prefix``, one folder per prefix.

    The folder name is the prefix with every run of characters other than letters, digits, ``.``,
    ``_`` and ``-`` replaced by ``_``, plus 8 hex digits of its SHA-256, e.g.
    ``s3_synk8s_datasets_cifar100-1f0c93a2``.
    """
    prefix = prefix.rstrip("/")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", prefix).strip("_")
    return data_cache_dir() / f"{readable}-{hashlib.sha256(prefix.encode()).hexdigest()[:8]}"


def ensure_dataset(cfg: ExperimentConfig) -> str:
    """A local data root holding ``cfg.dataset``, ready for :func:`synk8s.datasets.load`.

    In order:

    1. A store prefix (``s3://...``): ``<root>/<base_dir>`` and a stand-in marker beside it, if
       any, are copied to :func:`local_root` unless a complete copy is there.
    2. Local data that loads is used as it is; a dataset folder that exists but does not load is
       reported, never overwritten.
    3. With ``dataset.standin: true``, a stand-in of ``dataset.standin_per_class`` images per class
       and split is drawn under the root (seeded by :data:`STANDIN_SEED`). A stand-in there already
       is drawn again when its marker records other settings (or none); a store copy of one with
       other settings is refused.
    4. Otherwise the dataset is downloaded under the root where that can be done automatically.

    A ``custom`` dataset reads ``dataset.images`` instead (:mod:`synk8s.realdata_custom`).

    Args:
        cfg: the run's config (``dataset`` section).

    Returns:
        The local data root: ``dataset.root`` with ``{name}`` filled in, or the copy of a prefix.

    Raises:
        MissingDataError: the data is not under the root and cannot be downloaded (the message
            says why and where to put it), the local dataset folder is incomplete, the root is a
            file, or a folder cannot be written.
        UsageError: the store holds a stand-in drawn with other settings.
        StoreError: the store cannot be read (endpoint, credentials).
    """
    if cfg.dataset.name == datasets.CUSTOM:
        from synk8s.realdata_custom import prepare_images

        return prepare_images(cfg, local_root(cfg.dataset.images or ""))
    info = datasets.get(cfg.dataset.name)
    root = cfg.dataset.resolved_root()
    if storage.is_remote(root):
        local = _copy_from_store(info, root, cfg.dataset.standin)
        _check_store_standin(cfg, info, root, local)
        datasets.load(info.name, info.test_split, local)
        return str(local)
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise MissingDataError(
            f"dataset.root {root} is a file, not a folder; set dataset.root to a folder (the dataset goes in "
            f"<root>/{info.base_dir}) or to an s3://bucket/prefix holding it"
        )
    try:
        return _ensure_local(cfg, info, root)
    except OSError as error:
        raise MissingDataError(
            f"cannot prepare {info.name} data under {root}: {_reason(error)}; set dataset.root to a writable "
            "folder or to an s3://bucket/prefix holding the dataset"
        ) from error


def _ensure_local(cfg: ExperimentConfig, info: DatasetInfo, root: str) -> str:
    """Steps 2-4 of :func:`ensure_dataset` for a local root."""
    path = Path(root).expanduser()
    if cfg.dataset.standin and datasets.is_standin(path) and (path / info.base_dir).exists():
        changes = datasets.settings_changes(path, info.name, _standin_settings(cfg, info))
        if changes:
            logger.warning(
                "the %s stand-in under %s was drawn with other settings (%s): drawing it again",
                info.name,
                root,
                "; ".join(changes),
            )
            datasets.write_standin(info.name, root, per_class=cfg.dataset.standin_per_class, seed=STANDIN_SEED)
            return root
    try:
        datasets.load(info.name, info.test_split, root)
        return root
    except MissingDataError:
        if (path / info.base_dir).exists():
            raise
    if not cfg.dataset.standin:
        return _download(info, root)
    counts = datasets.write_standin(info.name, root, per_class=cfg.dataset.standin_per_class, seed=STANDIN_SEED)
    logger.warning("no %s data under %s: wrote a drawn stand-in (%s)", info.name, root, counts)
    return root


def _standin_settings(cfg: ExperimentConfig, info: DatasetInfo) -> dict[str, Any]:
    """The settings of the stand-in this run draws (see :func:`synk8s.datasets.standin_settings`)."""
    return datasets.standin_settings(info.name, cfg.dataset.standin_per_class, seed=STANDIN_SEED)


def _check_store_standin(cfg: ExperimentConfig, info: DatasetInfo, root: str, local: Path) -> None:
    """Refuse a store copy of a stand-in drawn with settings other than this run's (it is never redrawn).

    Raises:
        UsageError: the copy's marker records other settings.
    """
    recorded = datasets.recorded_settings(local, info.name)
    if not cfg.dataset.standin or recorded is None:
        return
    changes = datasets.settings_changes(local, info.name, _standin_settings(cfg, info))
    if changes:
        raise UsageError(
            f"{root} holds a {info.name} stand-in drawn with other settings ({'; '.join(changes)}), and a store "
            f"copy is never drawn again: set dataset.standin_per_class={recorded.get('per_class')} to use it, "
            "or set dataset.root to a local folder to draw one with these settings"
        )


def _download(info: DatasetInfo, root: str) -> str:
    """Download the dataset under ``root``; on failure remove the folders this call created."""
    created = _first_missing(Path(root).expanduser().absolute())
    try:
        datasets.download(info.name, root)
    except MissingDataError as error:
        if created is not None:
            _remove_empty_folders(created)
        raise MissingDataError(
            f"{info.name} {info.test_split} split is not under {Path(root) / info.base_dir}: {error}; "
            "or set dataset.root to an s3://bucket/prefix holding the dataset"
        ) from error
    logger.info("downloaded %s under %s", info.name, root)
    return root


def _copy_from_store(info: DatasetInfo, root: str, standin: bool) -> Path:
    """Step 1 of :func:`ensure_dataset`: the local copy of ``<root>/<base_dir>`` (and the stand-in marker)."""
    local = local_root(root)
    remote = storage.join(root, info.base_dir)
    try:
        copied = mirror.mirror(remote, local / info.base_dir, info.name)
        if copied:
            marker = storage.join(root, datasets.MARKER)
            if storage.exists(marker):
                storage.get_file(marker, local / datasets.MARKER)
            else:
                (local / datasets.MARKER).unlink(missing_ok=True)
    except storage.ObjectNotFoundError:
        hint = "; a drawn stand-in is written only under a local dataset.root" if standin else ""
        raise MissingDataError(
            f"no {info.name} data under {remote}/: upload the dataset folder with "
            f"`synk8s store cp ./data/{info.name} {root}` (it holds {info.base_dir}/){hint}"
        ) from None
    except OSError as error:
        raise MissingDataError(
            f"cannot copy {info.name} data from {root} to {local}: {_reason(error)}; set {DATA_CACHE_DIR_ENV} "
            "to a writable folder with room for the dataset"
        ) from error
    return local


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself or an ancestor) that does not exist yet, if any."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_empty_folders(top: Path) -> None:
    """Remove ``top`` and the folders below it, keeping every folder that holds a file."""
    for folder, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):  # not empty
            os.rmdir(folder)


def _reason(error: OSError) -> str:
    """An OSError as ``<reason>: <path>``."""
    if error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    return str(error) or type(error).__name__
