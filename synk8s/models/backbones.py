"""Classification backbones for pre-training on synthetic data and transfer.

``resnet50`` is torchvision's ResNet-50, as in the paper. ``tiny-resnet`` is a 10-layer ResNet for
32 px images with the same attribute names (``conv1``, ``layer1`` ... ``layer4``, ``fc``), so code that
swaps the head or taps the stages works on both.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from synk8s.models.registry import get_backbone_info

TINY_WIDTHS = (16, 32, 64, 128)  # channels of layer1 ... layer4


class TinyResNet(nn.Module):
    """A ResNet with one BasicBlock per stage and a 3x3 stride-1 stem, for small images.

    Args:
        num_classes: outputs of the final linear layer ``fc``.
        widths: channels of the four stages; each stage after the first halves the resolution.
    """

    def __init__(self, num_classes: int, widths: tuple[int, int, int, int] = TINY_WIDTHS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        inplanes = widths[0]
        for index, planes in enumerate(widths):
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            stages.append(nn.Sequential(BasicBlock(inplanes, planes, stride, downsample)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits: ``(B, 3, H, W)`` images to ``(B, num_classes)``."""
        x = self.relu(self.bn1(self.conv1(x)))  # (B, w0, H, W)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, w3, H/8, W/8)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_backbone(name: str, num_classes: int, pretrained: bool = False) -> nn.Module:
    """Build a backbone with a fresh ``num_classes``-way linear head ``fc``.

    Weights are random (drawn from the global torch RNG; seed it first) unless ``pretrained``.

    Args:
        name: a key of ``BACKBONES`` (``resnet50``, ``tiny-resnet``).
        num_classes: outputs of the head.
        pretrained: start ``resnet50`` from torchvision's ImageNet-1k weights (``IMAGENET1K_V2``, downloaded
            to the torch hub cache); the head is still new. ``tiny-resnet`` has no pretrained weights.

    Raises:
        UsageError: unknown ``name``, or ``pretrained`` with ``tiny-resnet``.
    """
    from torchvision.models import ResNet50_Weights, resnet50

    from synk8s.errors import UsageError

    info = get_backbone_info(name)
    if info.tiny:
        if pretrained:
            raise UsageError(f"backbone {name!r} has no pretrained weights; set pretrained to false")
        return TinyResNet(num_classes)
    if not pretrained:
        return resnet50(weights=None, num_classes=num_classes)
    model = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
