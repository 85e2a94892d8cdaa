"""The paper's whole programme costed with :mod:`synk8s.estimate`: the tables pasted into docs/scale.md.

    python benchmarks/estimate_paper.py                  # Markdown on stdout, H100s
    python benchmarks/estimate_paper.py --gpu-type a100 --gpus 16

Rows: zero-shot, 17 datasets x 2000 images per class; few-shot, 8 datasets x 5 shot counts x 800 RG
images per class (one sweep per dataset); pre-training, Tables 8-10 (1.2M-4.0M images, ResNet-50,
supervised 90 epochs or MoCo v2 200) with their CIFAR-100 fine-tune or VOC detection transfer.
Every figure is an estimate until a GPU run measures it.
"""

from __future__ import annotations

import argparse

from synk8s import config, datasets
from synk8s.estimate import Estimate, estimate

FEWSHOT = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "fgvc_aircraft", "sun397", "dtd", "eurosat")
PRETRAIN = (  # (table, label space, images, transfer)
    ("8", "cifar100", 1_200_000, "cifar100"), ("8", "cifar100", 2_400_000, "cifar100"),
    ("8", "cifar100", 3_600_000, "cifar100"), ("9-10", "imagenet-1k", 1_200_000, "voc"),
    ("9-10", "imagenet-1k", 2_400_000, "voc"), ("9-10", "imagenet-2k", 4_000_000, "voc"),
)  # fmt: skip


def _row(label: str, est: Estimate) -> str:
    t = est.total
    return (f"| {label} | {t.images:,} | {t.tasks} | {t.gpu_hours:,.1f} | {t.bytes / 1e9:,.1f} | {t.objects:,} "
            f"| {t.wall_hours:,.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-type", default="h100")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    paper = config.load("paper")
    head = "| run | images generated | tasks | GPU-hours | GB written | objects | wall h |\n|---|---:|---:|---:|---:|---:|---:|"
    rows: dict[str, list[str]] = {"zero-shot (Tables 1-2)": [], "few-shot sweeps (Figure 1)": [], "pre-training (Tables 8-10)": []}
    zeroshot = [i.name for i in datasets.all() if i.task == "classification"]
    for name in zeroshot:
        est = estimate(config.with_overrides(paper, [f"dataset.name={name}"]), "zeroshot",
                       gpu_type_name=args.gpu_type, gpus=args.gpus)  # fmt: skip
        rows["zero-shot (Tables 1-2)"].append(_row(name, est))
    for name in FEWSHOT:
        est = estimate(config.with_overrides(paper, [f"dataset.name={name}"]), "fewshot_sweep",
                       gpu_type_name=args.gpu_type, gpus=args.gpus)  # fmt: skip
        rows["few-shot sweeps (Figure 1)"].append(_row(name, est))
    for table, space, images, transfer in PRETRAIN:
        for method in ("supervised", "moco"):
            overrides = [f"pretrain.label_space={space}", f"pretrain.images={images}", f"pretrain.method={method}",
                         f"pretrain.transfer={transfer}"]  # fmt: skip
            est = estimate(config.with_overrides(paper, overrides), "pretrain", gpu_type_name=args.gpu_type, gpus=args.gpus)
            rows["pre-training (Tables 8-10)"].append(_row(f"T{table} {space} {images / 1e6:.1f}M {method} -> {transfer}", est))
    grand = {"gpu": 0.0}
    for title, lines in rows.items():
        print(f"\n**{title}**, {args.gpus} x {args.gpu_type}\n\n{head}")
        print("\n".join(lines))
        grand["gpu"] += sum(float(line.split("|")[4].replace(",", "")) for line in lines)
    print(f"\nWhole programme: about {grand['gpu']:,.0f} GPU-hours on {args.gpu_type} (estimate).")


if __name__ == "__main__":
    main()
