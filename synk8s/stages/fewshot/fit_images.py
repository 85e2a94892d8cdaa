"""Few-shot tuning on images: the CLIP image tower in the loop, for Table 3's levels and Table 6's BN ablation.

When only the head trains and BN is frozen, the tower is a fixed function in eval mode and the
few-shot stage trains on cached features. Otherwise (``tune.trainable`` above ``head``, or
``fewshot.freeze_bn: false``) every step runs the tower on preprocessed images: real shots from the
dataset and kept synthetic images decoded from the generation tars. The kept synthetic images are
held in memory as decoded images (EuroSAT at 800 per class: 8,000 small images).
Only the few-shot stage imports this module (it imports torch at the top).

    model = ClipClassifier(bundle.model.visual, weight, bias, freeze_bn=False)
    params = [*model.head.parameters(), *trainable.prepare(model.visual, "proj", freeze_bn=False)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from synk8s.errors import MissingDataError
from synk8s.stages.fewshot.fit import Source

if TYPE_CHECKING:
    from PIL import Image

    from synk8s.config import ExperimentConfig
    from synk8s.stages.fewshot.fit import Outcome
    from synk8s.stages.fewshot.heads import Inputs

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class ClipClassifier(torch.nn.Module):
    """CLIP image tower, L2 normalisation, linear head: (B, 3, H, W) pixels -> (B, K) logits.

    ``train()`` follows :func:`synk8s.trainable.set_mode`: the tower stays in eval mode except its
    BatchNorm layers when BN is unfrozen.

    Args:
        visual: the tower (``clip.model.visual``); it is trained in place.
        weight: (K, D) initial head weight (logit_scale x text head).
        bias: (K,) initial head bias.
        freeze_bn: keep BatchNorm layers in eval mode while training.
    """

    def __init__(self, visual: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor, *, freeze_bn: bool):
        super().__init__()
        self.visual = visual
        self.freeze_bn = freeze_bn
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        self.head.to(next(visual.parameters()).device)

    def train(self, mode: bool = True) -> ClipClassifier:
        """Set train mode; the tower follows the frozen-BN rule."""
        from synk8s.trainable import set_mode

        self.training = mode
        self.head.train(mode)
        set_mode(self.visual, training=mode, freeze_bn=self.freeze_bn)
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) preprocessed images -> (B, K) logits."""
        param = next(self.visual.parameters())
        features = torch.nn.functional.normalize(
            self.visual(pixels.to(param.device, param.dtype)).float(), dim=-1
        )  # (B, D)
        return self.head(features)


def image_source(
    images: Sequence[Image.Image],
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    preprocess: Callable[[Image.Image], torch.Tensor],
    device: str,
) -> Source:
    """A :class:`Source` that preprocesses the images of each batch on demand.

    Args:
        images: PIL images.
        labels: (N,) int64 classes.
        teacher: (N, K) teacher logits or None.
        preprocess: PIL image -> (3, H, W) tensor (the CLIP eval transform).
        device: where the batches go.
    """

    def fetch(idx: torch.Tensor):
        pixels = torch.stack([preprocess(images[int(i)]) for i in idx]).to(device)  # (B, 3, H, W)
        return pixels, labels[idx].to(device), teacher[idx].to(device) if teacher is not None else None

    return Source(size=len(images), fetch=fetch)


def synthetic_images(images_out: str, rows: torch.Tensor, expected: int) -> list[Image.Image]:
    """The generated images at ``rows`` (manifest order, as the feature rows), in the order of ``rows``.

    Args:
        images_out: the generation output folder the features were computed from.
        rows: (M,) row indices.
        expected: images the features stage encoded (N); the tars must hold exactly as many.

    Raises:
        MissingDataError: the folder holds another number of images than the features were made from.
    """
    from synk8s.shards import iter_samples

    wanted = {int(r): i for i, r in enumerate(rows.tolist())}
    found: list[Image.Image | None] = [None] * len(wanted)
    count = 0
    for row, (_key, image, _meta) in enumerate(iter_samples(images_out)):
        if row in wanted:
            found[wanted[row]] = image
        count += 1
    if count != expected:
        raise MissingDataError(
            f"{images_out} holds {count} images but the features were computed from {expected}; "
            "pass the images folder the features stage read"
        )
    return [image for image in found if image is not None]


def encoder_state(visual: torch.nn.Module, names: Sequence[str], *, freeze_bn: bool) -> dict[str, torch.Tensor]:
    """CPU copies of the tower's trained parameters, plus every BN buffer when BN is unfrozen."""
    from synk8s.trainable import batch_norms

    params = dict(visual.named_parameters())
    state = {f"visual.{n}": params[n].detach().cpu().clone() for n in names}
    if not freeze_bn:
        bn_ids = {id(m) for m in batch_norms(visual)}
        for prefix, module in visual.named_modules():
            if id(module) in bn_ids:
                for buf in BN_BUFFERS:
                    state[f"visual.{prefix}.{buf}"] = getattr(module, buf).detach().cpu().clone()
    return state


