"""Trainable parameter levels (Table 3) and frozen batch norm (Table 6) on tiny open_clip towers."""

import pytest
import torch
from open_clip.model import CLIP
from PIL import Image

from synk8s import trainable
from synk8s.errors import UsageError
from synk8s.models import load_clip
from synk8s.stages.fewshot import fit as fewshot_fit
from synk8s.stages.fewshot.fit_images import ClipClassifier, image_source

pytestmark = pytest.mark.timeout(60)


TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _tower(kind):
    """A small random ModifiedResNet (two blocks in its last stage) or VisionTransformer (eight blocks)."""
    if kind == "resnet":
        vision = {"image_size": 32, "layers": (1, 1, 1, 2), "width": 16}
    else:
        vision = {"image_size": 32, "layers": 8, "width": 32, "patch_size": 8, "head_width": 16}
    return CLIP(embed_dim=32, vision_cfg=vision, text_cfg=TEXT).visual


@pytest.mark.parametrize("tower", ["resnet", "vit"])
def test_levels_nest_and_frozen_bn_keeps_bn_parameters_out(tower):
    visual = _tower(tower)
    names = {lvl: set(trainable.trainable_names(visual, lvl, freeze_bn=True)) for lvl in trainable.LEVELS}
    assert names["head"] == set()
    for smaller, larger in zip(trainable.LEVELS, trainable.LEVELS[1:], strict=False):
        assert names[smaller] < names[larger], (smaller, larger)
    bn = {n for n, _ in visual.named_parameters()} - set(trainable.trainable_names(visual, "all", freeze_bn=True))
    if tower == "resnet":
        assert names["proj"] == {n for n, _ in visual.named_parameters() if n.startswith("attnpool.")}
        assert {n for n in names["last-block"] if n.startswith("layer4.")} == {
            n for n in names["last-stage"] if n.startswith("layer4.1.")
        }
        norms = {n for n, m in visual.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert bn and bn == {f"{m}.{p}" for m in norms for p in ("weight", "bias")}
        unfrozen = set(trainable.trainable_names(visual, "head", freeze_bn=False))
        assert unfrozen == bn  # unfrozen BN trains every BN affine parameter, even at the head level
    else:
        assert (
            bn == set()
            and "proj" in names["proj"]
            and "transformer.resblocks.7.attn.in_proj_weight" in names["last-block"]
        )
        blocks = {
            n.split(".")[2] for lvl in ("last-block", "last-stage") for n in names[lvl] if n.startswith("transformer.")
        }
        assert blocks == {"6", "7"} and not any(n.startswith("transformer.resblocks.6.") for n in names["last-block"])
    params = trainable.prepare(visual, "proj", freeze_bn=True)
    assert {id(p) for p in params} == {id(p) for p in visual.parameters() if p.requires_grad}
    counts = trainable.parameter_counts(visual, params, head_numel=330)
    assert counts["trained"] == sum(p.numel() for p in params) + 330
    assert counts["fraction"] == counts["trained"] / (sum(p.numel() for p in visual.parameters()) + 330)


def test_unknown_levels_and_towers_are_refused():
    with pytest.raises(UsageError, match="tune.trainable must be one of"):
        trainable.level_prefixes(torch.nn.Linear(2, 2), "most")
    with pytest.raises(UsageError, match="needs a ModifiedResNet or VisionTransformer"):
        trainable.level_prefixes(torch.nn.Linear(2, 2), "proj")


def _bn_state(visual):
    state = {}
    for prefix, module in visual.named_modules():
        if module in trainable.batch_norms(visual):
            for name in ("weight", "bias", "running_mean", "running_var"):
                state[f"{prefix}.{name}"] = getattr(module, name).detach().clone()
    return state


def _train_everything(freeze_bn):
    bundle = load_clip("tiny-clip-rn", seed=0)
    visual = bundle.model.visual
    g = torch.Generator().manual_seed(0)
    images = [Image.fromarray((torch.rand(32, 32, 3, generator=g) * 255).byte().numpy()) for _ in range(8)]
    labels = torch.arange(8) % 4
    model = ClipClassifier(visual, torch.randn(4, 32, generator=g), torch.zeros(4), freeze_bn=freeze_bn)
    params = [*model.head.parameters(), *trainable.prepare(visual, "all", freeze_bn=freeze_bn)]
    before_bn, before_conv = _bn_state(visual), visual.conv1.weight.detach().clone()
    fewshot_fit.fit(
        model, params, real=image_source(images, labels, None, bundle.preprocess, "cpu"), syn=None,
        plan=fewshot_fit.phases(None, epochs=1, real_epochs=2),
        hyper=fewshot_fit.Hyper(lr=0.01, weight_decay=0.0, real_batch_size=4, syn_batch_size=4),
        validate=lambda: 0.0, snapshot=dict, seed=0,
    )  # fmt: skip
    after_bn = _bn_state(visual)
    moved = {name for name in before_bn if not torch.equal(before_bn[name], after_bn[name])}
    return before_bn, moved, not torch.equal(before_conv, visual.conv1.weight)


def test_frozen_bn_keeps_running_statistics_and_affine_parameters_while_the_rest_trains():
    bn, moved, conv_moved = _train_everything(freeze_bn=True)
    assert conv_moved and len(bn) >= 4 * 19
    assert moved == set()


def test_unfrozen_bn_moves_running_statistics_and_affine_parameters():
    bn, moved, conv_moved = _train_everything(freeze_bn=False)
    assert conv_moved
    for kind in ("weight", "bias", "running_mean", "running_var"):
        of_kind = {n for n in bn if n.endswith(f".{kind}")}
        assert of_kind and of_kind <= moved, kind
