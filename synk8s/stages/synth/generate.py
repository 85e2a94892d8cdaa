"""Stage 2, generate: text-to-image generation into resumable, byte-reproducible WebDataset shards.

Work items: class ``c`` gets ``generate.images_per_class`` images; image ``j`` uses prompt
``j % P_c`` (``P_c`` prompts for the class) and sample index ``j // P_c``. Items are ordered by
``(c, j)`` and shard ``i`` of ``n`` takes ``items[i::n]``, so shards differ in size by at most one
item. Every image has its own seed, ``derive_seed(seed, c, prompt_index, sample_index)``, and its own
``torch.Generator``, so its noise does not depend on the batch it lands in or on the shard count. The
pixels can still differ by float rounding, because math kernels are chosen by batch shape (on CPU we
see a few pixels off by one level in a few images in a hundred between batch sizes or CPU thread
counts). Tar bytes are therefore reproducible for the same shard count, ``generate.batch_size``,
thread count and hardware; batches never cross a tar boundary, so a resumed shard rebuilds exactly
the bytes an uninterrupted run writes.

The speed switches (``generate.attention``, ``channels_last``, ``compile``, ``vae_batched``,
``scheduler``, ``batch_autotune``, ``writer_threads``) are applied by
:mod:`synk8s.stages.synth.generate_speed`; see docs/speed.md for which of them can move pixels. An
autotuned batch size is kept in the shard folder (``autotune.json``) and reused by a rerun.

Shards are written, resumed and collected by :mod:`synk8s.stages.synth.shard_writer` (shared with real
guidance): atomic tars, a rerun that keeps intact tars and remakes missing or damaged ones, and a
collect step that checks every tar against its recorded SHA-256.

Run one shard per GPU task::

    result = run(cfg, prompts="runs/r1/prompts", out="runs/r1/images", shard=3)
    collect(cfg, out="runs/r1/images")  # after all shards
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synk8s import labelspace, shards, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError, UsageError
from synk8s.runs import read_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.synth.generate_speed import apply_switches, autotune_batch, changed_switches, encoded_in_order
from synk8s.stages.synth.prompts import read_prompts
from synk8s.stages.synth.shard_writer import GenerateResult, Sampler, check_plan, collect, shard_name, write_shard
from synk8s.stagetable.spec import Option, Resources, Sharding, StageSpec

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

AUTOTUNE_FILE = "autotune.json"  # in the shard folder: the batch size batch_autotune chose, and its timings


@dataclass(frozen=True)
class WorkItem:
    """One image to generate."""

    class_index: int
    class_name: str
    prompt_index: int
    sample_index: int
    prompt: str
    seed: int

    @property
    def key(self) -> str:
        """The sample key in the tars, e.g. ``c0003-p00012-s0001``."""
        return shards.sample_key(self.class_index, self.prompt_index, self.sample_index)


# ----------------------------------------------------------------------------- planning


def prompts_by_class(
    cfg: ExperimentConfig, prompts: Sequence[dict[str, Any]], classes: Sequence[str]
) -> list[list[str]]:
    """The prompt texts of each class, in prompt-index order.

    Raises:
        UsageError: the prompts name classes the dataset lacks or spell them differently.
        MissingDataError: a class has no prompt.
    """
    by_class: list[list[str]] = [[] for _ in classes]
    for record in sorted(prompts, key=lambda r: (r["class_index"], r["prompt_index"])):
        c = record["class_index"]
        if not 0 <= c < len(classes) or record["class_name"] != classes[c]:
            raise UsageError(
                f"prompt for class {c} {record['class_name']!r} does not match dataset {cfg.dataset.name!r}; "
                "rerun the prompts stage with the same dataset.name"
            )
        by_class[c].append(record["prompt"])
    for c, class_prompts in enumerate(by_class):
        if not class_prompts:
            raise MissingDataError(
                f"class {classes[c]!r} has no prompts; rerun prompts with a larger prompts.oversample or prompts.mode=B"
            )
    return by_class


def work_items(cfg: ExperimentConfig, prompts: Sequence[dict[str, Any]], classes: Sequence[str]) -> list[WorkItem]:
    """All images of the run, sorted by (class, image index within the class).

    Args:
        cfg: the run config (``seed``; images per class from :func:`synk8s.labelspace.images_per_class`).
        prompts: prompt records as written by the prompts stage.
        classes: the run's class names in class-index order (:func:`synk8s.labelspace.class_names`).

    Raises:
        UsageError: the prompts name classes the dataset lacks or spell them differently.
        MissingDataError: a class has no prompt.
    """
    per_class = labelspace.images_per_class(cfg)
    items = []
    for c, class_prompts in enumerate(prompts_by_class(cfg, prompts, classes)):
        count = len(class_prompts)
        for j in range(per_class):
            p, s = j % count, j // count
            items.append(WorkItem(c, classes[c], p, s, class_prompts[p], derive_seed(cfg.seed, c, p, s)))
    return items


def shard_items(items: Sequence[WorkItem], shard: int, num_shards: int) -> list[WorkItem]:
    """The items of one shard: every ``num_shards``-th item starting at ``shard``."""
    if num_shards < 1:
        raise UsageError(f"--num-shards (generate.num_shards) must be at least 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise UsageError(f"shard must be in [0, {num_shards - 1}], got {shard}")
    return list(items[shard::num_shards])


def sampler_settings(cfg: ExperimentConfig, device: str) -> Sampler:
    """Resolve steps, guidance, resolution and dtype: config values, else the generator's defaults."""
    from synk8s.models import generator_identity, get_generator_info, resolve_dtype

    info = get_generator_info(cfg.models.generator, cfg.models.generator_revision)
    model_id, revision = generator_identity(cfg.models.generator, revision=cfg.models.generator_revision, seed=cfg.seed)
    dtype = resolve_dtype(cfg.generate.dtype, device)
    return Sampler(
        model_id=model_id,
        revision=revision,
        steps=cfg.generate.steps if cfg.generate.steps is not None else info.steps,
        guidance=cfg.generate.guidance if cfg.generate.guidance is not None else info.guidance,
        resolution=cfg.generate.resolution if cfg.generate.resolution is not None else info.resolution,
        dtype=str(dtype).removeprefix("torch."),
        device=device,
    )


