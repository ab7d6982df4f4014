"""Class names and the zero-shot prompt: one spelling of each for training, `evaluate`, `zeroshot`,
`benchmark` and `make-shards` (a leaf module: everything may import it)."""

from __future__ import annotations

# LAION-CLAP's zero-shot prompt; the default ensemble is this one template
DEFAULT_TEMPLATE = "This is a sound of {}."
DEFAULT_TEMPLATES: tuple[str, ...] = (DEFAULT_TEMPLATE,)


def class_phrase(label: str) -> str:
    """`dog_bark` / `dog-bark` -> `dog bark`: how a class name appears in captions, prompts and classes.json."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def class_key(label: str) -> str:
    """What two spellings of one class share (case, underscores and hyphens ignored): labels match by it."""
    return class_phrase(label).lower()
