"""The detector: R50-C4 / FPN from torchvision blocks, trunk weights, schedule, optimiser groups, precise BN."""

import pytest
import torch
from safetensors.torch import save
from torch import nn

from synk8s import config, distributed, models, storage
from synk8s.detection import train, voc_data
from synk8s.detection.model import AlignedRoIPool, Res5Head, build_detector
from synk8s.detection.trunk import Trunk, build_trunk, resolve_trunk
from synk8s.errors import MissingDataError, UsageError
from synk8s.stages.pretraining.detect import check_config

pytestmark = pytest.mark.timeout(60)


def _tiny(*overrides):
    return config.load("tiny", list(overrides)).detect


def _detector(dc, backbone="tiny-resnet", seed=0):
    torch.manual_seed(seed)
    return build_detector(dc, build_trunk(Trunk(backbone, {}, "scratch")), num_classes=20)


def _batch(n=2, size=64):
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [33.0, 30.0, 60.0, 55.0]]), "labels": torch.tensor([7, 12])}
    ] * n
    return images, targets


def test_paper_profile_holds_mocos_detectron2_voc_protocol():
    dc = config.load("paper").detect
    assert (dc.arch, dc.init, dc.iterations, dc.batch_size, dc.lr, dc.lr_steps) == (
        "c4",
        "scratch",
        24000,
        16,
        0.02,
        (18000, 22000),
    )
    assert (dc.warmup_iters, dc.warmup_factor, dc.momentum, dc.weight_decay, dc.weight_decay_norm) == (
        100,
        0.001,
        0.9,
        1e-4,
        0.0,
    )
    assert (dc.train_sizes[0], dc.train_sizes[-1], len(dc.train_sizes), dc.test_size) == (480, 800, 11, 800)
    assert (dc.pooler_resolution, dc.precise_bn_iters, dc.train_difficult, dc.standin) == (14, 200, True, False)
    tiny = config.load("tiny").detect
    assert tiny.standin and tiny.root != dc.root and tiny.lr == dc.lr


