"""Typed experiment configuration, loaded from a profile YAML plus ``--set`` overrides.

Profiles live in ``synk8s/profiles/<name>.yaml``. ``paper.yaml`` holds every field with the
paper's defaults; another profile names the profile it ``extends`` and lists only what differs.
There are no defaults in code, so a value has one source: the profile file.

    cfg = load("tiny", ["tune.epochs=3", "dataset.name=eurosat"])
    cfg.tune.epochs          # 3
    cfg.model_dump_json()    # passes between pipeline tasks; ExperimentConfig.model_validate_json reads it back

Config objects are frozen; derive a changed copy with ``with_overrides(cfg, [...])``.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synk8s.errors import UsageError

DType = Literal["auto", "float32", "float16", "bfloat16"]


def _checked_root(key: str, uri: str) -> str:
    """``uri`` if it is a folder or ``s3://bucket[/prefix]``; otherwise a one-line UsageError naming ``key``."""
    from synk8s.storage import check_root

    try:
        return check_root(uri)
    except UsageError as err:
        raise UsageError(f"{key}: {err}") from None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetConfig(_Section):
    """Which dataset, and where its files are."""

    name: str = Field(description="registry name, see `synk8s datasets list`")
    root: str = Field(description="data folder; '{name}' is replaced by the dataset name")
    standin: bool = Field(description="write and use a small drawn stand-in when the real data is absent")
    standin_per_class: int = Field(ge=1, description="stand-in images per class and split")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from synk8s import datasets

        datasets.get(value)
        return value

    def resolved_root(self) -> str:
        """The data folder with ``{name}`` filled in."""
        return self.root.replace("{name}", self.name)


class ModelsConfig(_Section):
    """Registry names (see synk8s.models) or raw hub ids for each model."""

    generator: str
    generator_revision: str | None
    clip: str
    le: str
    backbone: str
    cache: str | None = Field(description="model cache folder or s3:// prefix for air-gapped clusters")

    @field_validator("cache")
    @classmethod
    def _cache_uri(cls, value: str | None) -> str | None:
        return None if value is None else _checked_root("models.cache", value)

    @field_validator("generator", "clip", "le", "backbone")
    @classmethod
    def _registered(cls, value: str, info) -> str:
        from synk8s import models

        lookup = {
            "generator": models.get_generator_info,  # also takes any diffusers model id
            "clip": models.get_clip_info,
            "le": models.get_le_info,  # also takes any hub id of the form owner/name
            "backbone": models.get_backbone_info,
        }
        lookup[info.field_name](value)
        return value


class PromptsConfig(_Section):
    """Prompt construction: B (templates x class names) or LE (T5 word-to-sentence)."""

    mode: Literal["B", "LE"]
    sentences_per_class: int = Field(ge=1, description="distinct LE sentences kept per class")
    oversample: float = Field(ge=1.0, description="LE draws this many times the sentences wanted, then dedupes")
    max_new_tokens: int = Field(ge=1)
    top_k: int = Field(ge=0)
    top_p: float = Field(gt=0.0, le=1.0)
    temperature: float = Field(gt=0.0)
    drop_other_classes: bool = Field(description="drop a sentence that names another class of the dataset")


class GenerateConfig(_Section):
    """Text-to-image generation; null sampler fields take the generator's registry defaults."""

    images_per_class: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    steps: int | None = Field(ge=1)
    guidance: float | None = Field(ge=0.0)
    resolution: int | None = Field(ge=8)
    dtype: DType
    num_shards: int = Field(ge=1, description="shards the work splits into (one GPU task each)")
    samples_per_tar: int = Field(ge=1, description="images per WebDataset tar file")
    image_format: Literal["png", "jpg"]


class FilterConfig(_Section):
    """CLIP filter (CF) on the generated images."""

    enabled: bool
    threshold: float | None = Field(ge=0.0, le=1.0, description="min confidence; null means 1/K")
    keep_per_class: int | None = Field(ge=1, description="keep at most N per class after thresholding")
    keep_mode: Literal["random", "top"]


class FeaturesConfig(_Section):
    """CLIP image feature extraction."""

    batch_size: int = Field(ge=1)
    dtype: DType


class TuneConfig(_Section):
    """Classifier tuning (CT): a linear head on frozen CLIP features."""

    loss: Literal["ce", "sce"]
    soft_weight: float = Field(ge=0.0, le=1.0, description="sl: loss = sl*SCE + (1-sl)*CE")
    temperature: float = Field(gt=0.0, description="T: soft target = softmax(teacher / T)")
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(ge=0.0)
    batch_size: int = Field(ge=1)
    warmup_epochs: int = Field(ge=0)
    grad_clip: float | None = Field(gt=0.0)
    val_fraction: float = Field(gt=0.0, lt=1.0, description="synthetic data held out for model selection")
    trainable: Literal["head", "proj", "last-block", "last-stage", "all"] = Field(
        description="what trains besides the head (few-shot tuning; see synk8s.trainable); head = frozen encoder"
    )


