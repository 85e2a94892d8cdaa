"""Typed experiment configuration, loaded from a profile YAML plus ``--set`` overrides.

Profiles live in ``synk8s/profiles/<name>.yaml``. ``paper.yaml`` holds every field with the
paper's defaults; another profile names the profile it ``extends`` and lists only what differs.
There are no defaults in code, so a value has one source: the profile file.

    cfg = load("tiny", ["tune.epochs=3", "dataset.name=eurosat"])
    cfg.tune.epochs          # 3
    cfg.model_dump_json()    # passes between pipeline tasks; synk8s.resolve.read_resolved reads it back

Config objects are frozen; derive a changed copy with ``with_overrides(cfg, [...])``.

This module checks what a config says on its own: keys, types and ranges. Whether its dataset and
model names are registered and its store roots sound is checked where a run's config is made, by
:mod:`synk8s.resolve`; config sits below the registries and the store and imports neither.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from synk8s.config_checks import (
    Batch,
    DType,
    Images,
    PerClass,
    Pixels,
    Seed,
    Steps,
    Width,
    Workers,
    describe,
    read_profile_file,
)
from synk8s.config_digest import DIGEST_UNLESS, LEFT_OUT, SPEED_ONLY, digest_view
from synk8s.config_studies import (
    DetectConfig,
    FeaturesConfig,
    FewShotConfig,
    FilterConfig,
    LeakageConfig,
    PretrainConfig,
    Section,
    TuneConfig,
)
from synk8s.errors import UsageError

CUSTOM_DATASET = "custom"  # dataset.name of a run over your own label space (--classes, --images)


class DatasetConfig(Section):
    """Which dataset, and where its files are."""

    name: str = Field(description="registry name, see `synk8s datasets list` (checked by synk8s.resolve)")
    root: str = Field(description="data folder; '{name}' is replaced by the dataset name")
    standin: bool = Field(description="write and use a small drawn stand-in when the real data is absent")
    standin_per_class: PerClass = Field(ge=1, description="stand-in images per class and split")
    # Your own classes and images (docs/custom-data.md): set by --classes / --images with dataset.name 'custom'.
    # The label space's content enters digests through classes_sha256; where its copy lies does not.
    classes: str | None = Field(
        description="store URI of the label-space file (--classes copies it there); null: the registry's classes",
        json_schema_extra={SPEED_ONLY: True},
    )
    classes_sha256: str | None = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the label-space file's bytes",
        json_schema_extra={DIGEST_UNLESS: None},
    )
    images: str | None = Field(
        description="your own images: an ImageFolder root or a CSV/JSONL manifest, a path or s3:// URI",
        json_schema_extra={DIGEST_UNLESS: None},
    )
    skip_bad_images: bool = Field(
        description="leave out unreadable or mislabelled images of dataset.images (listed) instead of failing",
        json_schema_extra={DIGEST_UNLESS: False},
    )

    @model_validator(mode="after")
    def _custom_fields(self) -> DatasetConfig:
        """The custom fields agree: ``custom`` has a label space, a label space or images go with ``custom``."""
        custom = self.name == CUSTOM_DATASET
        if (self.classes is None) != (self.classes_sha256 is None):
            raise ValueError("dataset.classes and dataset.classes_sha256 go together; pass --classes FILE")
        if custom and self.classes is None:
            raise ValueError("dataset.name 'custom' needs a label space: pass --classes FILE or --images FOLDER")
        if not custom and (self.classes is not None or self.images is not None):
            raise ValueError("dataset.classes and dataset.images go with dataset.name 'custom'; pass --classes or --images")
        return self

    def resolved_root(self) -> str:
        """The data folder with ``{name}`` filled in."""
        return self.root.replace("{name}", self.name)


class ModelsConfig(Section):
    """Registry names (see synk8s.models) or raw hub ids for each model; synk8s.resolve looks them up."""

    generator: str
    generator_revision: str | None
    clip: str
    le: str
    le_revision: str = Field(
        min_length=1,
        description="hub revision (branch, tag or commit sha) of the LE model and tokenizer; pin a commit sha "
        "for reproducible prompts (docs/air-gapped.md)",
        json_schema_extra={DIGEST_UNLESS: "main"},
    )
    backbone: str
    cache: str | None = Field(description="model cache folder or s3:// prefix for air-gapped clusters")


class PromptsConfig(Section):
    """Prompt construction: B (templates x class names) or LE (T5 word-to-sentence)."""

    mode: Literal["B", "LE"]
    sentences_per_class: PerClass = Field(ge=1, description="distinct LE sentences kept per class")
    oversample: float = Field(ge=1.0, description="LE draws this many times the sentences wanted, then dedupes")
    max_new_tokens: Width = Field(ge=1)
    top_k: Width = Field(ge=0)
    top_p: float = Field(gt=0.0, le=1.0)
    temperature: float = Field(gt=0.0)
    drop_other_classes: bool = Field(description="drop a sentence that names another class of the dataset")
    le_prefix: str = Field(description="text before the class name in the LE model input (official code: 'a ')")
    b_templates: Literal["first", "all"] = Field(description="B: the dataset's first template, or every one")
    dataset_prefix: bool = Field(
        description="official dataset-specific LE text: label names and generation prefix (EuroSAT)"
    )


class GenerateConfig(Section):
    """Text-to-image generation; null sampler fields take the generator's registry defaults."""

    images_per_class: PerClass = Field(ge=1)
    batch_size: Batch = Field(ge=1)
    steps: Steps | None = Field(ge=1)
    guidance: float | None = Field(ge=0.0)
    resolution: Pixels | None = Field(ge=8)
    dtype: DType
    num_shards: Workers = Field(ge=1, description="shards the work splits into (one GPU task each)")
    samples_per_tar: Images = Field(ge=1, description="images per WebDataset tar file")
    image_format: Literal["png", "jpg"]
    # Speed switches (docs/speed.md). Those that can change pixels enter the digest only when set away
    # from today's behaviour (DIGEST_UNLESS), so run folders made before they existed keep their names;
    # writer_threads never changes a byte and never enters it (SPEED_ONLY).
    attention: Literal["sdpa", "plain"] = Field(
        description="sdpa: torch's fused attention (diffusers' AttnProcessor2_0); plain: the matmul-softmax one",
        json_schema_extra={DIGEST_UNLESS: "sdpa"},
    )
    channels_last: bool = Field(
        description="UNet and VAE in channels-last memory format", json_schema_extra={DIGEST_UNLESS: False}
    )
    compile: bool = Field(
        description="torch.compile the UNet and the VAE decoder (the first batch pays the compile)",
        json_schema_extra={DIGEST_UNLESS: False},
    )
    vae_batched: bool = Field(
        description="decode a whole batch in one VAE call; false: one image at a time (less memory)",
        json_schema_extra={DIGEST_UNLESS: True},
    )
    scheduler: Literal["ddim", "dpm++", "euler-a"] | None = Field(
        description="null: the generator's own scheduler; dpm++: DPM-Solver++ multistep (about 20 steps)",
        json_schema_extra={DIGEST_UNLESS: None},
    )
    batch_autotune: tuple[Batch, ...] | None = Field(
        description="candidate batch sizes timed on the shard's first items; the fastest that fits is used "
        "and recorded in the shard's plan and manifest; null: generate.batch_size",
        json_schema_extra={DIGEST_UNLESS: None},
    )
    writer_threads: Workers = Field(
        ge=0,
        description="threads encoding images (PNG/JPEG) while the next batch denoises; 0: inline",
        json_schema_extra={SPEED_ONLY: True},
    )


