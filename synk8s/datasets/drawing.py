"""Drawing and file-writing functions for stand-in datasets (see :mod:`synk8s.datasets.standin`)."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:size, 0:size] / size  # each (size, size), in [0, 1)
    return u.astype(np.float32), v.astype(np.float32)


@cache
def _style(label: int) -> tuple[np.ndarray, ...]:
    """Fixed look of class ``label``: three colours (3,), stripe direction and frequency, disc."""
    rng = np.random.default_rng((0x5EED, label))
    background = rng.uniform(0, 255, 3)
    stripes = (background + rng.uniform(80, 175, 3)) % 255
    disc = rng.uniform(0, 255, 3)
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(1.0, 4.0)
    centre, radius = rng.uniform(0.3, 0.7, 2), rng.uniform(0.12, 0.3)
    return background, stripes, disc, np.array([np.cos(angle), np.sin(angle)]) * frequency, centre, radius


class Painter:
    """Draws stand-in images; image ``(label, split, i)`` depends only on those and ``seed``."""

    def __init__(self, seed: int, size: int):
        self.seed = seed
        self.size = size

    def __call__(self, label: int, split: str, i: int, size: int | None = None) -> np.ndarray:
        """Return image number ``i`` of class ``label`` in ``split``: uint8 (size, size, 3)."""
        rng = np.random.default_rng((self.seed, label, zlib.crc32(split.encode()), i))
        return draw(label, rng, size or self.size)


def draw(label: int, rng: np.random.Generator, size: int, shift: DomainShift | None = None) -> np.ndarray:
    """Draw one image of class ``label`` with per-image variation from ``rng``: uint8 (size, size, 3).

    Args:
        label: class index; it fixes the class's colours, stripes and disc.
        rng: the image's own generator (phase, disc jitter, noise).
        size: image side in pixels.
        shift: a domain shift away from the stand-in's real images (palette, scale, noise); None draws
            a stand-in real image.
    """
    background, stripes, disc, wave, centre, radius = _style(label)
    u, v = _grid(size)
    phase = rng.uniform(0, 2 * np.pi)
    noise = 12.0
    if shift is not None:
        palette = rng.normal(0, shift.palette, (3, 3))  # (colour, channel): each colour jittered on its own
        background, stripes, disc = np.clip(np.stack([background, stripes, disc]) + palette, 0, 255)
        wave = wave * rng.uniform(1 / shift.scale, shift.scale)
        radius = radius * rng.uniform(1 / shift.scale, shift.scale)
        noise = shift.noise
    striped = np.sin(2 * np.pi * (u * wave[0] + v * wave[1]) + phase) > 0  # (size, size)
    cu, cv = centre + rng.normal(0, 0.05, 2)
    in_disc = (u - cu) ** 2 + (v - cv) ** 2 < radius**2
    image = np.where(striped[..., None], stripes, background)  # (size, size, 3)
    image = np.where(in_disc[..., None], disc, image)
    image = image + rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DomainShift:
    """How painted "synthetic" images differ from a stand-in's real ones.

    Attributes:
        palette: standard deviation of each colour's per-image jitter, in 0-255 levels (real: 0).
        scale: stripe frequency and disc radius are multiplied by a factor drawn from
            ``[1 / scale, scale]`` per image (real: 1).
        noise: standard deviation of the pixel noise, in levels (real: 12).
    """

    palette: float = 28.0
    scale: float = 1.3
    noise: float = 20.0


def save_jpeg(path: Path, pixels: np.ndarray) -> None:
    """Write ``pixels`` (H, W, 3) uint8 as a JPEG, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def save_text(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines``, one per line, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def save_mat(path: Path, variables: dict[str, np.ndarray]) -> None:
    """Write a MATLAB 5 ``.mat`` file with a fixed header (scipy stamps the time in it)."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, variables)
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by synk8s (stand-in data)".ljust(116)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
