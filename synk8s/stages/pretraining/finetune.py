"""Fine-tune a whole backbone on a real classification dataset and report top-1 on its test split.

Transfer to CIFAR-100 (paper Table 8): the backbone starts from the pre-training stage's trunk
(``pretrain.finetune.init=pretrained``), from random weights (``scratch``) or from ImageNet-1K weights in
the model cache (``imagenet``), gets a new head for the dataset's classes, and is trained on the dataset's
whole train split. The same recipe trains from scratch for Table 4 (:mod:`synk8s.stages.pretraining.scratch`).

Recipe (``pretrain.finetune``; sources in docs/pretrain.md): SGD with momentum, rate ``lr x batch / 256``
on a per-step half-cosine, weight decay, RandomResizedCrop + flip at ``resolution`` pixels (CIFAR's 32 px
images upsampled), ``epochs`` epochs; test images resized and centre-cropped. The model of the last epoch
is scored; nothing is selected on the test split. Training runs in DDP (:func:`synk8s.distributed.call`,
``pretrain.nproc`` processes), and a checkpoint after every epoch lets a killed run resume.

    result = finetune.run(cfg, backbone="runs/r/pretrain", out="runs/r/finetune")

Outputs under ``out``: ``metrics.json`` (top-1, init, data counts, stand-in flag), ``curve.json``,
``manifest.json``, ``checkpoint.json`` and the last two ``checkpoint.NNNNNNN.pt`` (see :mod:`synk8s.training`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import distributed, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.preflight import ImageNetStart
from synk8s.runs import read_manifest, write_manifest
from synk8s.seeds import derive_seed
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler

log = logging.getLogger(__name__)

TARGET = "synk8s.stages.pretraining.finetune:train"
METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.json"


class FinetuneResult(BaseModel):
    """What a fine-tuning run wrote.

    Attributes:
        metrics: URI of ``metrics.json``.
        manifest: URI of ``manifest.json``.
        init: ``pretrained``, ``scratch`` or ``imagenet``.
        train: training images.
        test: test images scored.
        top1: test top-1 of the last epoch, in [0, 1].
        world_size: training processes.
        seconds: wall time of the call.
    """

    model_config = ConfigDict(frozen=True)

    metrics: str
    manifest: str
    init: str
    train: int
    test: int
    top1: float
    world_size: int
    seconds: float


class LabelledImages:
    """A map-style dataset of ``(views (1, 3, H, W), label)`` with a seeded augmentation per (epoch, index).

    Args:
        image: returns PIL image ``i``.
        labels: label of every image.
        views: the augmentation (see :class:`synk8s.augment.Views`).
        seed: run seed.

    Set ``epoch`` before each epoch.
    """

    def __init__(self, image: Callable[[int], Image.Image], labels: Sequence[int], views: Any, seed: int) -> None:
        self.image = image
        self.labels = list(labels)
        self.views = views
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.views(self.image(i), derive_seed(self.seed, "finetune-augment", self.epoch, i)), self.labels[i]


def draw_per_class(labels: Sequence[int], per_class: int, seed: int) -> list[int]:
    """Indices of ``per_class`` images of every class, drawn with a seeded generator (all of a smaller class).

    Args:
        labels: label of every image.
        per_class: images to keep per class (>= 1).
        seed: seed of the draw; each class draws with its own derived seed.

    Returns:
        Sorted indices into ``labels``.
    """
    import random

    if per_class < 1:
        raise UsageError(f"images per class must be >= 1, got {per_class}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    kept = []
    for label, indices in sorted(by_class.items()):
        rng = random.Random(derive_seed(seed, "per-class", label))
        kept += indices if len(indices) <= per_class else rng.sample(indices, per_class)
    return sorted(kept)


def downstream(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with ``dataset.name`` set to the fine-tuning dataset (its data root, stand-in and seed kept)."""
    name = cfg.pretrain.finetune.dataset
    return cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"name": name})})


