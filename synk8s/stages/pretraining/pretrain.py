"""Pre-training on synthetic images (paper section 3.3): supervised or MoCo v2, a ResNet under DDP.

* ``pretrain.method=supervised``: cross-entropy over the label space's classes; SGD (momentum 0.9,
  weight decay 1e-4), rate ``pretrain.lr x batch / 256`` on a per-step half-cosine; RandomResizedCrop + flip.
* ``pretrain.method=moco``: MoCo v2 (:mod:`synk8s.models.moco`): queue 65536, momentum 0.999, T 0.2, MLP
  head 2048-2048-128, "aug+" with blur (:mod:`synk8s.augment`), rate ``pretrain.moco.lr x batch / 256``
  on a per-step half-cosine, ``pretrain.moco.epochs``. Keys are encoded with the batch shuffled across
  processes (shuffle BN); on one process BN statistics come from ``pretrain.moco.bn_splits`` sub-batches
  instead (split-batch BN), and the shuffle moves keys between them.
* ``pretrain.init=imagenet`` starts the trunk from ImageNet-1K weights in the model cache.

Training runs in DDP through :func:`synk8s.launch.train`: in this process with ``pretrain.nproc=1``,
else on ``nproc`` local processes under torchrun, and as a Kubeflow Trainer TrainJob from a pipeline
task on a cluster (the manifest records ``world_size``). Images stream from
the generate stage's tars (:mod:`synk8s.stream`), split by rank and worker. Rank 0 writes a checkpoint
every ``pretrain.checkpoint_every`` steps and after every epoch; a rerun into the same folder resumes from
it and, on CPU, ends with the same weights as a run that was never stopped. After each epoch rank 0 scores
the held-out monitor images (:mod:`synk8s.monitor`).

    result = pretrain.run(cfg, images="runs/r/images", out="runs/r/pretrain")
    state, meta = synk8s.models.checkpoints.load_trunk("runs/r/pretrain")

Outputs under ``out``: ``backbone.safetensors`` + ``backbone.json`` (see :mod:`synk8s.models.checkpoints`),
``curve.json`` (per epoch: step, lr, mean loss on rank 0's batches, monitor scores; epoch 0 scores the untrained
backbone with batch-norm statistics of the data, the random-backbone baseline), ``manifest.json``
and ``checkpoint.json`` with the last two ``checkpoint.NNNNNNN.pt`` (training states, see :mod:`synk8s.training`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import distributed, launch, storage
from synk8s.config import ExperimentConfig
from synk8s.config_studies import PretrainConfig
from synk8s.errors import IntegrityError, UsageError
from synk8s.preflight import ImageNetStart
from synk8s.runs import read_manifest, write_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.pretraining.training_data import TrainingData, training_data
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from synk8s import shards

log = logging.getLogger(__name__)

TARGET = "synk8s.stages.pretraining.pretrain:train"
#: Fields of ``pretrain`` that only the transfer stages read: the trunk does not depend on them.
TRANSFER_FIELDS = ("finetune", "detection_dataset", "transfer")
#: Fields of ``pretrain`` that reach the trunk only through its images (their folder digest covers them).
IMAGE_FIELDS = ("classes",)
CURVE_FILE = "curve.json"


class PretrainResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        backbone: URI of ``backbone.safetensors``.
        meta: URI of ``backbone.json``.
        curve: URI of ``curve.json``.
        manifest: URI of ``manifest.json``.
        method: ``supervised`` or ``moco``.
        world_size: training processes.
        images: synthetic images trained on (monitor images excluded).
        epochs: epochs trained.
        steps: optimiser steps.
        knn_top1: the last epoch's kNN top-1 on the monitor queries, in [0, 1]; None without monitor images.
        seconds: wall time of the call.
    """

    model_config = ConfigDict(frozen=True)

    backbone: str
    meta: str
    curve: str
    manifest: str
    method: str
    world_size: int
    images: int
    epochs: int
    steps: int
    knn_top1: float | None
    seconds: float


