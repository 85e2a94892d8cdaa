"""Config sections of the studies: zero-shot (filter, features, tune, leakage), few-shot, pre-training and
detection (paper sections 3.1-3.3).

They are fields of :class:`synk8s.config.ExperimentConfig`, loaded from the same profile files.
:class:`Section` is the frozen, strict base of every config section; the value bounds it
enforces are described in :mod:`synk8s.config_checks`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synk8s.config_checks import Batch, DType, Images, PerClass, Pixels, Seed, Steps, Width, Workers
from synk8s.config_digest import DIGEST_UNLESS, SPEED_ONLY


class Section(BaseModel):
    """A frozen config section that rejects unknown keys, infinite or NaN floats and integers over their ceiling.

    The ceilings are in :mod:`synk8s.config_checks`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FilterConfig(Section):
    """CLIP filter (CF) on the generated images."""

    enabled: bool
    threshold: float | None = Field(ge=0.0, le=1.0, description="min confidence; null means 1/K")
    keep_per_class: PerClass | None = Field(ge=1, description="keep at most N per class after thresholding")
    keep_mode: Literal["random", "top", "fill"] = Field(
        description="random or top N of those passing; fill: random N if N pass, else the top N (official code)"
    )
    strict: bool = Field(description="pass when confidence > threshold (official code); false: >=")


class FeaturesConfig(Section):
    """CLIP image feature extraction."""

    batch_size: Batch = Field(ge=1)
    dtype: DType
    templates: Literal["paper", "clip"] = Field(
        description="text-head templates: the official code's set where it has one, else CLIP's; or CLIP's"
    )
    workers: Workers = Field(
        ge=0,
        description="DataLoader processes decoding and preprocessing images; 0: inline (same features)",
        json_schema_extra={SPEED_ONLY: True},
    )


class TuneConfig(Section):
    """Classifier tuning (CT): a linear head on frozen CLIP features."""

    loss: Literal["ce", "sce"]
    soft_weight: float = Field(ge=0.0, le=1.0, description="sl: loss = sl*SCE + (1-sl)*CE")
    temperature: float = Field(gt=0.0, description="T: soft target = softmax(teacher / T)")
    epochs: Steps = Field(ge=1)
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    batch_size: Batch = Field(ge=1)
    warmup_epochs: Steps = Field(ge=0)
    grad_clip: float | None = Field(gt=0.0)
    val_fraction: float = Field(gt=0.0, lt=1.0, description="synthetic data held out for model selection")
    trainable: Literal["head", "proj", "last-block", "last-stage", "all"] = Field(
        description="what trains besides the head (few-shot tuning; see synk8s.trainable); head = frozen encoder"
    )


class LeakageConfig(Section):
    """Near-duplicate check of synthetic images against the real test set (synk8s.stages.zeroshot.leakage)."""

    clip_threshold: float = Field(ge=-1.0, le=1.0, description="flag a pair whose CLIP cosine is above this")
    hash_distance: int = Field(ge=0, le=64, description="flag a pair whose 64-bit dHashes differ in at most this")
    grid_pairs: Images = Field(ge=0, description="closest pairs drawn in grid.png")
    drop: bool = Field(description="tune leaves out the synthetic images the leakage check flags")


