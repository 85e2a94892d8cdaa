"""Leakage check: synthetic training images that nearly duplicate a real test image.

A generator trained on web images may reproduce test images, which would make a gain on the test
set a memory rather than a result. Each synthetic image is compared with every real test image two
ways (:mod:`synk8s.neardup`): CLIP cosine similarity above ``leakage.clip_threshold`` (the features
stage's L2-normalised features), and a 64-bit difference hash within ``leakage.hash_distance`` bits.
A synthetic image found either way is flagged.

    result = leakage.run(cfg, images="runs/x/images", features="runs/x/features-...", out="runs/x/leakage-...")
    flagged = load_flagged("runs/x/leakage-...")    # synthetic row indices (manifest order)
    kept = without_flagged(kept, flagged)           # drop them from a selection (tune does, with leakage.drop)

Outputs under ``out``: ``flagged.json`` (``rows``: flagged synthetic rows, ascending),
``pairs.json`` (``clip``: [synthetic row, test row, cosine], ``hash``: [synthetic row, test row,
bits]; at most :data:`MAX_PAIRS` each, with the totals), ``stats.json`` (per class of the
synthetic image: flagged by CLIP, by hash, either), ``grid.png`` (the ``leakage.grid_pairs``
closest pairs by cosine, synthetic left, test right, flagged ones framed red) and ``manifest.json``.
Without a real test set (your own label space and no images) there is nothing to compare: the same
files list nothing, and the manifest carries a ``notice`` saying so.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, neardup, storage
from synk8s.config import ExperimentConfig
from synk8s.runs import read_manifest, write_manifest
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

MAX_PAIRS = 10000  # pairs listed per method in pairs.json; the totals count them all
THUMB = 96  # grid thumbnail side in pixels


class LeakageResult(BaseModel):
    """What the leakage check found.

    Attributes:
        synthetic: synthetic images compared.
        test: real test images compared.
        clip_pairs: (synthetic, test) pairs above the cosine threshold.
        hash_pairs: pairs within the hash distance.
        flagged: synthetic images in at least one pair.
        out: the output folder URI.
        seconds: wall time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    synthetic: int
    test: int
    clip_pairs: int
    hash_pairs: int
    flagged: int
    out: str
    seconds: float


def _test_images(cfg: ExperimentConfig) -> list[Image.Image]:
    from synk8s.realdata import ensure_dataset

    info = datasets.info(cfg.dataset)
    return [image for image, _ in datasets.load(datasets.info(cfg.dataset), info.test_split, ensure_dataset(cfg))]


