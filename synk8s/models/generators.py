"""Text-to-image generators: Stable Diffusion family pipelines from diffusers.

Real generators load with ``from_pretrained`` from the hub or a model cache (see
:mod:`synk8s.models.cache`). The ``tiny-sd`` generator is a Stable Diffusion pipeline assembled from
small random-weight modules (32 px images, seeded), with CLIP's real BPE tokenizer built from the
vocabulary open_clip ships, so it runs with no network.

Example::

    pipe = load_generator("sd-turbo", device="cuda", dtype=torch.float16)
    images = pipe(["a photo of a fox"], num_inference_steps=1, guidance_scale=0.0).images
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from synk8s.models.cache import entry_name, has_entry, pretrained_folder
from synk8s.models.registry import GeneratorInfo, get_generator_info
from synk8s.models.weights import hub_commit, listing_digest, pretrained_layout, weight_load

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline
    from transformers import CLIPTokenizer

log = logging.getLogger(__name__)

TINY_MODEL_ID = "synk8s/tiny-sd"
CLIP_CONTEXT_LENGTH = 77  # tokens, CLIP's text context
_CLIP_MERGES = 49152 - 256 - 2  # BPE merges CLIP uses out of the shipped list
_REVISION_ATTR = "synk8s_revision"  # pipeline attribute naming the weights load_generator loaded


def generator_identity(name_or_id: str, *, revision: str | None = None, seed: int = 0) -> tuple[str, str]:
    """The (model id, revision) recorded with every generated image.

    Args:
        name_or_id: registry name or raw diffusers model id.
        revision: hub revision overriding the registry's; None keeps it (``main`` when unset).
        seed: weight seed of a tiny generator (ignored for real ones).
    """
    info = get_generator_info(name_or_id, revision)
    if info.pipeline == "painter":
        from synk8s.models.painted import MODEL_ID, REVISION

        return MODEL_ID, REVISION
    if info.tiny:
        return TINY_MODEL_ID, f"random-seed-{seed}"
    return info.model_id, info.revision or "main"


def loaded_revision(pipe: Any) -> str | None:
    """The revision of the weights :func:`load_generator` actually loaded into ``pipe``.

    Returns:
        The hub commit sha (40 hex digits) for a hub load, even when a branch such as ``main`` was
        asked for; ``cache:<sha256 of the file listing>`` for a load from a model cache;
        ``random-seed-<seed>`` for a tiny generator; None for a pipeline not made by
        :func:`load_generator`, or a hub load whose files were not in a hub cache snapshot folder.
    """
    return getattr(pipe, _REVISION_ATTR, None)


def load_generator(
    name_or_id: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    cache: str | None = None,
    img2img: bool = False,
    seed: int = 0,
) -> DiffusionPipeline:
    """Load a text-to-image (or image-to-image) diffusers pipeline.

    Args:
        name_or_id: registry name (``sd15``, ``sd-turbo``, ``tiny-sd``, ``standin-drawn``, ...) or a raw
            diffusers model id. ``standin-drawn`` is the class-conditional painter of
            :mod:`synk8s.models.painted`, not a diffusers pipeline: it takes ``class_labels``.
        revision: hub revision overriding the registry's; ignored when loading from ``cache``.
        device: torch device to move the pipeline to. Default ``cpu``.
        dtype: weight dtype; None means float32.
        cache: None to download from the hub, or a model cache folder / ``s3://`` prefix. A tiny
            generator is read from it when it holds one (see ``synk8s models pull``).
        img2img: return the image-to-image variant (for real guidance from noised real shots).
        seed: seed of the random weights of a tiny generator; ignored for real generators.

    Returns:
        The pipeline, with the safety checker off and the progress bar disabled;
        :func:`loaded_revision` tells which weights it holds.

    Raises:
        MissingDataError: ``cache`` lacks the model, or the weights cannot be fetched or read.
    """
    import torch

    dtype = dtype or torch.float32
    info = get_generator_info(name_or_id, revision)
    if info.pipeline == "painter":
        from synk8s.models.painted import REVISION, PaintingPipeline

        pipe, loaded = PaintingPipeline(img2img=img2img), REVISION
    elif info.tiny and not (cache and has_entry(cache, entry_name(info.model_id))):
        pipe, loaded = _tiny_pipeline(seed, dtype, img2img), f"random-seed-{seed}"
    else:
        pipe, loaded = _pretrained_pipeline(info, dtype, cache, img2img)
    setattr(pipe, _REVISION_ATTR, loaded)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    log.info("generator %s on %s (%s)%s", info.model_id, device, dtype, " img2img" if img2img else "")
    return pipe


def _pretrained_pipeline(
    info: GeneratorInfo, dtype: torch.dtype, cache: str | None, img2img: bool
) -> tuple[DiffusionPipeline, str | None]:
    """Load a real pipeline with ``from_pretrained`` from the hub or a model cache.

    Returns:
        The pipeline and the revision loaded (see :func:`loaded_revision`).
    """
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    auto = AutoPipelineForImage2Image if img2img else AutoPipelineForText2Image
    kwargs: dict[str, Any] = {"dtype": dtype}
    if info.pipeline == "sd":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    layout = pretrained_layout(info.model_id)
    if cache is None:
        with weight_load("generator", info.model_id, layout):
            pipe = auto.from_pretrained(info.model_id, revision=info.revision, **kwargs)
        return pipe, hub_commit(_component_paths(pipe))
    hint = f"DiffusionPipeline.from_pretrained({info.model_id!r}).save_pretrained('{{path}}')"
    folder = pretrained_folder(cache, info.model_id, hint)
    with weight_load("generator", info.model_id, layout, folder):
        pipe = auto.from_pretrained(str(folder), **kwargs)
    return pipe, listing_digest(folder)


def _component_paths(pipe: DiffusionPipeline) -> list[str | None]:
    """The folders the pipeline's components were read from (models' configs, tokenizers)."""
    paths = []
    for component in pipe.components.values():
        config = getattr(component, "config", None)
        paths.append(getattr(config, "_name_or_path", None))
        paths.append(getattr(component, "name_or_path", None))
    return paths


def _tiny_pipeline(seed: int, dtype: torch.dtype, img2img: bool) -> DiffusionPipeline:
    """A Stable Diffusion pipeline of small random-weight modules for 32 x 32 images.

    The UNet works on 4 x 16 x 16 latents (the VAE halves each side), cross-attending to a 2-layer,
    32-wide CLIP text encoder. Weights depend only on ``seed``; the global RNG is left untouched.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_bpe_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=32,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=CLIP_CONTEXT_LENGTH,
                projection_dim=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    if dtype != torch.float32:  # modules are created in float32
        unet, vae, text_encoder = unet.to(dtype), vae.to(dtype), text_encoder.to(dtype)
    cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
    return cls(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


@functools.lru_cache(maxsize=1)
def _clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's BPE vocabulary (49,408 tokens) and merges, read from the file open_clip ships."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + _CLIP_MERGES]]
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_bpe_tokenizer() -> CLIPTokenizer:
    """A transformers ``CLIPTokenizer`` with CLIP's vocabulary, built offline (77-token context)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=CLIP_CONTEXT_LENGTH)