def test_r50_c4_is_the_trunk_to_res4_with_res5_as_the_box_head():
    detector = _detector(config.load("paper").detect, backbone="resnet50")
    names = [name for name, _ in detector.backbone.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"]
    assert detector.backbone.out_channels == 1024
    with torch.no_grad():
        assert detector.backbone.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1024, 14, 14)  # stride 16
    head = detector.roi_heads.box_head
    assert isinstance(head, Res5Head) and head.out_channels == 2048 and head.norm.num_features == 2048
    with torch.no_grad():
        assert head.eval()(torch.zeros(3, 1024, 14, 14)).shape == (3, 2048)  # pooled 14x14 -> res5 7x7 -> mean
    predictor = detector.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 21 and predictor.bbox_pred.out_features == 84
    assert detector.rpn.anchor_generator.num_anchors_per_location() == [15]
    assert detector.transform.min_size == tuple(range(480, 801, 32)) and detector.transform.max_size == 1333
    assert (detector.rpn._pre_nms_top_n, detector.rpn._post_nms_top_n) == (
        {"training": 12000, "testing": 6000},
        {"training": 2000, "testing": 1000},
    )
    assert detector.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    # batch norm is trained, not frozen
    norms = [m for m in detector.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(p.requires_grad for m in norms for p in m.parameters())


def test_roi_pooling_is_half_pixel_aligned():
    pool = AlignedRoIPool(["0"], 2, sampling_ratio=0)
    feature = torch.arange(8.0).repeat(1, 1, 8, 1)  # (1, 1, 8, 8): value = column index
    box = torch.tensor([[32.0, 0.0, 64.0, 16.0]])  # columns 2 .. 4 of the stride-16 map
    pooled = pool({"0": feature}, [box], [(128, 128)])  # (1, 1, 2, 2)
    assert pooled.mean().item() == pytest.approx(2.5)  # sampled 1.5 .. 3.5 (aligned); unaligned would give 3.0


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_tiny_detector_trains_and_detects(arch):
    dc = _tiny(f"detect.arch={arch}")
    detector = _detector(dc)
    images, targets = _batch()
    losses = detector.train()(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert (
        detector.backbone.body.conv1.weight.grad is not None
        if arch == "fpn"
        else detector.backbone.conv1.weight.grad is not None
    )
    with torch.no_grad():
        outputs = detector.eval()(images)
    assert len(outputs) == 2 and outputs[0]["boxes"].shape[1] == 4
    assert len(outputs[0]["boxes"]) <= dc.detections_per_image
    assert all(1 <= int(label) <= 20 for out in outputs for label in out["labels"])


def test_fpn_needs_one_anchor_size_per_level_and_the_schedule_fits_the_run():
    with pytest.raises(UsageError, match="5 sizes"):
        _detector(_tiny("detect.arch=fpn", "detect.anchor_sizes=[16, 32]"))
    with pytest.raises(UsageError, match="lr_steps"):
        check_config(_tiny("detect.iterations=100", "detect.lr_steps=[100]"))
    with pytest.raises(UsageError, match="strictly increasing"):
        _tiny("detect.lr_steps=[20, 10]")


# ----------------------------------------------------------------------------- trunk weights


def _pretrained_folder(root, backbone="tiny-resnet", **info):
    torch.manual_seed(5)
    trunk = models.build_backbone(backbone, num_classes=10)
    state = {k: v.contiguous() for k, v in trunk.state_dict().items() if not k.startswith("fc.")}
    folder = storage.join(str(root), "pretrain")
    storage.put_bytes(storage.join(folder, "backbone.safetensors"), save(state))
    storage.put_json(storage.join(folder, "backbone.json"), {"backbone": backbone, **info})
    return folder, state


def test_a_pretrained_trunk_becomes_the_detectors_backbone_and_box_head(tmp_path):
    folder, state = _pretrained_folder(tmp_path, method="mocov2")
    trunk = resolve_trunk(folder, init="scratch", backbone="tiny-resnet", cache=None)
    assert trunk.source == folder and trunk.info["method"] == "mocov2"
    detector = build_detector(_tiny(), build_trunk(trunk), num_classes=20)
    assert torch.equal(detector.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(detector.backbone.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert torch.equal(detector.roi_heads.box_head.res5[0].conv2.weight, state["layer4.0.conv2.weight"])
    assert torch.equal(detector.backbone.bn1.running_var, state["bn1.running_var"])


def test_bad_trunks_fail_with_one_line(tmp_path):
    folder, state = _pretrained_folder(tmp_path)
    with pytest.raises(UsageError, match="models.backbone=tiny-resnet"):
        resolve_trunk(folder, init="scratch", backbone="resnet50", cache=None)
    with pytest.raises(MissingDataError, match="backbone.json"):
        resolve_trunk(str(tmp_path / "nowhere"), init="scratch", backbone="tiny-resnet", cache=None)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(MissingDataError, match="do not fit tiny-resnet"):
        build_trunk(Trunk("tiny-resnet", state, folder))
    with pytest.raises(MissingDataError, match="unexpected"):
        build_trunk(Trunk("tiny-resnet", {**_pretrained_folder(tmp_path)[1], "extra.weight": torch.zeros(1)}, folder))
    with pytest.raises(UsageError, match="no ImageNet weights"):
        resolve_trunk(None, init="imagenet", backbone="tiny-resnet", cache=None)
    with pytest.raises(MissingDataError, match="torchvision/resnet50-0676ba61.pth"):
        resolve_trunk(None, init="imagenet", backbone="resnet50", cache=str(tmp_path / "empty-cache"))


def test_imagenet_weights_come_from_the_model_cache(tmp_path):
    torch.manual_seed(2)
    reference = models.build_backbone("resnet50", num_classes=1000).state_dict()
    (tmp_path / "cache" / "torchvision").mkdir(parents=True)
    torch.save(reference, tmp_path / "cache" / "torchvision" / "resnet50-0676ba61.pth")
    trunk = resolve_trunk(None, init="imagenet", backbone="resnet50", cache=str(tmp_path / "cache"))
    built = build_trunk(trunk)
    assert trunk.source == "imagenet" and torch.equal(built.layer2[1].conv2.weight, reference["layer2.1.conv2.weight"])


# ----------------------------------------------------------------------------- schedule and optimiser


def test_schedule_is_detectrons_warmup_multistep():
    dc = config.load("paper").detect
    assert train.lr_factor(0, dc) == pytest.approx(0.001)
    assert train.lr_factor(50, dc) == pytest.approx(0.001 * 0.5 + 0.5)
    assert train.lr_factor(100, dc) == train.lr_factor(17999, dc) == 1.0
    assert train.lr_factor(18000, dc) == pytest.approx(0.1) and train.lr_factor(21999, dc) == pytest.approx(0.1)
    assert train.lr_factor(22000, dc) == pytest.approx(0.01) and train.lr_factor(23999, dc) == pytest.approx(0.01)


def test_norm_layers_get_their_own_weight_decay():
    dc = _tiny("detect.weight_decay=0.0001", "detect.weight_decay_norm=0.0")
    detector = _detector(dc)
    other, norm = train.parameter_groups(detector, dc)
    assert (other["weight_decay"], norm["weight_decay"]) == (0.0001, 0.0)
    norm_ids = {id(p) for m in detector.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in norm["params"]} == norm_ids
    assert len(other["params"]) + len(norm["params"]) == len(list(detector.parameters()))


def test_precise_bn_sets_running_stats_to_the_mean_of_batch_stats(tmp_path):
    from synk8s import datasets

    root = tmp_path / "voc"
    datasets.write_voc_standin(root, images=8, size=64)
    images = voc_data.TrainImages(voc_data.train_records(root, train_difficult=True))
    dc = _tiny("detect.precise_bn_iters=3", "detect.batch_size=2")
    detector = _detector(dc)
    seen = []
    hook = detector.backbone.bn1.register_forward_hook(lambda m, args, out: seen.append(args[0].mean(dim=(0, 2, 3))))
    process = distributed.current("cpu")
    updated = train.precise_bn(detector, images, dc, process, seed=3)
    hook.remove()
    assert updated == sum(isinstance(m, nn.BatchNorm2d) for m in detector.modules()) and len(seen) == 3
    assert torch.allclose(detector.backbone.bn1.running_mean, torch.stack(seen).mean(0), atol=1e-6)
    assert detector.backbone.bn1.momentum == 0.1  # restored
