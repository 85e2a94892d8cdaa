"""The CLIP zero-shot text head and logits, checked against direct computations on tiny CLIP."""

import pytest
import torch
import torch.nn.functional as F

from synk8s.models import load_clip
from synk8s.zeroshot import fill_template, mean_of_normalised, text_head, zeroshot_logits

pytestmark = pytest.mark.timeout(60)

CLASSES = ["cat", "dog", "airplane"]
TEMPLATES = ["a photo of a {}.", "a drawing of the {}.", "itap of a {}."]


@pytest.fixture(scope="module")
def clip():
    return load_clip("tiny-clip", seed=0)


def test_fill_template_places_the_class_name():
    assert fill_template("a photo of a {}.", "fox") == "a photo of a fox."
    assert fill_template("{} and another {}", "fox") == "fox and another fox"


def test_mean_of_normalised_on_hand_made_vectors():
    emb = torch.tensor([[[3.0, 0.0], [0.0, 5.0]], [[2.0, 0.0], [4.0, 0.0]]])  # (K=2, T=2, D=2)
    out = mean_of_normalised(emb)
    # class 0: mean of (1, 0) and (0, 1) -> (0.5, 0.5) -> renormalised; class 1: both (1, 0).
    expected = torch.tensor([[2**-0.5, 2**-0.5], [1.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_text_head_equals_direct_computation(clip):
    head = text_head(clip, CLASSES, TEMPLATES)
    assert head.shape == (len(CLASSES), clip.model.text_projection.shape[1])
    texts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    with torch.no_grad():
        raw = clip.model.encode_text(clip.tokenizer(texts)).float()  # (K*T, D), not normalised
    per_class = F.normalize(raw, dim=-1).view(len(CLASSES), len(TEMPLATES), -1).mean(dim=1)
    expected = per_class / per_class.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(head, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.norm(dim=-1), torch.ones(len(CLASSES)))


def test_text_head_depends_on_templates(clip):
    one = text_head(clip, CLASSES, TEMPLATES[:1])
    three = text_head(clip, CLASSES, TEMPLATES)
    assert not torch.allclose(one, three)


def test_text_head_needs_classes_and_templates(clip):
    with pytest.raises(ValueError, match="classes and templates"):
        text_head(clip, CLASSES, [])


def test_zeroshot_logits_are_scaled_cosines():
    feats = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    weight = F.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    logits = zeroshot_logits(feats, weight, 100.0)
    assert logits.shape == (5, 3)
    torch.testing.assert_close(logits[2, 1], 100.0 * torch.dot(feats[2], weight[1]))
