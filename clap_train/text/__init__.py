"""Text towers: Hugging Face transformers models and their pooling. Knows nothing of Lightning."""
