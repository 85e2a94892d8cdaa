"""One reader per on-disk format: find a split's files and labels under the data root.

Each reader takes ``(info, split, root)`` and returns :class:`SplitFiles`. Labels always follow
the registry's class order (``registry.raw_names``), whatever order the files list classes in.
torchvision's dataset classes parse the formats they know (always with ``download=False``);
small readers cover the rest: CIFAR and Flowers-102 (torchvision insists on the archive MD5s,
which stand-in data cannot match), SUN397's official partitions, CUB-200-2011 and Birdsnap.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synk8s.datasets.pickles import load_restricted
from synk8s.datasets.registry import DatasetInfo, raw_names
from synk8s.errors import MissingDataError

log = logging.getLogger(__name__)

#: Images per class in the train split of the Caltech datasets (the CLIP / VTAB protocol).
CALTECH_TRAIN_PER_CLASS = 30
CALTECH_SPLIT_SEED = 0  # the draw of Caltech's training images (see _seeded_n)
#: Cumulative fractions of each EuroSAT class (files sorted by name) for train and train+val.
EUROSAT_CUTS = (0.6, 0.8)


@dataclass(frozen=True)
class SplitFiles:
    """What a reader found.

    Attributes:
        labels: Label per sample.
        ident_files: One image file per sample, or (with ``array``) the files the array came from.
        array: Decoded images, uint8 of shape (N, H, W, 3), for formats that store pixels in batches.
        digests: SHA-256 of each file's bytes where the reader computed them (your own images); the
            split's ident then names the bytes rather than the sizes.
    """

    labels: list[int]
    ident_files: list[Path]
    array: np.ndarray | None = None
    digests: list[str] | None = None


def missing(info: DatasetInfo, split: str, root: Path, rel: str) -> MissingDataError:
    """The error for a split whose file or folder ``rel`` (under the dataset folder) is absent."""
    base = root / info.base_dir
    return MissingDataError(
        f"{info.name} {split} split not found under {base} (missing {rel}): download it from "
        f"{info.homepage} and put it there (or pass --set dataset.root=...)"
    )


def require(info: DatasetInfo, split: str, root: Path, *rels: str) -> Path:
    """Return the dataset folder after checking that every ``rel`` under it exists."""
    base = root / info.base_dir
    for rel in ("", *rels):
        if not (base / rel).exists():
            raise missing(info, split, root, rel or ".")
    return base


def _mismatch(info: DatasetInfo, where: Path, detail: str) -> MissingDataError:
    return MissingDataError(
        f"{where} does not hold {info.title} as expected ({detail}): re-extract it from {info.homepage}"
    )


def _check_classes(info: DatasetInfo, found: Sequence[str], where: Path) -> None:
    expected = list(raw_names(info.name))
    if len(found) != len(expected):
        raise _mismatch(info, where, f"{len(found)} classes listed, {len(expected)} expected")
    differ = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), None)
    if differ is not None:
        raise _mismatch(info, where, f"class {differ} is {found[differ]!r}, expected {expected[differ]!r}")


def _label_map(info: DatasetInfo, found: Sequence[str], where: Path) -> list[int]:
    """Registry label of each class name in ``found`` (a reader's own class order); every class must be there."""
    index = {name: i for i, name in enumerate(raw_names(info.name))}
    unknown = [name for name in found if name not in index]
    if unknown:
        raise _mismatch(info, where, f"unknown class {unknown[0]!r}")
    absent = [name for name in index if name not in set(found)]
    if absent:
        raise _mismatch(info, where, f"{len(absent)} of {len(index)} classes missing, e.g. {absent[0]!r}")
    return [index[name] for name in found]


def _remapped(info: DatasetInfo, where: Path, classes: Sequence[str], samples) -> SplitFiles:
    to_registry = _label_map(info, classes, where)
    paths, labels = [], []
    for path, label in samples:
        paths.append(Path(path))
        labels.append(to_registry[label])
    return SplitFiles(labels, paths)


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cifar_pickle(info: DatasetInfo, path: Path, *keys: str) -> dict:
    """A CIFAR batch or meta dict holding ``keys``, unpickled without running foreign code."""
    try:
        with open(path, "rb") as f:
            entry = load_restricted(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise _mismatch(info, path, f"not a readable CIFAR pickle: {error or type(error).__name__}") from None
    absent = [key for key in keys if not isinstance(entry, dict) or key not in entry]
    if absent:
        raise _mismatch(info, path, f"no {absent[0]!r} entry")
    return entry


def _cifar_batch(info: DatasetInfo, path: Path, labels_key: str) -> tuple[np.ndarray, list[int]]:
    """Pixels (N, 3, 32, 32) uint8 and labels of one batch file, checked against each other and the class count."""
    entry = _cifar_pickle(info, path, "data", labels_key)
    try:
        pixels = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = [int(label) for label in entry[labels_key]]
    except (ValueError, TypeError) as error:
        raise _mismatch(info, path, f"data is not rows of 32x32 RGB pixels and integer labels: {error}") from None
    if len(labels) != len(pixels):
        raise _mismatch(info, path, f"{len(pixels)} images but {len(labels)} labels")
    bad = next((label for label in labels if not 0 <= label < info.num_classes), None)
    if bad is not None:
        raise _mismatch(info, path, f"label {bad} outside 0..{info.num_classes - 1}")
    return pixels, labels


def cifar(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """CIFAR-10/100 python batches (the layout torchvision's CIFAR10/CIFAR100 read), unpickled restrictedly."""
    if info.name == "cifar10":
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        batches, meta, names_key, labels_key = [split], "meta", "fine_label_names", "fine_labels"
    base = require(info, split, root, meta, *batches)
    _check_classes(info, _cifar_pickle(info, base / meta, names_key)[names_key], base / meta)
    arrays, labels = [], []
    for batch in batches:
        pixels, batch_labels = _cifar_batch(info, base / batch, labels_key)
        arrays.append(pixels)
        labels.extend(batch_labels)
    array = np.concatenate(arrays).transpose(0, 2, 3, 1)  # (N, 3, 32, 32) -> (N, 32, 32, 3)
    return SplitFiles(labels, [base / b for b in batches], np.ascontiguousarray(array))


def _seeded_n(split: str, classes: Sequence[int], index: Sequence[int], n: int) -> list[int]:
    """Positions in ``split``: per class, the ``n`` images ranked first by a seeded hash train, the rest test.

    The rank of an image is ``derive_seed(CALTECH_SPLIT_SEED, "caltech-train", class, image number)``,
    so the draw depends only on the seed and the files, not on their listing order.
    """
    from synk8s.seeds import derive_seed

    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(classes):
        by_class.setdefault(c, []).append(i)
    train = set()
    for c, members in by_class.items():
        ranked = sorted(members, key=lambda i: (derive_seed(CALTECH_SPLIT_SEED, "caltech-train", c, index[i]), i))
        train.update(ranked[:n])
    return [i for i in range(len(index)) if (i in train) == (split == "train")]


def caltech101(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """Caltech101 layout, parsed by torchvision; 30 images of each class drawn with a seed train, the rest test."""
    from torchvision.datasets import Caltech101

    base = require(info, split, root, "101_ObjectCategories/BACKGROUND_Google")
    ds = Caltech101(str(root), target_type="category", download=False)
    folder = base / "101_ObjectCategories"
    to_registry = _label_map(info, ds.categories, folder)
    keep = _seeded_n(split, ds.y, ds.index, CALTECH_TRAIN_PER_CLASS)
    paths = [folder / ds.categories[ds.y[i]] / f"image_{ds.index[i]:04d}.jpg" for i in keep]
    return SplitFiles([to_registry[ds.y[i]] for i in keep], paths)


def caltech256(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """Caltech256 layout, parsed by torchvision; 30 images of each class drawn with a seed train, the rest test."""
    from torchvision.datasets import Caltech256

    base = require(info, split, root, "256_ObjectCategories")
    ds = Caltech256(str(root), download=False)
    folder = base / "256_ObjectCategories"
    to_registry = _label_map(info, ds.categories, folder)
    keep = _seeded_n(split, ds.y, ds.index, CALTECH_TRAIN_PER_CLASS)
    paths = [folder / ds.categories[ds.y[i]] / f"{ds.y[i] + 1:03d}_{ds.index[i]:04d}.jpg" for i in keep]
    return SplitFiles([to_registry[ds.y[i]] for i in keep], paths)


def image_folder(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """ImageNet-style ``<wnid>/<image>`` folders (``<split>/`` first for ImageNet itself)."""
    from torchvision.datasets import ImageFolder

    sub = split if info.name == "imagenet" else ""
    base = require(info, split, root, sub)
    ds = ImageFolder(str(base / sub))
    return _remapped(info, base / sub, ds.classes, ds.samples)


def eurosat(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """EuroSAT layout, parsed by torchvision; per class (files sorted by name) 60% train, 20% val, 20% test."""
    from torchvision.datasets import EuroSAT

    base = require(info, split, root)
    ds = EuroSAT(str(root), download=False)
    by_class: dict[int, list[tuple[str, int]]] = {}
    for path, label in ds.samples:
        by_class.setdefault(label, []).append((path, label))
    chosen = []
    for samples in by_class.values():
        cut_train, cut_val = (int(len(samples) * f) for f in EUROSAT_CUTS)
        bounds = {"train": (0, cut_train), "val": (cut_train, cut_val), "test": (cut_val, len(samples))}[split]
        chosen.extend(samples[bounds[0] : bounds[1]])
    return _remapped(info, base, ds.classes, chosen)


def food101(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """Food101 layout, parsed by torchvision (``meta/<split>.json``)."""
    from torchvision.datasets import Food101

    base = require(info, split, root, f"meta/{split}.json", "images")
    ds = Food101(str(root), split=split, download=False)
    return _remapped(info, base / "meta", ds.classes, zip(ds._image_files, ds._labels))


def dtd(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """DTD layout, parsed by torchvision, split partition 1."""
    from torchvision.datasets import DTD

    base = require(info, split, root, f"labels/{split}1.txt", "images")
    ds = DTD(str(root), split=split, partition=1, download=False)
    return _remapped(info, base / "labels", ds.classes, zip(ds._image_files, ds._labels))


def oxford_pets(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """OxfordIIITPet layout, parsed by torchvision (``annotations/<split>.txt`` carries 1-based class ids)."""
    from torchvision.datasets import OxfordIIITPet

    base = require(info, split, root, f"annotations/{split}.txt", "images")
    ds = OxfordIIITPet(str(root), split=split, target_types="category", download=False)
    if any(not 0 <= label < info.num_classes for label in ds._labels):
        raise _mismatch(info, base / "annotations", f"class ids outside 1..{info.num_classes}")
    return SplitFiles(list(ds._labels), [Path(p) for p in ds._images])


def stanford_cars(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """StanfordCars layout, parsed by torchvision (``.mat`` annotations; needs scipy)."""
    from torchvision.datasets import StanfordCars

    annos = "devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
    base = require(info, split, root, "devkit/cars_meta.mat", annos, f"cars_{split}")
    ds = StanfordCars(str(root), split=split, download=False)
    _check_classes(info, ds.classes, base / "devkit/cars_meta.mat")
    return SplitFiles([int(label) for _, label in ds._samples], [Path(p) for p, _ in ds._samples])


def fgvc_aircraft(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """FGVCAircraft layout, parsed by torchvision, variant level (100 classes)."""
    from torchvision.datasets import FGVCAircraft

    base = require(info, split, root, "data/variants.txt", f"data/images_variant_{split}.txt")
    _check_classes(info, _read_lines(base / "data/variants.txt"), base / "data/variants.txt")
    ds = FGVCAircraft(str(root), split=split, annotation_level="variant", download=False)
    return SplitFiles(list(ds._labels), [Path(p) for p in ds._image_files])


def flowers102(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """Flowers-102: ``imagelabels.mat`` (1-based labels) and ``setid.mat`` (trnid/valid/tstid)."""
    from scipy.io import loadmat

    base = require(info, split, root, "imagelabels.mat", "setid.mat", "jpg")
    labels = np.atleast_1d(loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"]).astype(int) - 1
    key = {"train": "trnid", "val": "valid", "test": "tstid"}[split]
    ids = np.atleast_1d(loadmat(base / "setid.mat", squeeze_me=True)[key]).astype(int).tolist()
    if labels.min() < 0 or labels.max() >= info.num_classes:
        raise _mismatch(info, base / "imagelabels.mat", f"labels outside 1..{info.num_classes}")
    return SplitFiles([int(labels[i - 1]) for i in ids], [base / "jpg" / f"image_{i:05d}.jpg" for i in ids])


def sun397(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """SUN397 as torchvision's SUN397 lays it out, split by the official partition 01."""
    part = f"Partitions/{'Training' if split == 'train' else 'Testing'}_01.txt"
    base = require(info, split, root, "ClassName.txt", part)
    classes = _read_lines(base / "ClassName.txt")
    _check_classes(info, classes, base / "ClassName.txt")
    index = {name: i for i, name in enumerate(classes)}
    labels, paths = [], []
    for line in _read_lines(base / part):
        labels.append(index[line.rsplit("/", 1)[0]])
        paths.append(base / line.lstrip("/"))
    return SplitFiles(labels, paths)


def cub200(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """CUB-200-2011: ``images.txt``, ``image_class_labels.txt`` and ``train_test_split.txt``."""
    files = ("classes.txt", "images.txt", "image_class_labels.txt", "train_test_split.txt")
    base = require(info, split, root, *files, "images")
    classes = [line.split(" ", 1)[1] for line in _read_lines(base / "classes.txt")]
    _check_classes(info, classes, base / "classes.txt")
    images = dict(line.split(" ", 1) for line in _read_lines(base / "images.txt"))
    labels = dict(line.split() for line in _read_lines(base / "image_class_labels.txt"))
    is_train = dict(line.split() for line in _read_lines(base / "train_test_split.txt"))
    wanted = "1" if split == "train" else "0"
    ids = [i for i in images if is_train[i] == wanted]
    return SplitFiles([int(labels[i]) - 1 for i in ids], [base / "images" / images[i] for i in ids])


def _tsv(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    keys = header.split("\t")
    return [dict(zip(keys, row.split("\t"))) for row in rows if row.strip()]


def birdsnap(info: DatasetInfo, split: str, root: Path) -> SplitFiles:
    """Birdsnap 1.1: ``images.txt`` (path, species_id), ``test_images.txt``; missing images skipped."""
    base = require(info, split, root, "species.txt", "images.txt", "test_images.txt")
    n_species = len(_tsv(base / "species.txt"))
    if n_species != info.num_classes:
        raise _mismatch(info, base / "species.txt", f"{n_species} species, {info.num_classes} expected")
    test = set(_read_lines(base / "test_images.txt")[1:])
    images = base / "download" / "images"
    labels, paths, absent = [], [], 0
    for row in _tsv(base / "images.txt"):
        if (row["path"] in test) != (split == "test"):
            continue
        path = images / row["path"]
        if not path.is_file():
            absent += 1
            continue
        labels.append(int(row["species_id"]) - 1)
        paths.append(path)
    if absent:
        log.warning("birdsnap %s: %d listed images are not under %s (dead URLs); skipped", split, absent, images)
    if not paths:
        raise missing(info, split, root, "download/images/...")
    return SplitFiles(labels, paths)
