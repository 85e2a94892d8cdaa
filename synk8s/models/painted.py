"""The ``standin-drawn`` generator: a class-conditional painter in place of a diffusion model.

It paints each image from the class it is asked for (the stand-in datasets' look of that class, see
:mod:`synk8s.datasets.drawing`) with a domain shift away from the stand-in's real images: jittered
palette, rescaled stripes and disc, stronger noise. The prompt text is recorded but not read, as a
class-conditional diffusion model (diffusers' ``DiTPipeline``) takes ``class_labels`` instead of text.
Its image-to-image form blends the real starting image toward a painted one by ``strength``.

So tiny runs carry class signal: features of its images separate the classes, a head tuned on them
beats the zero-shot head on the stand-in test set, and pre-training on them learns. Numbers from it
show the machinery, never the method.

    pipe = PaintingPipeline()
    images = pipe(prompt=["a fox"], class_labels=[3], generator=[torch.Generator().manual_seed(0)]).images
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from synk8s.datasets.drawing import DomainShift, draw
from synk8s.errors import UsageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

MODEL_ID = "synk8s/standin-drawn"
REVISION = "painter-v1"  # bump when the painted pixels change


@dataclass(frozen=True)
class PaintedOutput:
    """What a call returns, shaped like a diffusers pipeline output: ``images`` in input order."""

    images: list[Image.Image]


class PaintOnce:
    """The painter's only step: no denoising schedule (recorded as the scheduler in each image's JSON)."""


class PaintingPipeline:
    """Paints class-conditional images; the same class label and seed always give the same pixels.

    Args:
        img2img: behave as an image-to-image pipeline (``image`` and ``strength`` required).
        shift: the domain shift from the stand-in's real images.
    """

    class_conditional = True  # generate passes ``class_labels`` to pipelines that set this

    def __init__(self, img2img: bool = False, shift: DomainShift | None = None):
        self.img2img = img2img
        self.shift = shift or DomainShift()
        self.scheduler = PaintOnce()

    def to(self, device: str | torch.device) -> PaintingPipeline:
        """Painting runs on the CPU whatever the device; returns itself like a diffusers pipeline."""
        return self

    def set_progress_bar_config(self, **_: Any) -> None:
        """Painting has no progress bar of its own (the shard's bar counts images)."""

    def __call__(
        self,
        prompt: Sequence[str],
        *,
        class_labels: Sequence[int],
        generator: Sequence[torch.Generator],
        image: Sequence[Image.Image] | None = None,
        strength: float | None = None,
        height: int | None = None,
        width: int | None = None,
        **_: Any,
    ) -> PaintedOutput:
        """Paint one image per (prompt, class label, generator).

        Args:
            prompt: the prompts (recorded by the caller; the painter reads the class label instead).
            class_labels: class index of each image.
            generator: one seeded ``torch.Generator`` per image; its initial seed seeds the painting.
            image: img2img only: the starting images (square RGB, the output's size).
            strength: img2img only: how far to move toward the painted image, in (0, 1].
            height: image side in pixels (txt2img; ``width`` must equal it).
            width: image side in pixels.

        Raises:
            UsageError: lengths differ, a non-square size, or img2img without images or strength.
        """
        if not len(prompt) == len(class_labels) == len(generator):
            raise UsageError(
                f"painter needs one class label and generator per prompt, got {len(prompt)} prompts, "
                f"{len(class_labels)} labels, {len(generator)} generators"
            )
        if self.img2img:
            return PaintedOutput(self._blend(class_labels, generator, image, strength))
        if height is None or height != width:
            raise UsageError(f"the painter draws square images; got height {height} and width {width}")
        seeds = [g.initial_seed() for g in generator]
        return PaintedOutput([self._paint(label, seed, height) for label, seed in zip(class_labels, seeds)])

    def _paint(self, label: int, seed: int, size: int) -> Image.Image:
        from PIL import Image

        rng = np.random.default_rng((seed, label))
        return Image.fromarray(draw(int(label), rng, size, self.shift))

    def _blend(
        self,
        labels: Sequence[int],
        generators: Sequence[torch.Generator],
        images: Sequence[Image.Image] | None,
        strength: float | None,
    ) -> list[Image.Image]:
        from PIL import Image

        if images is None or strength is None or not 0 < strength <= 1:
            raise UsageError(f"the painter's img2img needs starting images and a strength in (0, 1], got {strength}")
        if len(images) != len(labels):
            raise UsageError(f"painter img2img needs one starting image per prompt, got {len(images)}")
        out = []
        for label, g, start in zip(labels, generators, images):
            real = np.asarray(start.convert("RGB"), dtype=np.float32)  # (H, W, 3)
            if real.shape[0] != real.shape[1]:
                raise UsageError(f"the painter's starting images must be square, got {real.shape[1]}x{real.shape[0]}")
            painted = np.asarray(self._paint(label, g.initial_seed(), real.shape[0]), dtype=np.float32)
            blended = (1 - strength) * real + strength * painted
            out.append(Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8)))
        return out
