"""A learnable stand-in of VOC07+12 for the detection transfer: coloured shapes with exact boxes.

``write_voc_standin(root, images=64, size=64)`` writes ``root/VOCdevkit/VOC2007`` (``trainval``,
``train``, ``val``, ``test``) and ``root/VOCdevkit/VOC2012`` (``trainval``, ``train``, ``val``) in
the standard VOCdevkit layout (JPEG images, XML annotations, ``ImageSets/Main/<split>.txt``), so
:func:`synk8s.datasets.load_detection` reads it as it reads the real data. Three VOC classes get
one shape each (:data:`SHAPES`): a red rectangle is a ``car``, a green ellipse a ``dog``, a blue
triangle a ``person``. Each image holds one to three non-overlapping shapes on a grey noise
background; about one shape in seven is drawn faint and flagged ``difficult``. Boxes are the
shapes' exact pixel extents in VOC coordinates (1-based, inclusive).

Unlike the format stand-in of :func:`synk8s.datasets.write_standin` (every class, textured
patches), this one is made for a tiny detector to learn within seconds. The marker file
``SYNK8S_STANDIN`` in ``root`` tells it from real data and records the arguments under ``"voc"``
(:func:`voc_standin_settings`); real data under ``root`` is never touched. Output bytes depend only on
the arguments.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from synk8s.datasets.drawing import save_text
from synk8s.datasets.standin import is_standin, mark_standin
from synk8s.datasets.standin_formats import voc_xml
from synk8s.errors import UsageError

log = logging.getLogger(__name__)

#: (VOC class name, shape, RGB colour) of each drawn class.
SHAPES = (("car", "rectangle", (215, 45, 40)), ("dog", "ellipse", (45, 190, 70)), ("person", "triangle", (55, 85, 225)))
#: (VOCdevkit folder, split) pairs written; train and val halve each trainval.
SETS = (("VOC2007", "trainval"), ("VOC2007", "test"), ("VOC2012", "trainval"))
DIFFICULT_RATE = 0.15  # share of shapes drawn faint and flagged difficult
_MARKER_TEXT = "synk8s stand-in data: drawn shapes under VOC class names, not PASCAL VOC\n"
#: The marker's key for this stand-in's settings.
MARKER_KEY = "voc"


def voc_standin_settings(images: int, size: int, seed: int) -> dict[str, int]:
    """The settings :func:`write_voc_standin` records for these arguments (its files depend on nothing else)."""
    return {"images": images, "size": size, "seed": seed}


def write_voc_standin(root: str | os.PathLike, *, images: int, size: int = 64, seed: int = 0) -> dict[str, int]:
    """Write the shapes stand-in under ``root`` (replacing an earlier stand-in there), recording its settings.

    Args:
        root: data root; the images go to ``root/VOCdevkit/VOC2007`` and ``.../VOC2012``.
        images: images in each of VOC2007 trainval, VOC2007 test and VOC2012 trainval (>= 2).
        size: image side in pixels (>= 32).
        seed: seed of the drawing.

    Returns:
        Images per written split, keyed ``"voc2007/trainval"``, ``"voc2007/test"``, ``"voc2012/train"``, ...

    Raises:
        UsageError: ``images``, ``size`` or ``seed`` out of range, or ``root`` holds real VOC data.
    """
    if images < 2:
        raise UsageError(f"images must be >= 2 (train and val get half each), got {images}")
    if size < 32:
        raise UsageError(f"size must be >= 32 pixels, got {size}")
    if seed < 0:
        raise UsageError(f"seed must be >= 0, got {seed}")
    root_path = Path(root)
    devkit = root_path / "VOCdevkit"
    for folder in ("VOC2007", "VOC2012"):
        if (devkit / folder).exists():
            if not is_standin(root_path):
                raise UsageError(f"{devkit / folder} exists and is not stand-in data; refusing to overwrite it")
            shutil.rmtree(devkit / folder)
    root_path.mkdir(parents=True, exist_ok=True)
    mark_standin(root_path, MARKER_KEY, None, _MARKER_TEXT)
    counts = {}
    for set_index, (folder, split) in enumerate(SETS):
        base = devkit / folder
        prefix = "2012_" if folder == "VOC2012" else ""
        first = 1 + sum(images for f, _ in SETS[:set_index] if f == folder)  # ids run on within a year
        ids = [f"{prefix}{number:06d}" for number in range(first, first + images)]
        for image_id in ids:
            rng = np.random.default_rng((seed, set_index, int(image_id[-6:])))
            pixels, objects = _draw(rng, size)
            _save_jpeg(base / "JPEGImages" / f"{image_id}.jpg", pixels)
            (base / "Annotations").mkdir(parents=True, exist_ok=True)
            (base / "Annotations" / f"{image_id}.xml").write_bytes(voc_xml(image_id, size, objects))
        parts = (
            {split: ids}
            if split == "test"
            else {"trainval": ids, "train": ids[: images // 2], "val": ids[images // 2 :]}
        )
        for name, listed in parts.items():
            save_text(base / "ImageSets" / "Main" / f"{name}.txt", listed)
            counts[f"{folder.lower()}/{name}"] = len(listed)
    mark_standin(root_path, MARKER_KEY, voc_standin_settings(images, size, seed), _MARKER_TEXT)
    log.info("wrote the VOC shapes stand-in under %s: %s", root_path, counts)
    return counts


def _draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[str, list[int], bool]]]:
    """One image: (size, size, 3) uint8 pixels and its ``(name, [x1, y1, x2, y2], difficult)`` objects."""
    grey = rng.integers(80, 176)
    pixels = np.clip(grey + rng.normal(0, 18, (size, size, 1)) + rng.normal(0, 6, (size, size, 3)), 0, 255)
    taken = np.zeros((size, size), bool)
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        label = int(rng.integers(len(SHAPES)))
        w, h = (int(v) for v in rng.integers(size // 5, size // 2 + 1, 2))
        for _attempt in range(20):
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if not taken[max(y0 - 1, 0) : y0 + h + 1, max(x0 - 1, 0) : x0 + w + 1].any():
                break
        else:
            continue
        taken[y0 : y0 + h, x0 : x0 + w] = True
        difficult = bool(rng.random() < DIFFICULT_RATE)
        mask = _shape_mask(SHAPES[label][1], size, x0, y0, w, h)  # (size, size) bool
        colour = np.clip(np.array(SHAPES[label][2]) + rng.integers(-25, 26, 3), 0, 255)
        alpha = 0.35 if difficult else 1.0
        pixels[mask] = alpha * colour + (1 - alpha) * pixels[mask]
        ys, xs = np.nonzero(mask)  # the box is the drawn extent, 1-based inclusive
        objects.append(
            (SHAPES[label][0], [int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1], difficult)
        )
    return pixels.astype(np.uint8), objects


def _shape_mask(shape: str, size: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Pixels of a filled shape spanning columns ``x0 .. x0+w-1`` and rows ``y0 .. y0+h-1``."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1 = x0 + w - 1, y0 + h - 1
    if shape == "rectangle":
        draw.rectangle([x0, y0, x1, y1], fill=255)
    elif shape == "ellipse":
        draw.ellipse([x0, y0, x1, y1], fill=255)
    else:
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=255)
    return np.asarray(canvas) > 0


def _save_jpeg(path: Path, pixels: np.ndarray) -> None:
    """JPEG without chroma subsampling, so shape edges stay where the boxes say."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, subsampling=0)
