"""Classifier tuning (CT): a linear head on frozen CLIP image features of the kept synthetic images.

The head starts as the zero-shot text head (logit_scale x class text embeddings, bias 0) and is
trained with cross-entropy (CE) or with the soft-target mix ``sl * SCE + (1 - sl) * CE`` whose
targets are ``softmax(teacher / T)`` of the CLIP filter's teacher logits. AdamW, cosine schedule
with optional linear warmup (per step), gradient clipping. A stratified, seeded share
(``tune.val_fraction``) of the kept synthetic images is held out; the epoch with the best
validation top-1 (epoch 0 = the untouched text head) is the one saved. The real test set is never
read here.

    from synk8s import config
    from synk8s.stages.zeroshot import tune
    cfg = config.load("tiny")
    result = tune.run(cfg, features="runs/x/features", selection="runs/x/filter", out="runs/x/tune")

Outputs under ``out``: ``head.safetensors`` (``weight`` (K, D), ``bias`` (K,); metadata key
``synk8s`` holds JSON with the config digest, the chosen epoch and the tune config), ``curve.json``,
``split.json``, ``manifest.json``.

With ``leakage.drop`` on, the stage also reads the leakage stage's flags and leaves the flagged
synthetic images out of both training and validation; ``split.json`` lists the rows it used and the
manifest the number left out (``leaked_dropped``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.errors import IntegrityError, MissingDataError, UsageError
from synk8s.runs import read_manifest, write_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.zeroshot.feature_sets import load_feature_set, load_text_head, read_tensors
from synk8s.stages.zeroshot.filter import load_selection
from synk8s.stages.zeroshot.tune_inputs import check_inputs, drop_leaked
from synk8s.stagetable.spec import Resources, StageSpec, When

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

HEAD_METADATA_KEY = "synk8s"  # head.safetensors metadata: JSON with config digest, chosen epoch, tune config


class TuneResult(BaseModel):
    """What :func:`run` wrote and how the tuning went.

    Attributes:
        head: URI of ``head.safetensors``.
        curve: URI of ``curve.json``.
        split: URI of ``split.json``.
        manifest: URI of ``manifest.json``.
        train: synthetic images trained on.
        val: synthetic images held out for model selection.
        epochs: epochs trained.
        best_epoch: epoch whose head was saved (0 = the text head itself).
        best_val_top1: validation top-1 of the saved head, in [0, 1].
        text_head_val_top1: validation top-1 of the zero-shot text head, in [0, 1].
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    head: str
    curve: str
    split: str
    manifest: str
    train: int
    val: int
    epochs: int
    best_epoch: int
    best_val_top1: float
    text_head_val_top1: float
    seconds: float


@dataclass(frozen=True)
class Fit:
    """A trained head and its learning curve (see :func:`fit_head`).

    Attributes:
        weight: (K, D) float32 CPU weight of the chosen epoch.
        bias: (K,) float32 CPU bias of the chosen epoch.
        best_epoch: chosen epoch, 0 meaning the initial head.
        curve: one dict per epoch 0..E: ``epoch``, ``train_loss``, ``val_top1``, ``lr``, ``grad_norm``
            (the largest pre-clip gradient norm of the epoch); epoch 0 has no loss, lr or norm.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    best_epoch: int
    curve: list[dict[str, Any]]


# ----------------------------------------------------------------------------- output


def load_head(head: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tuned head in a tune output folder, and what its metadata records.

    Returns:
        The float32 tensors ``weight`` (K, D) and ``bias`` (K,), and the metadata: config digest,
        chosen epoch, its validation top-1 and the tune config.

    Raises:
        IntegrityError: ``head.safetensors`` differs from what tune wrote (damaged or truncated).
    """
    recorded = read_manifest(head, "tune").get("outputs", {}).get("head.safetensors")
    try:  # the bytes are checked against the SHA-256 recorded when tune wrote them
        tensors, metadata = read_tensors(storage.join(head, "head.safetensors"), sha256=recorded)
    except IntegrityError as error:
        raise IntegrityError(f"{error}; rerun `synk8s stage tune` to write it again") from None
    return tensors, json.loads(metadata[HEAD_METADATA_KEY])