class FewShotConfig(_Section):
    """Few-shot settings (section 3.2): the saved N-way M-shot split, B / RF / RG data, CT w. Syn."""

    shots: tuple[int, ...] = Field(description="shot counts M a sweep runs (Figure 1, Table 7)")
    shots_per_class: int = Field(ge=1, description="M of this run: real training images per class")
    split_seed: int = Field(ge=0, description="seed of the drawn split; the same seed gives the same split")
    strategy: Literal["B", "RF", "RG"] = Field(description="synthetic data: B (LE+CF), RF (B + real filter), RG")
    schedule: Literal["mix", "syn-then-real", "real-then-syn"]
    images_per_class: int = Field(ge=1, description="RG: synthetic images per class, ceil(n / M) per real shot")
    lr: float = Field(gt=0.0)
    real_batch_size: int = Field(ge=1)
    synthetic_batch_size: int = Field(ge=1)
    w_real: float = Field(ge=0.0, description="mix: weight of the real-batch loss")
    w_syn: float = Field(ge=0.0, description="mix: weight of the synthetic-batch loss")
    epochs: int = Field(ge=1, description="passes over the synthetic training part (mix and the synthetic phase)")
    real_epochs: int = Field(ge=1, description="passes over the real shots (CT w. init and the real phase)")
    guidance_strength: dict[int, float] = Field(description="RG img2img strength per shot count")
    freeze_bn: bool = Field(description="false: BN layers train (running statistics and affine) on images")

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


class MocoConfig(_Section):
    """MoCo v2 (Chen et al. 2020): contrastive pre-training with a momentum key encoder and a queue."""

    lr: float = Field(gt=0.0, description="base learning rate per 256 images (cosine schedule)")
    epochs: int = Field(ge=1)
    queue: int = Field(ge=1, description="negative keys kept; a multiple of pretrain.batch_size")
    momentum: float = Field(ge=0.0, lt=1.0, description="key encoder EMA momentum m")
    temperature: float = Field(gt=0.0, description="softmax temperature T of the InfoNCE loss")
    hidden_dim: int = Field(ge=1, description="hidden width of the 2-layer MLP head")
    dim: int = Field(ge=1, description="output width of the MLP head (the key/query dimension)")
    knn_k: int = Field(ge=1, description="neighbours of the kNN monitor")
    knn_temperature: float = Field(gt=0.0, description="temperature of the kNN monitor's vote weights")


class FinetuneConfig(_Section):
    """Supervised training of a whole backbone on real images: transfer (Table 8) and from scratch (Table 4)."""

    dataset: str = Field(description="registry name of the downstream classification dataset")
    init: Literal["pretrained", "scratch", "imagenet"] = Field(
        description="start from the pretrain stage's trunk, random weights, or ImageNet-1K weights (model cache)"
    )
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="global batch (over all processes)")
    lr: float = Field(gt=0.0, description="base learning rate per 256 images (cosine schedule)")
    momentum: float = Field(ge=0.0, lt=1.0)
    weight_decay: float = Field(ge=0.0)
    resolution: int = Field(ge=8, description="training and test image side in pixels")
    real_per_class: tuple[int, ...] = Field(description="Table 4: real training images per class to compare")

    @field_validator("dataset")
    @classmethod
    def _classification(cls, value: str) -> str:
        from synk8s import datasets

        datasets.require_classification(value)
        return value


