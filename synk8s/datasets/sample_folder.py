"""A small image folder of your own classes, drawn offline: the input of the README's "your own classes" demo.

    python -c "from synk8s.datasets.sample_folder import write_sample_folder; write_sample_folder('imgs', ['forklift', 'pallet jack'])"

Class ``i`` of ``names`` is painted the way the tiny profile's stand-in generator paints label ``i``
(:func:`synk8s.datasets.drawing.draw`), so a tiny run on it shows learning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synk8s.datasets.drawing import draw, save_jpeg


def write_sample_folder(root: str | Path, names: Sequence[str], per_class: int = 4, size: int = 32) -> Path:
    """Write ``root/<name>/<i>.jpg`` for each class name, ``per_class`` seeded drawings each; returns ``root``."""
    root = Path(root)
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            save_jpeg(root / name / f"{i}.jpg", draw(label, np.random.default_rng((label, i)), size))
    return root
