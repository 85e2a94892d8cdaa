"""``synk8s predict``: classify image files, folders or ``s3://`` prefixes with an exported classifier.

    synk8s predict exports/cifar100 cat.jpg dog.png
    synk8s predict exports/cifar100 photos/ --top-k 3 --output json
    synk8s predict exports/cifar100 s3://bucket/photos/

Prints a table (or one JSON document with ``--output json``) of each image's top classes. An image
that cannot be read is skipped and named on stderr; the command then ends with a count of them
and exits 1, after printing the images it could classify.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from synk8s.cli.output import OUTPUT, Format, emit_json


def predict_cmd(
    model: str = typer.Argument(..., help="The classifier folder `synk8s export` wrote (path or s3://)."),
    images: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or s3:// prefixes."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Classes shown per image, from 1 to the class count."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    output: Format = OUTPUT,
) -> None:
    """Classify images with an exported classifier: top-k classes and their probabilities."""
    from synk8s.models.classifier import check_top_k, load_classifier
    from synk8s.predict import image_sources, predict

    classifier = load_classifier(model)
    check_top_k(top_k, len(classifier.classes))
    sources = image_sources(images)
    result = predict(classifier, sources, top_k=top_k, batch_size=batch_size)
    if output is Format.json:
        emit_json(_as_json(model, result))
    else:
        _table(result.predictions)
    err_console = Console(stderr=True, soft_wrap=True)
    for failure in result.failures:
        err_console.print(f"unreadable image {failure.source}: {failure.reason}", highlight=False, markup=False)
    if result.failures:
        err_console.print(
            f"[bold red]error:[/] {len(result.failures)} of {len(sources)} images could not be read", highlight=False
        )
        raise typer.Exit(1)


def _as_json(model: str, result: Any) -> dict[str, Any]:
    """The ``--output json`` document: each image's top classes, and the images that failed."""
    predictions = [
        {"image": p.source, "top": [{"class": name, "probability": q} for name, q in p.top]}
        for p in result.predictions
    ]
    failures = [{"image": f.source, "error": f.reason} for f in result.failures]
    return {"model": model, "predictions": predictions, "failures": failures}


def _table(predictions: list[Any]) -> None:
    table = Table(title="predictions", title_justify="left")
    table.add_column("image", overflow="fold")  # a long path wraps, never loses its end
    table.add_column("class", overflow="fold")
    table.add_column("probability", no_wrap=True)
    for prediction in predictions:
        for rank, (name, probability) in enumerate(prediction.top):
            table.add_row(prediction.source if rank == 0 else "", name, f"{probability:.4f}")
    Console(soft_wrap=True).print(table)
