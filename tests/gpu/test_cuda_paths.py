"""CUDA paths that CPU tests cannot reach: half-precision encoding and generation on the GPU."""

import pytest
import torch
from PIL import Image

from synk8s import models
from synk8s.stages.zeroshot.feature_cache import encode_images

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_fp16_clip_features_match_fp32():
    bundle = models.load_clip("tiny-clip", device="cuda", seed=0)
    images = [Image.new("RGB", (32, 32), (10 * i, 255 - 10 * i, 7 * i)) for i in range(16)]
    full = encode_images(bundle, images, batch_size=8, dtype=torch.float32, progress=False)  # (16, D)
    half = encode_images(bundle, images, batch_size=8, dtype=torch.float16, progress=False)  # (16, D)
    assert half.dtype == torch.float32  # features are stored in float32 whatever the compute precision
    assert torch.nn.functional.cosine_similarity(full, half).min() > 0.99


def test_tiny_generator_runs_in_half_precision_on_cuda():
    pipe = models.load_generator("tiny-sd", device="cuda", dtype=torch.float16, seed=0)
    gen = torch.Generator("cuda").manual_seed(0)
    image = pipe("a photo of a cat", num_inference_steps=2, height=32, width=32, generator=gen).images[0]
    assert image.size == (32, 32)
