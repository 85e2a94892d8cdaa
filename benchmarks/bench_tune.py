"""Classifier tuning on cached CLIP features vs re-encoding the images every epoch.

CT trains only a linear head on a frozen image encoder, so the features stage encodes each image
once and every epoch reads the cache. This measures what that saves: the same epochs, batches and
head updates, once on features encoded a single time (encoding time included) and once encoding
every batch's images again in every epoch. Each variant runs ``--repeats`` times and the fastest
run counts. Prints one JSON line.

    python benchmarks/bench_tune.py --synthetic-data                      # 320 random 32 px images, tiny CLIP, CPU
    python benchmarks/bench_tune.py --images runs/x/images --clip rn50 --device cuda   # a generate output
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from PIL import Image
from timing import best_of, environment  # benchmarks/timing.py, beside this script

from synk8s import optim
from synk8s.models import load_clip
from synk8s.seeds import derive_seed
from synk8s.stages.zeroshot.feature_cache import encode_images


def synthetic_images(count: int, classes: int, size: int, seed: int) -> tuple[list[Image.Image], torch.Tensor]:
    """Random RGB images, ``count // classes`` per class, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(count // classes)
    pixels = torch.randint(0, 256, (len(labels), size, size, 3), generator=g, dtype=torch.uint8)
    return [Image.fromarray(p.numpy()) for p in pixels], labels


def generated_images(images: str, limit: int) -> tuple[list[Image.Image], torch.Tensor]:
    """The first ``limit`` images of a generate stage output and their classes."""
    from synk8s.shards import iter_samples

    out, labels = [], []
    for _, image, meta in iter_samples(images):
        if len(out) == limit:
            break
        out.append(image)
        labels.append(int(meta["class_index"]))
    return out, torch.tensor(labels)


def train_head(
    dim: int,
    classes: int,
    labels: torch.Tensor,
    features_of: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    device: str,
    seed: int,
) -> torch.nn.Linear:
    """The tune stage's loop (AdamW, cosine, clip 1.0, CE) with features fetched per batch by ``features_of``."""
    head = torch.nn.Linear(dim, classes).to(device)
    steps = epochs * -(-len(labels) // batch_size)
    opt = optim.adamw(head.parameters(), lr=2e-3, weight_decay=0.1)
    sched = optim.cosine_schedule(opt, total_steps=steps)
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=shuffle)
        for start in range(0, len(labels), batch_size):
            idx = order[start : start + batch_size]
            loss = optim.tuning_loss(head(features_of(idx)), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            optim.clip_and_step(opt, head.parameters(), max_norm=1.0)
            sched.step()
    return head






def main(argv: list[str] | None = None) -> dict:
    """Run both variants and print (and return) the JSON result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic-data", action="store_true", help="random images instead of a generate output")
    source.add_argument("--images", help="a generate stage output folder (local or s3://)")
    parser.add_argument("--count", type=int, default=320, help="images (default 320)")
    parser.add_argument("--classes", type=int, default=10, help="classes of --synthetic-data (default 10)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of both variants (default 30, the paper's)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--clip", default="tiny-clip", help="CLIP registry name (default tiny-clip)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the fastest counts (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.synthetic_data:
        images, labels = synthetic_images(args.count, args.classes, 32, derive_seed(args.seed, "bench-tune"))
    else:
        images, labels = generated_images(args.images, args.count)
    classes = int(labels.max()) + 1
    clip = load_clip(args.clip, device=args.device, seed=args.seed)
    dim = clip.encode_image(clip.preprocess(images[0]).unsqueeze(0)).shape[1]
    run = dict(epochs=args.epochs, batch_size=args.batch_size, device=args.device, seed=args.seed)

    def encode(idx: torch.Tensor) -> torch.Tensor:  # (B, D) on the device
        return encode_images(
            clip, (images[i] for i in idx.tolist()), batch_size=args.batch_size, dtype=torch.float32, progress=False
        ).to(args.device)

    def cached_run() -> None:
        cached = encode(torch.arange(len(images)))  # (N, D): the feature cache, built once
        train_head(dim, classes, labels, lambda idx: cached[idx.to(args.device)], **run)

    def reencode_run() -> None:
        train_head(dim, classes, labels, encode, **run)

    cached_s = best_of(cached_run, args.repeats)
    reencode_s = best_of(reencode_run, args.repeats)

    result = {
        "benchmark": "tune_cached_features_vs_reencode",
        "images": len(images),
        "classes": classes,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "clip": clip.identity,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cached_s": round(cached_s, 3),
        "reencode_s": round(reencode_s, 3),
        "speedup": round(reencode_s / cached_s, 2),
        **environment(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
