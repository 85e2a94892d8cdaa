"""Evaluate: top-1 of the zero-shot text head and of the tuned head on the real test features.

This is the only stage that reads the real test set's features. It writes per-class accuracies
next to the filter's per-class counts, so classes the generator cannot draw stand out, and a grid
of kept and dropped synthetic images for the first classes.

    cfg = config.load("tiny")
    result = evaluate.run(cfg, features="runs/x/features", head="runs/x/tune", images="runs/x/images",
                          selection="runs/x/filter", out="runs/x/evaluate")

Outputs under ``out``: ``metrics.json`` (accuracies in [0, 1]), ``report.md`` (starts with a
"stand-in data" notice when the test images are a drawn stand-in), ``grid.png``, ``manifest.json``.
Without a real test set (your own label space, no images) the test accuracies are null and both
heads are scored on the held-out synthetic images instead (:mod:`.synthetic_val`).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError
from synk8s.reports.zeroshot import GENERATOR_NOTE, write_run_report
from synk8s.runs import read_manifest, write_manifest
from synk8s.stages.zeroshot.feature_sets import load_feature_set, load_text_head
from synk8s.stages.zeroshot.filter import load_selection
from synk8s.stages.zeroshot.synthetic_val import FIELDS, report_lines, synthetic_val_fields
from synk8s.stages.zeroshot.tune import load_head, top1
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

GRID_CLASSES = 20  # classes (rows) shown in grid.png
GRID_PER_KIND = 4  # kept and dropped images shown per class
THUMB = 64  # thumbnail side in pixels
STANDIN_NOTICE = (
    "> **Stand-in data.** The test images are a small drawn stand-in for the real dataset, "
    "so these accuracies say nothing about the method. Put the real data under `dataset.root` "
    "to measure it."
)


class EvaluateResult(BaseModel):
    """What :func:`run` wrote and the headline numbers.

    Attributes:
        metrics: URI of ``metrics.json``.
        report: URI of ``report.md``.
        grid: URI of ``grid.png``.
        manifest: URI of ``manifest.json``.
        dataset: dataset name.
        standin: True when the test images are a drawn stand-in.
        test: real test images evaluated.
        zeroshot_top1: top-1 of the zero-shot text head, in [0, 1]; None without a real test set.
        tuned_top1: top-1 of the tuned head, in [0, 1]; None without a real test set.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    metrics: str
    report: str
    grid: str
    manifest: str
    dataset: str
    standin: bool
    test: int
    zeroshot_top1: float | None
    tuned_top1: float | None
    seconds: float


