"""VOC07+12 trainval for training and VOC07 test for evaluation, as torch data.

:func:`ensure_voc` finds the data (a local folder, a copy of a store prefix, a download, or the
shapes stand-in); :func:`train_records` / :func:`evaluation_records` read the annotations once;
:class:`TrainImages` and :class:`TrainBatches` serve the training stream, which is a pure
function of (seed, iteration): the same global batches, flips included, whatever the number of
processes and whether the run was resumed.

Box conventions: annotations keep VOC's 1-based inclusive pixel coordinates (what the evaluator
reads); the detector gets 0-based continuous ones, ``x1 - 1, y1 - 1, x2, y2`` (as detectron2 loads
VOC), and class labels ``1 .. 20`` with 0 for background.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from synk8s import datasets, mirror, storage
from synk8s.config import DetectConfig
from synk8s.datasets.voc_standin import MARKER_KEY
from synk8s.errors import MissingDataError
from synk8s.realdata import STANDIN_SEED, local_root
from synk8s.seeds import derive_seed

log = logging.getLogger(__name__)

#: (registry name, split) of the training sets and of the test set.
TRAIN_SETS = (("voc2007", "trainval"), ("voc2012", "trainval"))
TEST_SET = ("voc2007", "test")
YEARS = ("voc2007", "voc2012")


@dataclass(frozen=True)
class VOCImage:
    """One annotated image.

    Attributes:
        path: the JPEG file.
        image_id: ``<dataset>/<file stem>``, e.g. ``voc2007/000005``.
        boxes: (G, 4) float32 ``x1, y1, x2, y2`` in VOC pixel coordinates (1-based, inclusive).
        labels: (G,) int64 class index in ``[0, 20)``.
        difficult: (G,) bool VOC ``difficult`` flags.
    """

    path: str
    image_id: str
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


def class_names() -> tuple[str, ...]:
    """VOC's 20 class names in label order (readable spellings, e.g. ``dining table``)."""
    return datasets.get(TEST_SET[0]).classes


def ensure_voc(dc: DetectConfig) -> Path:
    """A local data root holding VOC2007 trainval and test and VOC2012 trainval.

    In order: an ``s3://`` root is copied once to the local data cache (:mod:`synk8s.mirror`);
    a local root whose sets load is used as it is; a local root without the data gets the shapes
    stand-in when ``dc.standin`` is on (:func:`synk8s.datasets.write_voc_standin`, seeded by
    :data:`synk8s.realdata.STANDIN_SEED`), else a download of both years (:func:`synk8s.datasets.download`).
    A stand-in there already whose marker records other settings (or none) is drawn again.

    Raises:
        MissingDataError: the data is not there and cannot be fetched, or a copy is incomplete.
        UsageError: a stand-in would overwrite real data.
    """
    root = dc.root
    if storage.is_remote(root):
        local = local_root(root)
        for name in YEARS:
            base = datasets.get(name).base_dir
            try:
                copied = mirror.mirror(storage.join(root, base), local / base, name)
            except storage.ObjectNotFoundError:
                hint = "; the drawn stand-in is written only under a local detect.root" if dc.standin else ""
                raise MissingDataError(
                    f"no {name} data under {storage.join(root, base)}/: upload the VOCdevkit folder with "
                    f"`synk8s store cp ./data/voc {root}` (it holds {base}/){hint}"
                ) from None
            if copied:
                _copy_marker(root, local)
        _check_sets(local)
        return local
    path = Path(root).expanduser()
    folders_there = any((path / datasets.get(n).base_dir).exists() for n in YEARS)
    if dc.standin and folders_there and datasets.is_standin(path) and _redraw(dc, path):
        return path
    try:
        _check_sets(path)
        return path
    except MissingDataError:
        if folders_there and not datasets.is_standin(path):
            raise
    if dc.standin:
        counts = _write_standin(dc, path)
        log.warning("no VOC data under %s: wrote the drawn shapes stand-in (%s)", path, counts)
        return path
    for name in YEARS:
        datasets.download(name, path)
    return path


def _write_standin(dc: DetectConfig, path: Path) -> dict[str, int]:
    return datasets.write_voc_standin(path, images=dc.standin_images, size=dc.standin_size, seed=STANDIN_SEED)


def _redraw(dc: DetectConfig, path: Path) -> bool:
    """Draw the stand-in under ``path`` again if its marker records other settings; whether it did."""
    wanted = datasets.voc_standin_settings(dc.standin_images, dc.standin_size, STANDIN_SEED)
    changes = datasets.settings_changes(path, MARKER_KEY, wanted)
    if changes:
        log.warning(
            "the VOC stand-in under %s was drawn with other settings (%s): drawing it again", path, "; ".join(changes)
        )
        _write_standin(dc, path)
    return bool(changes)


def _copy_marker(root: str, local: Path) -> None:
    marker = storage.join(root, datasets.MARKER)
    if storage.exists(marker):
        storage.get_file(marker, local / datasets.MARKER)
    else:
        (local / datasets.MARKER).unlink(missing_ok=True)


def _check_sets(root: Path) -> None:
    for name, split in (*TRAIN_SETS, TEST_SET):
        datasets.load_detection(name, split, root)