class PretrainConfig(_Section):
    """Pre-training on synthetic data (section 3.3): supervised or MoCo v2, then transfer."""

    method: Literal["supervised", "moco"]
    label_space: Literal["cifar100", "imagenet-1k", "imagenet-2k"] | None = Field(
        description="class names to generate (see synk8s.labelspace); null: the dataset's classes (zero-shot runs)"
    )
    images: int = Field(ge=1, description="synthetic images in total (spread evenly over the classes)")
    epochs: int = Field(ge=1, description="supervised epochs (MoCo: pretrain.moco.epochs)")
    lr: float = Field(gt=0.0, description="supervised base learning rate per 256 images (cosine schedule)")
    batch_size: int = Field(ge=1, description="global batch (over all processes)")
    momentum: float = Field(ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(ge=0.0)
    resolution: int = Field(ge=8, description="training crop side in pixels")
    init: Literal["scratch", "imagenet"] = Field(description="imagenet: start from ImageNet-1K weights (model cache)")
    checkpoint_every: int = Field(ge=1, description="optimiser steps between checkpoints (also one per epoch)")
    nproc: int = Field(ge=1, description="local processes (torchrun --standalone); 1 runs in-process")
    nodes: int = Field(ge=1, description="TrainJob nodes on a cluster")
    gpus_per_node: int = Field(ge=0, description="TrainJob GPUs (processes) per node; 0 = one CPU process")
    workers: int = Field(ge=0, description="data-loading processes per training process")
    monitor_tars: int = Field(ge=1, description="tars, evenly spaced, that the held-out monitor images come from")
    monitor_fraction: float = Field(gt=0.0, lt=1.0, description="share of those tars' images held out")
    moco: MocoConfig
    finetune: FinetuneConfig
    detection_dataset: str


class DetectConfig(_Section):
    """VOC detection transfer (Tables 9-10): Faster R-CNN fine-tuned from a pre-trained trunk.

    Iterations, sizes and counts are per run over all processes; ``batch_size`` is split evenly
    across the processes of a distributed run.
    """

    root: str = Field(description="folder or s3:// prefix holding VOCdevkit/VOC2007 and VOCdevkit/VOC2012")
    standin: bool = Field(description="draw a shapes stand-in under root when the real data is absent")
    standin_images: int = Field(ge=2, description="stand-in images per trainval set and in the test set")
    standin_size: int = Field(ge=32, description="stand-in image side in pixels")
    train_difficult: bool = Field(description="train on objects flagged difficult (evaluation always ignores them)")
    arch: Literal["c4", "fpn"]
    init: Literal["scratch", "imagenet"] = Field(description="trunk weights when no pre-trained backbone is given")
    iterations: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="images per iteration over all processes")
    lr: float = Field(gt=0.0)
    momentum: float = Field(ge=0.0, lt=1.0)
    weight_decay: float = Field(ge=0.0)
    weight_decay_norm: float = Field(ge=0.0, description="weight decay of normalisation layers")
    lr_steps: tuple[int, ...] = Field(description="iterations where lr is multiplied by lr_gamma")
    lr_gamma: float = Field(gt=0.0)
    warmup_iters: int = Field(ge=0)
    warmup_factor: float = Field(gt=0.0, le=1.0, description="lr multiplier at iteration 0, rising linearly to 1")
    train_sizes: tuple[int, ...] = Field(min_length=1, description="shorter image side in training, drawn per image")
    test_size: int = Field(ge=8)
    max_size: int = Field(ge=8, description="longer image side cap, train and test")
    hflip_prob: float = Field(ge=0.0, le=1.0)
    anchor_sizes: tuple[int, ...] = Field(min_length=1, description="anchor sides in pixels (FPN: one per level, 5)")
    anchor_ratios: tuple[float, ...] = Field(min_length=1)
    rpn_pre_nms_train: int = Field(ge=1)
    rpn_post_nms_train: int = Field(ge=1)
    rpn_pre_nms_test: int = Field(ge=1)
    rpn_post_nms_test: int = Field(ge=1)
    roi_batch_per_image: int = Field(ge=1, description="RoIs sampled per image for the box head loss")
    pooler_resolution: int = Field(ge=2, description="RoIAlign output side (C4; FPN uses 7)")
    fpn_channels: int = Field(ge=1)
    score_thresh: float = Field(ge=0.0, le=1.0)
    nms_thresh: float = Field(gt=0.0, le=1.0)
    detections_per_image: int = Field(ge=1)
    precise_bn_iters: int = Field(ge=0, description="batches that re-estimate BN statistics before testing")
    checkpoint_every: int = Field(ge=1, description="iterations between checkpoints")
    log_every: int = Field(ge=1)
    num_workers: int = Field(ge=0, description="data loader processes per training process")

    @field_validator("lr_steps", "train_sizes", "anchor_sizes")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= a for a, b in zip(value, value[1:])) or any(v < 1 for v in value):
            raise ValueError(f"must be positive and strictly increasing, got {list(value)}")
        return value


class StoreConfig(_Section):
    """Where artifacts go: a local folder or s3://bucket/prefix."""

    root: str = Field(min_length=1)

    @field_validator("root")
    @classmethod
    def _root_uri(cls, value: str) -> str:
        return _checked_root("store.root", value)


