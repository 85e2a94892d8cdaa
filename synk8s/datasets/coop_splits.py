"""The splits CLIP few-shot work uses (CoOp's ``split_zhou_*.json``), when the user puts them beside the data.

CoOp (Zhou et al., 2022, github.com/KaiyangZhou/CoOp, DATASETS.md) published one split file per
dataset, a JSON object ``{"train": [[image path, label, class name], ...], "val": [...], "test": [...]}``
with image paths relative to the dataset's image folder. CoOp, Tip-Adapter and the paper's few-shot
experiments draw their shots from these train splits and report on these test splits. Download
the file named in :data:`COOP_FILES` from CoOp's DATASETS.md and put it in the dataset's folder
(``<root>/<base_dir>/``) or in the data root; :func:`synk8s.datasets.load` then takes that split's
images from it. Without the file the dataset's own split (or the documented seeded one) is used.

A CoOp path names an image by its last folders (``Forest/Forest_1.jpg``); it is matched to the file
the dataset's reader found with the same trailing path, and takes that file's registry label.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from synk8s.errors import MissingDataError

if TYPE_CHECKING:
    from synk8s.datasets.readers import SplitFiles
    from synk8s.datasets.registry import DatasetInfo

COOP_FILES = {
    "caltech101": "split_zhou_Caltech101.json",
    "oxford_pets": "split_zhou_OxfordPets.json",
    "stanford_cars": "split_zhou_StanfordCars.json",
    "flowers102": "split_zhou_OxfordFlowers.json",
    "food101": "split_zhou_Food101.json",
    "sun397": "split_zhou_SUN397.json",
    "dtd": "split_zhou_DescribableTextures.json",
    "eurosat": "split_zhou_EuroSAT.json",
}


def split_file(info: DatasetInfo, root: Path) -> Path | None:
    """The CoOp split file of ``info`` under ``root`` (dataset folder first, then the root), or None."""
    name = COOP_FILES.get(info.name)
    if name is None:
        return None
    for folder in (root / info.base_dir, root):
        if (folder / name).is_file():
            return folder / name
    return None


def coop_files(
    info: DatasetInfo, split: str, path: Path, read: Callable[[str], SplitFiles]
) -> SplitFiles:
    """The images of ``split`` listed in the CoOp file ``path``, with the registry labels the reader gives them.

    Args:
        info: the dataset.
        split: ``train``, ``val`` or ``test``.
        path: the CoOp split file.
        read: the dataset's reader for one of its own splits (every split's files are pooled).

    Raises:
        MissingDataError: the file is not CoOp's format, lacks ``split``, or names an image the reader did not find.
    """
    from synk8s.datasets.readers import SplitFiles

    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
        entries = [str(item[0]) for item in listing[split]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise MissingDataError(
            f"{path} is not a CoOp split file with a {split!r} list ({error}); take it from CoOp's DATASETS.md"
        ) from error
    found: dict[tuple[str, ...], tuple[Path, int]] = {}
    depth = max((len(Path(e).parts) for e in entries), default=1)
    for own in info.splits:
        files = read(own)
        for file, label in zip(files.ident_files, files.labels, strict=True):
            for k in range(1, depth + 1):
                found.setdefault(file.parts[-k:], (file, label))
    paths, labels = [], []
    for entry in entries:
        hit = found.get(Path(entry).parts)
        if hit is None:
            raise MissingDataError(
                f"{path} lists {entry}, which is not among the {info.title} images found; "
                "the split file and the data folder are from different releases"
            )
        paths.append(hit[0])
        labels.append(hit[1])
    return SplitFiles(labels, paths)