def shard_plan(cfg: ExperimentConfig, sampler: Sampler, items: Sequence[WorkItem], shard: int, num_shards: int) -> dict:
    """What a shard makes; equal plans give equal tars (on the same hardware)."""
    listing = "\n".join(f"{it.key}\t{it.seed}\t{it.prompt}" for it in items)
    plan = {
        "shard": shard,
        "num_shards": num_shards,
        "items": len(items),
        "items_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "samples_per_tar": cfg.generate.samples_per_tar,
        "image_format": cfg.generate.image_format,
        "sampler": {k: v for k, v in sampler.as_dict().items() if k != "device"},
    }
    switches = changed_switches(cfg.generate)  # only when set: plans of earlier runs stay valid
    return {**plan, "switches": switches} if switches else plan


# ----------------------------------------------------------------------------- generation


def render(
    pipe: Any, prompts: Sequence[str], seeds: Sequence[int], sampler: Sampler, labels: Sequence[int]
) -> list[Image.Image]:
    """Generate one image per (prompt, seed) with a text-to-image pipeline.

    Each image gets its own ``torch.Generator`` seeded with its seed, so its initial noise (and any
    noise an ancestral scheduler draws) does not depend on the other images of the batch; only float
    rounding can (see the module notes).

    Args:
        pipe: a pipeline from :func:`synk8s.models.load_generator`.
        prompts: the batch's prompts.
        seeds: one seed per prompt.
        sampler: steps, guidance, resolution and device.
        labels: the class index of each prompt; passed as ``class_labels`` to a class-conditional
            pipeline (the ``standin-drawn`` painter), which reads them instead of the text.

    Returns:
        PIL images of ``sampler.resolution`` pixels square, in input order.
    """
    import torch

    generators = [torch.Generator(sampler.device).manual_seed(s) for s in seeds]
    with torch.inference_mode():
        output = pipe(
            prompt=list(prompts),
            generator=generators,
            num_inference_steps=sampler.steps,
            guidance_scale=sampler.guidance,
            height=sampler.resolution,
            width=sampler.resolution,
            output_type="pil",
            **class_conditioning(pipe, labels),
        )
    return list(output.images)


