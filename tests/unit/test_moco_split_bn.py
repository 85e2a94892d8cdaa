"""Split-batch BN, shuffle BN's stand-in on one process: its maths and its use by MoCo and pre-training."""

import pytest
import torch
from torch import nn

from synk8s import config, distributed
from synk8s.models import build_backbone
from synk8s.models.moco import MoCo, SplitBatchNorm, split_batch_norm
from synk8s.stages.pretraining import pretrain


def _pair(splits: int) -> tuple[nn.BatchNorm2d, SplitBatchNorm]:
    """A plain BN and a split-batch BN with the same random weight, bias and running statistics."""
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
        plain.running_mean.uniform_(-1.0, 1.0)
        plain.running_var.uniform_(0.5, 2.0)
    split = SplitBatchNorm(3, splits)
    split.load_state_dict(plain.state_dict())
    return plain, split


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 5, 5, generator=g) * torch.arange(1.0, 9.0).view(8, 1, 1, 1)  # sub-batches differ


def test_eval_mode_is_plain_batch_norm():
    plain, split = _pair(4)
    plain.eval(), split.eval()
    x = _batch()
    assert torch.equal(split(x), plain(x))
    assert torch.equal(split.running_mean, plain.running_mean)


def test_one_split_equals_plain_batch_norm_in_training():
    plain, split = _pair(1)
    x = _batch()
    assert torch.allclose(split(x), plain(x), atol=1e-6)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.allclose(getattr(split, name), getattr(plain, name))


def test_several_splits_normalise_each_sub_batch_by_its_own_statistics():
    plain, split = _pair(2)
    x = _batch()
    out = split(x)
    assert not torch.allclose(out, plain(x), atol=1e-3)
    for j in range(2):  # sample i is in sub-batch i % 2: BN over that sub-batch alone gives its rows
        alone = nn.BatchNorm2d(3)
        alone.load_state_dict(_pair(2)[0].state_dict())
        assert torch.allclose(out[j::2], alone(x[j::2]), atol=1e-5)


def test_running_statistics_average_the_sub_batches():
    _, split = _pair(2)
    start_mean, start_var = split.running_mean.clone(), split.running_var.clone()
    x = _batch()
    split(x)
    means = torch.stack([x[j::2].mean(dim=(0, 2, 3)) for j in range(2)])  # (2, C)
    variances = torch.stack([x[j::2].transpose(0, 1).reshape(3, -1).var(dim=1) for j in range(2)])  # unbiased
    m = split.momentum
    assert torch.allclose(split.running_mean, (1 - m) * start_mean + m * means.mean(dim=0), atol=1e-5)
    assert torch.allclose(split.running_var, (1 - m) * start_var + m * variances.mean(dim=0), atol=1e-4)
    assert int(split.num_batches_tracked) == 1


def test_a_batch_that_does_not_split_is_refused():
    _, split = _pair(3)
    with pytest.raises(ValueError, match="a batch of 8 does not split into 3 sub-batches"):
        split(_batch())


def test_conversion_keeps_the_state_dict():
    torch.manual_seed(0)
    trunk = build_backbone("tiny-resnet", num_classes=4)
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    split_batch_norm(trunk, 2)
    assert all(isinstance(m, SplitBatchNorm) for m in trunk.modules() if isinstance(m, nn.BatchNorm2d))
    assert trunk.state_dict().keys() == state.keys()
    assert all(torch.equal(trunk.state_dict()[k], v) for k, v in state.items())


def _moco(bn_splits: int) -> MoCo:
    torch.manual_seed(0)
    trunk = build_backbone("tiny-resnet", num_classes=8)
    return MoCo(trunk, dim=8, hidden_dim=16, queue=32, momentum=0.99, temperature=0.2, seed=0, bn_splits=bn_splits)


@pytest.mark.parametrize("bn_splits", [1, 4])
def test_one_process_keys_see_the_shuffle_only_through_split_batch_norm(bn_splits):
    model = _moco(bn_splits)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with distributed.session("cpu") as ctx:
        assert ctx.world_size == 1
        shuffled = model._keys(images)
        model.encoder_k.load_state_dict(_moco(bn_splits).encoder_k.state_dict())  # undo the running-stat update
        in_order = nn.functional.normalize(model.encoder_k(images), dim=1)
        logits, targets = model(images, images)
    assert logits.shape == (8, 33) and targets.shape == (8,)
    assert torch.allclose(shuffled, in_order, atol=1e-5) == (bn_splits == 1)


def test_pretraining_on_one_process_builds_split_batch_norm_encoders(tmp_path):
    cfg = config.load("tiny", [f"store.root={tmp_path}", "pretrain.method=moco"])
    assert cfg.pretrain.moco.bn_splits == 4 and config.load("paper").pretrain.moco.bn_splits == 8
    for world_size, kind in ((1, SplitBatchNorm), (2, nn.BatchNorm2d)):
        model = pretrain.build_model(cfg, num_classes=10, world_size=world_size)
        for encoder in (model.encoder_k, model.encoder_q):
            norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
            assert norms and all(type(m) is kind for m in norms)
            assert all(m.num_splits == 4 for m in norms if kind is SplitBatchNorm)
    plain = pretrain.build_model(config.with_overrides(cfg, ["pretrain.moco.bn_splits=1"]), num_classes=10)
    assert not any(isinstance(m, SplitBatchNorm) for m in plain.modules())
