"""Real guidance (RG): image-to-image generation from each real few-shot image, sharded and resumable.

Each real shot of the saved split (noised to ``fewshot.guidance_strength[M]`` of the diffusion, 0.50 /
0.40 / 0.35 / 0.20 / 0.15 for 1 / 2 / 4 / 8 / 16 shots) replaces the random starting noise: the
generator's image-to-image pipeline (diffusers, same weights as ``generate``) denoises it under a
text prompt of its class. Every class gets ``fewshot.images_per_class`` images in total, so each of its
M shots gives ``ceil(images_per_class / M)`` (``per_shot``).

Prompts (``fewshot.rg_prompts``, :func:`rg_prompts`): ``template`` (both profiles, the official
code's choice) prompts every image of class ``c`` with its name in the dataset's first template
(EuroSAT: "a centered satellite photo of forest."), without reading the prompts folder; ``le``
uses the prompts stage's output (LE sentences under ``prompts.mode: LE``).

Work items: class ``c``, its shots in split order (rank ``r``), samples ``s < per_shot``; image
``j = r * per_shot + s`` of the class uses prompt ``j % P_c`` of its ``P_c`` prompts and the
seed ``derive_seed(seed, "guided", c, sample_id, s)`` with the shot's file identity, so an image's
noise depends on neither the batch, the shard count nor the other shots. The real image is
centre-cropped to a square and resized to the generator's resolution (bicubic) before encoding.

Shards, tars, resume and manifests are those of :mod:`synk8s.stages.synth.generate` (:func:`~synk8s.stages.synth.shard_writer.write_shard`):
``<out>/shard-{i:04d}-of-{n:04d}/{t:05d}.tar`` written atomically, existing tars skipped on a rerun,
``plan.json`` refusing a rerun with other settings, and :func:`collect` writing ``<out>/manifest.json``
(stage ``guided``) that the filter and features stages read like any generation output. Sample keys
are ``c{class:04d}-r{index:07d}-s{sample:04d}`` with the shot's dataset index. Each image's JSON holds
the usual provenance plus ``strength``, ``split_digest`` and ``source`` (``index``, ``sample_id``,
``pixel_sha256`` of the real image).

    for shard in range(n):
        guided.run(cfg, split="runs/x/split", prompts="runs/x/prompts", out="runs/x/guided", shard=shard)
    guided.collect(cfg, out="runs/x/guided")
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from synk8s import shards
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.runs import read_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.synth import generate, shard_writer
from synk8s.stages.synth.generate_speed import apply_switches
from synk8s.stages.synth.shard_writer import GenerateResult, Sampler
from synk8s.stages.zeroshot import features
from synk8s.stages.zeroshot import filter as filter_stage
from synk8s.stagetable.spec import Option, Resources, Sharding, StageSpec

if TYPE_CHECKING:
    from PIL import Image

    from synk8s.stages.fewshot.split import FewShotSplit, Shot

log = logging.getLogger(__name__)

NAME = "guided"  # stage name in seeds and manifests


@dataclass(frozen=True)
class GuidedItem:
    """One image to generate from a real shot."""

    class_index: int
    class_name: str
    prompt_index: int
    sample_index: int
    prompt: str
    seed: int
    source: Shot

    @property
    def key(self) -> str:
        """The sample key in the tars, e.g. ``c0003-r0001234-s0012``."""
        return f"c{self.class_index:04d}-r{self.source.index:07d}-s{self.sample_index:04d}"


def strength_for(cfg: ExperimentConfig, shots: int) -> float:
    """The img2img noise strength for M shots (``fewshot.guidance_strength``).

    Raises:
        UsageError: no strength is configured for M, or it leaves no denoising step with the
            generator's step count (diffusers runs ``int(steps x strength)`` steps; the stand-in painter
            blends by the strength and has no steps).
    """
    from synk8s.models import get_generator_info

    table = cfg.fewshot.guidance_strength
    if shots not in table:
        raise UsageError(
            f"fewshot.guidance_strength has no entry for {shots} shots (has {sorted(table)}); "
            f"add one, e.g. --set 'fewshot.guidance_strength={{{shots}: 0.3}}'"
        )
    strength = table[shots]
    info = get_generator_info(cfg.models.generator, cfg.models.generator_revision)
    steps = cfg.generate.steps or info.steps
    if info.pipeline != "painter" and int(steps * strength) < 1:
        raise UsageError(
            f"{steps} steps at strength {strength} leave no denoising step; "
            f"set generate.steps to at least {math.ceil(1 / strength)}"
        )
    return strength


def rg_prompts(cfg: ExperimentConfig, prompts: str, classes: Sequence[str]) -> list[dict[str, Any]]:
    """The prompt records RG images are made from, as ``fewshot.rg_prompts`` says.

    ``template``: one per class, the class name (and its description, in your own label space) in the
    dataset's first template (the prompts folder is not read). ``le``: the prompts stage's records in ``prompts``.

    Raises:
        MissingDataError: ``le`` and the prompts stage has not run into ``prompts``.
    """
    from synk8s import datasets
    from synk8s.stages.synth.prompts import read_prompts, template_prompts

    if cfg.fewshot.rg_prompts == "template":
        info = datasets.info(cfg.dataset)  # a class's description follows its name, as in B prompts
        records, _stats = template_prompts(classes, info.templates[:1], info.descriptions)
        return records
    read_manifest(prompts, "prompts")
    return read_prompts(prompts)


def per_shot(cfg: ExperimentConfig, shots: int) -> int:
    """Images generated from each real shot: ``ceil(fewshot.images_per_class / M)``."""
    return -(-cfg.fewshot.images_per_class // shots)


def work_items(
    cfg: ExperimentConfig, split: FewShotSplit, prompts: Sequence[dict[str, Any]], classes: Sequence[str]
) -> list[GuidedItem]:
    """All RG images of the run, sorted by (class, shot in split order, sample).

    Raises:
        UsageError: the prompts do not match the dataset.
        MissingDataError: a class has no prompt.
    """
    by_class = generate.prompts_by_class(cfg, prompts, classes)
    count = per_shot(cfg, split.shots)
    rank: dict[int, int] = {}
    items = []
    for shot in split.entries:  # class by class, each class in draw order
        c = shot.label
        r = rank.get(c, 0)
        rank[c] = r + 1
        for s in range(count):
            p = (r * count + s) % len(by_class[c])
            seed = derive_seed(cfg.seed, NAME, c, shot.sample_id, s)
            items.append(GuidedItem(c, classes[c], p, s, by_class[c][p], seed, shot))
    return items


def guide_image(image: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop to a square and resize to ``resolution`` pixels a side (bicubic), RGB."""
    from PIL import Image as PILImage

    rgb = image.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    return rgb.crop((left, top, left + side, top + side)).resize((resolution, resolution), PILImage.BICUBIC)


