"""Few-shot split: M real training images per class, drawn once with a seed and saved for reuse.

An N-way M-shot task (``fewshot.shots_per_class`` = M) gets M images of every class from the
dataset's training split (``train``, or ``trainval`` where the dataset has no ``train``). The draw
ranks the images of class ``c`` by ``derive_seed(fewshot.split_seed, "fewshot-split", c, sample_id)``
(the image's file path relative to the data root) and keeps the first M. It depends only on the
seed and the files, not on their listing order or on the library versions, and the splits of one
seed nest: the 1-shot split is the first image of every class of the 16-shot split.

With ``fewshot.select: real-val`` the split also holds a real validation set, CoOp's
``min(M, 4)`` images per class: the next ``min(M, 4)`` images of each class in the same ranking, so
it is disjoint from the shots and drawn with the same seed. Only then does the split's folder
digest cover ``fewshot.select`` (other settings keep their split folders and ``split.json`` bytes).

Every later few-shot stage (real filter, real guidance, tuning: CT w. init and CT w. Syn) reads the
same ``split.json`` through :func:`load_split`, and :func:`shot_images` checks that the images it
loads still are the ones drawn (dataset identity and pixel digests), so a changed data folder
fails loudly instead of silently training on other images.

    result = split.run(cfg, out="runs/x/split")
    shots = split.load_split("runs/x/split")       # FewShotSplit: indices, labels, sample ids
    images = split.shot_images(cfg, shots)         # [(PIL image, label)], in split order

Outputs under ``out``: ``split.json`` (dataset, training split and its identity, M, seed, one entry
per shot: ``index``, ``label``, ``sample_id``, ``pixel_sha256``; with ``real-val``, ``val``: the
validation images in the same form; and ``digest``, the SHA-256 of everything else) and ``manifest.json``. The same config and data give the same ``split.json`` bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError, StoreError, UsageError
from synk8s.runs import read_manifest, write_manifest
from synk8s.seeds import derive_seed
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    from PIL import Image

    from synk8s.datasets import ClassificationData, DatasetInfo
    from synk8s.models.clip import ClipBundle
    from synk8s.stages.zeroshot.feature_cache import FeatureSet

logger = logging.getLogger(__name__)

SPLIT_FILE = "split.json"


class SplitResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        split: URI of ``split.json``.
        manifest: URI of ``manifest.json``.
        dataset: dataset name.
        train_split: the dataset split the shots come from.
        shots: M, images per class.
        classes: N, classes of the task.
        images: N x M.
        val: real validation images (``fewshot.select: real-val``), else 0.
        digest: the split's SHA-256 (hex), as written in ``split.json``.
        reused: True when ``out`` already held this split and it was kept as it was.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    split: str
    manifest: str
    dataset: str
    train_split: str
    shots: int
    classes: int
    images: int
    val: int
    digest: str
    reused: bool
    seconds: float


@dataclass(frozen=True)
class Shot:
    """One real training image of the split.

    Attributes:
        index: position in the dataset's training split.
        label: class index.
        sample_id: the image's file identity (see :meth:`ClassificationData.sample_id`).
        pixel_sha256: SHA-256 of the decoded RGB pixels (size and bytes).
    """

    index: int
    label: int
    sample_id: str
    pixel_sha256: str


@dataclass(frozen=True)
class FewShotSplit:
    """A saved N-way M-shot split, as :func:`load_split` reads it.

    Attributes:
        dataset: dataset name.
        train_split: the dataset split the shots come from.
        data_ident: identity of that split's files (:attr:`ClassificationData.ident`).
        shots: M.
        seed: ``fewshot.split_seed`` of the draw.
        entries: the N x M shots, class by class, each class in draw order.
        digest: SHA-256 (hex) of the split's content.
        val: the real validation images (``min(M, 4)`` per class, disjoint from the shots), or none.
    """

    dataset: str
    train_split: str
    data_ident: str
    shots: int
    seed: int
    entries: tuple[Shot, ...]
    digest: str
    val: tuple[Shot, ...] = ()

    @property
    def indices(self) -> list[int]:
        """Dataset indices of the shots, in split order."""
        return [e.index for e in self.entries]

    @property
    def labels(self) -> list[int]:
        """Classes of the shots, in split order."""
        return [e.label for e in self.entries]

    def part(self, name: str) -> tuple[Shot, ...]:
        """The images of ``name``: ``shots`` (the training shots) or ``val`` (the real validation set)."""
        return self.entries if name == "shots" else self.val


# ----------------------------------------------------------------------------- drawing


def train_split_of(info: DatasetInfo) -> str:
    """The split few-shot images are drawn from: ``train``, else ``trainval``."""
    for name in ("train", "trainval"):
        if name in info.splits:
            return name
    raise UsageError(f"{info.name} has no train or trainval split to draw few-shot images from")


def val_per_class(shots: int) -> int:
    """Real validation images per class with ``fewshot.select: real-val``: CoOp's ``min(M, 4)``."""
    return min(shots, 4)


