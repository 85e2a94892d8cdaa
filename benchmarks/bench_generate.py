"""Generation throughput: each ``generate.*`` speed switch on vs off, batch sizes, and few-step sampling.

Default mode (``--synthetic-data``): the generate stage's own code (``_samples``: render in batches,
then PNG-encode every image and its JSON) on the ``tiny-sd`` generator (random weights, 32 px,
2 DDIM steps, guidance 3.0) on CPU. One pipeline per setting, switched with the stage's
:func:`~synk8s.stages.synth.generate_speed.apply_switches`; the settings take turns within each of
``--repeats`` rounds (so a burst of other load hits them alike) and the fastest round of each
counts. The result line gives each switch's images/s ratio on vs off (above 1: the switch helps)
and whether it left the tar bytes identical, the batch-size rates, the batch autotune's pick, and
the milliseconds one 256 or 512 px image takes to encode as JPEG and PNG (the work
``writer_threads`` moves off the critical path).
``--compile`` adds ``torch.compile`` (about a minute of compiling on a CPU).

``--few-step``: images/s and the CLIP filter's keep rate side by side for 1, 2 and 4 steps without
guidance against the tiny default. With random weights the keep rate only shows the machinery
works: it says nothing about image quality, and the line says so.

The GPU figures (an SD 1.5-shaped generator at 512 and 256 px, percent of the FLOP bound) come
from ``benchmarks/gpu_check.py``. Prints one JSON line::

    python benchmarks/bench_generate.py --synthetic-data              # switches + batch sizes, CPU
    python benchmarks/bench_generate.py --synthetic-data --compile    # also torch.compile
    python benchmarks/bench_generate.py --few-step                    # steps vs CF keep rate
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from timing import environment  # benchmarks/timing.py, beside this script

from synk8s import config, shards
from synk8s.stages.synth.generate import _samples, sampler_settings, work_items
from synk8s.stages.synth.generate_speed import apply_switches, autotune_batch

BASE = ["dataset.name=cifar10", "generate.writer_threads=0", "generate.batch_size=16"]
# switch name -> overrides that turn it on (off is BASE: today's behaviour)
SWITCHES = {
    "writer_threads_2": ["generate.writer_threads=2"],
    "attention_plain": ["generate.attention=plain"],
    "channels_last": ["generate.channels_last=true"],
    "vae_unbatched": ["generate.vae_batched=false"],
    "scheduler_dpmpp": ["generate.scheduler=dpm++"],
    "dtype_bfloat16": ["generate.dtype=bfloat16"],
    "resolution_64": ["generate.resolution=64"],
}


class _Quiet:
    def update(self, n: int) -> None:
        """A progress bar that shows nothing."""


def _setting(overrides: list[str], seed: int, images: int) -> tuple:
    """(config, pipeline, sampler, work items) of one setting."""
    from synk8s.models import load_generator, resolve_dtype

    cfg = config.load("tiny", [*BASE, *overrides, f"seed={seed}"])
    records = [{"class_index": c, "class_name": n, "prompt_index": 0, "prompt": f"a photo of a {n}"}
               for c, n in enumerate(_classes(cfg))]  # fmt: skip
    items = work_items(config.with_overrides(cfg, [f"generate.images_per_class={-(-images // 10)}"]), records,
                       _classes(cfg))[:images]  # fmt: skip
    sampler = sampler_settings(cfg, "cpu")
    pipe = load_generator("tiny-sd", device="cpu", dtype=resolve_dtype(cfg.generate.dtype, "cpu"), seed=seed)
    apply_switches(pipe, cfg.generate)
    return cfg, pipe, sampler, items


def _classes(cfg: config.ExperimentConfig) -> list[str]:
    from synk8s import labelspace

    return list(labelspace.class_names(cfg))


def _made(setting: tuple, batch_size: int | None = None) -> list[bytes]:
    """Every sample's image bytes, through the stage's batching and encoding."""
    cfg, pipe, sampler, items = setting
    batch = batch_size or cfg.generate.batch_size
    return [dict(members)["png"] for _, members in _samples(pipe, items, sampler, cfg, _Quiet(), batch)]


def encode_ms(fmt: str, side: int, repeats: int) -> float:
    """Milliseconds to encode one ``side`` px image (smooth content, like a generated one) as the stage does."""
    from PIL import Image

    coarse = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    image = Image.fromarray(coarse.numpy()).resize((side, side), Image.BILINEAR)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        shards.encode_image(image, fmt)
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def bench_switches(args: argparse.Namespace) -> dict:
    """Each switch on vs off, batch sizes and the autotune's pick, interleaved in one run."""
    switches = dict(SWITCHES)
    if args.compile:
        switches["compile"] = ["generate.compile=true"]
    settings = {"off": _setting([], args.seed, args.images)}
    settings.update({name: _setting(o, args.seed, args.images) for name, o in switches.items()})
    reference = {name: _made(s) for name, s in settings.items()}  # warm-up (and compile)
    batch_runs = {b: settings["off"] for b in args.batch_sizes}
    for batch, setting in batch_runs.items():
        _made(setting, batch)  # warm-up at each batch size
    best = {name: float("inf") for name in [*settings, *(f"batch_{b}" for b in batch_runs)]}
    for _ in range(args.repeats):
        for name, setting in settings.items():
            start = time.perf_counter()
            _made(setting)
            best[name] = min(best[name], time.perf_counter() - start)
        for batch, setting in batch_runs.items():
            start = time.perf_counter()
            _made(setting, batch)
            best[f"batch_{batch}"] = min(best[f"batch_{batch}"], time.perf_counter() - start)
    rate = {name: args.images / seconds for name, seconds in best.items()}
    _, pipe, sampler, items = settings["off"]
    chosen, tuned = autotune_batch(
        lambda size: _made((settings["off"][0], pipe, sampler, items[:size]), size), args.batch_sizes,
        most=args.images, device="cpu",
    )  # fmt: skip
    return {
        "benchmark": "generate_switches",
        "mode": "tiny-cpu",
        "generator": "tiny-sd",
        "steps": sampler.steps,
        "guidance": sampler.guidance,
        "resolution": sampler.resolution,
        "images": args.images,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "off_images_per_s": round(rate["off"], 2),
        "on_over_off": {name: round(rate[name] / rate["off"], 3) for name in switches},
        "same_bytes_as_off": {name: reference[name] == reference["off"] for name in switches},
        "batch_images_per_s": {str(b): round(rate[f"batch_{b}"], 2) for b in batch_runs},
        "autotune": {"chosen": chosen, "images_per_s": tuned},
        # What writer_threads takes off the critical path per image at the paper's sizes.
        "encode_ms_per_image": {f"{fmt}_{side}": round(encode_ms(fmt, side, 5), 2)
                                for fmt in ("jpg", "png") for side in (256, 512)},  # fmt: skip
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def bench_few_step(args: argparse.Namespace) -> dict:
    """Images/s and CF keep rate of tiny-sd at 1, 2 and 4 steps without guidance, and at its default."""
    from synk8s.models import load_clip
    from synk8s.stages.zeroshot.feature_cache import encode_images
    from synk8s.stages.zeroshot.filter import class_probabilities, confidences, resolve_threshold
    from synk8s.zeroshot import text_head

    clip = load_clip("tiny-clip", seed=args.seed)
    settings = {"2 steps, guidance 3 (tiny default)": []}
    settings.update({f"{s} steps, guidance 0": [f"generate.steps={s}", "generate.guidance=0.0"] for s in (1, 2, 4)})
    made = {name: _setting(o, args.seed, args.images) for name, o in settings.items()}
    classes = _classes(made[next(iter(made))][0])
    head = text_head(clip, classes, ["a photo of a {}."])  # (K, D)
    rows = {}
    for name, setting in made.items():
        _made(setting)  # warm-up
        seconds = min(_timed(setting) for _ in range(args.repeats))
        cfg, pipe, sampler, items = setting
        images = [shards.decode_image(png) for png in _made(setting)]
        feats = encode_images(clip, images, batch_size=64, dtype=torch.float32, progress=False)  # (N, D)
        labels = torch.tensor([it.class_index for it in items])  # (N,)
        conf = confidences(class_probabilities(feats, head, clip.logit_scale), labels)  # (N,)
        keep = float((conf > resolve_threshold(None, len(classes))).float().mean())
        rows[name] = {"images_per_s": round(args.images / seconds, 2), "cf_keep_rate": round(keep, 3)}
    return {
        "benchmark": "generate_few_step",
        "mode": "tiny-cpu",
        "generator": "tiny-sd",
        "images": args.images,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "settings": rows,
        "note": "random weights: the keep rate shows the filter runs, not image quality; "
        "rerun with a real generator and CLIP for a meaningful one",
    }


def _timed(setting: tuple) -> float:
    start = time.perf_counter()
    _made(setting)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    """Run the chosen mode and print (and return) the JSON result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--synthetic-data", action="store_true", help="switches on vs off (the default)")
    mode.add_argument("--few-step", action="store_true", help="images/s and CF keep rate by step count")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 64],
        help="batch sizes timed and offered to the autotune, comma-separated (default 1,4,16,64)",
    )  # fmt: skip
    parser.add_argument("--images", type=int, default=64, help="images per timed run (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the fastest counts (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = bench_few_step(args) if args.few_step else bench_switches(args)
    result.update(environment())
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