def class_conditioning(pipe: Any, labels: Sequence[int]) -> dict[str, list[int]]:
    """``class_labels`` for a class-conditional pipeline (the ``standin-drawn`` painter); nothing for others."""
    return {"class_labels": list(labels)} if getattr(pipe, "class_conditional", False) else {}


def sample_meta(item: WorkItem, sampler: Sampler, scheduler: str) -> dict[str, Any]:
    """The provenance JSON of one generated image."""
    return {
        "class_index": item.class_index,
        "class_name": item.class_name,
        "prompt": item.prompt,
        "prompt_index": item.prompt_index,
        "sample_index": item.sample_index,
        "seed": item.seed,
        "generator": sampler.model_id,
        "revision": sampler.revision,
        "steps": sampler.steps,
        "guidance": sampler.guidance,
        "resolution": sampler.resolution,
        "scheduler": scheduler,
        "dtype": sampler.dtype,
    }


def _columns(items: Sequence[WorkItem]) -> tuple[list[str], list[int]]:
    """The prompts and seeds of ``items``."""
    return [it.prompt for it in items], [it.seed for it in items]


def _samples(
    pipe: Any, items: Sequence[WorkItem], sampler: Sampler, cfg: ExperimentConfig, progress: Any, batch_size: int
) -> Iterator[shards.Sample]:
    """Generate ``items`` in batches of ``batch_size`` and yield them as tar samples, in item order.

    With ``generate.writer_threads`` above 0 the images of a batch are encoded on threads while the
    next batch denoises (:func:`~synk8s.stages.synth.generate_speed.encoded_in_order`); the bytes are the same.
    """
    scheduler = type(pipe.scheduler).__name__
    fmt = cfg.generate.image_format

    def batches() -> Iterator[tuple[Sequence[WorkItem], list[Image.Image]]]:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            yield batch, render(pipe, *_columns(batch), sampler, [it.class_index for it in batch])

    def encode(item: WorkItem, image: Image.Image) -> list[tuple[str, bytes]]:
        return [
            (fmt, shards.encode_image(image, fmt)),
            ("json", shards.encode_json(sample_meta(item, sampler, scheduler))),
        ]

    for item, members in encoded_in_order(batches(), encode, cfg.generate.writer_threads):
        yield item.key, members
        progress.update(1)


def _prepare(
    cfg: ExperimentConfig, out: str, shard: int, num_shards: int, items: Sequence[WorkItem], sampler: Sampler
) -> tuple[Callable[[Any], dict[str, Any]], dict[str, int]]:
    """The shard's pipeline set-up hook for :func:`write_shard`, and the batch size it settles.

    The hook applies the speed switches and, with ``generate.batch_autotune``, times its candidates on
    the shard's first items; the choice is kept in ``autotune.json`` in the shard folder, so a resumed
    shard reuses it (the same batches, so the same bytes). Returns the hook and a dict whose
    ``batch_size`` the hook sets.
    """
    chosen = {"batch_size": cfg.generate.batch_size}

    def prepare(pipe: Any) -> dict[str, Any]:
        applied = apply_switches(pipe, cfg.generate)
        fields: dict[str, Any] = {"speed": applied}
        candidates = cfg.generate.batch_autotune
        if candidates:
            uri = storage.join(out, shard_name(shard, num_shards), AUTOTUNE_FILE)
            if not storage.exists(uri):

                def run_batch(size: int) -> None:
                    picked = [items[i % len(items)] for i in range(size)]
                    render(pipe, *_columns(picked), sampler, [it.class_index for it in picked])

                most = min(len(items), cfg.generate.samples_per_tar)
                size, rates = autotune_batch(run_batch, candidates, most=most, device=sampler.device)
                storage.put_json(uri, {"batch_size": size, "images_per_second": rates})
            tuned = storage.get_json(uri)
            chosen["batch_size"] = int(tuned["batch_size"])
            fields["batch_autotune"] = tuned["images_per_second"]
        fields["batch_size"] = chosen["batch_size"]
        return fields

    return prepare, chosen


