"""Your own images (``dataset.images``) made ready to read: copied here, split, checked file by file.

:func:`synk8s.realdata.ensure_dataset` calls :func:`prepare_images` for a ``custom`` dataset. It

1. copies an ``s3://`` folder (or a manifest's folder) to the data cache once (:mod:`synk8s.mirror`);
2. draws the seeded train/test split of images that have none and saves it beside the data (in the
   store for ``s3://``), or reads the one saved there before (:mod:`synk8s.datasets.imagefolder`);
3. decodes every image and maps every label to the label space. Unusable files are listed, one
   ``path<TAB>reason`` line each, in ``<store.root>/checks/images-<digest>-bad.txt``; the run fails
   with their count and that URI unless ``dataset.skip_bad_images`` is true (then it goes on
   without them, saying how many it left out).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

from synk8s import datasets, mirror, storage
from synk8s.config import ExperimentConfig
from synk8s.datasets import imagefolder
from synk8s.errors import MissingDataError

logger = logging.getLogger(__name__)

CHECKS_DIR = "checks"


def prepare_images(cfg: ExperimentConfig, cache_root: Path) -> str:
    """The local path of ``dataset.images``, split and checked (see the module docstring).

    Args:
        cfg: the run's config (``dataset.images``, its label space, ``store.root``).
        cache_root: the local folder that mirrors the images' store prefix (used for ``s3://``).

    Raises:
        MissingDataError: no ``dataset.images``, an absent or empty folder, a bad manifest, or
            unusable images while ``dataset.skip_bad_images`` is false.
    """
    images = cfg.dataset.images
    if images is None:
        raise MissingDataError(
            "this run has a custom label space and no real images; pass --images FOLDER_OR_MANIFEST "
            "(the few-shot shots and the test set come from there)"
        )
    local = _local_copy(images, cache_root)
    info = datasets.info(cfg.dataset)
    drawn = _saved_split(images, local) if imagefolder.needs_split(local) else None
    checked = imagefolder.check(info, local, drawn)
    if checked.bad:
        _report_bad(cfg, images, checked)
    if not checked.good:
        raise MissingDataError(f"dataset.images {images} holds no usable image")
    return str(local)


def _local_copy(images: str, cache_root: Path) -> Path:
    """``images`` itself when local; else the local copy of its folder (a manifest's parent folder)."""
    if not storage.is_remote(images):
        return Path(images).expanduser().absolute()
    if imagefolder.is_manifest(images):
        folder, _, name = images.rstrip("/").rpartition("/")
        try:
            mirror.mirror(folder, cache_root, "your images")
        except storage.ObjectNotFoundError:
            raise MissingDataError(f"dataset.images {images}: nothing stored under {folder}/") from None
        return cache_root / name
    try:
        mirror.mirror(images, cache_root, "your images")
    except storage.ObjectNotFoundError:
        raise MissingDataError(f"dataset.images {images} does not exist; upload the folder with `synk8s store cp`") from None
    return cache_root


def _saved_split(images: str, local: Path) -> dict:
    """The split saved beside ``images``, drawn and saved first when there is none."""
    uri = imagefolder.split_file(images)
    local_file = Path(imagefolder.split_file(str(local)))
    if storage.exists(uri):
        drawn = storage.get_json(uri)
    else:
        drawn = imagefolder.draw_split(imagefolder.listing(local)[1])
        storage.put_json(uri, drawn)
        logger.info("drew a train/test split of %s (seed %d): %s", images, drawn["seed"], uri)
    if not local_file.exists() or json.loads(local_file.read_text(encoding="utf-8")) != drawn:
        local_file.write_text(json.dumps(drawn, indent=1), encoding="utf-8")
    return drawn


def _report_bad(cfg: ExperimentConfig, images: str, checked: imagefolder.Checked) -> None:
    """List the unusable files in the store; fail unless ``dataset.skip_bad_images``."""
    name = hashlib.sha256(f"{images}\n{cfg.dataset.classes_sha256}".encode()).hexdigest()[:16]
    uri = storage.join(cfg.store.root, CHECKS_DIR, f"images-{name}-bad.txt")
    storage.put_bytes(uri, "".join(f"{bad.rel}\t{bad.reason}\n" for bad in checked.bad).encode("utf-8"))
    kinds = Counter("unreadable" if "label" not in bad.reason else "label not in the label space" for bad in checked.bad)
    total = len(checked.bad) + len(checked.good)
    summary = (
        f"dataset.images {images}: {len(checked.bad)} of {total} files unusable "
        f"({', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))}), listed in {uri}"
    )
    if not cfg.dataset.skip_bad_images:
        raise MissingDataError(f"{summary}; fix or remove them, or set dataset.skip_bad_images=true to leave them out")
    logger.warning("%s; left out (dataset.skip_bad_images)", summary)
