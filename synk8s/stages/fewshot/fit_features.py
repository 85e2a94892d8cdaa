"""Few-shot tuning on cached features: the frozen-BN, head-only path of :mod:`synk8s.stages.fewshot.tune`.

With ``tune.trainable: head`` and ``fewshot.freeze_bn: true`` the image tower is a fixed function, so
both heads train on L2-normalised CLIP features: the real shots' (from the feature cache) and the
kept synthetic images' (from the features stage). CT w. init sees the real shots only; its
validation set, if ``fewshot.select`` gives it one, is the split's real validation set.

    outcomes = fit_on_features(cfg, inputs, real_x, "cpu", progress=False, val_x=val_x)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from synk8s.config import ExperimentConfig
from synk8s.seeds import derive_seed

if TYPE_CHECKING:
    import torch

    from synk8s.stages.fewshot.fit import Outcome, Source
    from synk8s.stages.fewshot.heads import Inputs


def tensor_source(x: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None, device: str) -> Source:
    """A :class:`~synk8s.stages.fewshot.fit.Source` over in-memory features."""
    from synk8s.stages.fewshot.fit import Source

    x, y = x.to(device), y.to(device)
    teacher = teacher.to(device) if teacher is not None else None

    def fetch(idx):
        idx = idx.to(device)
        return x[idx], y[idx], teacher[idx] if teacher is not None else None

    return Source(size=len(y), fetch=fetch)


def fit_on_features(
    cfg: ExperimentConfig,
    inputs: Inputs,
    real_x: torch.Tensor,
    device: str,
    progress: bool,
    val_x: torch.Tensor | None = None,
) -> dict[str, Outcome]:
    """Train CT w. init and CT w. Syn on cached features, each from the text head.

    Args:
        cfg: the run's config (``fewshot``, ``tune``, ``seed``).
        inputs: from :func:`read_inputs`.
        real_x: (N x M, D) L2-normalised features of the real shots, in split order.
        device: where the head and features live while training.
        progress: show progress bars.
        val_x: (V, D) features of the split's real validation set, in its order (``real-val`` only).

    Returns:
        ``{"ct_init": Outcome, "ct_syn": Outcome}``; each state holds ``weight`` (K, D) and ``bias`` (K,).
    """
    import torch

    from synk8s.stages.fewshot.fit import fit, phases
    from synk8s.stages.fewshot.heads import VARIANTS, head_rules, hyper_of
    from synk8s.stages.zeroshot.tune import top1

    real_y = torch.tensor(inputs.split.labels, dtype=torch.int64)
    real = tensor_source(real_x, real_y, None, device)
    rows = inputs.train_rows
    syn = tensor_source(inputs.feats[rows], inputs.labels[rows], inputs.teacher_rows(rows), device)
    sets = {"syn-val": (inputs.feats[inputs.val_rows], inputs.labels[inputs.val_rows])}
    if val_x is not None:
        sets["real-val"] = (val_x, torch.tensor([s.label for s in inputs.split.val], dtype=torch.int64))
    rules = head_rules(cfg.fewshot.select)
    outcomes = {}
    for variant in VARIANTS:
        head = torch.nn.Linear(inputs.weight.shape[1], inputs.weight.shape[0]).to(device)
        with torch.no_grad():
            head.weight.copy_(inputs.weight)
            head.bias.copy_(inputs.bias)
        validate = None
        if rules[variant] != "last":
            x_val, y_val = (t.to(device) for t in sets[rules[variant]])

            def validate(head=head, x_val=x_val, y_val=y_val) -> float:
                with torch.no_grad():
                    return top1(head(x_val), y_val)

        def snapshot(head=head) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}

        outcomes[variant] = fit(
            head,
            list(head.parameters()),
            real=real,
            syn=syn if variant == "ct_syn" else None,
            plan=phases(cfg.fewshot.schedule if variant == "ct_syn" else None,
                        epochs=cfg.fewshot.epochs, real_epochs=cfg.fewshot.real_epochs),
            hyper=hyper_of(cfg),
            validate=validate,
            snapshot=snapshot,
            seed=derive_seed(cfg.seed, "fewshot", variant, "order"),
            progress=progress,
        )  # fmt: skip
    return outcomes