def load_encoder_state(visual: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Write the ``visual.*`` tensors of :func:`encoder_state` back into a tower of the same architecture."""
    own = visual.state_dict()
    update = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    unknown = sorted(set(update) - set(own))
    if unknown:
        raise MissingDataError(
            f"tuned encoder tensors {unknown[:3]} do not fit models.clip; use the CLIP they came from"
        )
    visual.load_state_dict(update, strict=False)


def top1_on_images(
    model: torch.nn.Module, images: Sequence[Image.Image], labels: torch.Tensor, preprocess, batch_size: int
) -> float:
    """Top-1 of ``model`` over PIL images, in [0, 1], evaluated in batches without gradients."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([preprocess(im) for im in images[start : start + batch_size]])  # (B, 3, H, W)
            predicted = model(pixels).argmax(dim=-1).cpu()
            correct += int((predicted == labels[start : start + batch_size]).sum())
    return correct / len(images)


def fit_on_images(
    cfg: ExperimentConfig, inputs: Inputs, images: str, device: str, progress: bool
) -> dict[str, Outcome]:
    """Train CT w. init and CT w. Syn with the image tower in the loop, each from the pretrained tower.

    Each head is validated on the set its ``fewshot.select`` rule names (:func:`~synk8s.stages.fewshot.tune.head_rules`):
    the split's real validation images, the held-out synthetic images (CT w. Syn only), or none (last epoch).

    Args:
        cfg: the run's config (``fewshot``, ``tune`` including ``trainable``, ``seed``).
        inputs: from :func:`synk8s.stages.fewshot.tune.read_inputs`.
        images: the generation output the synthetic features were computed from.
        device: where the model runs.
        progress: show progress bars.

    Returns:
        ``{"ct_init": Outcome, "ct_syn": Outcome}``; each state holds the head's ``weight`` and ``bias``
        and the tower's trained tensors (and BN buffers when BN is unfrozen) as ``visual.*``.
    """
    from synk8s import trainable
    from synk8s.seeds import derive_seed
    from synk8s.stages.fewshot.fit import fit, phases
    from synk8s.stages.fewshot.heads import VARIANTS, head_rules, hyper_of
    from synk8s.stages.fewshot.split import shot_images
    from synk8s.stages.zeroshot.feature_sets import load_clip_for

    real_images = shot_images(cfg, inputs.split)
    real_y = torch.tensor(inputs.split.labels, dtype=torch.int64)
    rows = torch.cat([inputs.train_rows, inputs.val_rows])
    pictures = synthetic_images(images, rows, expected=len(inputs.labels))
    train_pics = pictures[: len(inputs.train_rows)]
    sets = {"syn-val": (pictures[len(inputs.train_rows) :], inputs.labels[inputs.val_rows])}
    fs = cfg.fewshot
    if fs.select == "real-val":
        held = shot_images(cfg, inputs.split, part="val")
        sets["real-val"] = ([im for im, _ in held], torch.tensor([y for _, y in held], dtype=torch.int64))
    rules = head_rules(fs.select)
    outcomes = {}
    for variant in VARIANTS:
        bundle = load_clip_for(cfg)  # a fresh pretrained tower for each head
        model = ClipClassifier(bundle.model.visual, inputs.weight, inputs.bias, freeze_bn=fs.freeze_bn)
        names = trainable.trainable_names(model.visual, cfg.tune.trainable, freeze_bn=fs.freeze_bn)
        params = [
            *model.head.parameters(),
            *trainable.prepare(model.visual, cfg.tune.trainable, freeze_bn=fs.freeze_bn),
        ]
        real = image_source([im for im, _ in real_images], real_y, None, bundle.preprocess, device)
        syn = image_source(
            train_pics,
            inputs.labels[inputs.train_rows],
            inputs.teacher_rows(inputs.train_rows),
            bundle.preprocess,
            device,
        )
        validate = None
        if rules[variant] != "last":
            val_pics, y_val = sets[rules[variant]]

            def validate(model=model, preprocess=bundle.preprocess, val_pics=val_pics, y_val=y_val) -> float:
                return top1_on_images(model, val_pics, y_val, preprocess, cfg.features.batch_size)

        def snapshot(model=model, names=names) -> dict[str, torch.Tensor]:
            head = {k: v.detach().cpu().clone() for k, v in model.head.state_dict().items()}
            return {**head, **encoder_state(model.visual, names, freeze_bn=fs.freeze_bn)}

        outcomes[variant] = fit(
            model,
            params,
            real=real,
            syn=syn if variant == "ct_syn" else None,
            plan=phases(fs.schedule if variant == "ct_syn" else None, epochs=fs.epochs, real_epochs=fs.real_epochs),
            hyper=hyper_of(cfg),
            validate=validate,
            snapshot=snapshot,
            seed=derive_seed(cfg.seed, "fewshot", variant, "order"),
            progress=progress,
        )
    return outcomes