class ClusterConfig(_Section):
    """Kubeflow Pipelines submission and GPU scheduling."""

    host: str | None = Field(description="KFP API endpoint; KF_PIPELINES_ENDPOINT overrides when set")
    namespace: str
    experiment: str
    image: str = Field(description="GPU image; pin to a digest for reproducible runs")
    cpu_image: str
    accelerator: str
    gpu_node_selector: dict[str, str]
    gpu_tolerations: tuple[dict[str, str], ...]
    s3_secret: str = Field(description="Kubernetes Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    s3_config_map: str = Field(description="ConfigMap holding SYNK8S_S3_ENDPOINT")
    generate_retries: int = Field(ge=0)
    service_account: str | None = Field(description="Kubernetes service account the pipeline's pods run as")


class ExperimentConfig(_Section):
    """Everything one run needs. Built by :func:`load`; never mutated."""

    profile: str
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    dataset: DatasetConfig
    models: ModelsConfig
    prompts: PromptsConfig
    generate: GenerateConfig
    filter: FilterConfig
    features: FeaturesConfig
    tune: TuneConfig
    fewshot: FewShotConfig
    pretrain: PretrainConfig
    detect: DetectConfig
    store: StoreConfig
    cluster: ClusterConfig

    @field_validator("profile")
    @classmethod
    def _profile_known(cls, value: str) -> str:
        if value not in profiles():
            raise ValueError(f"unknown profile {value!r}; choose one of: {', '.join(profiles())}")
        return value

    def digest(self, *fields: str) -> str:
        """Short sha256 of the given fields (dotted paths such as ``tune`` or ``models.clip``).

        With no fields: every field but ``store`` and ``cluster``. Where a run executes and where
        it writes do not change its results, so they do not change its digest; identical
        experiments give identical digests.
        """
        data = self.model_dump(mode="json", exclude={"store", "cluster"})
        if fields:
            picked = {}
            for path in sorted(set(fields)):
                value = data
                for part in path.split("."):
                    value = value[part]
                picked[path] = value
            data = picked
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _profile_dir() -> Path:
    return Path(str(resources.files("synk8s") / "profiles"))


def profiles() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in _profile_dir().glob("*.yaml"))


def _read_profile(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name not in profiles():
        raise UsageError(f"unknown profile {name!r}; choose one of: {', '.join(profiles())}")
    if name in seen:
        raise UsageError(f"profile {name!r} extends itself through {' -> '.join(seen)}")
    data = yaml.safe_load((_profile_dir() / f"{name}.yaml").read_text()) or {}
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_read_profile(parent, (*seen, name)), data)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _DICT_FIELDS:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# Fields whose value is itself a mapping: an override replaces them whole.
_DICT_FIELDS = {"guidance_strength", "gpu_node_selector"}


def _model_for(path: list[str]) -> type[BaseModel]:
    model: type[BaseModel] = ExperimentConfig
    for i, part in enumerate(path):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(path[:i]) or "the top level"
            raise UsageError(
                f"unknown config key {'.'.join(path[: i + 1])!r}; keys under {where}: {', '.join(fields)}"
            )
        annotation = fields[part].annotation
        if i < len(path) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise UsageError(f"config key {'.'.join(path[: i + 1])!r} has no sub-keys")
            model = annotation
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            raise UsageError(
                f"config key {'.'.join(path)!r} is a section; set one of its keys: {', '.join(annotation.model_fields)}"
            )
    return model


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and a YAML-typed value; unknown keys are rejected."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"bad override {text!r}; write it as key.path=value, e.g. tune.epochs=10")
    path = key.strip().split(".")
    _model_for(path)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _validate(data: dict[str, Any]) -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        got = first.get("input")
        if first["type"] == "missing":
            raise UsageError(f"config key {where!r} is missing; set it in the profile or with --set {where}=...") from None
        if first["type"] == "extra_forbidden":
            raise UsageError(f"unknown config key {where!r}; remove it from the profile") from None
        raise UsageError(f"{where}: {first['msg'].removeprefix('Value error, ')}, got {got!r}") from None


def load(profile: str, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Resolve a profile and ``key.path=value`` overrides into a validated config.

    Args:
        profile: name of a file in ``synk8s/profiles`` (e.g. ``paper``, ``tiny``).
        overrides: ``a.b=value`` strings; values are YAML (``3``, ``0.5``, ``true``, ``null``, ``[1, 2]``).

    Raises:
        UsageError: unknown profile, unknown key, or a value of the wrong type or range.
    """
    data = _read_profile(profile)
    data["profile"] = profile
    for text in overrides:
        path, value = parse_override(text)
        _apply(data, path, value)
    return _validate(data)


def with_overrides(cfg: ExperimentConfig, overrides: list[str] | tuple[str, ...]) -> ExperimentConfig:
    """A validated copy of ``cfg`` with ``key.path=value`` overrides applied."""
    data = cfg.model_dump(mode="python")
    for text in overrides:
        path, value = parse_override(text)
        _apply(data, path, value)
    return _validate(data)


def to_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML, in field order."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
