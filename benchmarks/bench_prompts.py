"""LE prompts: one class per T5 ``generate`` call vs many classes per call.

The prompts stage samples ``classes x ceil(sentences_per_class x oversample)`` sentences. Each
sentence depends only on its own seed (:mod:`synk8s.stages.synth.le_sampling`), so the rows per call
change the speed and nothing else: this runs the same label space once with one class's round per
call (``batch_rows`` = the round's rows, what a per-class loop does) and once with the stage's
default (:data:`synk8s.stages.synth.prompts.LE_BATCH` rows per call), alternating, checks that both wrote
the same prompts, and prints the ratio of the fastest runs. Prints one JSON line.

    python benchmarks/bench_prompts.py --synthetic-data                       # tiny T5, CIFAR-100 names, CPU
    python benchmarks/bench_prompts.py --le t5-commongen --label-space imagenet-1k --device cuda --cache /models
"""

from __future__ import annotations

import argparse
import json
import math
import time

from timing import environment  # benchmarks/timing.py, beside this script

from synk8s import labelspace, resolve
from synk8s.models import load_le
from synk8s.stages.synth import prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-data", action="store_true", help="tiny T5 (random weights) on CPU")
    parser.add_argument("--le", default="tiny-t5", help="LE model (models.le)")
    parser.add_argument("--label-space", default="cifar100")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default=None, help="model cache (models.cache)")
    parser.add_argument("--profile", default="tiny", help="profile for the prompts settings")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    overrides = [f"pretrain.label_space={args.label_space}", "pretrain.classes=null", f"models.le={args.le}"]
    if args.cache:
        overrides.append(f"models.cache={args.cache}")
    cfg = resolve.resolve(args.profile, overrides)
    classes = list(labelspace.class_names(cfg))
    model, tokenizer = load_le(cfg.models.le, device=args.device, cache=cfg.models.cache, seed=cfg.seed)
    per_class = math.ceil(cfg.prompts.sentences_per_class * cfg.prompts.oversample)
    variants = {"per_class": per_class, "batched": prompts.LE_BATCH}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, rows in variants.items():  # alternating, so both see the same background load
            start = time.perf_counter()
            records, _ = prompts.enhanced_prompts(cfg, classes, model, tokenizer, batch_rows=rows)
            seconds[name].append(time.perf_counter() - start)
            outputs[name] = records
    best = {name: round(min(times), 3) for name, times in seconds.items()}
    print(
        json.dumps(
            {
                "benchmark": "le_prompts_batched_vs_per_class",
                "le": cfg.models.le,
                "label_space": args.label_space,
                "classes": len(classes),
                "rows_per_class": per_class,
                "batch_rows": variants,
                "device": args.device,
                "seconds": best,
                "speedup": round(best["per_class"] / best["batched"], 2),
                "same_prompts": outputs["per_class"] == outputs["batched"],
                **environment(),
            }
        )
    )


if __name__ == "__main__":
    main()
