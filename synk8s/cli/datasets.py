"""``synk8s datasets``: the evaluation datasets, their classes, prompt templates and data layout.

Examples::

    synk8s datasets list
    synk8s datasets show cifar100
    synk8s datasets download cifar100 --root ./data/cifar100
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from synk8s import datasets
from synk8s.cli.output import OUTPUT, Format, emit_json

app = typer.Typer(help="List the evaluation datasets, show one, download one.", no_args_is_help=True)


@app.command("list")
def list_datasets(output: Format = OUTPUT) -> None:
    """One row per dataset: name, task, kind, number of classes and of prompt templates."""
    if output is Format.json:
        emit_json([
            {"name": i.name, "task": i.task, "kind": i.kind, "classes": i.num_classes, "templates": len(i.templates)}
            for i in datasets.all()
        ])
        return
    table = Table(title="synk8s datasets")
    table.add_column("name", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("classes", justify="right")
    table.add_column("templates", justify="right")
    for info in datasets.all():
        table.add_row(info.name, info.task, info.kind, str(info.num_classes), str(len(info.templates)))
    Console().print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Dataset name, see `synk8s datasets list`.")) -> None:
    """Class names, prompt templates, splits and where the data files are expected."""
    info = datasets.get(name)
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"[bold]{info.name}[/]: {info.title} ({info.task}, {info.kind})")
    console.print(f"splits: {', '.join(info.splits)} (results on {info.test_split})")
    console.print(f"torchvision class: {info.torchvision_class or '-'}")
    console.print(f"data: {info.data_layout}", markup=False)
    console.print(f"\n[bold]classes ({info.num_classes})[/]")
    console.print("; ".join(f"{i}:{c}" for i, c in enumerate(info.classes)), markup=False)
    console.print(f"\n[bold]templates ({len(info.templates)})[/]")
    for template in info.templates:
        console.print(f"  {template}", markup=False)


@app.command("download")
def download(
    name: str = typer.Argument(..., help="Dataset name, see `synk8s datasets list`."),
    root: str | None = typer.Option(None, "--root", help="Data root (default: ./data/<name>, as dataset.root)."),
) -> None:
    """Download a dataset where its host allows it, check that every split loads, print the data root.

    Datasets with no direct download (ImageNet, ImageNet-Sketch, Birdsnap, Stanford Cars) say where to put the files.
    """
    typer.echo(datasets.download(name, root or f"./data/{name}"))