def build_model(cfg: ExperimentConfig, num_classes: int, world_size: int = 1) -> nn.Module:
    """The model to train, on CPU: a backbone with a ``num_classes`` head, or MoCo around one.

    MoCo on one process (``world_size`` 1) uses split-batch BN with ``pretrain.moco.bn_splits`` sub-batches
    in place of shuffle BN across processes; with several processes its BN is plain.

    Raises:
        MissingDataError: ``pretrain.init=imagenet`` and the model cache lacks the weights.
    """
    import torch

    from synk8s.models import build_backbone
    from synk8s.models.checkpoints import imagenet_trunk, load_into
    from synk8s.models.moco import MoCo

    p = cfg.pretrain
    torch.manual_seed(derive_seed(cfg.seed, "pretrain-init"))
    moco = p.method == "moco"
    trunk = build_backbone(cfg.models.backbone, num_classes=p.moco.dim if moco else num_classes)
    if p.init == "imagenet":
        load_into(trunk, imagenet_trunk(cfg.models.backbone, cfg.models.cache))
    if not moco:
        return trunk
    m = p.moco
    return MoCo(
        trunk,
        dim=m.dim,
        hidden_dim=m.hidden_dim,
        queue=m.queue,
        momentum=m.momentum,
        temperature=m.temperature,
        seed=cfg.seed,
        bn_splits=m.bn_splits if world_size == 1 else 1,
    )


def _plan(cfg: ExperimentConfig, tars: list[shards.TarRecord], world_size: int) -> dict[str, Any]:
    """What a checkpoint belongs to, by content (the images are their tars' SHA-256, not their URIs).

    A resume with another plan is refused; a copied or moved store keeps its plan.
    """
    from synk8s.checkpoint_files import digest

    fields = [f"pretrain.{n}" for n in type(cfg.pretrain).model_fields if n not in TRANSFER_FIELDS + IMAGE_FIELDS]
    return {
        "digest": cfg.digest("seed", "models.backbone", *fields),
        "images": digest(t.sha256 for t in tars),
        "world_size": world_size,
    }


def train(cfg: ExperimentConfig, *, images: str, out: str) -> None:
    """The training loop of one DDP process (run through :func:`synk8s.distributed.call`)."""
    from synk8s import training
    from synk8s.models import resolve_device

    device = resolve_device(cfg.device)
    with distributed.session(device) as ctx, training.deterministic(derive_seed(cfg.seed, "pretrain"), device):
        _train(cfg, ctx, images, out)


@dataclass
class _Loop:
    """One process's pre-training: its model, optimiser and schedule, and where it stands."""

    cfg: ExperimentConfig
    ctx: distributed.Context
    out: str
    data: TrainingData
    model: nn.Module
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    plan: dict[str, Any]
    moco: bool
    epochs: int
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    resumed_from: int | None = None


