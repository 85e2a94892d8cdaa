"""Few-shot classifier tuning: CT w. init (real shots only) and CT w. Syn (real + synthetic), Table 7's schedules.

Both heads start from the zero-shot text head (logit_scale x class text embeddings, bias 0) and
train with :func:`synk8s.stages.fewshot.fit.fit`: CT w. init on the N x M real shots alone, CT w. Syn
with ``fewshot.schedule`` (``mix``, ``syn-then-real``, ``real-then-syn``). Which synthetic data that is
(``fewshot.strategy``) is decided by the folders passed in: B = generate + filter, RF = generate +
filter + realfilter, RG = guided + filter_guided (CF only with ``fewshot.rg_filter``); this stage
reads whichever ``selection.safetensors`` it gets.

CT w. init reads real images only. Model selection follows ``fewshot.select`` (:func:`head_rules`):

* ``last`` (both profiles, the paper's fixed schedule): each head is the state after its last epoch;
  every kept synthetic image trains CT w. Syn.
* ``real-val``: both heads are chosen on the split's real validation set (CoOp's ``min(M, 4)`` images
  per class, disjoint from the shots, saved in ``split.json`` by the split stage).
* ``syn-val``: a stratified, seeded share (``tune.val_fraction``) of the kept synthetic images is held
  out to choose CT w. Syn; CT w. init, which must not depend on synthetic images, keeps its last epoch.

With selection, the candidates are the epochs of the final phase (never the untrained head). Every
real shot trains under every rule. The test set is not read here (its features are listed by the
features stage but only :mod:`synk8s.stages.fewshot.evaluate` loads them).

With ``tune.trainable: head`` and ``fewshot.freeze_bn: true`` (the paper's setting) the encoder is fixed
in eval mode, so training runs on cached CLIP features. Any other setting trains on images through the
tower (:func:`synk8s.stages.fewshot.fit_images.fit_on_images`), and ``results.json`` says ``"inputs": "images"``.

    result = fewshot_tune.run(cfg, split="runs/x/split", features="runs/x/features",
                              selection="runs/x/filter", images="runs/x/images", out="runs/x/fewshot-tune")

Outputs under ``out``: ``ct_init.safetensors`` and ``ct_syn.safetensors`` (``weight`` (K, D), ``bias``
(K,), and on the image path the tower's trained tensors as ``visual.*``; metadata key ``synk8s``: JSON
with the chosen epoch, its rule and settings), ``curve.json``, ``val.json`` (the rule, synthetic rows
trained on and held out), ``results.json`` (``selection``: the rule and each head's epoch; validation
results of both heads, the exact share of parameters trained), ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError, UsageError
from synk8s.runs import write_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.fewshot.heads import VARIANTS, Inputs, head_rules, uses_images
from synk8s.stagetable.spec import Choice, Resources, StageSpec

if TYPE_CHECKING:
    import torch

    from synk8s.models.clip import ClipBundle
    from synk8s.stages.fewshot.fit import Outcome

logger = logging.getLogger(__name__)

METADATA_KEY = "synk8s"


class FewShotTuneResult(BaseModel):
    """What :func:`run` wrote, and each head's epoch and validation top-1.

    Attributes:
        ct_init: URI of ``ct_init.safetensors`` (real shots only).
        ct_syn: URI of ``ct_syn.safetensors`` (real + synthetic, ``fewshot.schedule``).
        curve: URI of ``curve.json``.
        results: URI of ``results.json``.
        manifest: URI of ``manifest.json``.
        inputs: ``features`` (cached, frozen encoder) or ``images`` (the tower in the loop).
        real: real shots trained on (N x M).
        train: synthetic images trained on.
        val: synthetic images held out for model selection (``syn-val``; else 0).
        real_val: real validation images (``real-val``; else 0).
        select: ``fewshot.select``.
        ct_init_epoch: the epoch the CT w. init head is from.
        ct_syn_epoch: the epoch the CT w. Syn head is from.
        ct_init_val_top1: validation top-1 of the CT w. init head, in [0, 1]; None when not selected.
        ct_syn_val_top1: validation top-1 of the CT w. Syn head, in [0, 1]; None when not selected.
        trained_fraction: share of the classifier's parameters (tower + head) that trained, in [0, 1].
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    ct_init: str
    ct_syn: str
    curve: str
    results: str
    manifest: str
    inputs: str
    real: int
    train: int
    val: int
    real_val: int
    select: str
    ct_init_epoch: int
    ct_syn_epoch: int
    ct_init_val_top1: float | None
    ct_syn_val_top1: float | None
    trained_fraction: float
    seconds: float


