"""Evaluate without a real test set: both heads scored on the synthetic images tune held out.

A zero-shot run over your own label space without ``dataset.images`` has no real test images
(:func:`synk8s.datasets.has_test_set`). The evaluate stage then leaves ``zeroshot_top1`` and
``tuned_top1`` null and reports instead the top-1 of the tuned head and of the zero-shot text head
on the same held-out synthetic images (``split.json`` of the tune stage, ``val`` rows)::

    fields = synthetic_val_fields(head="runs/x/tune", feats=feats, labels=labels, tuned=tuned, text=(w, b))
    # {"synthetic_val_images": 10, "synthetic_val_tuned_top1": 0.6, "synthetic_val_zeroshot_top1": 0.4,
    #  "notice": "no real test set: ..."}

These numbers say how well a head separates generated images, not how it does on real ones; the
notice (:data:`synk8s.datasets.NO_TEST_NOTICE`) says so in the metrics, the report and the run summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synk8s import datasets
from synk8s.stages.zeroshot.tune import load_val_rows, top1

if TYPE_CHECKING:
    import torch

FIELDS = ("synthetic_val_images", "synthetic_val_tuned_top1", "synthetic_val_zeroshot_top1", "notice")


def synthetic_val_fields(
    *,
    head: str,
    feats: torch.Tensor,
    labels: torch.Tensor,
    tuned: dict[str, torch.Tensor],
    text: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Any]:
    """Top-1 of both heads on the synthetic validation rows of the tune stage in ``head``, and the notice.

    Args:
        head: the tune stage's output folder (``split.json``).
        feats: (N, D) synthetic features, in generation order.
        labels: (N,) their classes.
        tuned: the tuned head, ``weight`` (K, D) and ``bias`` (K,).
        text: the zero-shot text head, weight (K, D) and bias (K,).
    """
    import torch

    rows = torch.tensor(load_val_rows(head), dtype=torch.int64)  # (V,)
    x, y = feats[rows], labels[rows]  # (V, D), (V,)
    with torch.no_grad():
        tuned_logits = x @ tuned["weight"].float().T + tuned["bias"].float()  # (V, K)
        text_logits = x @ text[0].T + text[1]  # (V, K)
    return {
        "synthetic_val_images": len(rows),
        "synthetic_val_tuned_top1": top1(tuned_logits, y),
        "synthetic_val_zeroshot_top1": top1(text_logits, y),
        "notice": datasets.NO_TEST_NOTICE,
    }


def report_lines(metrics: dict[str, Any]) -> list[str]:
    """Markdown for ``report.md`` of a run without a real test set: the notice and both synthetic top-1s."""
    return [
        f"> **No real test set.** {metrics['notice'][len('no real test set: '):].capitalize()}.",
        "",
        "| head | top-1 on held-out synthetic images (%) |",
        "|---|---|",
        f"| zero-shot CLIP text head | {100 * metrics['synthetic_val_zeroshot_top1']:.2f} |",
        f"| classifier tuning on synthetic images | {100 * metrics['synthetic_val_tuned_top1']:.2f} |",
        "",
        f"Held-out synthetic images: {metrics['synthetic_val_images']}.",
        "",
    ]