def render_guided(
    pipe: Any, prompts: Sequence[str], images: Sequence[Image.Image], seeds: Sequence[int], sampler: Sampler,
    strength: float, labels: Sequence[int],
) -> list[Image.Image]:  # fmt: skip
    """Generate one image per (prompt, starting image, seed) with an image-to-image pipeline.

    Each image has its own ``torch.Generator`` (its VAE sampling and noise), as in :func:`generate.render`;
    ``labels`` (class indices) go to a class-conditional pipeline as ``class_labels``.
    """
    import torch

    generators = [torch.Generator(sampler.device).manual_seed(s) for s in seeds]
    with torch.inference_mode():
        output = pipe(
            prompt=list(prompts),
            image=list(images),
            strength=strength,
            generator=generators,
            num_inference_steps=sampler.steps,
            guidance_scale=sampler.guidance,
            output_type="pil",
            **generate.class_conditioning(pipe, labels),
        )
    return list(output.images)


def _meta(item: GuidedItem, sampler: Sampler, scheduler: str, strength: float, digest: str) -> dict[str, Any]:
    source = {"index": item.source.index, "sample_id": item.source.sample_id, "pixel_sha256": item.source.pixel_sha256}
    return {
        **generate.sample_meta(item, sampler, scheduler),  # type: ignore[arg-type]
        "strength": strength,
        "split_digest": digest,
        "source": source,
    }