def load_val_rows(head: str) -> list[int]:
    """The synthetic rows (features order) a tune output folder held out for validation (``split.json``)."""
    read_manifest(head, "tune")
    return [int(row) for row in storage.get_json(storage.join(head, "split.json"))["val"]]


# ----------------------------------------------------------------------------- split and training


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions ``0..N-1`` into train and validation, class by class.

    A class with n >= 2 images gives ``max(1, round(val_fraction * n))`` of them (at most n - 1) to
    validation, drawn with a generator seeded by ``seed``; a class with one image stays in train.

    Args:
        labels: (N,) int64 class of each position.
        val_fraction: share held out per class, in (0, 1).
        seed: seed of the draw.

    Returns:
        (train positions, val positions), each sorted ascending, int64.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose arg-max logit is the label, in [0, 1]; logits (N, K), labels (N,)."""
    return float((logits.argmax(dim=-1) == labels).float().mean())


def fit_head(
    weight: torch.Tensor,
    bias: torch.Tensor,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    warmup_epochs: int = 0,
    grad_clip: float | None = None,
    soft_weight: float = 0.0,
    temperature: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> Fit:
    """Train a linear head from ``(weight, bias)`` and keep the epoch with the best validation top-1.

    Args:
        weight: (K, D) initial weight.
        bias: (K,) initial bias.
        train: (N, D) features, (N,) int64 labels, (N, K) teacher logits or None (needed when
            ``soft_weight`` > 0).
        val: (V, D) features and (V,) labels used only to pick the epoch.
        epochs: passes over ``train``.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        batch_size: images per optimiser step; the last batch of an epoch may be smaller.
        warmup_epochs: epochs of linear warmup before the cosine decay (0 = none).
        grad_clip: largest global gradient norm (None = no clipping).
        soft_weight: sl of :func:`synk8s.optim.tuning_loss` (0 = plain CE).
        temperature: T of the soft targets.
        seed: seed of the per-epoch shuffles.
        device: where the features and head live during training (``cpu``, ``cuda``).
        progress: show a tqdm bar over epochs.
    """
    import torch
    from tqdm.auto import tqdm

    from synk8s import optim

    x, y, teacher = (t.to(device) if t is not None else None for t in train)
    x_val, y_val = (t.to(device) for t in val)
    head = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(device)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)

    steps_per_epoch = -(-len(y) // batch_size)
    opt = optim.adamw(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = optim.cosine_schedule(
        opt, total_steps=epochs * steps_per_epoch, warmup_steps=warmup_epochs * steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(seed)

    def val_top1() -> float:
        with torch.no_grad():
            return top1(head(x_val), y_val)

    best_top1 = val_top1()
    best_epoch, best_state = 0, {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    curve: list[dict[str, Any]] = [
        {"epoch": 0, "train_loss": None, "val_top1": best_top1, "lr": None, "grad_norm": None}
    ]
    bar = tqdm(range(1, epochs + 1), desc="tune", unit="epoch", disable=not progress)
    loss_of = functools.partial(optim.tuning_loss, soft_weight=soft_weight, temperature=temperature)
    for epoch in bar:
        order = torch.randperm(len(y), generator=shuffle).to(device)
        loss_sum, max_norm, lr_now = _epoch(head, opt, sched, (x, y, teacher), order, batch_size, loss_of, grad_clip)
        acc = val_top1()
        curve.append(
            {"epoch": epoch, "train_loss": loss_sum / len(y), "val_top1": acc, "lr": lr_now, "grad_norm": max_norm}
        )
        if acc > best_top1:
            best_top1, best_epoch = acc, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
        bar.set_postfix(loss=f"{loss_sum / len(y):.4f}", val=f"{acc:.3f}")
    return Fit(best_state["weight"], best_state["bias"], best_epoch, curve)


def _epoch(
    head: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    train: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    order: torch.Tensor,
    batch_size: int,
    loss_of: Callable[..., torch.Tensor],
    grad_clip: float | None,
) -> tuple[float, float, float]:
    """One pass over ``train`` in ``order``: (summed loss, largest gradient norm, last learning rate)."""
    from synk8s import optim

    x, y, teacher = train
    loss_sum, max_norm, lr_now = 0.0, 0.0, 0.0
    for start in range(0, len(y), batch_size):
        idx = order[start : start + batch_size]
        loss = loss_of(head(x[idx]), y[idx], teacher[idx] if teacher is not None else None)  # logits (B, K)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr_now = opt.param_groups[0]["lr"]
        max_norm = max(max_norm, optim.clip_and_step(opt, head.parameters(), max_norm=grad_clip))
        sched.step()
        loss_sum += loss.item() * len(idx)
    return loss_sum, max_norm, lr_now


# ----------------------------------------------------------------------------- stage


def run(
    cfg: ExperimentConfig,
    *,
    features: str,
    selection: str,
    out: str,
    leakage: str | None = None,
    progress: bool = True,
) -> TuneResult:
    """Tune the classifier head on the kept synthetic images and save the validation-best epoch.

    Args:
        cfg: experiment config; ``tune.*``, ``seed`` and ``device`` are used.
        features: output folder URI of the features stage (synthetic features, text head).
        selection: output folder URI of the filter stage (kept rows, teacher logits).
        out: output folder URI of this stage.
        leakage: output folder URI of the leakage stage, read while ``leakage.drop`` is on: the
            synthetic images it flags as near-duplicates of test images are left out (None: none are).
        progress: show a progress bar over epochs.

    Raises:
        MissingDataError: an upstream output is missing, or the selection does not match the features.
    """
    started = time.perf_counter()
    tc = cfg.tune
    if tc.trainable != "head":
        raise UsageError(
            f"tune.trainable={tc.trainable} trains the image tower, which only few-shot tuning does "
            "(synk8s.stages.fewshot.tune); this stage tunes the head on cached features: set tune.trainable=head"
        )
    weight, bias, x, y, kept, teacher, leaked = _inputs(features, selection, leakage)
    split_seed = derive_seed(cfg.seed, "tune", "split")
    train_pos, val_pos = _split(y, tc.val_fraction, split_seed)
    device, fit = _train(cfg, (weight, bias), (x, y, teacher), (train_pos, val_pos), progress)
    split = {
        "seed": split_seed,
        "val_fraction": tc.val_fraction,
        "train": kept[train_pos].tolist(),
        "val": kept[val_pos].tolist(),
    }
    head_uri, curve_uri, split_uri = _write_outputs(cfg, out, fit, split)
    seconds = time.perf_counter() - started
    best = fit.curve[fit.best_epoch]
    counts = {"train": len(train_pos), "val": len(val_pos), "epochs": tc.epochs, "best_epoch": fit.best_epoch}
    manifest_uri = write_manifest(
        out,
        "tune",
        cfg,
        counts=counts,
        inputs={"features": features, "selection": selection, **({"leakage": leakage} if leakage else {})},
        outputs={"head": head_uri, "curve": curve_uri, "split": split_uri},
        **({"leaked_dropped": leaked} if leakage is not None else {}),
        text_head_val_top1=fit.curve[0]["val_top1"],
        best_val_top1=best["val_top1"],
        device=device,
        seconds=seconds,
    )
    return TuneResult(
        head=head_uri,
        curve=curve_uri,
        split=split_uri,
        manifest=manifest_uri,
        train=len(train_pos),
        val=len(val_pos),
        epochs=tc.epochs,
        best_epoch=fit.best_epoch,
        best_val_top1=best["val_top1"],
        text_head_val_top1=fit.curve[0]["val_top1"],
        seconds=seconds,
    )


def _inputs(
    features: str, selection: str, leakage: str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Text head, kept synthetic features, labels, rows and teacher logits, and the leaked rows left out."""
    feats, labels = load_feature_set(features, "synthetic")  # (N, D), (N,)
    weight, bias = load_text_head(features)  # (K, D), (K,)
    sel = load_selection(selection)
    kept, teacher = sel["kept"].long(), sel["teacher_logits"].float()  # (M,), (M, K)
    check_inputs(feats, labels, weight, kept, teacher, features=features, selection=selection)
    leaked = 0
    if leakage is not None:
        kept, teacher, leaked = drop_leaked(kept, teacher, leakage)
    return weight, bias, feats[kept], labels[kept], kept, teacher, leaked  # x (M, D), y (M,)


