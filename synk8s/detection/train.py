"""Training loop of the detector: iteration-based SGD, checkpoints and resume, DDP, precise BN, inference.

Works in one process and inside an initialised ``torch.distributed`` process group (as torchrun
starts it): then the model is wrapped in DistributedDataParallel, batch norm becomes SyncBN on
CUDA, each process reads its share of every global batch (:class:`~.voc_data.TrainBatches`), and
only rank 0 writes. The schedule is detectron2's ``WarmupMultiStepLR``: a linear warmup from
``warmup_factor`` to 1 over ``warmup_iters``, then a factor ``lr_gamma`` at each of ``lr_steps``.
SGD with momentum; normalisation layers get ``weight_decay_norm``, everything else ``weight_decay``.

A checkpoint (``<folder>/iter_NNNNNNN.pt``, listed with its SHA-256 in ``<folder>/latest.json``, see
:mod:`synk8s.checkpoint_files`) holds the model, the optimiser, the iteration, the loss curve (with
the current logging window's sums) and every process's RNG state, so a run killed at any point and
started again continues from the last checkpoint and ends with the same weights as a run that was
never interrupted. The previous checkpoint is kept until the next one is written and verified; a
damaged one is set aside on load and training goes on from the one before it, or from the start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from synk8s import checkpoint_files
from synk8s.config import DetectConfig
from synk8s.detection import voc_data
from synk8s.detection.model import set_image_sizes
from synk8s.detection.voc_eval import Detections, to_voc_boxes
from synk8s.errors import UsageError

log = logging.getLogger(__name__)

CHECKPOINTS = checkpoint_files.Layout(prefix="iter_", record="latest.json")


@dataclass(frozen=True)
class Process:
    """Where this process sits in the run: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        """True inside an initialised process group."""
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    @property
    def main(self) -> bool:
        """True on rank 0, the process that writes."""
        return self.rank == 0


def current_process(device: str) -> Process:
    """This process: rank and world size from the process group (0 and 1 without one).

    Args:
        device: ``cpu`` or ``cuda``; under a process group ``cuda`` means ``cuda:$LOCAL_RANK``.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        if device == "cuda":
            return Process(rank, world, torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
        return Process(rank, world, torch.device(device))
    return Process(0, 1, torch.device(device))


def lr_factor(iteration: int, dc: DetectConfig) -> float:
    """Multiplier of ``dc.lr`` at ``iteration`` (0-based): linear warmup, then steps."""
    factor = dc.lr_gamma ** sum(iteration >= step for step in dc.lr_steps)
    if iteration < dc.warmup_iters:
        alpha = iteration / dc.warmup_iters
        factor *= dc.warmup_factor * (1 - alpha) + alpha
    return factor


def parameter_groups(model: nn.Module, dc: DetectConfig) -> list[dict[str, Any]]:
    """SGD groups: parameters of normalisation layers with ``weight_decay_norm``, the rest with ``weight_decay``."""
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    norm, other = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.requires_grad:
                (norm if isinstance(module, norm_types) else other).append(param)
    return [{"params": other, "weight_decay": dc.weight_decay}, {"params": norm, "weight_decay": dc.weight_decay_norm}]


# ----------------------------------------------------------------------------- checkpoints


def read_checkpoint(folder: str, *, writer: bool = True) -> dict[str, Any] | None:
    """The newest checkpoint under ``folder`` that verifies, or None when there is none.

    Damaged checkpoints are set aside with a warning when ``writer`` (rank 0), see
    :func:`synk8s.checkpoint_files.load`.
    """
    return checkpoint_files.load(folder, CHECKPOINTS, writer=writer)


def _rng_state(process: Process) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if process.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(process.device)
    return state


def _set_rng_state(process: Process, state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if process.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], process.device)


def _write_checkpoint(
    folder: str, process: Process, model: nn.Module, optimizer: torch.optim.Optimizer, iteration: int, extra: dict
) -> None:
    """Gather every process's RNG state; rank 0 writes the checkpoint (see :func:`synk8s.checkpoint_files.save`)."""
    states = [_rng_state(process)]
    if process.distributed:
        states = [None] * process.world
        torch.distributed.all_gather_object(states, _rng_state(process))
    if not process.main:
        return
    body = {
        "iteration": iteration,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": states,
        **extra,
    }
    uri = checkpoint_files.save(folder, CHECKPOINTS, iteration, body)
    log.info("checkpoint at iteration %d: %s", iteration, uri)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Trained:
    """What :func:`train_detector` did.

    Attributes:
        resumed_from: the checkpoint iteration training continued from (None: from the start).
        curve: one dict per logged iteration: ``iteration``, ``lr``, ``loss`` and each loss term
            (means over the iterations since the previous entry, this process's batches).
    """

    resumed_from: int | None
    curve: list[dict[str, float]]


