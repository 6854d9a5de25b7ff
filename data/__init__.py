"""Data: tokenizers, corpus and task loaders, metrics and the code sandbox (one module per concept)."""