def _grid_png(pairs: list[tuple[int, int, float]], syn: dict[int, Image.Image], test: list[Image.Image],
              flagged: set[int]) -> bytes:
    """Pairs side by side, one per row, with their cosine; flagged synthetic images framed red."""
    from PIL import Image, ImageDraw

    pad, label_w = 4, 90
    cell = THUMB + 2 * pad
    canvas = Image.new("RGB", (label_w + 2 * cell, max(1, len(pairs)) * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (i, j, cos) in enumerate(pairs):
        y = r * cell
        draw.text((pad, y + cell // 2 - 6), f"cos {cos:.3f}", fill="black")
        colour = "red" if i in flagged else "grey"
        for x, image in ((label_w, syn[i]), (label_w + cell, test[j])):
            draw.rectangle((x + 1, y + 1, x + cell - 2, y + cell - 2), outline=colour, width=2)
            canvas.paste(image.convert("RGB").resize((THUMB, THUMB)), (x + pad, y + pad))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def per_class(labels: torch.Tensor, classes: list[str], clip_rows: set[int], hash_rows: set[int]) -> dict[str, Any]:
    """Per class of the synthetic image: images, flagged by CLIP, by hash, and by either."""
    out = {}
    for c, name in enumerate(classes):
        rows = set((labels == c).nonzero().flatten().tolist())
        out[name] = {
            "images": len(rows),
            "clip": len(rows & clip_rows),
            "hash": len(rows & hash_rows),
            "flagged": len(rows & (clip_rows | hash_rows)),
        }
    return out


def run(cfg: ExperimentConfig, *, images: str, features: str, out: str, progress: bool = True) -> LeakageResult:
    """Compare every synthetic image with every real test image; write the flagged rows, pairs and grid.

    Args:
        cfg: the run's config (the ``leakage`` section and the dataset).
        images: the generate stage's output folder.
        features: the features stage's output folder (synthetic and test CLIP features).
        out: output folder URI.
        progress: unused (the stage reads images without a bar); kept for the stage contract.

    Raises:
        MissingDataError: an input stage has not run.
    """
    from synk8s.shards import iter_samples
    from synk8s.stages.zeroshot.feature_sets import load_feature_set

    start = time.perf_counter()
    read_manifest(images, "generate")
    syn_feats, syn_labels = load_feature_set(features, "synthetic")  # (N, D), (N,)
    if not datasets.has_test_set(cfg.dataset):
        return _nothing_to_compare(cfg, syn_labels, images=images, features=features, out=out, start=start)
    test_feats, _ = load_feature_set(features, "test")  # (M, D)
    settings = cfg.leakage
    clip = neardup.cosine_pairs(syn_feats, test_feats, threshold=settings.clip_threshold)
    shown = neardup.closest(syn_feats, test_feats, settings.grid_pairs)
    wanted = {i for i, _, _ in shown}
    syn_images: dict[int, Image.Image] = {}
    syn_hashes = []
    for row, (_, image, _) in enumerate(iter_samples(images)):
        syn_hashes.append(neardup.dhash(image))
        if row in wanted:
            syn_images[row] = image
    test_images = _test_images(cfg)
    hashed = neardup.hash_pairs(
        neardup.np.array(syn_hashes, dtype=neardup.np.uint64),
        neardup.dhash_all(test_images),
        max_distance=settings.hash_distance,
    )
    clip_rows, hash_rows = {i for i, _, _ in clip}, {i for i, _, _ in hashed}
    flagged = sorted(clip_rows | hash_rows)
    classes = list(datasets.info(cfg.dataset).classes)

    storage.put_json(storage.join(out, "flagged.json"), {"rows": flagged})
    storage.put_json(
        storage.join(out, "pairs.json"),
        {
            "clip_threshold": settings.clip_threshold,
            "hash_distance": settings.hash_distance,
            "clip_total": len(clip),
            "hash_total": len(hashed),
            "clip": [list(p) for p in clip[:MAX_PAIRS]],
            "hash": [list(p) for p in hashed[:MAX_PAIRS]],
        },
    )
    storage.put_json(storage.join(out, "stats.json"), per_class(syn_labels, classes, clip_rows, hash_rows))
    storage.put_bytes(storage.join(out, "grid.png"), _grid_png(shown, syn_images, test_images, set(flagged)))
    seconds = time.perf_counter() - start
    counts = {"synthetic": len(syn_labels), "test": len(test_images), "clip_pairs": len(clip),
              "hash_pairs": len(hashed), "flagged": len(flagged)}
    write_manifest(out, "leakage", cfg, counts=counts, seconds=round(seconds, 3), inputs={"images": images,
                   "features": features}, outputs={"flagged": "flagged.json", "pairs": "pairs.json",
                   "stats": "stats.json", "grid": "grid.png"})
    log.info("leakage: %d of %d synthetic images near a test image (%d CLIP pairs, %d hash pairs)",
             len(flagged), len(syn_labels), len(clip), len(hashed))
    return LeakageResult(**counts, out=out, seconds=seconds)


def _nothing_to_compare(
    cfg: ExperimentConfig, syn_labels: torch.Tensor, *, images: str, features: str, out: str, start: float
) -> LeakageResult:
    """The outputs of a run without real test images: nothing flagged, no pairs, a blank grid, and the notice."""
    classes = list(datasets.info(cfg.dataset).classes)
    notice = "no real test set: nothing to compare the synthetic images with, so none is flagged"
    log.warning("leakage: %s", notice)
    settings = cfg.leakage
    storage.put_json(storage.join(out, "flagged.json"), {"rows": []})
    storage.put_json(
        storage.join(out, "pairs.json"),
        {"clip_threshold": settings.clip_threshold, "hash_distance": settings.hash_distance,
         "clip_total": 0, "hash_total": 0, "clip": [], "hash": []},
    )
    storage.put_json(storage.join(out, "stats.json"), per_class(syn_labels, classes, set(), set()))
    storage.put_bytes(storage.join(out, "grid.png"), _grid_png([], {}, [], set()))
    seconds = time.perf_counter() - start
    counts = {"synthetic": len(syn_labels), "test": 0, "clip_pairs": 0, "hash_pairs": 0, "flagged": 0}
    write_manifest(out, "leakage", cfg, counts=counts, seconds=round(seconds, 3), notice=notice,
                   inputs={"images": images, "features": features}, outputs={"flagged": "flagged.json",
                   "pairs": "pairs.json", "stats": "stats.json", "grid": "grid.png"})
    return LeakageResult(**counts, out=out, seconds=seconds)


def load_flagged(out: str) -> list[int]:
    """The flagged synthetic rows (manifest order, ascending) of a leakage output folder.

    Raises:
        MissingDataError: the leakage stage has not run there.
    """
    read_manifest(out, "leakage")
    return [int(i) for i in storage.get_json(storage.join(out, "flagged.json"))["rows"]]


def without_flagged(kept: torch.Tensor, flagged: list[int]) -> torch.Tensor:
    """The rows of ``kept`` (M,) int64 that are not flagged, in their order."""
    import torch

    mask = ~torch.isin(kept, torch.tensor(flagged, dtype=kept.dtype))  # (M,)
    return kept[mask]


STAGE = StageSpec(
    name="leakage",
    run=run,
    help="Flag synthetic images that nearly duplicate a real test image (CLIP cosine, difference hash).",
    inputs={"images": "generate", "features": "features"},
    # Not leakage.drop: that switch is tune's (it reads this stage while it is on), so flipping it reuses these flags.
    depends=("leakage.clip_threshold", "leakage.hash_distance", "leakage.grid_pairs"),
    resources=Resources("2", "4", "8Gi", "16Gi"),
    outputs={"flagged.json": load_flagged, "pairs.json": None, "stats.json": None, "grid.png": None},
)