def initial_model(cfg: ExperimentConfig, init: str, num_classes: int, backbone: str) -> nn.Module:
    """The backbone to fine-tune, with a new ``num_classes`` head, from ``init``.

    Raises:
        UsageError: ``pretrained`` without a backbone folder, or a trunk of another backbone.
        MissingDataError: the trunk or the ImageNet weights are missing.
    """
    import torch

    from synk8s.models import build_backbone
    from synk8s.models.checkpoints import imagenet_trunk, load_into, load_trunk

    torch.manual_seed(derive_seed(cfg.seed, "finetune-init"))
    model = build_backbone(cfg.models.backbone, num_classes=num_classes)
    if init == "pretrained":
        if not backbone:
            raise UsageError("pretrain.finetune.init=pretrained needs the pre-training stage's output folder")
        state, meta = load_trunk(backbone)
        if meta["backbone"] != cfg.models.backbone:
            raise UsageError(
                f"the trunk in {backbone} is a {meta['backbone']}, not models.backbone={cfg.models.backbone}; "
                "set models.backbone to match"
            )
        load_into(model, state)
    elif init == "imagenet":
        load_into(model, imagenet_trunk(cfg.models.backbone, cfg.models.cache))
    return model


def test_top1(model: nn.Module, data: Any, resolution: int, device: str, batch_size: int = 256) -> float:
    """Top-1 of ``model`` on ``(PIL image, label)`` pairs, evaluation preprocessing at ``resolution``."""
    import torch

    from synk8s import augment

    prepare = augment.evaluation(resolution)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            pairs = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            images = torch.stack([prepare(image) for image, _ in pairs]).to(device)  # (B, 3, R, R)
            labels = torch.tensor([label for _, label in pairs], device=device)
            correct += int((model(images).argmax(dim=1) == labels).sum())
    model.train()
    return correct / len(data)


class _Subset:
    """Image ``i`` of a picked list of a dataset's samples (picklable for DataLoader workers)."""

    def __init__(self, data: Any, keep: Sequence[int]) -> None:
        self.data, self.keep = data, list(keep)

    def __call__(self, i: int) -> Image.Image:
        return self.data[self.keep[i]][0]


class _Encoded:
    """Image ``i`` of a list of encoded samples (see :class:`synk8s.stream.Sample`)."""

    def __init__(self, samples: Sequence[Any]) -> None:
        self.samples = list(samples)

    def __call__(self, i: int) -> Image.Image:
        from synk8s import shards

        return shards.decode_image(self.samples[i].image)


def training_set(
    cfg: ExperimentConfig, root: str, images: str, real_per_class: str
) -> tuple[Callable[[int], Image.Image], list[int], str]:
    """(image getter, labels, ``synthetic`` or ``real``) of the training images.

    ``images`` (a generate output) trains on its synthetic images, kept encoded in memory; else the real
    train split under ``root``, all of it or ``real_per_class`` images per class drawn with the run seed.
    """
    from synk8s import datasets, shards, stream

    if images:
        samples = [s for t in shards.manifest_tars(images) for s in stream.raw_samples(t)]
        return _Encoded(samples), [s.label for s in samples], "synthetic"
    data = datasets.load(datasets.info(cfg.dataset), "train", root)
    keep = list(range(len(data))) if not real_per_class else draw_per_class(data.labels, int(real_per_class), cfg.seed)
    return _Subset(data, keep), [data.labels[i] for i in keep], "real"


def train(
    cfg: ExperimentConfig, *, out: str, init: str, backbone: str = "", images: str = "", real_per_class: str = ""
) -> None:
    """The fine-tuning loop of one DDP process (run through :func:`synk8s.distributed.call`).

    Args:
        cfg: the run config with ``dataset.name`` = the downstream dataset (see :func:`downstream`).
        out: output folder.
        init: ``pretrained``, ``scratch`` or ``imagenet``.
        backbone: the pre-training stage's output folder (``init=pretrained``).
        images: a generate output to train on instead of the real train split (Table 4's synthetic row).
        real_per_class: train on this many real images per class (Table 4); empty for the whole split.
    """
    from synk8s import training
    from synk8s.models import resolve_device

    device = resolve_device(cfg.device)
    with distributed.session(device) as ctx, training.deterministic(derive_seed(cfg.seed, "finetune"), device):
        _train(cfg, ctx, out, init, backbone, images, real_per_class)


def _plan(
    cfg: ExperimentConfig, init: str, backbone: str, images: str, real_per_class: str, world_size: int
) -> dict[str, Any]:
    """What a checkpoint belongs to, by content (inputs are SHA-256s, not URIs); another plan is refused."""
    from synk8s import shards
    from synk8s.checkpoint_files import digest, object_digest
    from synk8s.models.checkpoints import WEIGHTS_FILE

    return {
        "digest": cfg.digest("seed", "dataset", "models.backbone", "pretrain.finetune"),
        "init": init,
        "backbone": object_digest(storage.join(backbone, WEIGHTS_FILE)) if backbone else "",
        "images": digest(t.sha256 for t in shards.manifest_tars(images)) if images else "",
        "real_per_class": real_per_class,
        "world_size": world_size,
    }