def _train(cfg: ExperimentConfig, ctx: distributed.Context, images: str, out: str) -> None:
    """Pre-train in this process: check, set up, resume, train the epochs, write the outputs (rank 0)."""
    from torch.nn.parallel import DistributedDataParallel

    from synk8s import monitor, training

    start = time.monotonic()
    p = cfg.pretrain
    moco = p.method == "moco"
    epochs, base_lr = (p.moco.epochs, p.moco.lr) if moco else (p.epochs, p.lr)
    _check_schedule(p, moco, ctx.world_size)
    data = training_data(cfg, images)
    train_images = data.images - data.held_out
    steps_per_epoch = train_images // p.batch_size
    if steps_per_epoch < 1:
        raise UsageError(f"pretrain.batch_size {p.batch_size} exceeds the {train_images} training images; lower it")
    total_steps = steps_per_epoch * epochs

    model = build_model(cfg, data.num_classes, ctx.world_size).to(ctx.device)
    ddp = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.backend == "nccl" else None)
    optimizer = training.sgd(model, momentum=p.momentum, weight_decay=p.weight_decay)
    plan = _plan(cfg, data.tars, ctx.world_size)
    loop = _Loop(cfg, ctx, out, data, model, ddp, optimizer, plan, moco, epochs, steps_per_epoch, total_steps)
    _resume(loop)

    dataset, loader = _loader(cfg, ctx, data, train_images)
    held = monitor.load_monitor(  # the held-out monitor images, scored by rank 0 alone
        data.tars, data.monitor, seed=cfg.seed, fraction=p.monitor_fraction, resolution=p.resolution
    ) if ctx.is_main else None
    peak = training.scaled_lr(base_lr, p.batch_size)

    if ctx.is_main and not loop.curve:  # epoch 0: the untrained backbone, the baseline the epochs are read against
        loop.curve.append(_measure(loop, held, 0, 0.0, None))
    for epoch in range(loop.step // steps_per_epoch, epochs):
        lr = _epoch(loop, dataset, loader, epoch, peak)
        loss, loop.losses = sum(loop.losses) / len(loop.losses), []
        if ctx.is_main:
            record = _measure(loop, held, epoch + 1, lr, loss)
            log.info("epoch %d/%d: %s", epoch + 1, epochs, record)
            loop.curve.append(record)
            training.save_checkpoint(out, _snapshot(loop), loop.step)
        distributed.barrier()

    if ctx.is_main:
        _finish(loop, images, start)
    distributed.barrier()


def _check_schedule(p: PretrainConfig, moco: bool, world_size: int) -> None:
    """Refuse a MoCo queue, BN split or batch that does not fit the batch and processes (UsageError)."""
    if moco and p.moco.queue % p.batch_size:
        raise UsageError(f"pretrain.moco.queue {p.moco.queue} must be a multiple of pretrain.batch_size {p.batch_size}")
    if moco and world_size == 1 and p.batch_size % p.moco.bn_splits:
        raise UsageError(
            f"pretrain.moco.bn_splits {p.moco.bn_splits} must divide pretrain.batch_size {p.batch_size} "
            "(split-batch BN on one process); choose a divisor, or 1 for plain BN"
        )
    if p.batch_size % world_size:
        raise UsageError(f"pretrain.batch_size {p.batch_size} must be a multiple of the {world_size} processes")


def _resume(loop: _Loop) -> None:
    """Load the checkpoint in ``loop.out``, if any, into ``loop`` (another run's: UsageError)."""
    from synk8s import training

    state = training.load_checkpoint(loop.out, writer=loop.ctx.is_main)
    if state is None:
        return
    if state["plan"] != loop.plan:
        raise UsageError(
            f"{loop.out} holds a checkpoint of another pre-training run ({state['plan']}); "
            "choose a new output folder or delete that one"
        )
    loop.model.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.step, loop.curve, loop.losses = state["step"], state["curve"], state["losses"]
    loop.resumed_from = loop.step
    log.info("resuming from the checkpoint of step %d in %s", loop.step, loop.out)


def _loader(cfg: ExperimentConfig, ctx: distributed.Context, data: TrainingData, images: int) -> tuple[Any, DataLoader]:
    """This rank's stream of the ``images`` training images, augmented (monitor images held out), and its DataLoader."""
    from torch.utils.data import DataLoader

    from synk8s import augment, stream

    p = cfg.pretrain
    moco = p.method == "moco"
    views = augment.Views(augment.moco_v2(p.resolution) if moco else augment.supervised(p.resolution), 2 if moco else 1)
    local_batch = p.batch_size // ctx.world_size
    per_slot = images // (ctx.world_size * max(1, p.workers))  # a slot's share of one pass
    dataset = stream.ShardStream(
        data.tars, data.monitor, views, seed=cfg.seed, fraction=p.monitor_fraction, rank=ctx.rank,
        world_size=ctx.world_size, batch_size=local_batch, buffer_size=max(1, min(stream.SHUFFLE_BUFFER, per_slot)),
    )
    loader = DataLoader(dataset, batch_size=local_batch, num_workers=p.workers, pin_memory=ctx.backend == "nccl")
    return dataset, loader


def _epoch(loop: _Loop, dataset: Any, loader: DataLoader, epoch: int, peak: float) -> float:
    """Train ``epoch`` from ``loop.step`` (mid-epoch after a resume), checkpointing on rank 0; returns the last rate."""
    from synk8s import training

    every, steps_per_epoch = loop.cfg.pretrain.checkpoint_every, loop.steps_per_epoch
    dataset.epoch, dataset.skip_batches = epoch, loop.step - epoch * steps_per_epoch
    batches = iter(loader)
    lr = 0.0
    for _ in range(steps_per_epoch - dataset.skip_batches):
        batch, labels = next(batches)  # (B, V, 3, H, W), (B,)
        lr = training.set_lr(loop.optimizer, peak, loop.step, loop.total_steps)
        loss = training.train_step(loop.ddp, loop.optimizer, batch, labels, moco=loop.moco, device=loop.ctx.device)
        loop.losses.append(loss)
        loop.step += 1
        if loop.ctx.is_main and loop.step % every == 0 and loop.step % steps_per_epoch:
            training.save_checkpoint(loop.out, _snapshot(loop), loop.step)
    del batches
    return lr


def _snapshot(loop: _Loop) -> dict[str, Any]:
    """The training state a checkpoint holds (its step is added by :func:`synk8s.training.save_checkpoint`)."""
    return {"plan": loop.plan, "model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
            "curve": loop.curve, "losses": loop.losses}


def _measure(loop: _Loop, held: Any, epoch: int, lr: float, loss: float | None) -> dict[str, Any]:
    """The curve record of ``epoch``: step, rate, loss and the trunk's monitor scores (epoch 0: untrained)."""
    from synk8s import monitor

    p = loop.cfg.pretrain
    trunk = loop.model.encoder_q if loop.moco else loop.model
    scores = (monitor.evaluate if epoch else monitor.untrained_baseline)(
        trunk, held, num_classes=loop.data.num_classes, k=p.moco.knn_k, temperature=p.moco.knn_temperature,
        head=not loop.moco, device=loop.ctx.device,
    )
    return {"epoch": epoch, "step": loop.step, "lr": lr, "loss": loss, **scores}


def _finish(loop: _Loop, images: str, start: float) -> None:
    """Write the trunk, ``curve.json`` and the manifest (rank 0)."""
    from synk8s.models.checkpoints import save_trunk

    cfg, ctx, data, p = loop.cfg, loop.ctx, loop.data, loop.cfg.pretrain
    train_images = data.images - data.held_out
    trunk = loop.model.encoder_q if loop.moco else loop.model
    meta = {
        "backbone": cfg.models.backbone, "method": p.method, "label_space": data.label_space, "images": train_images,
        "num_images": data.images, "epochs": loop.epochs, "steps": loop.total_steps, "world_size": ctx.world_size,
        "init": p.init, "seed": cfg.seed, "config_digest": loop.plan["digest"], "resolution": p.resolution,
    }
    weights = save_trunk(trunk, loop.out, meta)
    storage.put_json(storage.join(loop.out, CURVE_FILE), {"epochs": loop.curve})
    counts = {"images": train_images, "monitor": data.held_out, "steps": loop.total_steps, "world_size": ctx.world_size}
    write_manifest(
        loop.out, "pretrain", cfg, counts=counts, inputs={"images": images}, outputs={"backbone": weights},
        world_size=ctx.world_size, method=p.method, label_space=data.label_space, resumed_from=loop.resumed_from,
        seconds=round(time.monotonic() - start, 3),
    )


def run(cfg: ExperimentConfig, *, images: str, out: str, progress: bool = True) -> PretrainResult:
    """Pre-train a backbone on a generate output and write its trunk (resumes from a checkpoint in ``out``).

    Args:
        cfg: the run config (``pretrain`` section, ``models.backbone``, ``models.cache``, ``seed``, ``device``).
        images: the generate stage's output folder.
        out: this stage's output folder.
        progress: unused (training logs one line per epoch); kept for the stage signature.

    Raises:
        MissingDataError: no collected generate output, or ImageNet weights missing from the model cache.
        UsageError: batch and processes do not fit the data, or ``out`` holds another run's checkpoint.
    """
    start = time.monotonic()
    read_manifest(images, "generate")
    launch.train(cfg, stage="pretrain", target=TARGET, out=out, images=images)
    return load_result(out, seconds=time.monotonic() - start)


def load_result(out: str, seconds: float = 0.0) -> PretrainResult:
    """The :class:`PretrainResult` of a finished pre-training in ``out``."""
    from synk8s.models.checkpoints import META_FILE, WEIGHTS_FILE

    manifest = read_manifest(out, "pretrain")
    meta = storage.get_json(storage.join(out, META_FILE))
    curve = storage.get_json(storage.join(out, CURVE_FILE))["epochs"]
    return PretrainResult(
        backbone=storage.join(out, WEIGHTS_FILE),
        meta=storage.join(out, META_FILE),
        curve=storage.join(out, CURVE_FILE),
        manifest=storage.join(out, "manifest.json"),
        method=meta["method"],
        world_size=manifest["world_size"],
        images=meta["images"],
        epochs=meta["epochs"],
        steps=meta["steps"],
        knn_top1=curve[-1].get("knn_top1") if curve else None,
        seconds=seconds,
    )


def load_backbone(out: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trunk a finished pre-training wrote: ``(state_dict, backbone.json)``.

    See :func:`synk8s.models.checkpoints.load_trunk`, the one reader of trunks (detection uses it too);
    its read checks the bytes against the SHA-256 the store recorded, and this checks that hash
    against the one the stage's manifest recorded at completion (a truncated or replaced file).

    Raises:
        IntegrityError: the trunk differs from what the pre-training wrote.
    """
    from synk8s.models.checkpoints import META_FILE, WEIGHTS_FILE, load_trunk

    manifest_uri = storage.join(out, "manifest.json")
    recorded = storage.get_json(manifest_uri).get("outputs", {}) if storage.exists(manifest_uri) else {}
    for name in (WEIGHTS_FILE, META_FILE):
        uri = storage.join(out, name)
        if name in recorded and storage.exists(uri) and storage.stat(uri).sha256 != recorded[name]:
            raise IntegrityError(
                f"{uri} is damaged: its SHA-256 differs from the one recorded when pre-training wrote it; "
                "rerun `synk8s stage pretrain` to write it again"
            )
    try:
        return load_trunk(out)
    except IntegrityError as error:
        raise IntegrityError(f"{error}; rerun `synk8s stage pretrain` to write it again") from None


STAGE = StageSpec(
    name="pretrain",
    imagenet=ImageNetStart("pretrain.init"),
    run=run,
    help="Pre-train a backbone on the generated images (supervised or MoCo v2) in DDP; writes its trunk.",
    inputs={"images": "generate"},
    depends=(
        "seed",
        "device",
        "models.backbone",
        "models.cache",
        *(f"pretrain.{n}" for n in PretrainConfig.model_fields if n not in TRANSFER_FIELDS + IMAGE_FIELDS),
    ),
    shm=True,  # torchrun in the task (no TrainJob) loads on DataLoader workers
    resources=Resources("500m", "1", "1Gi", "2Gi"),  # the task launches the TrainJob (or torchrun); nodes train
    outputs={"backbone.safetensors": load_backbone, "backbone.json": None, CURVE_FILE: None},
)
