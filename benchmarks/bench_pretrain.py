"""Pre-training throughput: the model's images/s per process against the shard loader's images/s.

Mirrors the pretrain stage: the model step is :func:`synk8s.training.train_step` on a DDP-wrapped
model (one process), fed fixed tensors so only compute counts, at several batch sizes; the loader is the
stage's :class:`synk8s.stream.ShardStream` through a DataLoader (tar streaming, decoding and augmentation)
with nothing consuming. ``loader_over_model`` above 1 means the loader keeps up with the model at the
stage's batch size; below 1, data loading is the bottleneck. ``--compare-workers N`` also times the
loader with N decode workers against ``--workers`` (``pretrain.workers``), taking turns for
``--repeats`` rounds, and gives the ratio. Prints one JSON line.

    python benchmarks/bench_pretrain.py --synthetic-data                         # drawn 32 px images, tiny-resnet, CPU
    python benchmarks/bench_pretrain.py --synthetic-data --method moco --workers 2
    python benchmarks/bench_pretrain.py --synthetic-data --resolution 224 --compare-workers 2
    python benchmarks/bench_pretrain.py --images s3://b/runs/r/images --backbone resnet50 --resolution 224 --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from timing import environment  # benchmarks/timing.py, beside this script
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from synk8s import augment, distributed, shards, storage, stream, training
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.models import build_backbone
from synk8s.models.moco import MoCo
from synk8s.training import train_step


def model_images_per_s(args: argparse.Namespace, batch_size: int, classes: int, device: str) -> float:
    """Images/s of train_step on fixed random views (the best of ``--repeats`` timed runs of ``--steps`` steps)."""
    torch.manual_seed(0)
    model = build_backbone(args.backbone, num_classes=128 if args.method == "moco" else classes)
    if args.method == "moco":
        model = MoCo(model, dim=128, hidden_dim=2048, queue=batch_size * 16, momentum=0.999, temperature=0.2, seed=0)
    model = model.to(device)
    ddp = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    optimizer = training.sgd(model, momentum=0.9, weight_decay=1e-4)
    views = torch.randn(batch_size, 2 if args.method == "moco" else 1, 3, args.resolution, args.resolution)
    labels = torch.randint(0, classes, (batch_size,))
    moco = args.method == "moco"
    train_step(ddp, optimizer, views, labels, moco=moco, device=device)  # warm-up
    best = float("inf")
    for _ in range(args.repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(ddp, optimizer, views, labels, moco=moco, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return batch_size * args.steps / best


def loader_images_per_s(args: argparse.Namespace, images: str, batch_size: int, workers: int | None = None) -> float:
    """Images/s the stage's shard stream delivers through a DataLoader with ``workers`` (``--workers``) workers."""
    tars = shards.manifest_tars(images)
    transform = augment.moco_v2(args.resolution) if args.method == "moco" else augment.supervised(args.resolution)
    dataset = stream.ShardStream(
        tars,
        frozenset(),
        augment.Views(transform, 2 if args.method == "moco" else 1),
        seed=0,
        fraction=0.5,
        rank=0,
        world_size=1,
        batch_size=batch_size,
        buffer_size=min(stream.SHUFFLE_BUFFER, len(tars) * 10),
    )
    workers = args.workers if workers is None else workers
    loader = iter(DataLoader(dataset, batch_size=batch_size, num_workers=workers))
    next(loader)  # workers started, buffer filled
    start = time.perf_counter()
    for _ in range(args.loader_batches):
        next(loader)
    return batch_size * args.loader_batches / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    """Measure and print (and return) the JSON result line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic-data", action="store_true", help="drawn images written as shards to a temp folder")
    source.add_argument("--images", help="a generate stage output folder (local or s3://)")
    parser.add_argument("--method", choices=("supervised", "moco"), default="supervised")
    parser.add_argument("--backbone", default="tiny-resnet", help="registry name (default tiny-resnet)")
    parser.add_argument("--resolution", type=int, default=32, help="crop side in pixels (default 32)")
    parser.add_argument("--batch-sizes", default="16,32,64", help="comma-separated batch sizes (default 16,32,64)")
    parser.add_argument("--stage-batch", type=int, default=32, help="the batch the loader is compared at (default 32)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per batch size (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest counts (default 3)")
    parser.add_argument("--loader-batches", type=int, default=20, help="batches read from the loader (default 20)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--compare-workers", type=int, default=None, help="also time the loader with N workers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as folder:
        images = args.images
        if args.synthetic_data:
            images = f"{folder}/images"
            write_drawn_images(images, classes=10, per_class=100, seed=0, size=max(32, args.resolution))
        classes = len(storage.get_json(storage.join(images, "manifest.json"))["per_class"])
        with distributed.session(args.device) as ctx:
            sizes = [int(b) for b in args.batch_sizes.split(",")]
            model = {b: model_images_per_s(args, b, classes, ctx.device) for b in sorted({*sizes, args.stage_batch})}
        loader = loader_images_per_s(args, images, args.stage_batch)
        compared = {}
        if args.compare_workers is not None:
            rates: dict[int, list[float]] = {args.workers: [], args.compare_workers: []}
            for _ in range(args.repeats):
                for workers in rates:
                    rates[workers].append(loader_images_per_s(args, images, args.stage_batch, workers))
            best = {w: max(r) for w, r in rates.items()}
            compared = {
                "loader_images_per_s_by_workers": {str(w): round(r, 1) for w, r in best.items()},
                "workers_over_inline": round(best[args.compare_workers] / best[args.workers], 3),
            }
    result = {
        "benchmark": "pretrain_throughput",
        "method": args.method,
        "backbone": args.backbone,
        "resolution": args.resolution,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "workers": args.workers,
        "data": "drawn" if args.synthetic_data else args.images,
        "model_images_per_s": {str(b): round(v, 1) for b, v in model.items()},
        "loader_images_per_s": round(loader, 1),
        "stage_batch": args.stage_batch,
        "loader_over_model": round(loader / model[args.stage_batch], 2),
        "loader_is_bottleneck": loader < model[args.stage_batch],
        **compared,
        **environment(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
