"""Zero-shot study: CLIP filter, test-set and synthetic features with their cache, leakage, classifier tuning, evaluation."""