def _train(
    cfg: ExperimentConfig,
    ctx: distributed.Context,
    out: str,
    init: str,
    backbone: str,
    images: str,
    real_per_class: str,
) -> None:
    """Fine-tune in this process: check, load the data, resume, train the epochs, score and write (rank 0)."""
    from torch.nn.parallel import DistributedDataParallel

    from synk8s import datasets, realdata, training

    start = time.monotonic()
    ft = cfg.pretrain.finetune
    _check_schedule(ft.batch_size, ctx.world_size)
    info = datasets.info(cfg.dataset)
    root = realdata.ensure_dataset(cfg)  # prepared by fit() before the processes start
    image, labels, source = training_set(cfg, root, images, real_per_class)
    test = datasets.load(datasets.info(cfg.dataset), info.test_split, root)
    dataset, sampler, loader = _loader(cfg, ctx, image, labels)
    steps_per_epoch = len(loader)  # each rank's share, in whole local batches
    if steps_per_epoch < 1:
        raise UsageError(
            f"pretrain.finetune.batch_size {ft.batch_size} exceeds the {len(labels)} training images; lower it"
        )
    total_steps = steps_per_epoch * ft.epochs

    model = initial_model(cfg, init, info.num_classes, backbone).to(ctx.device)
    ddp = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.backend == "nccl" else None)
    optimizer = training.sgd(model, momentum=ft.momentum, weight_decay=ft.weight_decay)
    plan = _plan(cfg, init, backbone, images, real_per_class, ctx.world_size)
    first_epoch, curve = _resume(out, ctx, plan, model, optimizer)

    peak = training.scaled_lr(ft.lr, ft.batch_size)
    for epoch in range(first_epoch, ft.epochs):
        dataset.epoch = epoch
        sampler.set_epoch(epoch)
        losses = []
        for step_in_epoch, (views, batch_labels) in enumerate(loader):
            step = epoch * steps_per_epoch + step_in_epoch
            training.set_lr(optimizer, peak, step, total_steps)
            losses.append(training.train_step(ddp, optimizer, views, batch_labels, moco=False, device=ctx.device))
        curve.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses)})
        if ctx.is_main:
            training.save_checkpoint(
                out,
                {
                    "plan": plan,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "curve": curve,
                },
                epoch + 1,
            )
        distributed.barrier()

    if ctx.is_main:
        sources = {"init": init, "backbone": backbone, "images": images, "real_per_class": real_per_class}
        _finish(
            cfg, ctx, out, model, test, curve, sources=sources, source=source, train=len(labels), root=root, start=start
        )
    distributed.barrier()


def _check_schedule(batch_size: int, world_size: int) -> None:
    """Refuse a batch that does not split evenly over the processes (UsageError)."""
    if batch_size % world_size:
        raise UsageError(f"pretrain.finetune.batch_size {batch_size} must be a multiple of the {world_size} processes")


def _loader(
    cfg: ExperimentConfig, ctx: distributed.Context, image: Callable[[int], Image.Image], labels: Sequence[int]
) -> tuple[LabelledImages, DistributedSampler, DataLoader]:
    """The augmented training set, this rank's shuffled share of it and its DataLoader of local batches."""
    from torch.utils.data import DataLoader, DistributedSampler

    from synk8s import augment

    ft = cfg.pretrain.finetune
    local_batch = ft.batch_size // ctx.world_size
    dataset = LabelledImages(image, labels, augment.Views(augment.supervised(ft.resolution), 1), cfg.seed)
    sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(
        dataset, batch_size=local_batch, sampler=sampler, num_workers=cfg.pretrain.workers, drop_last=True
    )
    return dataset, sampler, loader


def _resume(
    out: str, ctx: distributed.Context, plan: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]]]:
    """Load the checkpoint in ``out``, if any, into the model and optimiser: (first epoch, curve so far)."""
    from synk8s import training

    state = training.load_checkpoint(out, writer=ctx.is_main)
    if state is None:
        return 0, []
    if state["plan"] != plan:
        raise UsageError(f"{out} holds a checkpoint of another fine-tuning run; choose a new output folder")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["curve"]  # fine-tuning steps are epochs


