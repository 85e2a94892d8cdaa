"""Load a split of a real (or stand-in) classification dataset from its own on-disk format.

``load("cifar100", "test", "/data")`` returns a :class:`ClassificationData`: a light sequence of
``(PIL RGB image, label)`` pairs with the labels up front and an ``ident`` that names the split's
contents (for cache keys). Which files go where is in each registry entry's ``data_layout``; the
format readers live in :mod:`synk8s.datasets.readers`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from synk8s.datasets import coop_splits, imagefolder, readers
from synk8s.datasets.custom import CUSTOM
from synk8s.datasets.registry import CLASSIFICATION, DatasetInfo, get
from synk8s.errors import MissingDataError, UsageError

_READERS: dict[str, Callable[[DatasetInfo, str, Path], readers.SplitFiles]] = {
    "cifar10": readers.cifar,
    "cifar100": readers.cifar,
    "caltech101": readers.caltech101,
    "caltech256": readers.caltech256,
    "imagenet": readers.image_folder,
    "sun397": readers.sun397,
    "fgvc_aircraft": readers.fgvc_aircraft,
    "birdsnap": readers.birdsnap,
    "stanford_cars": readers.stanford_cars,
    "cub200": readers.cub200,
    "flowers102": readers.flowers102,
    "food101": readers.food101,
    "oxford_pets": readers.oxford_pets,
    "dtd": readers.dtd,
    "eurosat": readers.eurosat,
    "imagenet_sketch": readers.image_folder,
    "imagenet_r": readers.image_folder,
}


class _PathImages:
    """Opens image ``i`` from a list of files (picklable, so DataLoader workers can use it).

    A file that does not decode raises MissingDataError naming it and ``fix``.
    """

    def __init__(self, paths: Sequence[Path], fix: str):
        self.paths = list(paths)
        self.fix = fix

    def __call__(self, i: int) -> Image.Image:
        try:
            with Image.open(self.paths[i]) as image:
                return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
            raise MissingDataError(f"{self.paths[i]} is not a readable image ({error}); {self.fix}") from None


class _ArrayImages:
    """Serves image ``i`` from an in-memory uint8 array of shape (N, H, W, 3)."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __call__(self, i: int) -> Image.Image:
        return Image.fromarray(self.array[i])


class ClassificationData(Sequence):
    """One split of a classification dataset: ``data[i] -> (PIL RGB image, label)``.

    Attributes:
        info: The registry entry.
        split: The split name.
        labels: Label of every sample, in order (ints in ``[0, info.num_classes)``).
    """

    def __init__(self, info: DatasetInfo, split: str, root: Path, files: readers.SplitFiles):
        self.info = info
        self.split = split
        self.labels: list[int] = list(files.labels)
        self._root = root
        self._ident_files = files.ident_files
        self._digests = files.digests
        if files.array is not None:
            self._images: Callable[[int], Image.Image] = _ArrayImages(files.array)
        else:
            self._images = _PathImages(files.ident_files, f"replace it with the file from {info.homepage or 'its source'}")

    @property
    def classes(self) -> tuple[str, ...]:
        """Human-readable class names in label order."""
        return self.info.classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:  # type: ignore[override]
        if not -len(self.labels) <= i < len(self.labels):
            raise IndexError(f"index {i} out of range for {len(self.labels)} samples")
        i %= len(self.labels)
        return self._images(i), self.labels[i]

    def sample_id(self, i: int) -> str:
        """Which file sample ``i`` is, stable across machines and data roots.

        The image file's path relative to the data root (``eurosat/2750/Forest/Forest_1.jpg``) where
        each sample has its own file; ``<base_dir>/<split>[i]`` for formats that pack the pixels of a
        split into batch files (CIFAR), whose contents :attr:`ident` pins.
        """
        if not 0 <= i < len(self.labels):
            raise IndexError(f"index {i} out of range for {len(self.labels)} samples")
        if isinstance(self._images, _PathImages):
            return Path(self._ident_files[i]).relative_to(self._root).as_posix()
        return f"{self.info.base_dir}/{self.split}[{i}]"

    @functools.cached_property
    def ident(self) -> str:
        """sha256 (hex) over the dataset name, split, files (relative path and size) and labels.

        Stable across machines and data roots; changes when any file is added, removed, resized
        or relabelled. Computed on first use (one ``stat`` per file). Where the reader hashed the
        files' bytes (your own images, :mod:`synk8s.datasets.imagefolder`), their SHA-256 takes the
        place of the size, so an image changed in place changes the ident too.
        """
        digest = hashlib.sha256(f"{self.info.name}\n{self.split}\n".encode())
        for i, path in enumerate(self._ident_files):
            rel = Path(path).relative_to(self._root).as_posix()
            content = self._digests[i] if self._digests is not None else os.path.getsize(path)
            digest.update(f"{rel}\t{content}\n".encode())
        digest.update(",".join(map(str, self.labels)).encode())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"ClassificationData({self.info.name!r}, split={self.split!r}, n={len(self)})"


