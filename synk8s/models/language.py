"""Language-enhancement (LE) models: T5 that turns a class name into a sentence.

The paper's LE model is ``mrm8488/t5-base-finetuned-common_gen``, loaded with transformers'
``from_pretrained`` from the hub (at the revision ``models.le_revision`` names) or a model
cache. ``tiny-t5`` is a 2-layer, 32-wide T5 with random weights from a seed and a byte-level ByT5
tokenizer, which needs no vocabulary file.

Example::

    model, tokenizer = load_le("t5-commongen", device="cuda")
    batch = tokenizer(["fox"], return_tensors="pt").to("cuda")
    out = model.generate(**batch, do_sample=True, max_new_tokens=32, num_return_sequences=8)
    sentences = tokenizer.batch_decode(out, skip_special_tokens=True)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synk8s.models.cache import entry_name, has_entry, pretrained_folder
from synk8s.models.registry import get_le_info
from synk8s.models.weights import pretrained_layout, weight_load

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

_BYTE_VOCAB = 384  # ByT5: 3 special ids + 256 bytes + 125 sentinel ids


def load_le(
    name_or_id: str, *, device: str = "cpu", cache: str | None = None, seed: int = 0, revision: str | None = None
) -> tuple[PreTrainedModel, Any]:
    """Load a sequence-to-sequence LE model and its tokenizer, in eval mode.

    Args:
        name_or_id: a key of ``LE_MODELS`` (``t5-commongen``, ``tiny-t5``) or a hub id ``owner/name``.
        device: torch device. Default ``cpu``.
        cache: None to download from the hub, or a model cache folder / ``s3://`` prefix holding a
            ``save_pretrained`` folder of both model and tokenizer; ``tiny-t5`` is read from it when it is there.
        seed: seed of the random weights of ``tiny-t5``; ignored for real models.
        revision: hub revision (branch, tag or commit) of the model and tokenizer, overriding the
            registry's; ignored when loading from ``cache`` or building ``tiny-t5``.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        UsageError: unknown name.
        MissingDataError: ``cache`` lacks the model, or the weights cannot be fetched or read.
    """
    info = get_le_info(name_or_id, revision)
    if info.tiny and not (cache and has_entry(cache, entry_name(info.model_id))):
        model, tokenizer = _tiny_t5(seed)
    else:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        folder = None
        if cache is not None:
            hint = (
                f"AutoModelForSeq2SeqLM.from_pretrained({info.model_id!r}).save_pretrained('{{path}}') and "
                f"AutoTokenizer.from_pretrained({info.model_id!r}).save_pretrained('{{path}}')"
            )
            folder = pretrained_folder(cache, info.model_id, hint)
        source, hub_revision = (info.model_id, info.revision) if folder is None else (str(folder), None)
        with weight_load("LE model", info.model_id, pretrained_layout(info.model_id), folder):
            model = AutoModelForSeq2SeqLM.from_pretrained(source, revision=hub_revision)
            tokenizer = AutoTokenizer.from_pretrained(source, revision=hub_revision)
    log.info("LE model %s on %s", info.model_id, device)
    return model.to(device).eval(), tokenizer


def _tiny_t5(seed: int) -> tuple[PreTrainedModel, Any]:
    """A 2-layer T5 (d_model 32) over ByT5's byte vocabulary, weights drawn from ``seed``."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=_BYTE_VOCAB,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    return model, tokenizer