def per_class_top1(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Top-1 within each class, in [0, 1]; None for a class with no test image.

    Args:
        logits: (N, K) logits.
        labels: (N,) int64 true classes.
        num_classes: K.
    """
    import torch

    correct = (logits.argmax(dim=-1) == labels).double()  # (N,)
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, correct)
    counts = torch.bincount(labels, minlength=num_classes)
    return [float(h / n) if n else None for h, n in zip(hits.tolist(), counts.tolist())]


def standin_test_set(features: str) -> bool:
    """Whether the features stage encoded the drawn stand-in as the real test data.

    Read from the features stage's manifest, so it holds in a pod that never saw the data folder.
    """
    return bool(read_manifest(features, "features")["standin"])


def grid_rows(
    labels: torch.Tensor,
    kept: torch.Tensor,
    num_classes: int,
    *,
    classes: int = GRID_CLASSES,
    per_kind: int = GRID_PER_KIND,
) -> dict[int, tuple[list[int], list[int]]]:
    """Which synthetic rows the grid shows: per class, the first kept and the first dropped rows.

    Args:
        labels: (N,) class of every synthetic image, in manifest order.
        kept: (M,) row indices the filter kept.
        num_classes: K; the first ``min(K, classes)`` classes get a grid row.
        classes: most classes shown.
        per_kind: most kept (and most dropped) images per class.

    Returns:
        class index -> (kept rows, dropped rows), rows ascending.
    """
    import torch

    is_kept = torch.zeros(len(labels), dtype=torch.bool)
    is_kept[kept] = True
    rows = {}
    for c in range(min(num_classes, classes)):
        members = labels == c
        rows[c] = (
            torch.nonzero(members & is_kept).flatten()[:per_kind].tolist(),
            torch.nonzero(members & ~is_kept).flatten()[:per_kind].tolist(),
        )
    return rows


def render_grid(
    rows: list[tuple[str, list[Image.Image], list[Image.Image]]], *, per_kind: int = GRID_PER_KIND, thumb: int = THUMB
) -> Image.Image:
    """Draw one row per class: its name, kept images (green frame), then dropped images (red frame).

    Args:
        rows: (class name, kept images, dropped images) per class.
        per_kind: thumbnail slots per kind (a class with fewer images leaves slots empty).
        thumb: thumbnail side in pixels.
    """
    from PIL import Image, ImageDraw

    pad, label_w, header_h = 4, 140, 20
    cell = thumb + 2 * pad
    width = label_w + 2 * per_kind * cell + cell // 2
    canvas = Image.new("RGB", (width, header_h + cell * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(canvas)
    dropped_x = label_w + per_kind * cell + cell // 2
    draw.text((label_w + pad, 4), "kept", fill="darkgreen")
    draw.text((dropped_x + pad, 4), "dropped by the CLIP filter", fill="darkred")
    for r, (name, kept, dropped) in enumerate(rows):
        y = header_h + r * cell
        draw.text((pad, y + cell // 2 - 6), name[:22], fill="black")
        for x0, images, colour in ((label_w, kept, "green"), (dropped_x, dropped, "red")):
            for i, image in enumerate(images[:per_kind]):
                x = x0 + i * cell
                draw.rectangle((x + 1, y + 1, x + cell - 2, y + cell - 2), outline=colour, width=2)
                canvas.paste(image.convert("RGB").resize((thumb, thumb)), (x + pad, y + pad))
    return canvas


def _grid_png(images: str, labels: torch.Tensor, kept: torch.Tensor, classnames: list[str], progress: bool) -> bytes:
    """PNG bytes of the kept/dropped grid, reading the tars only up to the last row shown."""
    from tqdm.auto import tqdm

    from synk8s.shards import iter_samples

    rows = grid_rows(labels, kept, len(classnames))
    wanted = {row: c for c, (k, d) in rows.items() for row in (*k, *d)}
    found: dict[int, Image.Image] = {}
    if wanted:
        last = max(wanted)
        samples = iter_samples(images, limit=last + 1)  # the tar of the last one is still checked whole
        for i, (_, image, _) in enumerate(tqdm(samples, total=last + 1, desc="grid", unit="img", disable=not progress)):
            if i in wanted:
                found[i] = image
    grid = render_grid([(classnames[c], [found[i] for i in k], [found[i] for i in d]) for c, (k, d) in rows.items()])
    buf = io.BytesIO()
    grid.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def render_report(metrics: dict[str, Any]) -> str:
    """Markdown report of a ``metrics.json`` body; the stand-in notice comes first when it applies."""
    lines = [f"# synk8s evaluation: {metrics['dataset']}", ""]
    if metrics["standin"]:
        lines += [STANDIN_NOTICE, ""]
    if metrics["tuned_top1"] is None:
        lines += report_lines(metrics)
    gain = "" if metrics["tuned_top1"] is None else f" ({100 * (metrics['tuned_top1'] - metrics['zeroshot_top1']):+.2f})"
    lines += [
        "| head | top-1 (%) |",
        "|---|---|",
        f"| zero-shot CLIP text head | {_percent(metrics['zeroshot_top1'])} |",
        f"| classifier tuning on synthetic images ({metrics['loss']}) "
        f"| {_percent(metrics['tuned_top1'])}{gain} |",
        "",
        f"Real test images: {metrics['test']}. Synthetic images: {metrics['generated']} generated, "
        f"{metrics['kept']} kept by the filter. The head of epoch {metrics['best_epoch']} was chosen on the "
        f"synthetic validation split (top-1 {_percent(metrics['best_val_top1'])}%); "
        "the test set played no part in the choice.",
        "",
        *([f"Generator: {metrics['generator']}; {GENERATOR_NOTE.split(';')[0]}.", ""] * ("generator" in metrics)),
        "## Per class",
        "",
        "| class | test images | zero-shot (%) | tuned (%) | generated | kept |",
        "|---|---|---|---|---|---|",
    ]
    for row in metrics["per_class"]:
        lines.append(
            f"| {row['class_name']} | {row['test']} | {_percent(row['zeroshot_top1'])} | {_percent(row['tuned_top1'])} "
            f"| {row['generated']} | {row['kept']} |"
        )
    lines += [
        "",
        "## Synthetic images",
        "",
        f"Kept and dropped synthetic images of the first {min(GRID_CLASSES, len(metrics['per_class']))} classes.",
        "",
        "![kept and dropped synthetic images](grid.png)",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class _Inputs:
    """What :func:`run` reads: the real test features, both heads, the tune metadata and the synthetic rows."""

    test_feats: torch.Tensor  # (T, D)
    test_labels: torch.Tensor  # (T,)
    text_w: torch.Tensor  # (K, D)
    text_b: torch.Tensor  # (K,)
    tuned: dict[str, torch.Tensor]  # weight (K, D), bias (K,)
    about: dict[str, Any]  # the tuned head's metadata
    sel: dict[str, torch.Tensor]  # the filter's selection (kept rows)
    synth_feats: torch.Tensor  # (N, D)
    synth_labels: torch.Tensor  # (N,)


def run(
    cfg: ExperimentConfig, *, features: str, head: str, images: str, selection: str, out: str, progress: bool = True
) -> EvaluateResult:
    """Score both heads on the real test features and write metrics, report and image grid.

    Args:
        cfg: the run's config (dataset name and root).
        features: output folder of the features stage (test features, text head).
        head: output folder of the tune stage (``head.safetensors``).
        images: output folder of the generate stage (for the grid).
        selection: output folder of the filter stage (kept rows).
        out: this stage's output folder URI.
        progress: show a progress bar while reading synthetic images for the grid.

    Raises:
        MissingDataError: an upstream output is missing.
    """
    started = time.perf_counter()
    info = datasets.info(cfg.dataset)
    inputs = _inputs(cfg, len(info.classes), features=features, head=head, selection=selection)
    metrics = _metrics(cfg, list(info.classes), inputs, features=features)
    if datasets.has_test_set(cfg.dataset):
        logger.info("top-1 zero-shot %.4f, tuned %.4f", metrics["zeroshot_top1"], metrics["tuned_top1"])
    else:
        metrics.update(zeroshot_top1=None, tuned_top1=None, **synthetic_val_fields(
            head=head, feats=inputs.synth_feats, labels=inputs.synth_labels, tuned=inputs.tuned,
            text=(inputs.text_w, inputs.text_b)))
        logger.warning("%s; held-out synthetic top-1: zero-shot %.4f, tuned %.4f", metrics["notice"],
                       metrics["synthetic_val_zeroshot_top1"], metrics["synthetic_val_tuned_top1"])

    # The grid's tars are read and checked before anything is written.
    grid = _grid_png(images, inputs.synth_labels, inputs.sel["kept"].long(), list(info.classes), progress)
    metrics_uri, grid_uri, report_uri = _write_outputs(out, metrics, grid)
    seconds = time.perf_counter() - started
    manifest_uri = write_manifest(
        out,
        "evaluate",
        cfg,
        counts={"test": metrics["test"], "generated": metrics["generated"], "kept": metrics["kept"]},
        inputs={"features": features, "head": head, "images": images, "selection": selection},
        outputs={"metrics": metrics_uri, "report": report_uri, "grid": grid_uri},
        zeroshot_top1=metrics["zeroshot_top1"],
        tuned_top1=metrics["tuned_top1"],
        standin=metrics["standin"],
        seconds=seconds,
        **{key: metrics[key] for key in FIELDS if key in metrics},
    )
    return EvaluateResult(
        metrics=metrics_uri,
        report=report_uri,
        grid=grid_uri,
        manifest=manifest_uri,
        dataset=cfg.dataset.name,
        standin=metrics["standin"],
        test=metrics["test"],
        zeroshot_top1=metrics["zeroshot_top1"],
        tuned_top1=metrics["tuned_top1"],
        seconds=seconds,
    )


def _inputs(cfg: ExperimentConfig, num_classes: int, *, features: str, head: str, selection: str) -> _Inputs:
    """Read the test features, both heads, the selection and the synthetic labels; fail when the heads do not fit."""
    synth_feats, synth_labels = load_feature_set(features, "synthetic")  # (N, D), (N,): whole entry, SHA-256 checked
    if datasets.has_test_set(cfg.dataset):
        test_feats, test_labels = load_feature_set(features, "test")  # (T, D), (T,)
    else:  # no real test set: no test rows, and the held-out synthetic rows are scored instead
        test_feats, test_labels = synth_feats[:0], synth_labels[:0]
    text_w, text_b = load_text_head(features)  # (K, D), (K,)
    tuned, about = load_head(head)
    sel = load_selection(selection)
    expected = (num_classes, test_feats.shape[1])
    if tuple(text_w.shape) != expected or tuple(tuned["weight"].shape) != expected:
        raise MissingDataError(
            f"heads in {features} {tuple(text_w.shape)} and {head} {tuple(tuned['weight'].shape)} do not fit "
            f"{cfg.dataset.name} test features {tuple(test_feats.shape)}; rerun `synk8s stage features` and `tune`"
        )
    return _Inputs(test_feats, test_labels, text_w, text_b, tuned, about, sel, synth_feats, synth_labels)


def _metrics(cfg: ExperimentConfig, classes: list[str], inputs: _Inputs, *, features: str) -> dict[str, Any]:
    """The ``metrics.json`` body: both heads' top-1, overall and per class, counts and the tuned confusion matrix."""
    import torch

    num_classes, test_labels, synth_labels = len(classes), inputs.test_labels, inputs.synth_labels
    with torch.no_grad():
        zs_logits = inputs.test_feats @ inputs.text_w.T + inputs.text_b  # (T, K)
        tuned_logits = inputs.test_feats @ inputs.tuned["weight"].float().T + inputs.tuned["bias"].float()  # (T, K)
    zs_class = per_class_top1(zs_logits, test_labels, num_classes)
    tuned_class = per_class_top1(tuned_logits, test_labels, num_classes)
    test_counts = torch.bincount(test_labels, minlength=num_classes).tolist()
    generated = torch.bincount(synth_labels, minlength=num_classes).tolist()
    kept = torch.bincount(synth_labels[inputs.sel["kept"].long()], minlength=num_classes).tolist()
    pairs = test_labels.long() * num_classes + tuned_logits.argmax(dim=1)  # (T,) true * K + predicted
    confusion = torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)  # (K, K)
    about = inputs.about
    return {
        "dataset": cfg.dataset.name,
        "standin": standin_test_set(features),
        "zeroshot_top1": top1(zs_logits, test_labels),
        "tuned_top1": top1(tuned_logits, test_labels),
        "loss": about["tune"]["loss"],
        "generator": cfg.models.generator,
        "best_epoch": about["best_epoch"],
        "best_val_top1": about["best_val_top1"],
        "head_config_digest": about["config_digest"],
        "test": len(test_labels),
        "generated": len(synth_labels),
        "kept": len(inputs.sel["kept"]),
        "per_class": [
            {
                "class_index": c,
                "class_name": classes[c],
                "test": test_counts[c],
                "zeroshot_top1": zs_class[c],
                "tuned_top1": tuned_class[c],
                "generated": generated[c],
                "kept": kept[c],
            }
            for c in range(num_classes)
        ],
        "confusion": confusion.tolist(),  # tuned head: rows true class, columns predicted class
    }