def _split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, val) positions of the kept images; fails when nothing is left to validate on."""
    train_pos, val_pos = stratified_split(labels, val_fraction, seed)
    if len(val_pos) == 0:
        raise MissingDataError(
            f"no class has 2 or more kept synthetic images, so tune.val_fraction={val_fraction} "
            "leaves nothing to validate on; generate more images per class"
        )
    return train_pos, val_pos


def _train(
    cfg: ExperimentConfig,
    head: tuple[torch.Tensor, torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    positions: tuple[torch.Tensor, torch.Tensor],
    progress: bool,
) -> tuple[str, Fit]:
    """Fit the head from ``head`` on the train positions of ``data`` on the configured device: (device, fit)."""
    from synk8s.models.device import resolve_device

    tc = cfg.tune
    (x, y, teacher), (train_pos, val_pos) = data, positions
    device = resolve_device(cfg.device)
    soft_weight = tc.soft_weight if tc.loss == "sce" else 0.0
    logger.info("tuning on %d images, validating on %d, %s, device %s", len(train_pos), len(val_pos), tc.loss, device)
    fit = fit_head(
        *head,
        (x[train_pos], y[train_pos], teacher[train_pos]),
        (x[val_pos], y[val_pos]),
        epochs=tc.epochs,
        lr=tc.lr,
        weight_decay=tc.weight_decay,
        batch_size=tc.batch_size,
        warmup_epochs=tc.warmup_epochs,
        grad_clip=tc.grad_clip,
        soft_weight=soft_weight,
        temperature=tc.temperature,
        seed=derive_seed(cfg.seed, "tune", "order"),
        device=device,
        progress=progress,
    )
    return device, fit


def _write_outputs(cfg: ExperimentConfig, out: str, fit: Fit, split: dict[str, Any]) -> tuple[str, str, str]:
    """Write ``head.safetensors``, ``curve.json`` and ``split.json`` under ``out``; return their URIs."""
    from safetensors.torch import save

    about = {
        "config_digest": cfg.digest(),
        "dataset": cfg.dataset.name,
        "clip": cfg.models.clip,
        "best_epoch": fit.best_epoch,
        "best_val_top1": fit.curve[fit.best_epoch]["val_top1"],
        "tune": cfg.tune.model_dump(mode="json"),
    }
    # One metadata key holding canonical JSON: safetensors writes several keys in arbitrary order.
    metadata = {HEAD_METADATA_KEY: json.dumps(about, sort_keys=True, separators=(",", ":"))}
    head_uri = storage.join(out, "head.safetensors")
    storage.put_bytes(head_uri, save({"weight": fit.weight.contiguous(), "bias": fit.bias.contiguous()}, metadata))
    curve_uri = storage.join(out, "curve.json")
    storage.put_json(curve_uri, {"best_epoch": fit.best_epoch, "epochs": fit.curve})
    split_uri = storage.join(out, "split.json")
    storage.put_json(split_uri, split)
    return head_uri, curve_uri, split_uri


# Tuning holds every kept feature in memory: 200k x 1024 float32 is 0.8 GB for CIFAR-100 at 2000
# images per class. A linear head on cached features needs no GPU.
STAGE = StageSpec(
    name="tune",
    run=run,
    help="Classifier tuning (CT) of a linear head on frozen CLIP features (CE or SCE).",
    inputs={"features": "features", "selection": "filter", "leakage": When("leakage.drop", "leakage")},
    depends=("tune",),
    resources=Resources("4", "8", "8Gi", "16Gi"),
    outputs={"head.safetensors": load_head, "curve.json": None, "split.json": None},
    artifact="Model",
)
