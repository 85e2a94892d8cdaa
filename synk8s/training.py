"""Pieces the training stages share: determinism, SGD with a per-step cosine rate, the training step, pooled
features, and atomic training-state checkpoints in the store.

Every training stage (pre-training, fine-tuning and its scratch rows, detection) checkpoints through
:func:`save_checkpoint` and resumes through :func:`load_checkpoint`: ``checkpoint.NNNNNNN.pt`` files
listed with their SHA-256 in ``checkpoint.json`` (see :mod:`synk8s.checkpoint_files`). A checkpoint
holds everything a killed run needs to go on as if it had never stopped: ``step`` (the step training
resumes at: an optimiser step, a detection iteration or a fine-tuning epoch), ``plan`` (what run it
belongs to; a stage refuses another one's), the ``model`` and ``optimizer`` state dicts, ``rng``
(every process's random state, :func:`rng_states`) where the stage restores it, and the stage's own
records. Rank 0 writes it: the previous one is kept until the new one is written and verified, and a
damaged one is set aside on load (the run goes on from the previous one, or from the start).

Setting ``SYNK8S_EXIT_AFTER_CHECKPOINT=<step>`` makes the process exit hard (``os._exit(75)``, no clean-up)
right after writing the checkpoint of that step: the kill-and-resume tests use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from synk8s import checkpoint_files
from synk8s.optim import cosine_factor

if TYPE_CHECKING:
    from synk8s.distributed import Context

EXIT_ENV = "SYNK8S_EXIT_AFTER_CHECKPOINT"
EXIT_CODE = 75


def _set_deterministic(mode: bool) -> None:
    """Switch torch's deterministic kernels on or off for eager execution.

    ``torch.use_deterministic_algorithms`` makes the same switch and also sets the flag of
    ``torch.compile``'s inductor, importing that whole package first: seconds in every fresh
    training process (each kfp.local task is one), for a compiler no stage uses.
    """
    torch._C._set_deterministic_algorithms(mode)


@contextmanager
def deterministic(seed: int, device: str) -> Iterator[None]:
    """Seed torch and, on CPU, insist on deterministic kernels inside the block (same config -> same weights)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    if device == "cpu":
        _set_deterministic(True)
    try:
        yield
    finally:
        _set_deterministic(before)


def sgd(model: nn.Module, *, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with momentum and weight decay on the parameters that need gradients; the rate is set per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=0.0, momentum=momentum, weight_decay=weight_decay)


def scaled_lr(base_per_256: float, batch_size: int) -> float:
    """The linear scaling rule: ``base x batch / 256`` (Goyal et al. 2017)."""
    return base_per_256 * batch_size / 256


def set_lr(optimizer: torch.optim.Optimizer, peak: float, step: int, total_steps: int) -> float:
    """Set the rate of optimiser step ``step`` on a half-cosine from ``peak`` to 0; return it."""
    lr = peak * cosine_factor(step, total_steps=total_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    views: torch.Tensor,
    labels: torch.Tensor,
    *,
    moco: bool,
    device: str,
) -> float:
    """One optimiser step on one batch; returns the loss.

    Args:
        model: the DDP-wrapped model (gradients are averaged over the ranks in ``backward``).
        optimizer: its optimiser, rate already set.
        views: (B, V, 3, H, W) augmented views; MoCo uses views 0 and 1 as query and key.
        labels: (B,) classes (supervised only).
        moco: MoCo's InfoNCE loss instead of cross-entropy over the classes.
        device: where the model is.
    """
    views = views.to(device, non_blocking=True)
    if moco:
        logits, targets = model(views[:, 0], views[:, 1])  # (B, 1 + K), (B,)
    else:
        logits, targets = model(views[:, 0]), labels.to(device)  # (B, num_classes), (B,)
    loss = F.cross_entropy(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@contextmanager
def pooled(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the pooled trunk features, (B, D), of each forward pass of a ResNet (its ``avgpool`` output)."""
    captured: list[torch.Tensor] = []
    handle = model.avgpool.register_forward_hook(lambda _m, _i, output: captured.append(torch.flatten(output, 1)))
    try:
        yield captured
    finally:
        handle.remove()


def save_checkpoint(out: str, state: dict[str, Any], step: int) -> str:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) and ``step`` as the checkpoint of ``step`` in ``out``.

    Returns the checkpoint's URI. Exits the process hard afterwards when ``SYNK8S_EXIT_AFTER_CHECKPOINT``
    equals ``step``.
    """
    uri = checkpoint_files.save(out, step, {**state, "step": step})
    if os.environ.get(EXIT_ENV) == str(step):
        os._exit(EXIT_CODE)
    return uri


def load_checkpoint(out: str, *, writer: bool = True) -> dict[str, Any] | None:
    """The state of the newest checkpoint in ``out`` that verifies, or None when there is none.

    A damaged checkpoint is set aside with a warning when ``writer`` (see :func:`synk8s.checkpoint_files.load`).
    """
    return checkpoint_files.load(out, writer=writer)


def rng_states(ctx: Context) -> list[dict[str, torch.Tensor]]:
    """Every process's random state (CPU, and CUDA on a GPU), in rank order; every rank of a group calls it."""
    state = {"cpu": torch.get_rng_state()}
    if ctx.cuda:
        state["cuda"] = torch.cuda.get_rng_state(ctx.device)
    if not ctx.in_group:
        return [state]
    states: list[Any] = [None] * ctx.world_size
    torch.distributed.all_gather_object(states, state)
    return states


def restore_rng(ctx: Context, states: list[dict[str, torch.Tensor]]) -> bool:
    """Set this process's random state from :func:`rng_states`' list; False (nothing set) for another world size."""
    if len(states) != ctx.world_size:
        return False
    mine = states[ctx.rank]
    torch.set_rng_state(mine["cpu"])
    if ctx.cuda and "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], ctx.device)
    return True