def read_inputs(cfg: ExperimentConfig, *, split: str, features: str, selection: str) -> Inputs:
    """Load and check the split, synthetic features, text head and selection; under ``syn-val`` split off validation rows.

    Raises:
        UsageError: the split is of another dataset or shot count than the config, or a real-filter
            selection was made with another split.
        MissingDataError: an input is missing or inconsistent, ``real-val`` finds no real validation
            set in the split, or ``syn-val`` finds no class with 2 kept images.
    """
    import torch

    from synk8s.runs import read_manifest
    from synk8s.stages.fewshot.split import load_split
    from synk8s.stages.zeroshot.tune import (
        check_inputs,
        load_feature_set,
        load_text_head,
        read_tensors,
        stratified_split,
    )

    shots = load_split(split)
    if (shots.dataset, shots.shots) != (cfg.dataset.name, cfg.fewshot.shots_per_class):
        raise UsageError(
            f"the split in {split} is {shots.dataset} {shots.shots}-shot, the config asks for "
            f"{cfg.dataset.name} {cfg.fewshot.shots_per_class}-shot; pass the matching split folder"
        )
    feats, labels = load_feature_set(features, "synthetic")  # (N, D), (N,)
    weight, bias = load_text_head(features)  # (K, D), (K,)
    read_manifest(selection, "filter")
    sel, about = read_tensors(storage.join(selection, "selection.safetensors"))
    if about.get("split_digest", shots.digest) != shots.digest:
        raise UsageError(
            f"the real filter in {selection} used another split than {split}; rerun realfilter with this split"
        )
    kept, teacher = sel["kept"].long(), sel["teacher_logits"].float()  # (M,), (M, K)
    check_inputs(feats, labels, weight, kept, teacher, features=features, selection=selection)
    if cfg.fewshot.select == "real-val" and not shots.val:
        raise MissingDataError(
            f"the split in {split} has no real validation set; run the split stage with fewshot.select=real-val"
        )
    val_seed = derive_seed(cfg.seed, "fewshot", "val")
    if cfg.fewshot.select == "syn-val":
        train_pos, val_pos = stratified_split(labels[kept], cfg.tune.val_fraction, val_seed)
    else:  # every kept synthetic image trains
        train_pos, val_pos = torch.arange(len(kept)), torch.zeros(0, dtype=torch.int64)
    if cfg.fewshot.select == "syn-val" and len(val_pos) == 0:
        raise MissingDataError(
            f"no class has 2 or more kept synthetic images in {selection}, so nothing is left to validate on; "
            "generate more images per class"
        )
    return Inputs(
        split=shots,
        feats=feats,
        labels=labels,
        train_rows=kept[train_pos],
        val_rows=kept[val_pos],
        teacher={int(r): teacher[i] for i, r in enumerate(kept.tolist())},
        weight=weight,
        bias=bias,
        val_seed=val_seed,
    )


def parameter_share(cfg: ExperimentConfig, visual: torch.nn.Module, num_classes: int, dim: int) -> dict[str, Any]:
    """Exact counts of the parameters that train at ``tune.trainable`` with ``fewshot.freeze_bn``, head included.

    Args:
        cfg: the run's config.
        visual: the CLIP image tower (only counted, not changed).
        num_classes: K.
        dim: D, the feature dimension.
    """
    from synk8s import trainable

    names = set(trainable.trainable_names(visual, cfg.tune.trainable, freeze_bn=cfg.fewshot.freeze_bn))
    params = [p for n, p in visual.named_parameters() if n in names]
    counts = trainable.parameter_counts(visual, params, head_numel=num_classes * (dim + 1))
    return {"level": cfg.tune.trainable, "freeze_bn": cfg.fewshot.freeze_bn, **counts}