class StoreConfig(Section):
    """Where artifacts go: a local folder or s3://bucket/prefix."""

    root: str = Field(min_length=1)


class ClusterConfig(Section):
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
    generate_retries: Workers = Field(ge=0)
    shm_size: str = Field(
        pattern=r"^[1-9][0-9]*(Ki|Mi|Gi|Ti)$",
        description="size of the memory-backed /dev/shm of tasks that run DataLoader workers, e.g. 16Gi",
    )
    service_account: str | None = Field(description="Kubernetes service account the pipeline's pods run as")


class ExperimentConfig(Section):
    """Everything one run needs. Built by :func:`load` and checked by :func:`synk8s.resolve.check`; never mutated."""

    profile: str
    seed: Seed
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
    leakage: LeakageConfig
    store: StoreConfig
    cluster: ClusterConfig

    @field_validator("profile")
    @classmethod
    def _profile_known(cls, value: str) -> str:
        if value not in profiles():
            raise ValueError(f"unknown profile {value!r}; choose one of: {', '.join(profiles())}")
        return value

    @model_validator(mode="after")
    def _finetune_on_own_images(self) -> ExperimentConfig:
        if self.pretrain.finetune.dataset == "custom" and self.dataset.images is None:
            raise ValueError(
                "pretrain.finetune.dataset=custom fine-tunes on your own images: pass --images FOLDER_OR_MANIFEST"
            )
        return self

    def digest(self, *fields: str) -> str:
        """Short sha256 of the given fields (dotted paths such as ``tune`` or ``models.clip``).

        With no fields: every field but ``store`` and ``cluster``. Where a run executes and where
        it writes do not change its results, so they do not change its digest; identical
        experiments give identical digests. Speed switches are left out where they change nothing
        (see :mod:`synk8s.config_digest`); a dotted path to one is left out of the selection.
        """
        data = digest_view(type(self), self.model_dump(mode="json", exclude={"store", "cluster"}))
        if fields:
            picked = {}
            full = self.model_dump(mode="json")
            for path in sorted(set(fields)):
                value, whole = data, full
                for part in path.split("."):
                    whole = whole[part]  # a misspelt path is still a KeyError
                    value = value.get(part, LEFT_OUT) if isinstance(value, dict) else LEFT_OUT
                if value is not LEFT_OUT:
                    picked[path] = value
            data = picked
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _profile_dir() -> Path:
    return Path(str(resources.files("synk8s") / "profiles"))


