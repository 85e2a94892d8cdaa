"""Image augmentations of the training stages, and seeded multi-view application.

* :func:`supervised`: RandomResizedCrop + horizontal flip (torchvision's ImageNet training recipe).
* :func:`moco_v2`: MoCo v2's "aug+" (facebookresearch/moco, ``--aug-plus``): RandomResizedCrop with
  scale (0.2, 1), colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale with p 0.2, Gaussian blur with
  sigma in [0.1, 2] and p 0.5, horizontal flip. The blur kernel is about a tenth of the crop side.
* :func:`evaluation`: resize to side x 256/224, centre crop (the ImageNet evaluation recipe).

All end in ImageNet mean/std normalisation. :class:`Views` applies a transform ``views`` times under its
own seed, so an image's augmentation depends only on that seed, not on which process or worker draws it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_tensor() -> list[Callable]:
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def supervised(resolution: int) -> T.Compose:
    """Training augmentation of supervised (pre-)training at ``resolution`` pixels."""
    return T.Compose([T.RandomResizedCrop(resolution), T.RandomHorizontalFlip(), *_to_tensor()])


def blur_kernel(resolution: int) -> int:
    """Odd Gaussian-blur kernel side of about ``resolution / 10`` pixels (23 at 224), at least 3."""
    return max(3, (resolution // 10) // 2 * 2 + 1)


def moco_v2(resolution: int) -> T.Compose:
    """MoCo v2's augmentation ("aug+") at ``resolution`` pixels."""
    return T.Compose(
        [
            T.RandomResizedCrop(resolution, scale=(0.2, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(blur_kernel(resolution), sigma=(0.1, 2.0))], p=0.5),
            T.RandomHorizontalFlip(),
            *_to_tensor(),
        ]
    )


def evaluation(resolution: int) -> T.Compose:
    """Evaluation preprocessing: resize the short side to ``resolution * 256 / 224``, centre crop."""
    return T.Compose([T.Resize(round(resolution * 256 / 224)), T.CenterCrop(resolution), *_to_tensor()])


def evaluation_uint8(resolution: int) -> T.Compose:
    """:func:`evaluation` without the normalisation: (3, H, W) uint8, compact to keep in memory."""
    return T.Compose([T.Resize(round(resolution * 256 / 224)), T.CenterCrop(resolution), T.PILToTensor()])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 from :func:`evaluation_uint8` to normalised float32."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


class Views:
    """``views`` augmented copies of an image, drawn from torch's RNG seeded with the given seed.

    Args:
        transform: a torchvision transform from PIL to a (3, H, W) tensor.
        views: copies per image (1 for supervised training, 2 for MoCo's query and key).
    """

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor], views: int) -> None:
        self.transform = transform
        self.views = views

    def __call__(self, image: Image.Image, seed: int) -> torch.Tensor:
        """(views, 3, H, W) augmented copies; the caller's RNG state is left as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([self.transform(image) for _ in range(self.views)])
