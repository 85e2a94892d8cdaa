"""What a run will cost before it starts: images, GPU tasks, GPU-hours, store bytes and objects, wall time.

    est = estimate(cfg, "zeroshot", gpu_type="h100", gpus=8)
    est.total.gpu_hours, est.stages[1].images, est.to_dict()

Pure arithmetic over the resolved config and the small tables below; nothing is loaded or contacted.
Every figure is an **estimate**: :data:`GPUS` holds vendor peaks times an assumed achieved fraction,
because ``benchmarks/README.md`` has no figure measured on a GPU yet. Compute is FLOPs per image
over achieved FLOP/s:

* generation: UNet FLOPs per step x steps x (2 with classifier-free guidance, else 1) + VAE decode,
  at 512 px, scaled by (resolution / 512)^2; real-guided (img2img) runs int(steps x strength) steps
  and adds a VAE encode;
* CLIP features (filter, test features): CLIP RN50's FLOPs per 224 px image (images are resized);
* training (pretrain, finetune, detect): images x epochs x ResNet-50 forward FLOPs (scaled by
  (resolution / 224)^2) x 3 for forward + backward; MoCo adds the key encoder's forward (x 4).

Stages that train a linear head on cached features (tune, few-shot tune) or only read and write
files cost no GPU time here. Wall time assumes each stage waits for the one before it (an upper
bound where branches run at once) and that the GPUs divide a stage's work evenly, except that a
sharded stage runs at most one task per shard and a single-task stage uses one GPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from synk8s import config as config_module
from synk8s import datasets, labelspace
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.models.registry import get_generator_info

PIPELINES = ("zeroshot", "fewshot", "fewshot_sweep", "pretrain")

#: FLOP per UNet forward at 512 px (64 x 64 latent) and per VAE decode / encode of one 512 px image:
#: ThanatosShinji/onnx-tool's Stable Diffusion 1.4 profile (about 0.4 T MACs UNet, 1.24 T MACs decoder,
#: 0.54 T MACs encoder; FLOP = 2 x MAC). 25 steps with CFG give 50 x 0.8 + 2.7 = 42.7 T, the anchor of
#: benchmarks/gpu_check.py.
UNET_TFLOP_512 = 0.8
VAE_DECODE_TFLOP_512 = 2.7
VAE_ENCODE_TFLOP_512 = 1.1
#: CLIP RN50 image encoder at 224 px (benchmarks/gpu_check.py's anchor).
CLIP_RN50_GFLOP = 12.2
#: ResNet-50 forward at 224 px (He et al. 2016, Table 1, as torchvision counts it); training is 3x forward.
RESNET50_GFLOP_224 = 4.1
TRAIN_FACTOR = 3.0
MOCO_FACTOR = 4.0  # query forward + backward (3x) and the key encoder's forward (1x)
#: Faster R-CNN R50-C4 at VOC scale: the backbone at 800 x 600 px, doubled for the C4 box head (assumed).
DETECT_GFLOP_PER_IMAGE = RESNET50_GFLOP_224 * (800 * 600) / 224**2 * 2.0
#: Real images each transfer trains on: CIFAR-100's train split, VOC07+12 trainval.
TRANSFER_TRAIN_IMAGES = {"cifar100": 50_000, "voc": 16_551}
#: Test-set images assumed for every dataset (CIFAR's 10,000): the estimator does not read the data.
TEST_IMAGES = 10_000
#: Bytes per stored pixel (assumed): JPEG at the writer's quality, lossless PNG of synthetic images.
BYTES_PER_PIXEL = {"jpg": 0.25, "png": 1.5}
#: Bytes of one image's cached feature row (CLIP RN50: 1024 float32).
FEATURE_BYTES = 1024 * 4
#: Small files of every stage call: manifest.json and the cost record.
SMALL_FILES = 2
#: Bytes of a ResNet-50 checkpoint (weights + SGD momentum, float32).
CHECKPOINT_BYTES = 2 * 25_600_000 * 4


@dataclass(frozen=True)
class GpuType:
    """One GPU type's throughput.

    Attributes:
        name: display name.
        peak_tflops: dense bfloat16 peak, from the vendor's data sheet.
        achieved: fraction of the peak assumed reached (no GPU measurement yet).
        source: where the figure comes from: ``estimate`` until a GPU run measures it.
    """

    name: str
    peak_tflops: float
    achieved: float = 0.4
    source: str = "estimate"

    @property
    def tflops(self) -> float:
        """Achieved TFLOP/s assumed for the estimate."""
        return self.peak_tflops * self.achieved


GPUS: dict[str, GpuType] = {
    "h100": GpuType("NVIDIA H100 SXM", 989.0),  # H100 data sheet: 1979 with sparsity
    "h200": GpuType("NVIDIA H200 SXM", 989.0),  # H200 data sheet: same compute as H100, more memory
    "a100": GpuType("NVIDIA A100", 312.0),  # A100 data sheet: 624 with sparsity
    "l4": GpuType("NVIDIA L4", 121.0),  # L4 data sheet: 242 with sparsity
}


@dataclass(frozen=True)
class StageEstimate:
    """One stage (or a stage of one shot count) of a run.

    Attributes:
        stage: the stage, with ``M=<m>`` for a sweep branch or the side of a transfer.
        gpu: whether its tasks ask for a GPU.
        tasks: tasks it runs (shards of a sharded stage).
        images: images it generates, encodes or trains on (training: images x epochs).
        tflop: compute in TFLOP.
        gpu_hours: GPU-hours on the chosen GPU type.
        bytes: bytes it writes to the store.
        objects: objects it writes to the store.
        wall_hours: hours it takes on the chosen GPUs.
    """

    stage: str
    gpu: bool
    tasks: int
    images: int
    tflop: float
    gpu_hours: float
    bytes: int
    objects: int
    wall_hours: float


@dataclass(frozen=True)
class Estimate:
    """A run's estimate: its stages and their total."""

    pipeline: str
    gpu_type: str
    gpu_name: str
    gpus: int
    stages: list[StageEstimate]
    basis: str = "estimate"
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> StageEstimate:
        """The sum over the stages."""
        return StageEstimate(
            "total", any(s.gpu for s in self.stages), sum(s.tasks for s in self.stages),
            sum(s.images for s in self.stages if s.stage.startswith("generate") or s.stage.startswith("guided")),
            round(sum(s.tflop for s in self.stages), 1), round(sum(s.gpu_hours for s in self.stages), 6),
            sum(s.bytes for s in self.stages), sum(s.objects for s in self.stages),
            round(sum(s.wall_hours for s in self.stages), 6),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the settings, each stage, the total (whose images are those generated)."""
        return {
            "basis": self.basis, "pipeline": self.pipeline, "gpu_type": self.gpu_type, "gpu_name": self.gpu_name,
            "gpus": self.gpus, "stages": [asdict(s) for s in self.stages], "total": asdict(self.total),
            "notes": list(self.notes),
        }  # fmt: skip


def gpu_type(name: str) -> GpuType:
    """The row of :data:`GPUS` named ``name``.

    Raises:
        UsageError: an unknown GPU type.
    """
    if name not in GPUS:
        raise UsageError(f"unknown GPU type {name!r}; choose one of: {', '.join(GPUS)}")
    return GPUS[name]


def default_gpus(cfg: ExperimentConfig, pipeline: str) -> int:
    """GPUs the config asks for: the training job's for ``pretrain``, else one per generation shard."""
    if pipeline == "pretrain" and cfg.pretrain.gpus_per_node > 0:
        return max(cfg.generate.num_shards, cfg.pretrain.nodes * cfg.pretrain.gpus_per_node)
    return cfg.generate.num_shards


def generation_tflop(cfg: ExperimentConfig, *, strength: float | None = None) -> float:
    """TFLOP to generate one image under ``cfg``; ``strength`` for real-guided (img2img) generation."""
    info = get_generator_info(cfg.models.generator)
    steps = cfg.generate.steps if cfg.generate.steps is not None else info.steps
    guidance = cfg.generate.guidance if cfg.generate.guidance is not None else info.guidance
    side = cfg.generate.resolution if cfg.generate.resolution is not None else info.resolution
    scale = (side / 512) ** 2
    vae = VAE_DECODE_TFLOP_512
    if strength is not None:
        steps = max(1, int(steps * strength))
        vae += VAE_ENCODE_TFLOP_512
    unet = UNET_TFLOP_512 * steps * (2 if guidance > 0 else 1)
    return (unet + vae) * scale


def image_side(cfg: ExperimentConfig) -> int:
    """The generated images' side in pixels."""
    side = cfg.generate.resolution
    return side if side is not None else get_generator_info(cfg.models.generator).resolution


class _Builder:
    """Turns stage quantities into :class:`StageEstimate` rows on one GPU type and count."""

    def __init__(self, cfg: ExperimentConfig, gpu: GpuType, gpus: int) -> None:
        self.cfg, self.gpu, self.gpus = cfg, gpu, gpus
        self.image_bytes = int(BYTES_PER_PIXEL[cfg.generate.image_format] * image_side(cfg) ** 2)

    def row(self, stage: str, *, images: int = 0, tflop: float = 0.0, tasks: int = 1, gpu: bool = False,
            nbytes: int = 0, objects: int = 0, parallel: int = 1) -> StageEstimate:
        """One stage; ``parallel`` is how many GPUs its work can spread over."""
        hours = tflop / self.gpu.tflops / 3600.0 if gpu else 0.0
        wall = hours / max(1, min(parallel, self.gpus)) if gpu else 0.0
        return StageEstimate(stage, gpu, tasks, images, round(tflop, 1), round(hours, 6), int(nbytes),
                             objects + SMALL_FILES * tasks, round(wall, 6))  # fmt: skip

    def generate(self, stage: str, images: int, per_image_tflop: float, shards: int) -> StageEstimate:
        """A sharded generation stage: tars of ``generate.samples_per_tar`` images, one GPU task per shard."""
        per_shard = math.ceil(images / shards)
        tars = shards * math.ceil(per_shard / self.cfg.generate.samples_per_tar)
        # Wall time: the GPUs work through the shards in waves of ``gpus``.
        waves = math.ceil(shards / self.gpus)
        hours = per_image_tflop * images / self.gpu.tflops / 3600.0
        row = self.row(stage, images=images, tflop=per_image_tflop * images, tasks=shards, gpu=True,
                       nbytes=images * self.image_bytes, objects=tars + 1, parallel=shards)  # fmt: skip
        return StageEstimate(**{**asdict(row), "wall_hours": round(hours / shards * waves, 6)})

    def clip(self, stage: str, images: int) -> StageEstimate:
        """A CLIP encoding stage on one GPU task; its features go to the cache."""
        return self.row(stage, images=images, tflop=images * CLIP_RN50_GFLOP / 1000, gpu=True,
                        nbytes=images * FEATURE_BYTES, objects=1)  # fmt: skip

    def train(self, stage: str, images: int, epochs: int, gflop: float, factor: float) -> StageEstimate:
        """A DDP training stage over all the GPUs: images x epochs x forward GFLOP x ``factor``."""
        seen = images * epochs
        return self.row(stage, images=seen, tflop=seen * gflop * factor / 1000, gpu=True,
                        nbytes=CHECKPOINT_BYTES * 2, objects=3, parallel=self.gpus)  # fmt: skip


def estimate(cfg: ExperimentConfig, pipeline: str, *, gpu_type_name: str = "h100", gpus: int | None = None) -> Estimate:
    """Estimate what running ``pipeline`` under ``cfg`` costs, stage by stage.

    Args:
        cfg: the resolved config of the run.
        pipeline: one of :data:`PIPELINES`.
        gpu_type_name: a key of :data:`GPUS`.
        gpus: GPUs to spread the work over; None: :func:`default_gpus`.

    Raises:
        UsageError: an unknown pipeline or GPU type, or fewer than one GPU.
    """
    if pipeline not in PIPELINES:
        raise UsageError(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(PIPELINES)}")
    if pipeline == "pretrain" and cfg.pretrain.label_space is None:
        cfg = config_module.with_overrides(cfg, ["pretrain.label_space=cifar100", "dataset.name=cifar100"])
    count = default_gpus(cfg, pipeline) if gpus is None else gpus
    if count < 1:
        raise UsageError(f"--gpus must be at least 1, got {count}")
    gpu = gpu_type(gpu_type_name)
    build = _Builder(cfg, gpu, count)
    if pipeline == "pretrain":
        stages = _pretrain(cfg, build)
    elif pipeline == "zeroshot":
        stages = _zeroshot(cfg, build)
    else:
        shots = tuple(cfg.fewshot.shots) if pipeline == "fewshot_sweep" else (cfg.fewshot.shots_per_class,)
        stages = _fewshot(cfg, build, shots)
    notes = [f"figures are estimates: {gpu.peak_tflops:g} TFLOP/s peak x {gpu.achieved:.0%} achieved on "
             f"{gpu.name}; no GPU measurement in benchmarks/README.md yet"]  # fmt: skip
    if get_generator_info(cfg.models.generator).tiny:
        notes.append(f"{cfg.models.generator} is a tiny generator; it is costed as an SD-1.5-class model")
    if cfg.device == "cpu":
        notes.append(f"this config runs on the CPU; the estimate is for {gpu.name}")
    return Estimate(pipeline, gpu_type_name, gpu.name, count, stages, notes=notes)


def _prompts(cfg: ExperimentConfig, build: _Builder, classes: int) -> StageEstimate:
    """The prompts stage: one small file, on the CPU (T5 on a few hundred sentences per class)."""
    return build.row("prompts", nbytes=classes * cfg.prompts.sentences_per_class * 80, objects=1)


def _zeroshot(cfg: ExperimentConfig, build: _Builder) -> list[StageEstimate]:
    classes = datasets.info(cfg.dataset).num_classes
    made = classes * cfg.generate.images_per_class
    return [
        _prompts(cfg, build, classes),
        build.generate("generate", made, generation_tflop(cfg), cfg.generate.num_shards),
        build.clip("filter", made),
        build.clip("test_features", TEST_IMAGES),
        build.row("features", objects=1),
        build.row("leakage", objects=2),
        build.row("tune", nbytes=classes * FEATURE_BYTES, objects=1),
        build.row("evaluate", objects=2),
        build.row("export", objects=4),
    ]


def _fewshot(cfg: ExperimentConfig, build: _Builder, shots: tuple[int, ...]) -> list[StageEstimate]:
    classes = datasets.info(cfg.dataset).num_classes
    rows = [_prompts(cfg, build, classes), build.clip("test_features", TEST_IMAGES)]
    if cfg.fewshot.strategy != "RG":
        made = classes * cfg.generate.images_per_class
        rows += [build.generate("generate", made, generation_tflop(cfg), cfg.generate.num_shards),
                 build.clip("filter", made), build.row("features", objects=1)]  # fmt: skip
    for m in shots:
        tag = f" M={m}" if len(shots) > 1 else ""
        rows.append(build.row(f"split{tag}", objects=1))
        if cfg.fewshot.strategy == "RF":
            rows.append(build.clip(f"realfilter{tag}", classes * m))
        if cfg.fewshot.strategy == "RG":
            made = classes * m * math.ceil(cfg.fewshot.images_per_class / m)
            strength = cfg.fewshot.guidance_strength.get(m, 1.0)
            tflop = generation_tflop(cfg, strength=strength)
            rows += [build.generate(f"guided{tag}", made, tflop, cfg.generate.num_shards),
                     build.clip(f"filter_guided{tag}", made), build.row(f"features_guided{tag}", objects=1)]  # fmt: skip
        rows += [build.row(f"fewshot_tune{tag}", nbytes=classes * FEATURE_BYTES, objects=1),
                 build.row(f"fewshot_evaluate{tag}", objects=2)]  # fmt: skip
    return rows


def _pretrain(cfg: ExperimentConfig, build: _Builder) -> list[StageEstimate]:
    names = labelspace.class_names(cfg)
    made = len(names) * labelspace.images_per_class(cfg)
    pre = cfg.pretrain
    moco = pre.method == "moco"
    forward = RESNET50_GFLOP_224 * (pre.resolution / 224) ** 2
    rows = [
        _prompts(cfg, build, len(names)),
        build.generate("generate", made, generation_tflop(cfg), cfg.generate.num_shards),
        build.train("pretrain", made, pre.moco.epochs if moco else pre.epochs, forward,
                    MOCO_FACTOR if moco else TRAIN_FACTOR),  # fmt: skip
    ]
    for side in ("pretrained", "scratch"):
        if pre.transfer == "cifar100":
            fine = pre.finetune
            gflop = RESNET50_GFLOP_224 * (fine.resolution / 224) ** 2
            rows.append(build.train(f"finetune_{side}", TRANSFER_TRAIN_IMAGES["cifar100"], fine.epochs, gflop,
                                    TRAIN_FACTOR))  # fmt: skip
        else:
            seen = cfg.detect.iterations * cfg.detect.batch_size
            rows.append(build.train(f"detect_{side}", seen, 1, DETECT_GFLOP_PER_IMAGE, TRAIN_FACTOR))
    rows.append(build.row("transfer_report", objects=1))
    return rows