def draw(
    labels: Sequence[int],
    sample_ids: Sequence[str],
    *,
    shots: int,
    num_classes: int,
    seed: int,
    skip: int = 0,
) -> list[int]:
    """Pick ``shots`` indices per class: those with the smallest ``derive_seed(seed, "fewshot-split", c, id)``.

    Args:
        labels: class of every image of the training split.
        sample_ids: file identity of every image (same order as ``labels``).
        shots: images per class to return.
        num_classes: N; every class must have ``skip + shots`` images.
        seed: the split seed.
        skip: ranks to pass over first (the real validation set skips the M shots).

    Returns:
        ``N x shots`` indices, class by class, each class in rank order (ranks ``skip`` to ``skip + shots - 1``).

    Raises:
        MissingDataError: a class has fewer than ``skip + shots`` training images.
    """
    need = skip + shots
    by_class: list[list[tuple[int, int]]] = [[] for _ in range(num_classes)]
    for i, (label, sample_id) in enumerate(zip(labels, sample_ids, strict=True)):
        by_class[label].append((derive_seed(seed, "fewshot-split", label, sample_id), i))
    short = [(c, len(members)) for c, members in enumerate(by_class) if len(members) < need]
    if short:
        c, n = short[0]
        what = f"{skip} shots and {shots} validation images" if skip else f"{shots} shots"
        raise MissingDataError(
            f"{len(short)} classes have fewer than {need} training images for {what} (class {c} has {n}); "
            "lower fewshot.shots_per_class, use another fewshot.select or add training images"
        )
    return [i for members in by_class for _rank, i in sorted(members)[skip : skip + shots]]


