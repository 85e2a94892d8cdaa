"""Few-shot study: the shot split, real-guided generation and its filter and features, the real filter, CT w. init / w. Syn, evaluation and the shot sweep."""