def check_split(info: DatasetInfo, split: str, task: str) -> None:
    """Raise ``UsageError`` if ``info`` is not a ``task`` dataset or has no split ``split``."""
    if info.task != task:
        other = "load_detection" if info.task != CLASSIFICATION else "load"
        raise UsageError(f"{info.name} is a {info.task} dataset: use synk8s.datasets.{other}")
    if split not in info.splits:
        raise UsageError(f"{info.name} has no split {split!r}; choose one of: {', '.join(info.splits)}")


def load(name: str | DatasetInfo, split: str, root: str | os.PathLike) -> ClassificationData:
    """Load one split of a classification dataset from its own on-disk format.

    A CoOp split file beside the data (:mod:`synk8s.datasets.coop_splits`) decides the ``train``,
    ``val`` and ``test`` images of the datasets it covers.

    Args:
        name: Registry name, e.g. ``"cifar100"``, or an entry (a custom label space's, see
            :func:`synk8s.datasets.info`).
        split: One of ``get(name).splits``.
        root: Data root; the dataset lives under ``root / get(name).base_dir``. For a custom label
            space: the local images folder or manifest that :func:`synk8s.realdata.ensure_dataset` prepared.

    Raises:
        UsageError: Unknown dataset or split, or a detection dataset.
        MissingDataError: The split's files are not under ``root``, or do not match the registry.
    """
    info = name if isinstance(name, DatasetInfo) else get(name)
    check_split(info, split, CLASSIFICATION)
    root_path = Path(root).expanduser().absolute()
    if info.name == CUSTOM:
        return _load_custom(info, split, root_path)
    coop = coop_splits.split_file(info, root_path) if split in ("train", "val", "test") else None
    try:
        if coop is not None:
            files = coop_splits.coop_files(info, split, coop, lambda own: _READERS[info.name](info, own, root_path))
        else:
            files = _READERS[info.name](info, split, root_path)
    except (RuntimeError, OSError, KeyError, ValueError) as error:  # torchvision's parsers on bad files
        raise MissingDataError(
            f"{info.name} {split} split under {root_path / info.base_dir} could not be read ({error}); "
            f"expected {info.data_layout}"
        ) from error
    _check_labels(info, split, root_path, files)
    return ClassificationData(info, split, root_path, files)


def _load_custom(info: DatasetInfo, split: str, images: Path) -> ClassificationData:
    """A split of your own images (the usable ones; :func:`synk8s.realdata.ensure_dataset` reported the rest)."""
    saved = Path(imagefolder.split_file(str(images)))
    drawn = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else None
    if drawn is None and imagefolder.needs_split(images):
        raise MissingDataError(f"no saved split {saved} for {images}; prepare it with synk8s.realdata.ensure_dataset")
    checked = imagefolder.check(info, images, drawn)
    rows = [row for row in checked.good if row[2] == split]
    files = readers.SplitFiles(
        labels=[row[1] for row in rows],
        ident_files=[checked.base / row[0] for row in rows],
        digests=[row[3] for row in rows],
    )
    return ClassificationData(info, split, checked.base, files)


def _check_labels(info: DatasetInfo, split: str, root: Path, files: readers.SplitFiles) -> None:
    """Raise MissingDataError naming the first sample whose label is outside ``[0, num_classes)``."""
    bad = next((i for i, label in enumerate(files.labels) if not 0 <= label < info.num_classes), None)
    if bad is None:
        return
    sample = files.ident_files[bad] if files.array is None else f"sample {bad}"
    raise MissingDataError(
        f"{info.name} {split}: {sample} has label {files.labels[bad]}, outside 0..{info.num_classes - 1}; "
        f"the label files under {root / info.base_dir} do not match {info.title}: re-extract it from {info.homepage}"
    )
