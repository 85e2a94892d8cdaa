"""Faster R-CNN around our ResNet trunk, from torchvision's detection building blocks.

``c4`` (the paper's protocol, detectron2's R50-C4 as MoCo's VOC configs set it up): the trunk up
to ``layer3`` is the backbone (stride 16 on ResNet-50, one feature map); the RPN has 15 anchors
per location; RoIs are pooled to 14 x 14 with half-pixel-aligned RoIAlign (detectron2's
ROIAlignV2); the box head is ``layer4`` (res5, stride 2, so 7 x 7), an extra batch norm (MoCo's
``Res5ROIHeadsExtraNorm``), and a spatial mean; the predictor scores 21 classes and regresses
class-specific boxes. Batch norm everywhere is trained (detectron2 ``FREEZE_AT: 0`` with
SyncBN); :func:`synk8s.detection.train.train_detector` converts it to SyncBN across GPUs.

``fpn``: torchvision's ``BackboneWithFPN`` over ``layer1 .. layer4`` plus a max-pooled level
(5 levels, one anchor size each), multi-level RoIAlign to 7 x 7 and torchvision's two-layer MLP head.

``tiny-resnet`` has the same attribute names and strides 1, 2, 2, 2 (so the C4 backbone has
stride 4), which makes a detector small enough for CPU tests.

    detector = build_detector(cfg.detect, build_trunk(trunk), num_classes=20)
    losses = detector(images, targets)        # train mode: dict of RPN and box losses
    outputs = detector.eval()(images)         # boxes (0-based, input pixels), labels 1..20, scores
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from synk8s.config import DetectConfig
from synk8s.errors import UsageError

FPN_LEVELS = 5  # layer1 .. layer4 and the max-pooled level above layer4
FPN_POOLER = 7  # RoIAlign output side of the FPN box head
FPN_HEAD_DIM = 1024  # hidden width of the FPN box head's two-layer MLP


def _out_channels(stage: nn.Module) -> int:
    """Output channels of a ResNet stage (the width of its last batch norm)."""
    norms = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


class AlignedRoIPool(MultiScaleRoIAlign):
    """RoIAlign on one feature map with half-pixel alignment (``aligned=True``, detectron2's ROIAlignV2).

    The feature stride is inferred as torchvision's pooler does (the power of two nearest to
    image size / feature size). ``sampling_ratio`` 0 samples adaptively, as detectron2 does.
    """

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Pool each box: features ``x[name]`` (B, C, H, W), boxes per image (N_i, 4) -> (sum N_i, C, S, S)."""
        feature = x[self.featmap_names[0]]
        largest = max(max(h, w) for h, w in image_shapes)
        scale = 2.0 ** round(math.log2(max(feature.shape[-2:]) / largest))
        return roi_align(
            feature, boxes, self.output_size, spatial_scale=scale, sampling_ratio=self.sampling_ratio, aligned=True
        )


class Res5Head(nn.Module):
    """The C4 box head: res5 on pooled RoIs, an extra batch norm, then a spatial mean.

    Args:
        res5: the trunk's ``layer4``.
    """

    def __init__(self, res5: nn.Module):
        super().__init__()
        self.res5 = res5
        self.out_channels = _out_channels(res5)
        self.norm = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Box features: (R, C4, S, S) pooled RoIs to (R, C5)."""
        return self.norm(self.res5(x)).mean(dim=(2, 3))  # (R, C5, S/2, S/2) -> (R, C5)


def _c4_parts(trunk: nn.Module, dc: DetectConfig) -> dict:
    stem = OrderedDict()
    for name, module in trunk.named_children():
        if name == "layer4":
            break
        stem[name] = module
    body = nn.Sequential(stem)  # conv1 .. layer3, names kept
    body.out_channels = _out_channels(trunk.layer3)
    return {
        "backbone": body,
        "rpn_anchor_generator": AnchorGenerator((tuple(dc.anchor_sizes),), (tuple(dc.anchor_ratios),)),
        "box_roi_pool": AlignedRoIPool(["0"], dc.pooler_resolution, sampling_ratio=0),
        "box_head": Res5Head(trunk.layer4),
        "head_dim": _out_channels(trunk.layer4),
    }


def _fpn_parts(trunk: nn.Module, dc: DetectConfig) -> dict:
    if len(dc.anchor_sizes) != FPN_LEVELS:
        raise UsageError(
            f"detect.anchor_sizes needs {FPN_LEVELS} sizes with arch fpn (one per level), got {list(dc.anchor_sizes)}"
        )
    stages = [f"layer{k}" for k in range(1, 5)]
    body = BackboneWithFPN(
        trunk,
        return_layers={name: str(k) for k, name in enumerate(stages)},
        in_channels_list=[_out_channels(getattr(trunk, name)) for name in stages],
        out_channels=dc.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    return {
        "backbone": body,
        "rpn_anchor_generator": AnchorGenerator(
            tuple((s,) for s in dc.anchor_sizes), (tuple(dc.anchor_ratios),) * FPN_LEVELS
        ),
        "box_roi_pool": MultiScaleRoIAlign([str(k) for k in range(4)], FPN_POOLER, sampling_ratio=0),
        "box_head": TwoMLPHead(dc.fpn_channels * FPN_POOLER**2, FPN_HEAD_DIM),
        "head_dim": FPN_HEAD_DIM,
    }


def build_detector(dc: DetectConfig, trunk: nn.Module, num_classes: int) -> FasterRCNN:
    """Faster R-CNN (``dc.arch``: ``c4`` or ``fpn``) over ``trunk`` for ``num_classes`` object classes.

    The trunk's modules become the detector's (no copy); new layers draw from the global torch RNG.
    The box predictor starts as detectron2's: class scores ~ N(0, 0.01), box deltas ~ N(0, 0.001), zero biases.

    Args:
        dc: the ``detect`` config (anchors, sizes, RPN and RoI settings).
        trunk: a ResNet with ``conv1``, ``bn1``, ``layer1`` ... ``layer4`` (see :func:`~.trunk.build_trunk`).
        num_classes: object classes, without background (20 for VOC).

    Raises:
        UsageError: FPN with other than 5 anchor sizes.
    """
    parts = _c4_parts(trunk, dc) if dc.arch == "c4" else _fpn_parts(trunk, dc)
    predictor = FastRCNNPredictor(parts.pop("head_dim"), num_classes + 1)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    for layer in (predictor.cls_score, predictor.bbox_pred):
        nn.init.zeros_(layer.bias)
    return FasterRCNN(
        parts.pop("backbone"),
        box_predictor=predictor,
        min_size=tuple(dc.train_sizes),
        max_size=dc.max_size,
        rpn_pre_nms_top_n_train=dc.rpn_pre_nms_train,
        rpn_post_nms_top_n_train=dc.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=dc.rpn_pre_nms_test,
        rpn_post_nms_top_n_test=dc.rpn_post_nms_test,
        box_batch_size_per_image=dc.roi_batch_per_image,
        box_score_thresh=dc.score_thresh,
        box_nms_thresh=dc.nms_thresh,
        box_detections_per_img=dc.detections_per_image,
        **parts,
    )


def set_image_sizes(detector: FasterRCNN, sizes: tuple[int, ...]) -> None:
    """Shorter-side sizes of the detector's resize: one is drawn per image in training, the last is used in eval."""
    detector.transform.min_size = tuple(sizes)
