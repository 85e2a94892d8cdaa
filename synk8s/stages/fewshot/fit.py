"""The few-shot training loop: real only (CT w. init), mix, or phase-wise (Table 7); last epoch or validation selection.

A run is a list of phases (:func:`phases`):

* ``real`` (CT w. init, and the real phase of a phase-wise schedule): ``fewshot.real_epochs`` passes over
  the N x M real shots in shuffled batches of ``fewshot.real_batch_size``; loss CE.
* ``syn``: ``fewshot.epochs`` passes over the synthetic training part in batches of
  ``fewshot.synthetic_batch_size``; loss ``sl x SCE + (1 - sl) x CE`` (``tune.loss``, see :mod:`synk8s.optim`).
* ``mix``: ``fewshot.epochs`` passes over the synthetic part; every step also takes the next real batch
  from an endless stream of reshuffled passes over the shots (the real loader cycles). One forward pass
  over the concatenated batch; loss ``w_real x CE(real) + w_syn x (SCE or CE)(synthetic)``.

Each phase has its own AdamW and per-step cosine schedule (``tune.warmup_epochs`` of warmup). A batch
of a pass is never larger than the set; the last batch of a pass may be smaller. A real batch of the
cycling stream always holds ``min(real_batch_size, N x M)`` images and may straddle two passes.

Without a validation callback the loop keeps the state after the last epoch (the paper's fixed
schedule). With one (a real or synthetic validation set chosen by ``fewshot.select``; the test set
is never seen here) the candidates are the states after each epoch of the final phase, and the best
validation top-1 wins, ties to the earlier epoch. The state before the final phase (for one phase:
the initial head, epoch 0) is validated and recorded in the curve but never selected, so a tie can
not fall back to the untrained head. Phase-wise, the first phase always runs in full.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synk8s.errors import UsageError

if TYPE_CHECKING:
    import torch

SCHEDULES = ("mix", "syn-then-real", "real-then-syn")


@dataclass(frozen=True)
class Source:
    """A labelled training set the loop draws batches from.

    Attributes:
        size: number of items.
        fetch: positions (B,) int64 -> (inputs (B, ...), labels (B,) int64, teacher logits (B, K) or None).
    """

    size: int
    fetch: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class Phase:
    """One training phase: ``kind`` is ``real``, ``syn`` or ``mix``; ``epochs`` passes."""

    kind: str
    epochs: int


@dataclass(frozen=True)
class Hyper:
    """Optimisation settings shared by every phase.

    Attributes:
        lr: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        real_batch_size: real images per step.
        syn_batch_size: synthetic images per step.
        w_real: weight of the real loss in ``mix``.
        w_syn: weight of the synthetic loss in ``mix``.
        soft_weight: sl of the synthetic loss (0 = CE).
        temperature: T of the soft targets.
        grad_clip: largest global gradient norm, None = no clipping.
        warmup_epochs: epochs of linear warmup at the start of each phase.
    """

    lr: float
    weight_decay: float
    real_batch_size: int
    syn_batch_size: int
    w_real: float = 1.0
    w_syn: float = 1.0
    soft_weight: float = 0.0
    temperature: float = 1.0
    grad_clip: float | None = None
    warmup_epochs: int = 0


@dataclass(frozen=True)
class Outcome:
    """The selected state and the learning curve.

    Attributes:
        state: tensors of the selected state (from the ``snapshot`` callback), on CPU.
        best_epoch: global epoch of the selected state (always after training: at least 1).
        best_val_top1: its validation top-1 in [0, 1]; None without validation (the last epoch).
        curve: one dict per evaluated point: ``epoch``, ``phase``, ``kind``, ``train_loss``, ``val_top1``,
            ``lr``, ``grad_norm``, ``real_images``, ``syn_images`` (images fed in that epoch).
    """

    state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_top1: float | None
    curve: list[dict[str, Any]]


def phases(schedule: str | None, *, epochs: int, real_epochs: int) -> list[Phase]:
    """The phases of a schedule; None means real data only (CT w. init)."""
    if schedule is None:
        return [Phase("real", real_epochs)]
    by_name = {
        "mix": [Phase("mix", epochs)],
        "syn-then-real": [Phase("syn", epochs), Phase("real", real_epochs)],
        "real-then-syn": [Phase("real", real_epochs), Phase("syn", epochs)],
    }
    if schedule not in by_name:
        raise UsageError(f"fewshot.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return by_name[schedule]


def pass_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One shuffled pass over positions ``0..n-1`` in batches of ``batch_size`` (the last may be smaller)."""
    import torch

    order = torch.randperm(n, generator=generator)
    return list(order.split(batch_size))