def pixel_digest(image: Image.Image) -> str:
    """SHA-256 (hex) of an image's size and RGB pixel bytes."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}\n".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def content_digest(body: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a split body (everything but its ``digest``)."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "digest"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _from_body(body: dict[str, Any]) -> FewShotSplit:
    return FewShotSplit(
        dataset=body["dataset"],
        train_split=body["train_split"],
        data_ident=body["data_ident"],
        shots=int(body["shots"]),
        seed=int(body["seed"]),
        entries=tuple(
            Shot(int(e["index"]), int(e["label"]), e["sample_id"], e["pixel_sha256"]) for e in body["entries"]
        ),
        digest=body["digest"],
        val=tuple(Shot(int(e["index"]), int(e["label"]), e["sample_id"], e["pixel_sha256"]) for e in body.get("val", ())),
    )


# ----------------------------------------------------------------------------- stage


def _saved_split(out: str, split_uri: str) -> FewShotSplit | None:
    """The split saved in ``out``; None when there is none or it is damaged (deleted: a split is a
    function of the dataset, M and the seed, so it is drawn again to the same bytes)."""
    if not storage.exists(split_uri):
        return None
    try:
        return load_split(out)
    except StoreError as error:  # damaged bytes, or edited so its digest no longer matches
        logger.warning("%s; drawing the split again", error)
        storage.delete(split_uri)
        return None


def run(cfg: ExperimentConfig, *, out: str, progress: bool = True) -> SplitResult:
    """Draw and save the N-way M-shot split, or keep the one already saved in ``out``.

    Args:
        cfg: the run's config (``dataset``, ``fewshot.shots_per_class``, ``fewshot.split_seed``, and
            ``fewshot.select``: ``real-val`` adds the real validation set).
        out: this stage's output folder URI.
        progress: show a progress bar while the drawn images are read and hashed.

    Raises:
        MissingDataError: no training data (and no stand-in), or a class with fewer than M images
            (``real-val``: ``M + min(M, 4)``).
        UsageError: ``out`` holds a split drawn with other settings.
    """
    from tqdm.auto import tqdm

    from synk8s.realdata import ensure_dataset

    start = time.monotonic()
    info = datasets.info(cfg.dataset)
    shots, seed = cfg.fewshot.shots_per_class, cfg.fewshot.split_seed
    val = val_per_class(shots) if cfg.fewshot.select == "real-val" else 0
    split_uri = storage.join(out, SPLIT_FILE)
    saved = _saved_split(out, split_uri)
    if saved is not None:
        saved_val = len(saved.val) // info.num_classes
        if (saved.dataset, saved.shots, saved.seed, saved_val) != (info.name, shots, seed, val):
            raise UsageError(
                f"{split_uri} holds a {saved.dataset} {saved.shots}-shot split with seed {saved.seed} and "
                f"{saved_val} validation images per class, not {info.name} {shots}-shot with seed {seed} and "
                f"{val}; choose another output folder"
            )
        logger.info("reusing the saved split %s (digest %s)", split_uri, saved.digest)
        return _result(split_uri, storage.join(out, "manifest.json"), saved, info, True, start)

    train_split = train_split_of(info)
    data = datasets.load(info, train_split, ensure_dataset(cfg))
    ids = [data.sample_id(i) for i in range(len(data))]
    picked = draw(data.labels, ids, shots=shots, num_classes=info.num_classes, seed=seed)
    held = draw(data.labels, ids, shots=val, num_classes=info.num_classes, seed=seed, skip=shots) if val else []

    drawn = [
        {"index": i, "label": data.labels[i], "sample_id": ids[i], "pixel_sha256": pixel_digest(data[i][0])}
        for i in tqdm(picked + held, desc="split", unit="img", disable=not progress)
    ]
    body: dict[str, Any] = {
        "dataset": info.name,
        "train_split": train_split,
        "data_ident": data.ident,
        "shots": shots,
        "seed": seed,
        "entries": drawn[: len(picked)],
    }
    if val:
        body["val"] = drawn[len(picked) :]
    body["digest"] = content_digest(body)
    storage.put_json(split_uri, body)
    split = _from_body(body)
    manifest = write_manifest(
        out,
        "split",
        cfg,
        counts={"classes": info.num_classes, "shots": shots, "images": len(picked), "val": len(held)},
        split={"uri": split_uri, "digest": split.digest, "seed": seed, "train_split": train_split},
        seconds=time.monotonic() - start,
    )
    logger.info(
        "drew a %d-way %d-shot split of %s with %d validation images (%s)",
        info.num_classes, shots, info.name, len(held), split.digest,
    )  # fmt: skip
    return _result(split_uri, manifest, split, info, False, start)


def _result(
    split_uri: str, manifest: str, split: FewShotSplit, info: DatasetInfo, reused: bool, start: float
) -> SplitResult:
    return SplitResult(
        split=split_uri,
        manifest=manifest,
        dataset=split.dataset,
        train_split=split.train_split,
        shots=split.shots,
        classes=info.num_classes,
        images=len(split.entries),
        val=len(split.val),
        digest=split.digest,
        reused=reused,
        seconds=time.monotonic() - start,
    )


# ----------------------------------------------------------------------------- readers


def load_split(out: str) -> FewShotSplit:
    """Read the split the split stage saved in ``out``.

    Raises:
        MissingDataError: the split stage has not run into ``out``.
        StoreError: ``split.json`` was changed after it was written (its digest does not match).
    """
    read_manifest(out, "split")
    uri = storage.join(out, SPLIT_FILE)
    if not storage.exists(uri):
        raise MissingDataError(f"no {SPLIT_FILE} in {out}; rerun `synk8s stage split`")
    body = storage.get_json(uri)
    if content_digest(body) != body.get("digest"):
        raise StoreError(f"{uri} does not match its digest (edited by hand?); rerun the split stage into a new folder")
    return _from_body(body)


def _load_data(cfg: ExperimentConfig, split: FewShotSplit, root: str | None) -> ClassificationData:
    from synk8s.realdata import ensure_dataset

    if split.dataset != cfg.dataset.name:
        raise UsageError(
            f"the split is of {split.dataset}, the config names {cfg.dataset.name}; set dataset.name={split.dataset}"
        )
    data = datasets.load(datasets.info(cfg.dataset), split.train_split, root or ensure_dataset(cfg))
    if data.ident != split.data_ident:
        raise MissingDataError(
            f"the {split.dataset} {split.train_split} files changed since the split was drawn; "
            "restore them or draw a new split into a new folder"
        )
    return data


def shot_images(
    cfg: ExperimentConfig, split: FewShotSplit, *, root: str | None = None, part: str = "shots"
) -> list[tuple[Image.Image, int]]:
    """The split's real images and labels, in split order, checked against their saved pixel digests.

    Args:
        cfg: the run's config (dataset root, stand-in settings).
        split: from :func:`load_split`.
        root: the local data root from :func:`synk8s.realdata.ensure_dataset`; prepared from ``cfg`` when None.
        part: ``shots`` (the training shots) or ``val`` (the real validation set).

    Raises:
        MissingDataError: the training files changed since the split was drawn.
        UsageError: the split is of another dataset than ``cfg``'s.
    """
    data = _load_data(cfg, split, root)
    images = []
    for shot in split.part(part):
        image, label = data[shot.index]
        if label != shot.label or pixel_digest(image) != shot.pixel_sha256:
            raise MissingDataError(
                f"{shot.sample_id} is not the image the split drew (label or pixels differ); "
                "restore the data or draw a new split into a new folder"
            )
        images.append((image, label))
    return images


def shot_features(
    cfg: ExperimentConfig,
    split: FewShotSplit,
    *,
    bundle: ClipBundle | None = None,
    root: str | None = None,
    progress: bool = True,
    part: str = "shots",
) -> FeatureSet:
    """CLIP features of the split's real images (``part``: ``shots`` or ``val``), in split order, cached.

    The cache key holds the split digest (and the part, for ``val``), so another split (or changed
    pixels, which fail :func:`shot_images` first) never reads these features.
    """
    from synk8s.stages.zeroshot.feature_cache import cached_or_encode
    from synk8s.stages.zeroshot.feature_sets import load_clip_for

    def samples():
        for image, label in shot_images(cfg, split, root=root, part=part):
            yield None, image, label

    clip = bundle or load_clip_for(cfg)
    data = {"kind": "fewshot", "dataset": split.dataset, "split_digest": split.digest}
    if part != "shots":
        data["part"] = part
    return cached_or_encode(
        cfg, clip, data, samples, total=len(split.part(part)), desc=f"few-shot {part} features", progress=progress
    )


def real_val_fields(cfg: ExperimentConfig) -> tuple[str, ...]:
    """``fewshot.select`` when it asks for the real validation set, so other configs keep their split folders."""
    return ("fewshot.select",) if cfg.fewshot.select == "real-val" else ()


# Lists the training split and decodes the N x M drawn images once (pixel digests); no model.
STAGE = StageSpec(
    name="split",
    run=run,
    help="Draw the N-way M-shot split (fewshot.shots_per_class real training images per class) and save it.",
    depends=("dataset", "seed", "fewshot.shots_per_class", "fewshot.split_seed"),
    depends_on=real_val_fields,
    resources=Resources("1", "2", "4Gi", "8Gi"),
    outputs={SPLIT_FILE: load_split},
)
