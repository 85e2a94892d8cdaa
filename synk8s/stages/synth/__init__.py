"""Synthetic data: prompts (B and LE), text-to-image generation and the shards it writes."""
