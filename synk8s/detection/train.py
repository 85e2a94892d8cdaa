"""Training loop of the detector: iteration-based SGD, checkpoints and resume, DDP, precise BN, inference.

Works in one process and inside an initialised ``torch.distributed`` process group (as torchrun
starts it); :func:`synk8s.distributed.current` describes the process either way. In a group the
model is wrapped in DistributedDataParallel, batch norm becomes SyncBN on CUDA, each process reads
its share of every global batch (:class:`~.voc_data.TrainBatches`), and only rank 0 writes. The
schedule is detectron2's ``WarmupMultiStepLR``: a linear warmup from ``warmup_factor`` to 1 over
``warmup_iters``, then a factor ``lr_gamma`` at each of ``lr_steps``. SGD with momentum;
normalisation layers get ``weight_decay_norm``, everything else ``weight_decay``.

Checkpoints are those of every training stage (:func:`synk8s.training.save_checkpoint`:
``checkpoint.NNNNNNN.pt`` files listed with their SHA-256 in ``checkpoint.json``). One holds the
model, the optimiser, the iteration as its step, the loss curve (with the current logging window's
sums) and every process's RNG state, so a run killed at any point and started again continues from
the last checkpoint and ends with the same weights as a run that was never interrupted. The previous
checkpoint is kept until the next one is written and verified; a damaged one is set aside on load
and training goes on from the one before it, or from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from synk8s import training
from synk8s.config import DetectConfig
from synk8s.detection import voc_data
from synk8s.detection.model import set_image_sizes
from synk8s.detection.voc_eval import Detections, to_voc_boxes
from synk8s.distributed import Context
from synk8s.errors import UsageError

log = logging.getLogger(__name__)


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
    images: voc_data.TrainImages, dc: DetectConfig, ctx: Context, seed: int, start: int, stop: int
) -> torch.utils.data.DataLoader:
    batches = voc_data.TrainBatches(
        len(images),
        dc.batch_size,
        rank=ctx.rank,
        world=ctx.world_size,
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
        pin_memory=ctx.cuda,
    )


def _to(ctx: Context, images: Sequence[torch.Tensor], targets: Sequence[dict]) -> tuple[list, list]:
    device = ctx.device
    return [im.to(device, non_blocking=True) for im in images], [
        {k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets
    ]


def _resume(
    checkpoints: str, ctx: Context, model: nn.Module, optimizer: torch.optim.Optimizer, plan: dict[str, Any]
) -> dict[str, Any] | None:
    """Load the newest checkpoint in ``checkpoints``, if any, into the model, optimiser and RNG; return it.

    Raises:
        UsageError: the checkpoint belongs to another run (another ``plan``).
    """
    saved = training.load_checkpoint(checkpoints, writer=ctx.is_main)
    if saved is None:
        return None
    if saved["plan"] != plan:
        raise UsageError(
            f"the checkpoints in {checkpoints} belong to another run ({saved['plan']}); "
            "write to another output folder or delete that one"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if not training.restore_rng(ctx, saved["rng"]):
        log.warning(
            "checkpoint from %d processes resumed by %d: random draws differ", len(saved["rng"]), ctx.world_size
        )
    return saved


def _step(
    net: nn.Module, optimizer: torch.optim.Optimizer, ctx: Context, images: Sequence[torch.Tensor],
    targets: Sequence[dict], iteration: int,
) -> dict[str, float]:
    """One SGD step on one batch (rate already set): the loss and each of its terms.

    Raises:
        FloatingPointError: the loss is NaN or infinite.
    """
    losses = net(*_to(ctx, images, targets))
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
    return {key: float(value.detach()) for key, value in {"loss": loss, **losses}.items()}


def train_detector(
    model: nn.Module,
    images: voc_data.TrainImages,
    dc: DetectConfig,
    ctx: Context,
    *,
    seed: int,
    checkpoints: str,
    plan: dict[str, Any],
    progress: bool = False,
) -> Trained:
    """Train ``model`` in place for ``dc.iterations``, resuming from the latest checkpoint in ``checkpoints``.

    Args:
        model: the detector (on ``ctx.device``); DDP-wrapped here inside a process group.
        images: the training set.
        dc: the ``detect`` config (schedule, batch, checkpoints, sizes).
        ctx: this process (see :func:`synk8s.distributed.current`).
        seed: seed of the data order; the global torch RNG must be seeded by the caller.
        checkpoints: folder URI of the checkpoints.
        plan: JSON-able description of the run; a checkpoint with another one is refused.
        progress: show a progress bar (rank 0).

    Raises:
        UsageError: the checkpoint folder belongs to a different run.
        FloatingPointError: the loss became NaN or infinite.
    """
    from tqdm.auto import tqdm

    set_image_sizes(model, dc.train_sizes)
    optimizer = torch.optim.SGD(parameter_groups(model, dc), lr=dc.lr, momentum=dc.momentum)
    start, curve, sums, count = 0, [], {}, 0  # sums: of the losses since the last curve entry
    saved = _resume(checkpoints, ctx, model, optimizer, plan)
    if saved is not None:
        start, curve = saved["step"], list(saved["curve"])
        sums, count = dict(saved["window"]["sums"]), int(saved["window"]["count"])
        log.info("resuming from the checkpoint at iteration %d of %d", start, dc.iterations)
    if ctx.in_group and ctx.cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    if ctx.in_group:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.cuda else None)
    net.train()
    bar = tqdm(total=dc.iterations, initial=start, desc="detect", unit="it", disable=not (progress and ctx.is_main))
    for iteration, (batch_images, targets) in zip(
        range(start, dc.iterations), _loader(images, dc, ctx, seed, start, dc.iterations)
    ):
        lr = dc.lr * lr_factor(iteration, dc)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for key, value in _step(net, optimizer, ctx, batch_images, targets, iteration).items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        done = iteration + 1
        if done % dc.log_every == 0 or done == dc.iterations:
            curve.append({"iteration": done, "lr": lr, **{k: v / count for k, v in sums.items()}})
            bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
            sums, count = {}, 0
        if done % dc.checkpoint_every == 0 or done == dc.iterations:
            rng = training.rng_states(ctx)  # a collective: every rank takes part, rank 0 writes
            if ctx.is_main:
                state = {"plan": plan, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
                         "curve": curve, "window": {"sums": sums, "count": count}}  # fmt: skip
                log.info("checkpoint at iteration %d: %s", done, training.save_checkpoint(checkpoints, state, done))
        bar.update(1)
    bar.close()
    return Trained(resumed_from=None if saved is None else start, curve=curve)


def precise_bn(model: nn.Module, images: voc_data.TrainImages, dc: DetectConfig, ctx: Context, *, seed: int) -> int:
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
        for batch_images, targets in _loader(images, dc, ctx, seed, dc.iterations, stop):
            model(*_to(ctx, batch_images, targets))
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    return len(norms)


def predict(
    model: nn.Module,
    records: Sequence[voc_data.VOCImage],
    dc: DetectConfig,
    ctx: Context,
    *,
    progress: bool = False,
) -> list[Detections]:
    """Detections on every image of ``records`` (at ``dc.test_size``), in VOC pixel coordinates.

    Each process runs every ``world_size``-th image; the results are gathered so every process returns
    the full list, in ``records`` order. Labels are 0-based VOC classes.
    """
    from tqdm.auto import tqdm

    set_image_sizes(model, (dc.test_size,))
    model.eval()
    mine = list(range(ctx.rank, len(records), ctx.world_size))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(voc_data.EvalImages(records), mine),
        batch_size=1,
        collate_fn=voc_data.collate,
        num_workers=dc.num_workers,
    )
    found: list[tuple[int, Detections]] = []
    with torch.no_grad():
        for batch_images, indices in tqdm(loader, desc="test", unit="img", disable=not (progress and ctx.is_main)):
            outputs = model([im.to(ctx.device) for im in batch_images])
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
    if ctx.in_group:
        shards: list = [None] * ctx.world_size
        torch.distributed.all_gather_object(shards, found)
        found = [item for shard in shards for item in shard]
    found.sort(key=lambda item: item[0])
    return [detections for _, detections in found]