def profiles() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in _profile_dir().glob("*.yaml"))


def is_profile_file(profile: str) -> bool:
    """Whether ``profile`` names a user profile file (``*.yaml``/``*.yml``) rather than a shipped profile."""
    return profile.endswith((".yaml", ".yml"))


def _read_profile(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in seen:
        raise UsageError(f"profile {name!r} extends itself through {' -> '.join(seen)}")
    if is_profile_file(name):
        return _read_profile_file(Path(name), seen)
    if name not in profiles():
        raise UsageError(f"unknown profile {name!r}; choose one of: {', '.join(profiles())}, or a YAML file")
    data = yaml.safe_load((_profile_dir() / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return _merge(_read_profile(parent, (*seen, name)), data)


def _read_profile_file(path: Path, seen: tuple[str, ...]) -> dict[str, Any]:
    """A user profile: a YAML file that ``extends`` a shipped profile (or another file, relative to it)."""
    data = read_profile_file(path)
    if not isinstance(data.get("extends"), str):
        raise UsageError(f"profile file {path} must say which profile it extends, e.g. 'extends: tiny' "
                         f"(shipped: {', '.join(profiles())})")
    parent = data.pop("extends")
    if is_profile_file(parent):
        parent = str(path.parent / parent)
    return _merge(_read_profile(parent, (*seen, str(path))), data)


def base_profile(profile: str) -> str:
    """The shipped profile a profile file extends (through other files); a shipped name itself.

    Call it on a profile :func:`_read_profile` has read: the chain of ``extends`` is known to be sound.
    """
    while is_profile_file(profile):
        parent = read_profile_file(Path(profile))["extends"]
        profile = str(Path(profile).parent / parent) if is_profile_file(parent) else parent
    return profile


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
        raise UsageError(describe(err)) from None


def load(profile: str, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Resolve a profile and ``key.path=value`` overrides into a validated config.

    Args:
        profile: name of a file in ``synk8s/profiles`` (e.g. ``paper``, ``tiny``), or the path of
            a user profile file (``*.yaml``) that ``extends`` one. A config from a user file records
            the shipped profile it extends as ``profile``: what the file changes is carried as
            differences from it (pipeline parameters, digests), so pods never need the file.
        overrides: ``a.b=value`` strings; values are YAML (``3``, ``0.5``, ``true``, ``null``, ``[1, 2]``).

    Raises:
        UsageError: unknown profile, unreadable profile file, unknown key, or a value of the wrong type or range.
    """
    data = _read_profile(profile)
    data["profile"] = base_profile(profile)
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
