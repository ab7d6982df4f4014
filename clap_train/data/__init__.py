"""Shards -> samples -> batches. Knows nothing of models."""
