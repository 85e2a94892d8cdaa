"""Seeds derived from names, so every random draw is reproducible in isolation."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. run seed, class, prompt index, sample index).

    The same parts give the same seed on every machine and in every process,
    whatever else ran before; different parts give unrelated seeds.
    """
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)
