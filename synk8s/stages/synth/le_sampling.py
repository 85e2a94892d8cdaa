"""LE sentences for many classes per T5 ``generate`` call, each sentence a function of its own seed.

The prompts stage draws ``classes x sentences`` sequences; one ``generate`` call per class
(``num_return_sequences``) leaves a GPU mostly idle on a 1000-class label space. Batching rows of
different classes into one call with plain ``do_sample`` would draw every row from one torch
generator, so a row's sentence would depend on which rows ran beside it (the batch size, the
classes still short in a later round). Here each row carries its own 63-bit seed and every
decoding step samples its token by the Gumbel-max trick:

1. the step's scores go through transformers' own sampling warpers, in the order ``generate``
   applies them (temperature, top-k, top-p);
2. every surviving token gets Gumbel noise ``-log(-log(u))``, where ``u`` is a counter hash of
   (row seed, step, token id) (SplitMix64's mixing function on int64 tensors, so CPU and CUDA
   give the same ``u``);
3. the argmax of scores plus noise is a draw from the softmax of the warped scores; the processor
   leaves only that token finite, and greedy decoding emits it.

So a row's sentence depends on its seed, its input text and the model, not on the batch: the same
rows in batches of any size give the same sentences (up to the floating-point effect of padding on
the scores, which can only matter at an exact tie of two perturbed scores).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from synk8s.config import PromptsConfig

# SplitMix64 constants (Steele, Lea and Flood 2014) as signed int64, the dtype torch computes in.
_GOLDEN = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's ``>>`` keeps the sign)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on an int64 tensor (multiplications wrap modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def keyed_uniforms(seeds: torch.Tensor, step: int, tokens: torch.Tensor) -> torch.Tensor:
    """Uniform draws in (0, 1) keyed by (row seed, step, token id).

    Args:
        seeds: (B,) int64 row seeds.
        step: decoding step (0 for the first generated token).
        tokens: (B, K) int64 token ids.

    Returns:
        (B, K) float64; each value depends only on its own seed, step and token.
    """
    import torch

    row = mix64(mix64(seeds ^ mix64(torch.tensor(step, dtype=torch.int64, device=seeds.device))))  # (B,)
    bits = _shift_right(mix64(row[:, None] ^ tokens), 11)  # (B, K), 53 random bits
    return (bits.to(torch.float64) + 0.5) / float(2**53)


def _warpers(prompts: PromptsConfig) -> list[Any]:
    """transformers' sampling warpers for the prompts config, in ``generate``'s order."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[Any] = []
    if prompts.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(prompts.temperature))
    if prompts.top_k:
        warpers.append(TopKLogitsWarper(top_k=prompts.top_k))
    if prompts.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=prompts.top_p))
    return warpers


class KeyedSampler:
    """A transformers logits processor that samples each row's next token from that row's own seed.

    Args:
        seeds: (B,) int64 row seeds, on the model's device.
        prompts: the ``prompts`` config (``temperature``, ``top_k``, ``top_p``).
    """

    def __init__(self, seeds: torch.Tensor, prompts: PromptsConfig) -> None:
        self.seeds = seeds
        self.warpers = _warpers(prompts)
        self.top_k = prompts.top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Scores (B, V) with only each row's drawn token finite; ``input_ids`` (B, L) are the decoder's so far."""
        import torch

        for warp in self.warpers:
            scores = warp(input_ids, scores)
        k = min(self.top_k, scores.shape[1]) if self.top_k else scores.shape[1]
        values, tokens = scores.topk(k, dim=1)  # (B, k): the only tokens top-k leaves finite
        step = input_ids.shape[1] - 1  # the decoder input starts with the start token
        gumbel = -torch.log(-torch.log(keyed_uniforms(self.seeds, step, tokens)))  # (B, k)
        chosen = tokens.gather(1, (values.double() + gumbel).argmax(dim=1, keepdim=True))  # (B, 1)
        picked = torch.full_like(scores, float("-inf"))
        return picked.scatter_(1, chosen, 0.0)


def sample_rows(
    model: Any, tokenizer: Any, texts: Sequence[str], seeds: Sequence[int], prompts: PromptsConfig
) -> list[str]:
    """One sampled sentence per (input text, seed) row, in one ``generate`` call.

    Args:
        model: a transformers sequence-to-sequence model.
        tokenizer: its tokenizer.
        texts: the input text of every row.
        seeds: the 63-bit seed of every row (:func:`synk8s.seeds.derive_seed`).
        prompts: the ``prompts`` config (sampling settings and ``max_new_tokens``).

    Returns:
        The decoded sentences, in row order.
    """
    import torch
    from transformers import LogitsProcessorList

    batch = tokenizer(list(texts), return_tensors="pt", padding=True).to(model.device)
    sampler = KeyedSampler(torch.tensor(list(seeds), dtype=torch.int64, device=model.device), prompts)
    with torch.inference_mode():
        ids = model.generate(  # (B, L)
            **batch,
            do_sample=False,
            num_beams=1,
            max_new_tokens=prompts.max_new_tokens,
            logits_processor=LogitsProcessorList([sampler]),
        )
    return tokenizer.batch_decode(ids, skip_special_tokens=True)
