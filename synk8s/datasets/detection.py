"""Load a split of PASCAL VOC (2007 or 2012) for detection, through torchvision's VOCDetection."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from synk8s.datasets.loaders import check_split
from synk8s.datasets.readers import require
from synk8s.datasets.registry import DETECTION, DatasetInfo, get, raw_names
from synk8s.errors import MissingDataError


class DetectionData(Sequence):
    """One split of a detection dataset: ``data[i] -> (PIL RGB image, target)``.

    ``target`` is ``{"boxes": [[x1, y1, x2, y2], ...], "labels": [...], "difficult": [...]}``:
    boxes in pixels as the annotation files give them (VOC counts from 1), labels in
    ``[0, info.num_classes)`` (no background class), ``difficult`` the VOC flag per box.
    """

    def __init__(self, info: DatasetInfo, split: str, root: Path, voc: Any):
        self.info = info
        self.split = split
        self._root = root
        self._voc = voc
        self._index = {name: i for i, name in enumerate(raw_names(info.name))}

    @property
    def classes(self) -> tuple[str, ...]:
        """Human-readable class names in label order."""
        return self.info.classes

    def __len__(self) -> int:
        return len(self._voc.images)

    def __getitem__(self, i: int) -> tuple[Image.Image, dict[str, list]]:  # type: ignore[override]
        image, annotation = self._voc[i]
        return image.convert("RGB"), self._target(annotation)

    def image_path(self, i: int) -> Path:
        """The JPEG file of sample ``i``."""
        return Path(self._voc.images[i])

    def target(self, i: int) -> dict[str, list]:
        """The target of sample ``i`` (as ``data[i][1]``), read from its annotation without opening the image."""
        import xml.etree.ElementTree as ET

        # torchvision's VOCDetection parses the same files with the same parser; they are the
        # dataset's own annotations on the local disk, with no entity definitions to expand.
        root = ET.parse(self._voc.targets[i]).getroot()  # nosec B314
        return self._target(self._voc.parse_voc_xml(root))

    def _target(self, annotation: dict[str, Any]) -> dict[str, list]:
        boxes, labels, difficult = [], [], []
        for obj in annotation["annotation"].get("object", []):
            box = obj["bndbox"]
            boxes.append([float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
            labels.append(self._index[obj["name"]])
            difficult.append(obj.get("difficult", "0") == "1")
        return {"boxes": boxes, "labels": labels, "difficult": difficult}

    @functools.cached_property
    def ident(self) -> str:
        """sha256 (hex) over the name, split and every image and annotation file (path and size)."""
        digest = hashlib.sha256(f"{self.info.name}\n{self.split}\n".encode())
        for path in [*self._voc.images, *self._voc.targets]:
            rel = Path(path).relative_to(self._root).as_posix()
            digest.update(f"{rel}\t{os.path.getsize(path)}\n".encode())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"DetectionData({self.info.name!r}, split={self.split!r}, n={len(self)})"


def load_detection(name: str, split: str, root: str | os.PathLike) -> DetectionData:
    """Load one split of a detection dataset (``voc2007`` or ``voc2012``).

    Args:
        name: Registry name.
        split: One of ``get(name).splits``.
        root: Data root holding ``VOCdevkit/``.

    Raises:
        UsageError: Unknown dataset or split, or a classification dataset.
        MissingDataError: The split's files are not under ``root``.
    """
    info = get(name)
    check_split(info, split, DETECTION)
    from torchvision.datasets import VOCDetection

    root_path = Path(root).expanduser().absolute()
    require(info, split, root_path, "JPEGImages", "Annotations", f"ImageSets/Main/{split}.txt")
    try:
        voc = VOCDetection(str(root_path), year=name.removeprefix("voc"), image_set=split, download=False)
    except RuntimeError as error:
        raise MissingDataError(
            f"{name} {split} split could not be read ({error}); expected {info.data_layout}"
        ) from error
    return DetectionData(info, split, root_path, voc)
