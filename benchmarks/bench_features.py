"""CLIP feature extraction: decoding on DataLoader workers and bfloat16 encoding, each on vs off.

Mirrors the feature cache's encoding loop (:func:`synk8s.stages.zeroshot.feature_workers.preprocessed_batches`
feeding :func:`synk8s.stages.zeroshot.feature_cache.encode_batch`) over drawn PNG images streamed from
WebDataset tars (checked against their SHA-256 as they stream, as the stage does). Settings take
turns within each of ``--repeats`` rounds and the fastest round of each counts; a worker setting's
time includes starting its workers, as each stage call does. The line also gives the two halves
alone: decoding + preprocessing with no encoder, and the encoder on fixed tensors, which tells
which half bounds the stage.

``--clip tiny-clip`` (default): the tiny random-weight CLIP (32 px input, so decoding and resizing
dominate). ``--clip rn50``: open_clip's RN50 architecture with random weights (224 px; no download).
Prints one JSON line::

    python benchmarks/bench_features.py --synthetic-data
    python benchmarks/bench_features.py --synthetic-data --clip rn50 --images 32 --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from timing import environment  # benchmarks/timing.py, beside this script

from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.shards import iter_samples
from synk8s.stages.zeroshot.feature_cache import encode_batch
from synk8s.stages.zeroshot.feature_workers import preprocessed_batches


def _clip(name: str, seed: int):
    """The CLIP bundle to time: the tiny one, or RN50's architecture with random weights."""
    from synk8s.models import load_clip

    if name == "tiny-clip":
        return load_clip("tiny-clip", seed=seed)
    import open_clip

    from synk8s.models.clip import ClipBundle

    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms("RN50", pretrained=None)
    model = model.eval().requires_grad_(False)
    return ClipBundle(model, preprocess, open_clip.get_tokenizer("RN50"), 100.0, "RN50/random", 224, "cpu")


def _run(images: str, clip, *, batch_size: int, workers: int, dtype: torch.dtype) -> torch.Tensor:
    def samples():
        for key, image, meta in iter_samples(images, lazy=True):
            yield key, image, int(meta["class_index"])

    batches = preprocessed_batches(samples, clip.preprocess, batch_size=batch_size, workers=workers)
    return torch.cat([encode_batch(clip, pixels, dtype) for pixels, _, _ in batches])  # (N, D)


def main(argv: list[str] | None = None) -> dict:
    """Measure and print (and return) the JSON result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-data", action="store_true", help="drawn PNG images in temporary tars (default)")
    parser.add_argument("--clip", choices=("tiny-clip", "rn50"), default="tiny-clip")
    parser.add_argument("--images", type=int, default=256, help="images per timed run (default 256)")
    parser.add_argument("--size", type=int, default=512, help="side of the drawn images in pixels (default 512)")
    parser.add_argument("--batch-size", type=int, default=32, help="features.batch_size (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the 'on' setting (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the fastest counts (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    clip = _clip(args.clip, args.seed)
    settings = {
        "off": (0, torch.float32),
        f"workers_{args.workers}": (args.workers, torch.float32),
        "bfloat16": (0, torch.bfloat16),
        f"workers_{args.workers}_bfloat16": (args.workers, torch.bfloat16),
    }
    with tempfile.TemporaryDirectory(prefix="bench-features-") as folder:
        images = f"{folder}/images"
        write_drawn_images(images, classes=4, per_class=-(-args.images // 4), seed=args.seed, size=args.size)
        outputs = {}
        best = {name: float("inf") for name in (*settings, "decode_only", "encode_only")}
        pixels = torch.randn(args.batch_size, 3, clip.image_size, clip.image_size)  # (B, 3, H, W)
        total = args.images - args.images % args.batch_size or args.batch_size
        for round_ in range(args.repeats + 1):  # round 0 warms up
            for name, (workers, dtype) in settings.items():
                start = time.perf_counter()
                outputs[name] = _run(images, clip, batch_size=args.batch_size, workers=workers, dtype=dtype)
                if round_:
                    best[name] = min(best[name], time.perf_counter() - start)
            start = time.perf_counter()
            for _ in preprocessed_batches(
                lambda: ((k, im, 0) for k, im, _ in iter_samples(images, lazy=True)), clip.preprocess,
                batch_size=args.batch_size, workers=0,
            ):  # fmt: skip
                pass
            decode = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(total // args.batch_size):
                encode_batch(clip, pixels, torch.float32)
            encode = time.perf_counter() - start
            if round_:
                best["decode_only"] = min(best["decode_only"], decode)
                best["encode_only"] = min(best["encode_only"], encode)
    count = len(outputs["off"])
    rate = {name: count / seconds for name, seconds in best.items() if name != "encode_only"}
    rate["encode_only"] = total / best["encode_only"]
    result = {
        "benchmark": "features_switches",
        "clip": clip.identity,
        "images": count,
        "image_size": args.size,
        "batch_size": args.batch_size,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "images_per_s": {name: round(r, 1) for name, r in rate.items()},
        "on_over_off": {name: round(rate[name] / rate["off"], 3) for name in settings if name != "off"},
        "same_features_as_off": {name: bool(torch.equal(outputs[name], outputs["off"])) for name in settings},
        "max_abs_diff_bfloat16": round(float((outputs["bfloat16"] - outputs["off"]).abs().max()), 4),
        "bound_by": "decoding" if rate["decode_only"] < rate["encode_only"] else "encoder",
        **environment(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
