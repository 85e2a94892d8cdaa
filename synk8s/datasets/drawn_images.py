"""Drawn images in the generate stage's output layout: WebDataset tars plus ``manifest.json``.

Stand-in synthetic data whose classes a small network can tell apart (each class its own colours, stripes
and disc; see :class:`synk8s.datasets.drawing.Painter`), for the training stages' tests, benchmarks and
demos with no generator. Samples are written class after class in turn (image 0 of every class, then
image 1, ...), so every tar mixes the classes. The manifest lists the tars the way
:func:`synk8s.shards.manifest_tars` reads them and marks the output ``"drawn": true``.

    write_drawn_images("/tmp/drawn", classes=10, per_class=40, seed=0)
"""

from __future__ import annotations

from PIL import Image

from synk8s import shards, storage
from synk8s.datasets.drawing import Painter

SPLIT = "synthetic"  # the Painter split name: drawn images differ from a stand-in's train and test images


def write_drawn_images(
    out: str, *, classes: int, per_class: int, seed: int, size: int = 32, samples_per_tar: int = 100
) -> int:
    """Write ``classes x per_class`` drawn images as tars and a generate-style manifest under ``out``.

    Args:
        out: output folder URI.
        classes: number of classes (labels ``0 .. classes - 1``).
        per_class: images per class.
        seed: seed of the per-image variation.
        size: image side in pixels (default 32).
        samples_per_tar: images per tar (default 100).

    Returns:
        The number of images written.
    """
    if classes < 1 or per_class < 1 or samples_per_tar < 1:
        raise ValueError(
            f"classes, per_class and samples_per_tar must be >= 1, got {classes}, {per_class}, {samples_per_tar}"
        )
    paint = Painter(seed, size)
    order = [(c, i) for i in range(per_class) for c in range(classes)]
    tars = []
    for t, first in enumerate(range(0, len(order), samples_per_tar)):
        samples = []
        for c, i in order[first : first + samples_per_tar]:
            image = shards.encode_image(Image.fromarray(paint(c, SPLIT, i)), "png")
            meta = shards.encode_json({"class_index": c, "class_name": f"class {c}", "sample_index": i, "seed": seed})
            samples.append((shards.sample_key(c, 0, i), [("png", image), ("json", meta)]))
        path = f"drawn-{t:05d}.tar"
        with storage.writer(storage.join(out, path)) as f:
            shards.write_tar(f, samples)
        tars.append({"path": path, "count": len(samples), "sha256": storage.stat(storage.join(out, path)).sha256})
    storage.put_json(
        storage.join(out, "manifest.json"),
        {
            "stage": "generate",
            "dataset": "drawn",
            "drawn": True,
            "counts": {"images": len(order), "tars": len(tars), "classes": classes},
            "per_class": [per_class] * classes,
            "tars": tars,
            "seed": seed,
        },
    )
    return len(order)