def _write_outputs(out: str, metrics: dict[str, Any], grid: bytes) -> tuple[str, str, str]:
    """Write ``metrics.json``, ``grid.png`` and ``report.md`` under ``out``; return their URIs in that order."""
    metrics_uri = storage.join(out, "metrics.json")
    storage.put_json(metrics_uri, metrics)
    grid_uri = storage.join(out, "grid.png")
    storage.put_bytes(grid_uri, grid)
    report_uri = storage.join(out, "report.md")
    storage.put_bytes(report_uri, render_report(metrics).encode())
    return metrics_uri, grid_uri, report_uri


def load_confusion(evaluate_out: str) -> tuple[list[str], list[list[int]]]:
    """The class names and the tuned head's confusion matrix (rows: true, columns: predicted) of ``metrics.json``."""
    metrics = storage.get_json(storage.join(evaluate_out, "metrics.json"))
    return [row["class_name"] for row in metrics["per_class"]], metrics["confusion"]


STAGE = StageSpec(
    name="evaluate",
    run=run,
    help="Top-1 of the zero-shot and tuned heads on the real test split; metrics and report.",
    inputs={"features": "features", "head": "tune", "images": "generate", "selection": "filter"},
    resources=Resources("2", "4", "8Gi", "16Gi"),
    outputs={"metrics.json": None, "report.md": None, "grid.png": None},
    markdown="report.md",
    finish=write_run_report,
    attachments=("grid.png",),
    confusion=load_confusion,
)