def run(
    cfg: ExperimentConfig,
    *,
    split: str,
    features: str,
    selection: str,
    images: str,
    out: str,
    progress: bool = True,
) -> FewShotTuneResult:
    """Tune CT w. init and CT w. Syn and save both heads, each from the epoch ``fewshot.select`` picks.

    Args:
        cfg: experiment config; ``fewshot.*``, ``tune.*``, ``seed`` and ``device`` are used.
        split: output folder of the split stage (the saved N-way M-shot split, with ``real-val`` its
            real validation set).
        features: output folder of the features stage (synthetic features, text head).
        selection: output folder of the filter or realfilter stage (kept rows, teacher logits).
        images: the generation output the features were computed from (generate or guided); read
            only when the encoder trains on images.
        out: output folder URI of this stage.
        progress: show progress bars.

    Raises:
        MissingDataError: an upstream output is missing or inconsistent.
        UsageError: the split does not match the config, or ``fewshot.select`` is unknown.
    """
    from synk8s.models.device import resolve_device
    from synk8s.stages.zeroshot.feature_sets import load_clip_for

    started = time.perf_counter()
    rules = head_rules(cfg.fewshot.select)
    inputs = read_inputs(cfg, split=split, features=features, selection=selection)
    device = resolve_device(cfg.device)
    bundle = load_clip_for(cfg)
    k, d = inputs.weight.shape
    share = parameter_share(cfg, bundle.model.visual, k, d)
    kind, outcomes = _fit_heads(cfg, inputs, bundle, images, device, progress)
    settings = _settings(cfg, inputs, kind, share, outcomes)
    logger.info("few-shot tuning on %s, selection %s", kind, settings["selection"])
    counts = _counts(cfg, inputs)
    uris = _write_outputs(cfg, inputs, outcomes, settings, counts, out)
    seconds = time.perf_counter() - started
    summary = {v: _summary(outcomes[v], rules[v]) for v in VARIANTS}
    manifest = write_manifest(
        out,
        "fewshot_tune",
        cfg,
        counts=counts,
        inputs={"split": split, "features": features, "selection": selection, "images": images},
        outputs=uris,
        results={**settings, **summary},
        device=device,
        seconds=seconds,
    )
    return FewShotTuneResult(
        ct_init=uris["ct_init"],
        ct_syn=uris["ct_syn"],
        curve=uris["curve"],
        results=uris["results"],
        manifest=manifest,
        inputs=kind,
        **counts,
        select=cfg.fewshot.select,
        ct_init_epoch=outcomes["ct_init"].best_epoch,
        ct_syn_epoch=outcomes["ct_syn"].best_epoch,
        ct_init_val_top1=outcomes["ct_init"].best_val_top1,
        ct_syn_val_top1=outcomes["ct_syn"].best_val_top1,
        trained_fraction=share["fraction"],
        seconds=seconds,
    )


def _fit_heads(
    cfg: ExperimentConfig, inputs: Inputs, bundle: ClipBundle, images: str, device: str, progress: bool
) -> tuple[str, dict[str, Outcome]]:
    """Train both heads on images through the tower or on cached features; return that kind and the outcomes."""
    if uses_images(cfg):
        from synk8s.stages.fewshot.fit_images import fit_on_images

        return "images", fit_on_images(cfg, inputs, images, device, progress)
    from synk8s.stages.fewshot.fit_features import fit_on_features
    from synk8s.stages.fewshot.split import shot_features

    real = shot_features(cfg, inputs.split, bundle=bundle, progress=progress)
    val = None
    if cfg.fewshot.select == "real-val":
        val = shot_features(cfg, inputs.split, bundle=bundle, progress=progress, part="val").features
    return "features", fit_on_features(cfg, inputs, real.features, device, progress, val_x=val)


def _settings(
    cfg: ExperimentConfig, inputs: Inputs, kind: str, share: dict[str, Any], outcomes: dict[str, Outcome]
) -> dict[str, Any]:
    """The run's settings for the heads' metadata and ``results.json``, with each head's rule and epoch."""
    rules = head_rules(cfg.fewshot.select)
    selection_info = {
        "rule": cfg.fewshot.select,
        **{f"{v}_rule": rules[v] for v in VARIANTS},
        **{f"{v}_epoch": outcomes[v].best_epoch for v in VARIANTS},
    }
    return {
        "inputs": kind,
        "split_digest": inputs.split.digest,
        "shots": inputs.split.shots,
        "strategy": cfg.fewshot.strategy,
        "schedule": cfg.fewshot.schedule,
        "trainable": share,
        "selection": selection_info,
    }


def _counts(cfg: ExperimentConfig, inputs: Inputs) -> dict[str, int]:
    """Images trained or validated on: real shots, synthetic train and val rows, real validation images."""
    return {
        "real": len(inputs.split.entries),
        "train": len(inputs.train_rows),
        "val": len(inputs.val_rows),
        "real_val": len(inputs.split.val) if cfg.fewshot.select == "real-val" else 0,
    }


