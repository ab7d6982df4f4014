"""Metrics as pure functions on embeddings (tensors in, floats out). No models here."""
