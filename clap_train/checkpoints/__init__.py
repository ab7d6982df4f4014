"""Checkpoint formats: our own (Lightning .ckpt), and later LAION .pt and Hugging Face ClapModel."""