def _loader(
    images: voc_data.TrainImages, dc: DetectConfig, process: Process, seed: int, start: int, stop: int
) -> torch.utils.data.DataLoader:
    batches = voc_data.TrainBatches(
        len(images),
        dc.batch_size,
        rank=process.rank,
        world=process.world,
        seed=seed,
        start=start,
        stop=stop,
        hflip_prob=dc.hflip_prob,
    )
    return torch.utils.data.DataLoader(
        images,
        batch_sampler=batches,
        collate_fn=voc_data.collate,
        num_workers=dc.num_workers,
        generator=torch.Generator().manual_seed(seed),  # leaves the global RNG alone (resume-safe)
        pin_memory=process.device.type == "cuda",
    )


def _to(process: Process, images: Sequence[torch.Tensor], targets: Sequence[dict]) -> tuple[list, list]:
    device = process.device
    return [im.to(device, non_blocking=True) for im in images], [
        {k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets
    ]


def train_detector(
    model: nn.Module,
    images: voc_data.TrainImages,
    dc: DetectConfig,
    process: Process,
    *,
    seed: int,
    checkpoints: str,
    fingerprint: dict[str, Any],
    progress: bool = False,
) -> Trained:
    """Train ``model`` in place for ``dc.iterations``, resuming from the latest checkpoint in ``checkpoints``.

    Args:
        model: the detector (on ``process.device``); DDP-wrapped here when distributed.
        images: the training set.
        dc: the ``detect`` config (schedule, batch, checkpoints, sizes).
        process: this process (see :func:`current_process`).
        seed: seed of the data order; the global torch RNG must be seeded by the caller.
        checkpoints: folder URI of the checkpoints.
        fingerprint: JSON-able description of the run; a checkpoint with another one is refused.
        progress: show a progress bar (rank 0).

    Raises:
        UsageError: the checkpoint folder belongs to a different run.
        FloatingPointError: the loss became NaN or infinite.
    """
    from tqdm.auto import tqdm

    set_image_sizes(model, dc.train_sizes)
    optimizer = torch.optim.SGD(parameter_groups(model, dc), lr=dc.lr, momentum=dc.momentum)
    start, curve, resumed_from = 0, [], None
    sums: dict[str, float] = {}  # loss sums since the last curve entry
    count = 0
    saved = read_checkpoint(checkpoints, writer=process.main)
    if saved is not None:
        if saved["fingerprint"] != fingerprint:
            raise UsageError(
                f"the checkpoints in {checkpoints} belong to another run ({saved['fingerprint']}); "
                "write to another output folder or delete that one"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start = resumed_from = int(saved["iteration"])
        curve = list(saved["curve"])
        sums, count = dict(saved["window"]["sums"]), int(saved["window"]["count"])
        if len(saved["rng"]) == process.world:
            _set_rng_state(process, saved["rng"][process.rank])
        else:
            log.warning(
                "checkpoint from %d processes resumed by %d: random draws differ", len(saved["rng"]), process.world
            )
        log.info("resuming from the checkpoint at iteration %d of %d", start, dc.iterations)
    if process.distributed and process.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    if process.distributed:
        device_ids = [process.device.index] if process.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    net.train()
    bar = tqdm(total=dc.iterations, initial=start, desc="detect", unit="it", disable=not (progress and process.main))
    for iteration, (batch_images, targets) in zip(
        range(start, dc.iterations), _loader(images, dc, process, seed, start, dc.iterations)
    ):
        lr = dc.lr * lr_factor(iteration, dc)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = net(*_to(process, batch_images, targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            terms = ", ".join(f"{k} {float(v):.4g}" for k, v in losses.items())
            raise FloatingPointError(
                f"detection loss is {float(loss)} at iteration {iteration} ({terms}); "
                "lower detect.lr or lengthen detect.warmup_iters"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in {"loss": loss, **losses}.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        count += 1
        done = iteration + 1
        if done % dc.log_every == 0 or done == dc.iterations:
            curve.append({"iteration": done, "lr": lr, **{k: v / count for k, v in sums.items()}})
            bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
            sums, count = {}, 0
        if done % dc.checkpoint_every == 0 or done == dc.iterations:
            extra = {"curve": curve, "window": {"sums": sums, "count": count}, "fingerprint": fingerprint}
            _write_checkpoint(checkpoints, process, model, optimizer, done, extra)
        bar.update(1)
    bar.close()
    return Trained(resumed_from=resumed_from, curve=curve)


def precise_bn(model: nn.Module, images: voc_data.TrainImages, dc: DetectConfig, process: Process, *, seed: int) -> int:
    """Re-estimate every batch norm's running statistics as the mean over ``dc.precise_bn_iters`` batches.

    detectron2's ``TEST.PRECISE_BN``: the model runs in training mode without gradients on the
    batches that follow the training stream (iterations ``dc.iterations`` onwards), each batch
    norm's statistics averaged with equal weight. Under SyncBN the batch statistics are global.

    Returns:
        The number of batch norms updated (0 when ``dc.precise_bn_iters`` is 0).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if dc.precise_bn_iters == 0 or not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen since the reset
    set_image_sizes(model, dc.train_sizes)
    model.train()
    stop = dc.iterations + dc.precise_bn_iters
    with torch.no_grad():
        for batch_images, targets in _loader(images, dc, process, seed, dc.iterations, stop):
            model(*_to(process, batch_images, targets))
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    return len(norms)


def predict(
    model: nn.Module,
    records: Sequence[voc_data.VOCImage],
    dc: DetectConfig,
    process: Process,
    *,
    progress: bool = False,
) -> list[Detections]:
    """Detections on every image of ``records`` (at ``dc.test_size``), in VOC pixel coordinates.

    Each process runs every ``world``-th image; the results are gathered so every process returns
    the full list, in ``records`` order. Labels are 0-based VOC classes.
    """
    from tqdm.auto import tqdm

    set_image_sizes(model, (dc.test_size,))
    model.eval()
    mine = list(range(process.rank, len(records), process.world))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(voc_data.EvalImages(records), mine),
        batch_size=1,
        collate_fn=voc_data.collate,
        num_workers=dc.num_workers,
    )
    found: list[tuple[int, Detections]] = []
    with torch.no_grad():
        for batch_images, indices in tqdm(loader, desc="test", unit="img", disable=not (progress and process.main)):
            outputs = model([im.to(process.device) for im in batch_images])
            for index, out in zip(indices, outputs):
                found.append(
                    (
                        index,
                        Detections(
                            boxes=to_voc_boxes(out["boxes"].cpu().numpy()),
                            labels=out["labels"].cpu().numpy().astype(np.int64) - 1,
                            scores=out["scores"].cpu().numpy().astype(np.float64),
                        ),
                    )
                )
    if process.distributed:
        shards: list = [None] * process.world
        torch.distributed.all_gather_object(shards, found)
        found = [item for shard in shards for item in shard]
    found.sort(key=lambda item: item[0])
    return [detections for _, detections in found]