class FewShotConfig(Section):
    """Few-shot settings (section 3.2): the saved N-way M-shot split, B / RF / RG data, CT w. Syn."""

    shots: tuple[PerClass, ...] = Field(description="shot counts M a sweep runs (Figure 1, Table 7)")
    shots_per_class: PerClass = Field(ge=1, description="M of this run: real training images per class")
    split_seed: Seed = Field(description="seed of the drawn split; the same seed gives the same split")
    strategy: Literal["B", "RF", "RG"] = Field(description="synthetic data: B (LE+CF), RF (B + real filter), RG")
    schedule: Literal["mix", "syn-then-real", "real-then-syn"]
    images_per_class: PerClass = Field(ge=1, description="RG: synthetic images per class, ceil(n / M) per real shot")
    lr: float = Field(gt=0.0)
    real_batch_size: Batch = Field(ge=1)
    synthetic_batch_size: Batch = Field(ge=1)
    w_real: float = Field(ge=0.0, description="mix: weight of the real-batch loss")
    w_syn: float = Field(ge=0.0, description="mix: weight of the synthetic-batch loss")
    epochs: Steps = Field(ge=1, description="passes over the synthetic training part (mix and the synthetic phase)")
    real_epochs: Steps = Field(ge=1, description="passes over the real shots (CT w. init and the real phase)")
    guidance_strength: dict[PerClass, float] = Field(description="RG img2img strength per shot count")
    freeze_bn: bool = Field(description="false: BN layers train (running statistics and affine) on images")
    select: Literal["last", "real-val", "syn-val"] = Field(
        description="model selection: last epoch (fixed schedule), a real validation split, or held-out "
        "synthetic images (CT w. Syn only)"
    )
    rg_prompts: Literal["template", "le"] = Field(
        description="RG prompts: the class name in the dataset's first template, or the prompts stage's output"
    )
    rg_filter: bool = Field(description="RG: CLIP-filter (CF) the real-guided images before tuning")

    @field_validator("guidance_strength")
    @classmethod
    def _strengths(cls, value: dict[int, float]) -> dict[int, float]:
        for shots, strength in value.items():
            if shots < 1 or not 0.0 < strength <= 1.0:
                raise ValueError(f"each entry must map a shot count >= 1 to a strength in (0, 1], got {shots}: {strength}")
        return value

    @field_validator("shots")
    @classmethod
    def _sweep(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 1:
            raise ValueError(f"must list shot counts >= 1, got {list(value)}")
        return value


class MocoConfig(Section):
    """MoCo v2 (Chen et al. 2020): contrastive pre-training with a momentum key encoder and a queue."""

    lr: float = Field(gt=0.0, description="base learning rate per 256 images (cosine schedule)")
    epochs: Steps = Field(ge=1)
    queue: Width = Field(ge=1, description="negative keys kept; a multiple of pretrain.batch_size")
    momentum: float = Field(ge=0.0, lt=1.0, description="key encoder EMA momentum m")
    temperature: float = Field(gt=0.0, description="softmax temperature T of the InfoNCE loss")
    hidden_dim: Width = Field(ge=1, description="hidden width of the 2-layer MLP head")
    dim: Width = Field(ge=1, description="output width of the MLP head (the key/query dimension)")
    knn_k: Width = Field(ge=1, description="neighbours of the kNN monitor")
    knn_temperature: float = Field(gt=0.0, description="temperature of the kNN monitor's vote weights")
    bn_splits: Batch = Field(
        ge=1,
        description="one process: BN statistics over this many sub-batches (split-batch BN standing in for "
        "shuffle BN); must divide pretrain.batch_size; 1 = plain BN (the ablation); unused with several processes",
        json_schema_extra={DIGEST_UNLESS: 1},  # 1, the behaviour before it existed, keeps digests
    )


class FinetuneConfig(Section):
    """Supervised training of a whole backbone on real images: transfer (Table 8) and from scratch (Table 4)."""

    dataset: str = Field(
        description="registry name of the downstream classification dataset; custom: your own images (--images)"
    )
    init: Literal["pretrained", "scratch", "imagenet"] = Field(
        description="start from the pretrain stage's trunk, random weights, or ImageNet-1K weights (model cache)"
    )
    epochs: Steps = Field(ge=1)
    batch_size: Batch = Field(ge=1, description="global batch (over all processes)")
    lr: float = Field(gt=0.0, description="base learning rate per 256 images (cosine schedule)")
    momentum: float = Field(ge=0.0, lt=1.0)
    weight_decay: float = Field(ge=0.0)
    resolution: Pixels = Field(ge=8, description="training and test image side in pixels")
    real_per_class: tuple[PerClass, ...] = Field(description="Table 4: real training images per class to compare")


class PretrainConfig(Section):
    """Pre-training on synthetic data (section 3.3): supervised or MoCo v2, then transfer."""

    method: Literal["supervised", "moco"]
    label_space: Literal["cifar100", "imagenet-1k", "imagenet-2k"] | None = Field(
        description="class names to generate (see synk8s.labelspace); null: the dataset's classes (zero-shot runs)"
    )
    images: Images = Field(ge=1, description="synthetic images in total (spread evenly over the classes)")
    classes: Images | None = Field(
        ge=1, description="K: generate for K classes evenly spaced through the label space; null: every class"
    )
    epochs: Steps = Field(ge=1, description="supervised epochs (MoCo: pretrain.moco.epochs)")
    lr: float = Field(gt=0.0, description="supervised base learning rate per 256 images (cosine schedule)")
    batch_size: Batch = Field(ge=1, description="global batch (over all processes)")
    momentum: float = Field(ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(ge=0.0)
    resolution: Pixels = Field(ge=8, description="training crop side in pixels")
    init: Literal["scratch", "imagenet"] = Field(description="imagenet: start from ImageNet-1K weights (model cache)")
    checkpoint_every: Steps = Field(ge=1, description="optimiser steps between checkpoints (also one per epoch)")
    nproc: Workers = Field(ge=1, description="local processes (torchrun --standalone); 1 runs in-process")
    nodes: Workers = Field(ge=1, description="TrainJob nodes on a cluster")
    gpus_per_node: Workers = Field(ge=0, description="TrainJob GPUs (processes) per node; 0 = one CPU process")
    workers: Workers = Field(ge=0, description="data-loading processes per training process")
    monitor_tars: Images = Field(ge=1, description="tars, evenly spaced, that the held-out monitor images come from")
    monitor_fraction: float = Field(gt=0.0, lt=1.0, description="share of those tars' images held out")
    moco: MocoConfig
    finetune: FinetuneConfig
    detection_dataset: str
    transfer: Literal["cifar100", "voc"] = Field(
        description="what the pretrain pipeline measures the trunk by: CIFAR-100 fine-tuning or VOC detection"
    )


class DetectConfig(Section):
    """VOC detection transfer (Tables 9-10): Faster R-CNN fine-tuned from a pre-trained trunk.

    Iterations, sizes and counts are per run over all processes; ``batch_size`` is split evenly
    across the processes of a distributed run.
    """

    root: str = Field(description="folder or s3:// prefix holding VOCdevkit/VOC2007 and VOCdevkit/VOC2012")
    standin: bool = Field(description="draw a shapes stand-in under root when the real data is absent")
    standin_images: Images = Field(ge=2, description="stand-in images per trainval set and in the test set")
    standin_size: Pixels = Field(ge=32, description="stand-in image side in pixels")
    train_difficult: bool = Field(description="train on objects flagged difficult (evaluation always ignores them)")
    arch: Literal["c4", "fpn"]
    init: Literal["pretrained", "scratch", "imagenet"] = Field(
        description="trunk weights: the pretrain stage's (the table's detect stage), random, or ImageNet-1K"
    )
    iterations: Steps = Field(ge=1)
    batch_size: Batch = Field(ge=1, description="images per iteration over all processes")
    lr: float = Field(gt=0.0)
    momentum: float = Field(ge=0.0, lt=1.0)
    weight_decay: float = Field(ge=0.0)
    weight_decay_norm: float = Field(ge=0.0, description="weight decay of normalisation layers")
    lr_steps: tuple[Steps, ...] = Field(description="iterations where lr is multiplied by lr_gamma")
    lr_gamma: float = Field(gt=0.0)
    warmup_iters: Steps = Field(ge=0)
    warmup_factor: float = Field(gt=0.0, le=1.0, description="lr multiplier at iteration 0, rising linearly to 1")
    train_sizes: tuple[Pixels, ...] = Field(min_length=1, description="shorter image side in training, drawn per image")
    test_size: Pixels = Field(ge=8)
    max_size: Pixels = Field(ge=8, description="longer image side cap, train and test")
    hflip_prob: float = Field(ge=0.0, le=1.0)
    anchor_sizes: tuple[Pixels, ...] = Field(min_length=1, description="anchor sides in pixels (FPN: one per level, 5)")
    anchor_ratios: tuple[float, ...] = Field(min_length=1)
    rpn_pre_nms_train: Width = Field(ge=1)
    rpn_post_nms_train: Width = Field(ge=1)
    rpn_pre_nms_test: Width = Field(ge=1)
    rpn_post_nms_test: Width = Field(ge=1)
    roi_batch_per_image: Batch = Field(ge=1, description="RoIs sampled per image for the box head loss")
    pooler_resolution: Pixels = Field(ge=2, description="RoIAlign output side (C4; FPN uses 7)")
    fpn_channels: Width = Field(ge=1)
    score_thresh: float = Field(ge=0.0, le=1.0)
    nms_thresh: float = Field(gt=0.0, le=1.0)
    detections_per_image: Width = Field(ge=1)
    precise_bn_iters: Steps = Field(ge=0, description="batches that re-estimate BN statistics before testing")
    checkpoint_every: Steps = Field(ge=1, description="iterations between checkpoints")
    log_every: Steps = Field(ge=1)
    num_workers: Workers = Field(ge=0, description="data loader processes per training process")

    @field_validator("lr_steps", "train_sizes", "anchor_sizes")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= a for a, b in zip(value, value[1:])) or any(v < 1 for v in value):
            raise ValueError(f"must be positive and strictly increasing, got {list(value)}")
        return value