def _summary(outcome: Outcome, rule: str) -> dict[str, Any]:
    return {
        "rule": rule,
        "best_epoch": outcome.best_epoch,
        "best_val_top1": outcome.best_val_top1,
        "start_val_top1": _start_val(outcome),
    }


def _write_outputs(
    cfg: ExperimentConfig,
    inputs: Inputs,
    outcomes: dict[str, Outcome],
    settings: dict[str, Any],
    counts: dict[str, int],
    out: str,
) -> dict[str, str]:
    """Write both heads, ``curve.json``, ``val.json`` and ``results.json``; returns their URIs by name."""
    from safetensors.torch import save

    rules = head_rules(cfg.fewshot.select)
    uris, summary = {}, {}
    for variant, outcome in outcomes.items():
        summary[variant] = _summary(outcome, rules[variant])
        about = {"config_digest": cfg.digest(), "variant": variant, **settings, **summary[variant]}
        metadata = {METADATA_KEY: json.dumps(about, sort_keys=True, separators=(",", ":"))}
        uris[variant] = storage.join(out, f"{variant}.safetensors")
        tensors = {name: t.contiguous() for name, t in outcome.state.items()}
        storage.put_bytes(uris[variant], save(tensors, metadata))
    uris["curve"] = storage.join(out, "curve.json")
    storage.put_json(
        uris["curve"],
        {v: {"rule": rules[v], "best_epoch": o.best_epoch, "epochs": o.curve} for v, o in outcomes.items()},
    )
    held_out = {"seed": inputs.val_seed, "val_fraction": cfg.tune.val_fraction} if cfg.fewshot.select == "syn-val" else {}
    storage.put_json(
        storage.join(out, "val.json"),
        {"select": cfg.fewshot.select, **held_out, "train": inputs.train_rows.tolist(), "val": inputs.val_rows.tolist()},
    )
    uris["results"] = storage.join(out, "results.json")
    storage.put_json(uris["results"], {**settings, **counts, **summary})
    return uris


def _start_val(outcome: Outcome) -> float | None:
    """Validation top-1 at the start of the final phase (for one phase: the text head's); None without validation."""
    return next((p["val_top1"] for p in outcome.curve if p["val_top1"] is not None), None)


def load_tuned(out: str, variant: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A tuned head of this stage: (tensors: ``weight``, ``bias`` and any ``visual.*``, metadata dict).

    Raises:
        UsageError: ``variant`` is not ``ct_init`` or ``ct_syn``.
        MissingDataError: the stage has not run into ``out``.
    """
    from synk8s.runs import read_manifest
    from synk8s.stages.zeroshot.tune import read_tensors

    if variant not in VARIANTS:
        raise UsageError(f"few-shot head must be one of {', '.join(VARIANTS)}, got {variant!r}")
    read_manifest(out, "fewshot_tune")
    tensors, metadata = read_tensors(storage.join(out, f"{variant}.safetensors"))
    return tensors, json.loads(metadata.get(METADATA_KEY, "{}"))


# The folders fewshot.strategy names (Table 5): B = generate + CF, RF = B + real filter, RG = guided + CF.
IMAGES = Choice("fewshot.strategy", {"B": "generate", "RF": "generate", "RG": "guided"})
FEATURES = Choice("fewshot.strategy", {"B": "features", "RF": "features", "RG": "features_guided"})
SELECTION = Choice("fewshot.strategy", {"B": "filter", "RF": "realfilter", "RG": "filter_guided"})

# CLIP encodes the N x M real shots (16,000 for 16-shot ImageNet) and, unless only a frozen-BN head
# trains, trains the image tower on images: a GPU task.
STAGE = StageSpec(
    name="fewshot_tune",
    run=run,
    help="Few-shot classifier tuning: CT w. init (real shots) and CT w. Syn (real + synthetic, fewshot.schedule).",
    inputs={"split": "split", "features": FEATURES, "selection": SELECTION, "images": IMAGES},
    depends=("tune", "fewshot"),
    gpu=True,
    shm=uses_images,  # trains through the tower on decoded images
    resources=Resources("4", "8", "16Gi", "32Gi"),
    outputs={"ct_*.safetensors": load_tuned, "curve.json": None, "val.json": None, "results.json": None},
    folder="fewshot-tune",
)