def cycling_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of ``min(batch_size, n)`` positions taken in turn from reshuffled passes over ``0..n-1``."""
    import torch

    size = min(batch_size, n)
    buffer = torch.zeros(0, dtype=torch.int64)
    while True:
        while len(buffer) < size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:size]
        buffer = buffer[size:]


def fit(
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    *,
    real: Source,
    syn: Source | None,
    plan: list[Phase],
    hyper: Hyper,
    validate: Callable[[], float] | None,
    snapshot: Callable[[], dict[str, torch.Tensor]],
    seed: int,
    progress: bool = False,
) -> Outcome:
    """Train ``params`` of ``model`` through the phases of ``plan``; keep the last or the validation-best state.

    Args:
        model: maps a batch of inputs to (B, K) logits; ``model.train()`` is called before each epoch
            and ``model.eval()`` before each validation, so a model can choose its BN behaviour there.
        params: the parameters the optimiser updates.
        real: the real shots.
        syn: the synthetic training part; required by ``syn`` and ``mix`` phases.
        plan: from :func:`phases`.
        hyper: optimisation settings.
        validate: validation top-1 of the current model, in [0, 1]; None keeps the last epoch's state.
        snapshot: copy of the state to keep (e.g. the head's tensors), taken on CPU.
        seed: seed of every shuffle (one generator per data set).
        progress: show a tqdm bar over epochs.
    """
    import torch
    from tqdm.auto import tqdm

    if syn is None and any(p.kind != "real" for p in plan):
        raise ValueError("syn and mix phases need a synthetic source")
    real_gen = torch.Generator().manual_seed(seed)
    syn_gen = torch.Generator().manual_seed(seed + 1)
    real_stream = cycling_batches(real.size, hyper.real_batch_size, real_gen)
    curve: list[dict[str, Any]] = []
    best: tuple[float | None, int, dict[str, torch.Tensor]] | None = None
    epoch = 0
    bar = tqdm(total=sum(p.epochs for p in plan), desc="few-shot tune", unit="epoch", disable=not progress)
    for index, phase in enumerate(plan):
        final = index == len(plan) - 1
        if final and validate is not None:
            model.eval()
            curve.append(_point(epoch, index, phase.kind, None, validate(), None, None, 0, 0))
        opt, sched = _optimiser(params, phase, hyper, real.size, syn.size if syn else 0)
        for _ in range(phase.epochs):
            model.train()
            loss, lr_now, norm, n_real, n_syn = _epoch(
                model, params, opt, sched, phase, hyper, real, syn, real_gen, syn_gen, real_stream
            )
            epoch += 1
            acc = None
            if final and validate is not None:
                model.eval()
                acc = validate()
                if best is None or acc > best[0]:
                    best = (acc, epoch, snapshot())
            curve.append(_point(epoch, index, phase.kind, loss, acc, lr_now, norm, n_real, n_syn))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", val="-" if acc is None else f"{acc:.3f}")
    bar.close()
    if validate is None:
        best = (None, epoch, snapshot())
    assert best is not None  # the final phase has at least one epoch
    return Outcome(state=best[2], best_epoch=best[1], best_val_top1=best[0], curve=curve)


def _point(epoch, phase, kind, loss, acc, lr, norm, real_images, syn_images) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "phase": phase,
        "kind": kind,
        "train_loss": loss,
        "val_top1": acc,
        "lr": lr,
        "grad_norm": norm,
        "real_images": real_images,
        "syn_images": syn_images,
    }


def _steps_per_epoch(phase: Phase, hyper: Hyper, n_real: int, n_syn: int) -> int:
    if phase.kind == "real":
        return -(-n_real // hyper.real_batch_size)
    return -(-n_syn // hyper.syn_batch_size)


def _optimiser(params, phase: Phase, hyper: Hyper, n_real: int, n_syn: int):
    from synk8s import optim

    if hyper.warmup_epochs >= phase.epochs:
        raise UsageError(
            f"tune.warmup_epochs={hyper.warmup_epochs} leaves nothing of the {phase.epochs}-epoch {phase.kind} phase; "
            "lower it or raise fewshot.epochs / fewshot.real_epochs"
        )
    steps = _steps_per_epoch(phase, hyper, n_real, n_syn)
    opt = optim.adamw(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
    return opt, optim.cosine_schedule(opt, total_steps=phase.epochs * steps, warmup_steps=hyper.warmup_epochs * steps)


def _epoch(model, params, opt, sched, phase, hyper, real, syn, real_gen, syn_gen, real_stream):
    """One pass of a phase: returns (mean loss per image, last lr, largest pre-clip grad norm, real, syn images)."""
    import torch
    import torch.nn.functional as F

    from synk8s import optim

    if phase.kind == "real":
        batches = [(idx, None) for idx in pass_batches(real.size, hyper.real_batch_size, real_gen)]
    elif phase.kind == "syn":
        batches = [(None, idx) for idx in pass_batches(syn.size, hyper.syn_batch_size, syn_gen)]
    else:
        batches = [(next(real_stream), idx) for idx in pass_batches(syn.size, hyper.syn_batch_size, syn_gen)]
    loss_sum, max_norm, lr_now, seen_real, seen_syn = 0.0, 0.0, 0.0, 0, 0
    for real_idx, syn_idx in batches:
        inputs, parts = [], []
        if real_idx is not None:
            x_real, y_real, _ = real.fetch(real_idx)
            inputs.append(x_real)
            parts.append(len(real_idx))
        if syn_idx is not None:
            x_syn, y_syn, t_syn = syn.fetch(syn_idx)
            inputs.append(x_syn)
            parts.append(len(syn_idx))
        logits = model(torch.cat(inputs)).split(parts)  # (B_real + B_syn, K) -> per source
        loss = logits[0].new_zeros(())
        if real_idx is not None:
            weight = hyper.w_real if phase.kind == "mix" else 1.0
            loss = loss + weight * F.cross_entropy(logits[0], y_real.to(logits[0].device))
        if syn_idx is not None:
            weight = hyper.w_syn if phase.kind == "mix" else 1.0
            syn_logits = logits[-1]
            teacher = t_syn.to(syn_logits.device) if t_syn is not None else None
            loss = loss + weight * optim.tuning_loss(
                syn_logits, y_syn.to(syn_logits.device), teacher,
                soft_weight=hyper.soft_weight, temperature=hyper.temperature,
            )  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr_now = opt.param_groups[0]["lr"]
        max_norm = max(max_norm, optim.clip_and_step(opt, params, max_norm=hyper.grad_clip))
        sched.step()
        size = sum(parts)
        loss_sum += loss.item() * size
        seen_real += len(real_idx) if real_idx is not None else 0
        seen_syn += len(syn_idx) if syn_idx is not None else 0
    return loss_sum / (seen_real + seen_syn), lr_now, max_norm, seen_real, seen_syn
