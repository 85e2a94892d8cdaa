"""The CLIP zero-shot classifier: one text embedding per class, built from prompt templates.

Each class name is put into every template ("a photo of a {}."), the CLIP text encoder embeds the
sentences, the L2-normalised embeddings are averaged over the templates and the mean is
renormalised. With L2-normalised image features ``f`` (N, D) and the head ``W`` (K, D), the
zero-shot logits are ``logit_scale * f @ W.T`` (N, K).

    clip = models.load_clip("tiny-clip")
    info = datasets.get("cifar10")
    W = text_head(clip, info.classes, info.templates)   # (K, D)
    logits = zeroshot_logits(features, W, clip.logit_scale)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from synk8s.models.clip import ClipBundle


def fill_template(template: str, classname: str) -> str:
    """Put a class name where ``{}`` stands in a template (``"a photo of a {}."``)."""
    return template.replace("{}", classname)


def mean_of_normalised(embeddings: torch.Tensor) -> torch.Tensor:
    """Average L2-normalised embeddings over templates and renormalise.

    Args:
        embeddings: (K, T, D) text embeddings, K classes by T templates (need not be normalised).

    Returns:
        (K, D) float32 unit vectors.
    """
    import torch.nn.functional as F

    unit = F.normalize(embeddings.float(), dim=-1)  # (K, T, D)
    return F.normalize(unit.mean(dim=1), dim=-1)  # (K, D)


def text_head(bundle: ClipBundle, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """The zero-shot classifier weights of CLIP for these classes.

    Args:
        bundle: a loaded CLIP model (see :func:`synk8s.models.load_clip`).
        classnames: K class names, in label order.
        templates: T prompt templates with ``{}`` where the class name goes.

    Returns:
        (K, D) float32 CPU tensor of unit rows: the per-class mean of the normalised template
        embeddings, renormalised.
    """
    import torch
    from tqdm.auto import tqdm

    if not classnames or not templates:
        raise ValueError(f"text_head needs classes and templates, got {len(classnames)} and {len(templates)}")
    rows = []
    with torch.inference_mode():
        for name in tqdm(classnames, desc="text head", unit="class", leave=False):
            tokens = bundle.tokenizer([fill_template(t, name) for t in templates])  # (T, context_length)
            rows.append(bundle.encode_text(tokens).float().cpu())  # (T, D)
    return mean_of_normalised(torch.stack(rows))  # (K, D)


def zeroshot_logits(features: torch.Tensor, weight: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Zero-shot logits ``logit_scale * features @ weight.T``.

    Args:
        features: (N, D) L2-normalised image features.
        weight: (K, D) text head from :func:`text_head`.
        logit_scale: CLIP's exponentiated temperature (about 100 for OpenAI CLIP).

    Returns:
        (N, K) float32 logits.
    """
    return logit_scale * features.float() @ weight.float().T