def run(
    cfg: ExperimentConfig,
    *,
    split: str,
    prompts: str,
    out: str,
    shard: int = 0,
    num_shards: int | None = None,
) -> GenerateResult:
    """Generate the RG images of one shard, skipping tars that already exist.

    Args:
        cfg: the run config (``fewshot``, ``models.generator``, ``generate`` sampler and shard settings, ``seed``).
        split: the split stage's output folder.
        prompts: the prompts stage's output folder (read only with ``fewshot.rg_prompts: le``).
        out: this stage's output folder URI (shared by all shards).
        shard: which shard to make, in ``[0, num_shards)``. Default 0.
        num_shards: how many shards the work is split into; None means ``generate.num_shards``.

    Raises:
        MissingDataError: the split or prompts are missing, or the real images changed since the split.
        UsageError: bad shard index, no strength for M, or ``out`` holds this shard made with other settings.
    """
    from synk8s import datasets
    from synk8s.models import resolve_device
    from synk8s.stages.fewshot.split import load_split, shot_images

    start = time.perf_counter()
    num_shards = cfg.generate.num_shards if num_shards is None else num_shards
    shots = load_split(split)
    strength = strength_for(cfg, shots.shots)
    classes = list(datasets.info(cfg.dataset).classes)
    items = generate.shard_items(work_items(cfg, shots, rg_prompts(cfg, prompts, classes), classes), shard, num_shards)
    device = resolve_device(cfg.device)
    sampler = generate.sampler_settings(cfg, device)
    plan = {
        **generate.shard_plan(cfg, sampler, items, shard, num_shards),  # type: ignore[arg-type]
        "strength": strength,
        "split_digest": shots.digest,
    }
    shard_writer.check_plan(out, shard, num_shards, plan)
    real: dict[int, Image.Image] = {}

    def samples(pipe: Any, chunk: Sequence[GuidedItem], sampler: Sampler, bar: Any) -> Iterator[shards.Sample]:
        if not real:  # the real images are read (and checked) only when a tar is missing
            for shot, (image, _label) in zip(shots.entries, shot_images(cfg, shots), strict=True):
                real[shot.index] = guide_image(image, sampler.resolution)
        scheduler = type(pipe.scheduler).__name__
        fmt = cfg.generate.image_format
        size = cfg.generate.batch_size
        for begin in range(0, len(chunk), size):
            batch = chunk[begin : begin + size]
            images = render_guided(
                pipe, [it.prompt for it in batch], [real[it.source.index] for it in batch],
                [it.seed for it in batch], sampler, strength, [it.class_index for it in batch],
            )  # fmt: skip
            for item, image in zip(batch, images, strict=True):
                meta = _meta(item, sampler, scheduler, strength, shots.digest)
                yield item.key, [(fmt, shards.encode_image(image, fmt)), ("json", shards.encode_json(meta))]
            bar.update(len(batch))

    return shard_writer.write_shard(
        cfg, out=out, shard=shard, num_shards=num_shards, items=items, plan=plan, sampler=sampler,
        samples=samples, img2img=True, start=start,
        # The pipeline switches apply here too; batch_autotune and writer_threads are generate's alone.
        prepare=lambda pipe: {"speed": apply_switches(pipe, cfg.generate)},
    )  # fmt: skip


def collect(cfg: ExperimentConfig, *, out: str, num_shards: int | None = None) -> GenerateResult:
    """Check every RG shard finished and write ``<out>/manifest.json`` (see :func:`shard_writer.collect`)."""
    return shard_writer.collect(cfg, out=out, num_shards=num_shards, stage=NAME)


# One img2img pipeline in memory, like generate's text-to-image one.
STAGE = StageSpec(
    name=NAME,
    run=run,
    help="Real guidance (RG): img2img from each real shot, one shard of the images; reruns skip finished tars.",
    inputs={"split": "split", "prompts": "prompts"},
    depends=(
        "models.generator", "models.generator_revision", "generate",
        "fewshot.images_per_class", "fewshot.guidance_strength", "fewshot.rg_prompts",
    ),  # fmt: skip
    gpu=True,
    resources=Resources("4", "8", "24Gi", "32Gi"),
    outputs={"shard-*-of-*/*.tar": shards.iter_samples, "manifest.json": shards.manifest_tars},
    folder="images-rg",
    options=(Option("shard", int, 0, "Which shard to generate (0-based)."), generate.NUM_SHARDS),
    shards=Sharding(
        count=generate.shard_count,
        collect=collect,
        collect_name="collect_guided",
        collect_help="Check every RG shard finished and write the RG images manifest.",
        collect_resources=Resources("500m", "1", "1Gi", "2Gi"),
        collect_options=(generate.NUM_SHARDS,),
    ),
)

def filter_guided(cfg: ExperimentConfig, *, images: str, out: str, progress: bool = True) -> filter_stage.FilterResult:
    """CF of the RG images under ``fewshot.rg_filter``; see :func:`synk8s.stages.zeroshot.filter.run`.

    With ``fewshot.rg_filter: false`` (the official code trains on every RG image) the filter runs
    with ``filter.enabled: false``: every image is kept and its zero-shot (teacher) logits are written.
    """
    if not cfg.fewshot.rg_filter:
        cfg = cfg.model_copy(update={"filter": cfg.filter.model_copy(update={"enabled": False})})
    return filter_stage.run(cfg, images=images, out=out, progress=progress)


# CF and CLIP features of the RG images: the zero-shot rows reading guided's images into folders of their own.
FILTER_STAGE = replace(
    filter_stage.STAGE,
    name="filter_guided",
    run=filter_guided,
    help="CLIP filter (CF) of the real-guided (RG) images; fewshot.rg_filter=false keeps every image.",
    inputs={"images": NAME},
    depends=(*filter_stage.STAGE.depends, "fewshot.rg_filter"),
    folder="filter-rg",
)
FEATURES_STAGE = replace(
    features.STAGE,
    name="features_guided",
    help="CLIP image features of the real-guided (RG) images (cached), listed with the shared test features.",
    inputs={"images": NAME, "test": "test_features"},
    after=("filter_guided",),  # CF over the same images has filled the feature cache
    folder="features-rg",
)
