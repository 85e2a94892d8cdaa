"""``synk8s plan``: what a run would cost, stage by stage, before anything starts.

    synk8s plan zeroshot --profile paper --dataset imagenet            # table on H100s, one per shard
    synk8s plan pretrain --profile paper --gpu-type a100 --gpus 16 --output json

The figures come from :func:`synk8s.estimate.estimate` (FLOPs over an assumed share of the GPU's peak)
and are estimates until a GPU run measures them. ``synk8s submit --dry-run`` prints the same table.
"""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from synk8s.cli.kfp_client import PIPELINE, PROFILE, SET, resolve_pipeline_config, with_run_flags
from synk8s.cli.output import OUTPUT, Format, emit_json
from synk8s.config import ExperimentConfig
from synk8s.estimate import GPUS, Estimate

GPU_TYPE = typer.Option("h100", "--gpu-type", help=f"GPU type the estimate is for: {', '.join(GPUS)}.")
GPU_COUNT = typer.Option(
    None, "--gpus", min=1, help="GPUs to spread the work over; default generate.num_shards (pretrain: its TrainJob's)."
)


def _size(count: float) -> str:
    """``count`` bytes in decimal units."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _hours(value: float) -> str:
    return f"{value:.3g}" if value else "0"


def estimate_table(est: Estimate) -> Table:
    """One row per stage and a total row (whose images are those generated)."""
    table = Table(
        title=f"estimate: {est.pipeline} on {est.gpus} x {est.gpu_name} ({est.gpu_type})", title_justify="left"
    )
    for name, justify in (("stage", "left"), ("device", "left"), ("tasks", "right"), ("images", "right"),
                          ("GPU-hours", "right"), ("written", "right"), ("objects", "right"), ("wall h", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # fmt: skip
    rows = [*est.stages, est.total]
    for row in rows:
        device = "GPU" if row.gpu else "CPU"
        style = "bold" if row.stage == "total" else None
        table.add_row(row.stage, device, str(row.tasks), f"{row.images:,}", _hours(row.gpu_hours), _size(row.bytes),
                      str(row.objects), _hours(row.wall_hours), style=style)  # fmt: skip
    return table


def print_estimate(pipeline: str, cfg: ExperimentConfig, *, gpu_type: str, gpus: Optional[int], output: Format) -> None:
    """Print the estimate of ``pipeline`` under ``cfg`` on stdout: a table and its notes, or JSON."""
    from synk8s.estimate import estimate

    est = estimate(cfg, pipeline, gpu_type_name=gpu_type, gpus=gpus)
    if output is Format.json:
        emit_json(est.to_dict())
        return
    console = Console(soft_wrap=True, highlight=False, width=max(Console().width, 120))  # no clipped columns
    console.print(estimate_table(est))
    for note in est.notes:
        console.print(f"note: {note}", markup=False)


@with_run_flags(
    "dataset", "images_per_class", "num_shards", "generator", "shots", "label_space", "method", "transfer",
    "classes", "images",
)
def plan_cmd(
    pipeline: str = PIPELINE,
    profile: str = PROFILE,
    overrides: list[str] = SET,
    *,
    flags: dict[str, Any],  # the run flags' options (with_run_flags)
    gpu_type: str = GPU_TYPE,
    gpus: Optional[int] = GPU_COUNT,
    output: Format = OUTPUT,
) -> None:
    """Print what a run of a pipeline would cost: images, GPU tasks, GPU-hours, store bytes and objects, wall time.

    Nothing starts and nothing is contacted; the config is resolved and checked as ``submit`` does.
    """
    cfg = resolve_pipeline_config(pipeline, profile, overrides, upload=False, **flags)
    print_estimate(pipeline, cfg, gpu_type=gpu_type, gpus=gpus, output=output)
