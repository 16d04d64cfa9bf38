"""Scoring protocols over cached embeddings: ``linear`` (LAPE's linear evaluation) and
``heareval`` (heareval's own MLP grid search, run as a subprocess)."""