def run(
    cfg: ExperimentConfig, *, prompts: str, out: str, shard: int = 0, num_shards: int | None = None
) -> GenerateResult:
    """Generate the images of one shard, skipping tars that already exist.

    Args:
        cfg: the run config (``models.generator``, ``generate``, ``seed``, ``device``).
        prompts: the prompts stage's output folder URI.
        out: the generate stage's output folder URI (shared by all shards).
        shard: which shard to make, in ``[0, num_shards)``. Default 0.
        num_shards: how many shards the work is split into; None means ``generate.num_shards``.

    Returns:
        Counts and the shard manifest URI.

    Raises:
        MissingDataError: the prompts stage has not finished, or a class has no prompt.
        UsageError: bad shard index, or ``out`` holds this shard made with other settings.
    """
    from synk8s.models import resolve_device

    start = time.perf_counter()
    num_shards = cfg.generate.num_shards if num_shards is None else num_shards
    read_manifest(prompts, "prompts")
    classes = list(labelspace.class_names(cfg))
    items = shard_items(work_items(cfg, read_prompts(prompts), classes), shard, num_shards)
    device = resolve_device(cfg.device)
    sampler = sampler_settings(cfg, device)
    plan = shard_plan(cfg, sampler, items, shard, num_shards)
    check_plan(out, shard, num_shards, plan)

    prepare, chosen = _prepare(cfg, out, shard, num_shards, items, sampler)

    def samples(pipe: Any, chunk: Sequence[WorkItem], sampler: Sampler, progress: Any) -> Iterator[shards.Sample]:
        return _samples(pipe, chunk, sampler, cfg, progress, chosen["batch_size"])

    return write_shard(
        cfg, out=out, shard=shard, num_shards=num_shards, items=items, plan=plan, sampler=sampler, samples=samples,
        start=start, prepare=prepare,
    )  # fmt: skip


def shard_count(cfg: ExperimentConfig) -> int:
    """The shards (one GPU task each) the work splits into: ``generate.num_shards``."""
    return cfg.generate.num_shards


NUM_SHARDS = Option("num_shards", int, None, "Shard count; default generate.num_shards.")

# A Stable Diffusion pipeline takes about 10 GiB of host memory while it loads.
STAGE = StageSpec(
    name="generate",
    run=run,
    help="Generate one shard of the images; reruns skip finished tars.",
    inputs={"prompts": "prompts"},
    depends=("models.generator", "models.generator_revision", "generate"),
    gpu=True,
    resources=Resources("4", "8", "24Gi", "32Gi"),
    outputs={"shard-*-of-*/*.tar": shards.iter_samples, "manifest.json": shards.manifest_tars},
    folder="images",
    artifact="Dataset",
    options=(Option("shard", int, 0, "Which shard to generate (0-based)."), NUM_SHARDS),
    shards=Sharding(
        count=shard_count,
        collect=collect,
        collect_name="collect",
        collect_help="Check every shard finished and write the images manifest.",
        collect_resources=Resources("500m", "1", "1Gi", "2Gi"),
        collect_options=(NUM_SHARDS,),
    ),
)
