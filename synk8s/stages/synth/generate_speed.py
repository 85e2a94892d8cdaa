"""Speed switches of the generate stage (``generate.*``), applied to a loaded diffusers pipeline.

Each switch is a config field measured on vs off by ``benchmarks/bench_generate.py`` (see
docs/speed.md). Which of them can move pixels, and so enter the run's digest when changed, is
recorded on the config fields themselves (:data:`synk8s.config_digest.SPEED_ONLY`,
:data:`synk8s.config_digest.DIGEST_UNLESS`):

- ``attention``: ``sdpa`` keeps diffusers' default processor (``AttnProcessor2_0``, torch's fused
  ``scaled_dot_product_attention``); ``plain`` sets ``AttnProcessor`` (matmul, softmax, matmul).
- ``channels_last``: UNet and VAE weights in channels-last memory format.
- ``compile``: ``torch.compile`` of the UNet and of the VAE decoder; the first batch pays the compile.
- ``vae_batched``: false decodes one latent at a time (``vae.enable_slicing``), for less memory.
- ``scheduler``: ``ddim``, ``dpm++`` (DPM-Solver++ multistep) or ``euler-a`` from the generator's
  own scheduler config; null keeps the generator's scheduler.
- ``batch_autotune``: :func:`autotune_batch` times each candidate batch size on the shard's first
  items and keeps the fastest that fits in memory.
- ``writer_threads``: :func:`encoded_in_order` encodes images on a thread pool while the next batch
  denoises; samples come out in the same order with the same bytes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from synk8s.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

    from synk8s.config import GenerateConfig

log = logging.getLogger(__name__)

# generate.scheduler -> (diffusers scheduler class, options beside the generator's scheduler config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
}


def apply_switches(pipe: Any, gen: GenerateConfig) -> dict[str, Any]:
    """Set the pipeline up as ``gen`` says (in place) and return the settings applied, for the manifest.

    Args:
        pipe: a diffusers text-to-image pipeline with ``unet``, ``vae`` and ``scheduler``.
        gen: the ``generate`` config section.

    Returns:
        ``attention``, ``channels_last``, ``compile``, ``vae_batched`` and ``scheduler`` (the class name
        in use after the switch).
    """
    if not hasattr(pipe, "unet"):  # the stand-in painter: no network to speed up
        return _painter_switches(gen, type(pipe.scheduler).__name__)
    import diffusers
    import torch

    if gen.attention == "plain":
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.vae.set_attn_processor(AttnProcessor())
    if gen.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if not gen.vae_batched:
        pipe.vae.enable_slicing()
    if gen.scheduler is not None:
        cls_name, options = SCHEDULERS[gen.scheduler]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **options)
    if gen.compile:
        pipe.unet = torch.compile(pipe.unet)
        pipe.vae.decoder = torch.compile(pipe.vae.decoder)
    return {
        "attention": gen.attention,
        "channels_last": gen.channels_last,
        "compile": gen.compile,
        "vae_batched": gen.vae_batched,
        "scheduler": type(pipe.scheduler).__name__,
    }


def _painter_switches(gen: GenerateConfig, scheduler: str) -> dict[str, Any]:
    """The settings recorded for the stand-in painter; a pipeline switch moved from its default is refused."""
    moved = sorted(set(changed_switches(gen)) - {"batch_autotune"})
    if moved:
        raise UsageError(
            f"generate.{moved[0]} applies to diffusion pipelines; models.generator=standin-drawn paints "
            "without one: leave it at its default"
        )
    return {name: getattr(gen, name) for name in ("attention", "channels_last", "compile", "vae_batched")} | {
        "scheduler": scheduler
    }


def _out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def autotune_batch(
    run_batch: Callable[[int], None], candidates: Sequence[int], *, most: int, device: str
) -> tuple[int, dict[str, float | None]]:
    """Time one batch of each candidate size and pick the highest images/s among those that fit.

    Each candidate runs twice (a warm-up, then the timed batch); candidates run smallest first and
    the search stops at the first one that runs out of device memory.

    Args:
        run_batch: generates one batch of the given size (the shard's first items, cycled).
        candidates: batch sizes to try, e.g. ``(8, 16, 32, 64)``.
        most: the largest useful batch (the shard's items per tar); larger candidates are skipped.
        device: where the pipeline runs (CUDA is synchronised around the timing).

    Returns:
        The chosen batch size and each candidate's images/s (None: out of memory or skipped).

    Raises:
        UsageError: no candidate fits in memory.
    """
    import torch

    cuda = device.startswith("cuda")
    rates: dict[str, float | None] = {}
    fits = sorted({b for b in candidates if b <= most} or {min(candidates)})
    for size in sorted(set(candidates)):
        rates[str(size)] = None
        if size not in fits:
            continue
        try:
            run_batch(size)  # warm-up: kernels chosen, memory reserved
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            run_batch(size)
            if cuda:
                torch.cuda.synchronize()
            rates[str(size)] = round(size / (time.perf_counter() - start), 4)
        except (RuntimeError, MemoryError) as error:
            if not _out_of_memory(error):
                raise
            if cuda:
                torch.cuda.empty_cache()
            log.info("batch autotune: batch %d runs out of memory; stopping there", size)
            break
    timed = {int(b): r for b, r in rates.items() if r is not None}
    if not timed:
        raise UsageError(
            f"generate.batch_autotune: no candidate of {list(candidates)} fits in memory; add smaller ones"
        )
    chosen = max(timed, key=lambda b: (timed[b], -b))
    log.info("batch autotune: %s images/s by batch size; using %d", rates, chosen)
    return chosen, rates


def encoded_in_order(
    batches: Iterable[tuple[Sequence[Any], list[Image.Image]]],
    encode: Callable[[Any, Image.Image], list[tuple[str, bytes]]],
    threads: int,
) -> Iterator[tuple[Any, list[tuple[str, bytes]]]]:
    """Encode each batch's images, on ``threads`` threads while the next batch is made; order kept.

    Args:
        batches: ``(items, images)`` per batch, made lazily (the next one denoises while this one encodes).
        encode: ``(item, image) -> tar members`` of one sample.
        threads: encoding threads; 0 encodes inline, batch by batch.

    Yields:
        ``(item, members)`` in the order of ``batches``: the bytes do not depend on ``threads``.
    """
    if threads == 0:
        for items, images in batches:
            for item, image in zip(items, images, strict=True):
                yield item, encode(item, image)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encode") as pool:
        pending: deque[tuple[Any, Future]] = deque()
        for items, images in batches:
            # The previous batch's samples go out once this batch is made: its encoding overlapped.
            while pending:
                item, future = pending.popleft()
                yield item, future.result()
            pending.extend((item, pool.submit(encode, item, image)) for item, image in zip(items, images, strict=True))
        while pending:
            item, future = pending.popleft()
            yield item, future.result()


def changed_switches(gen: GenerateConfig) -> dict[str, Any]:
    """The switches that can move pixels and are set away from today's behaviour (for the shard plan)."""
    from synk8s.config_digest import changed_fields

    return changed_fields(gen)