def read_split(root: Path, name: str, split: str) -> list[VOCImage]:
    """Every image of one split with its annotation (the images themselves are not opened)."""
    data = datasets.load_detection(name, split, root)
    records = []
    for i in range(len(data)):
        target = data.target(i)
        path = data.image_path(i)
        records.append(
            VOCImage(
                path=str(path),
                image_id=f"{name}/{path.stem}",
                boxes=np.array(target["boxes"], dtype=np.float32).reshape(-1, 4),
                labels=np.array(target["labels"], dtype=np.int64),
                difficult=np.array(target["difficult"], dtype=bool),
            )
        )
    return records


def train_records(root: Path, *, train_difficult: bool) -> list[VOCImage]:
    """VOC2007 trainval + VOC2012 trainval; difficult objects dropped unless ``train_difficult``.

    Images left with no object are dropped (detectron2's ``FILTER_EMPTY_ANNOTATIONS``).
    """
    kept = []
    for name, split in TRAIN_SETS:
        for record in read_split(root, name, split):
            keep = np.ones(len(record.labels), bool) if train_difficult else ~record.difficult
            if keep.any():
                kept.append(
                    VOCImage(
                        record.path, record.image_id, record.boxes[keep], record.labels[keep], record.difficult[keep]
                    )
                )
    return kept


def evaluation_records(root: Path) -> list[VOCImage]:
    """VOC2007 test, every object kept with its difficult flag."""
    return read_split(root, *TEST_SET)


def read_image(path: str) -> torch.Tensor:
    """An RGB image as float32 (3, H, W) in [0, 1]."""
    from torchvision.transforms.functional import pil_to_tensor

    with Image.open(path) as image:
        return pil_to_tensor(image.convert("RGB")).float().div_(255.0)


def detector_target(record: VOCImage, *, flip: bool, width: int) -> dict[str, torch.Tensor]:
    """The training target of ``record``: 0-based boxes (G, 4) float32, labels 1..20 (G,) int64."""
    boxes = torch.from_numpy(record.boxes.copy())  # (G, 4)
    boxes[:, :2] -= 1.0
    if flip:
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    return {"boxes": boxes, "labels": torch.from_numpy(record.labels + 1)}


class TrainImages(torch.utils.data.Dataset):
    """Training samples keyed by ``(index, flip)`` (see :class:`TrainBatches`)."""

    def __init__(self, records: Sequence[VOCImage]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, bool]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, flip = key
        record = self.records[index]
        image = read_image(record.path)  # (3, H, W)
        target = detector_target(record, flip=flip, width=image.shape[-1])
        return (image.flip(-1) if flip else image), target


class EvalImages(torch.utils.data.Dataset):
    """``(image (3, H, W), index)`` for each record, unflipped."""

    def __init__(self, records: Sequence[VOCImage]):
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return read_image(self.records[index].path), index


def collate(batch: list) -> tuple:
    """Keep images and targets as lists (detection images differ in size)."""
    return tuple(zip(*batch))


class TrainBatches(torch.utils.data.Sampler):
    """This process's share of the global batches of iterations ``start .. stop - 1``.

    Epoch ``e`` is a permutation of the images drawn by :class:`torch.utils.data.DistributedSampler`
    (seed ``seed``, epoch ``e``); global batch ``j`` of the epoch is its positions
    ``j * batch_size ... (j + 1) * batch_size - 1`` (a last partial batch is skipped), and each
    position has its own horizontal-flip draw. Process ``rank`` of ``world`` gets every
    ``world``-th position of each global batch, so the union over processes is the same global
    batch for any ``world``, and iteration ``i`` sees the same images whether or not the run was
    resumed at some iteration before ``i``.

    Args:
        size: images in the training set.
        batch_size: images per global batch (a multiple of ``world``).
        rank: this process's rank.
        world: number of processes.
        seed: seed of the permutations and flips.
        start: first iteration served.
        stop: iteration to stop before.
        hflip_prob: probability that an image is flipped horizontally.
    """

    def __init__(
        self, size: int, batch_size: int, *, rank: int, world: int, seed: int, start: int, stop: int, hflip_prob: float
    ):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not a multiple of the {world} processes")
        if size < batch_size:
            raise ValueError(f"{size} training images cannot fill a batch of {batch_size}")
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.start, self.stop, self.hflip_prob = seed, start, stop, hflip_prob
        self.per_epoch = size // batch_size
        self._epoch: tuple[int, list[int], list[bool]] | None = None

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for iteration in range(self.start, self.stop):
            yield self.batch(iteration)

    def batch(self, iteration: int) -> list[tuple[int, bool]]:
        """``(image index, flip)`` pairs of this process for ``iteration``."""
        epoch, j = divmod(iteration, self.per_epoch)
        indices, flips = self._shard(epoch)
        per_rank = self.batch_size // self.world
        part = slice(j * per_rank, (j + 1) * per_rank)
        return list(zip(indices[part], flips[part]))

    def _shard(self, epoch: int) -> tuple[list[int], list[bool]]:
        if self._epoch is None or self._epoch[0] != epoch:
            sampler = torch.utils.data.DistributedSampler(
                range(self.size), num_replicas=self.world, rank=self.rank, shuffle=True, seed=self.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "hflip", epoch))
            flips = (torch.rand(self.size, generator=generator) < self.hflip_prob).tolist()  # per position
            self._epoch = (epoch, list(sampler), flips[self.rank :: self.world])
        return self._epoch[1], self._epoch[2]