def _finish(
    cfg: ExperimentConfig, ctx: distributed.Context, out: str, model: nn.Module, test: Any,
    curve: list[dict[str, Any]], *, sources: dict[str, str], source: str, train: int, root: str, start: float,
) -> None:
    """Score the test split and write ``metrics.json``, ``curve.json`` and the manifest (rank 0)."""
    from synk8s import datasets

    ft = cfg.pretrain.finetune
    init, backbone, real_per_class = sources["init"], sources["backbone"], sources["real_per_class"]
    top1 = test_top1(model, test, ft.resolution, ctx.device)
    metrics = {
        "top1": top1, "init": init, "dataset": cfg.dataset.name, "source": source,
        "real_per_class": int(real_per_class) if real_per_class else None, "train": train, "test": len(test),
        "epochs": ft.epochs, "world_size": ctx.world_size, "standin": datasets.is_standin(root),
        "backbone": backbone or None,
    }
    storage.put_json(storage.join(out, METRICS_FILE), metrics)
    storage.put_json(storage.join(out, CURVE_FILE), {"epochs": curve})
    write_manifest(
        out, "finetune", cfg, counts={"train": train, "test": len(test), "world_size": ctx.world_size},
        inputs={"backbone": backbone or None, "images": sources["images"] or None}, init=init, top1=top1,
        world_size=ctx.world_size, seconds=round(time.monotonic() - start, 3),
    )


def run(cfg: ExperimentConfig, *, out: str, backbone: str | None = None, progress: bool = True) -> FinetuneResult:
    """Fine-tune on ``pretrain.finetune.dataset`` from ``pretrain.finetune.init`` and score its test split.

    Args:
        cfg: the run config (``pretrain.finetune``, ``models.backbone``, ``models.cache``, ``dataset`` root).
        out: this stage's output folder.
        backbone: the pre-training stage's output folder; needed for ``init=pretrained``, not read otherwise.
        progress: unused (one log line per epoch); kept for the stage signature.

    Raises:
        UsageError: ``init=pretrained`` without ``backbone``, or a trunk of another backbone.
        MissingDataError: the dataset, the trunk or the ImageNet weights are missing.
    """
    init = cfg.pretrain.finetune.init
    if init == "pretrained" and not backbone:
        raise UsageError("pretrain.finetune.init=pretrained needs the pre-training stage's output folder (backbone)")
    return fit(downstream(cfg), out=out, init=init, backbone=(backbone or "") if init == "pretrained" else "")


def fit(cfg: ExperimentConfig, *, out: str, init: str, **sources: str) -> FinetuneResult:
    """Prepare the dataset, run :func:`train` in DDP (:func:`synk8s.launch.train`), read back its result."""
    from synk8s import launch, realdata

    start = time.monotonic()
    realdata.ensure_dataset(cfg)  # once, before several processes would race to write a stand-in
    launch.train(cfg, stage="finetune", target=TARGET, out=out, init=init, **sources)
    return load_result(out, seconds=time.monotonic() - start)


def load_result(out: str, seconds: float = 0.0) -> FinetuneResult:
    """The :class:`FinetuneResult` of a finished run in ``out``."""
    manifest = read_manifest(out, "finetune")
    metrics = storage.get_json(storage.join(out, METRICS_FILE))
    return FinetuneResult(
        metrics=storage.join(out, METRICS_FILE),
        manifest=storage.join(out, "manifest.json"),
        init=metrics["init"],
        train=metrics["train"],
        test=metrics["test"],
        top1=metrics["top1"],
        world_size=manifest["world_size"],
        seconds=seconds,
    )


#: Config fields a fine-tuning's output depends on (the ``dataset`` section gives the data root and stand-in).
FIELDS = ("seed", "device", "models.backbone", "models.cache", "dataset", "pretrain.finetune")

STAGE = StageSpec(
    name="finetune",
    imagenet=ImageNetStart("pretrain.finetune.init"),
    run=run,
    help="Fine-tune on CIFAR-100 from the pre-trained trunk (pretrain.finetune.init=pretrained) or not; top-1.",
    inputs={"backbone": "pretrain"},
    depends=FIELDS,
    shm=True,  # torchrun in the task (no TrainJob) loads on DataLoader workers
    resources=Resources("500m", "1", "1Gi", "2Gi"),  # the task launches the TrainJob (or torchrun); nodes train
    outputs={METRICS_FILE: None, CURVE_FILE: None},
)
