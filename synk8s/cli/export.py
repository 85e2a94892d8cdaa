"""``synk8s export``: a run's classifier (or a pre-training run's backbone) as a self-contained folder.

    synk8s export ./synk8s-store/runs/cifar100-1a2b3c4d -o exports/cifar100    # the run's tuned classifier
    synk8s export ./synk8s-store/runs/cifar100-1a2b3c4d/tune-5e6f... -o DIR    # one of several heads
    synk8s export ./synk8s-store/runs/cifar100-9f8e.../pretrain-7d6c... -o DIR # a ResNet-50 state_dict
    synk8s export ./synk8s-store/runs/eurosat-5a6b... -o DIR --head ct_init    # a few-shot run's CT w. init

The folder loads with ``synk8s.load_classifier(DIR)``, ``synk8s predict DIR ...`` and ``synk8s serve DIR``
(docs/serving.md). It prints the folder and what it holds.
"""

from __future__ import annotations

import typer


def export_cmd(
    folder: str = typer.Argument(
        ..., help="A run folder, or its (fewshot-)export, (fewshot-)tune, (fewshot-)evaluate or pretrain folder."
    ),
    out: str = typer.Option(..., "--output", "-o", help="The folder to write (a new or empty path, or s3://)."),
    head: str | None = typer.Option(
        None, "--head", help="A few-shot run's head: ct_syn (real + synthetic, the default) or ct_init (real only)."
    ),
) -> None:
    """Write a self-contained classifier folder (image encoder, head, preprocessing, classes, ONNX, provenance)."""
    from synk8s.stages.export import export_folder

    kind = export_folder(folder, out, head)
    typer.echo(f"{kind}: {out}")
