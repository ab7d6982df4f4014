"""The metrics of one evaluation source, the same for training's validation, `evaluate` and `benchmark`:
retrieval both ways over every caption, zero-shot accuracy when the source has classes, and the counts."""

from __future__ import annotations

import dataclasses

import torch

from clap_train.config import ConfigError
from clap_train.eval.retrieval import retrieval_metrics
from clap_train.eval.zeroshot import labels_from_tags, zeroshot_metrics
from clap_train.prompts import DEFAULT_TEMPLATES


@dataclasses.dataclass
class EvalConfig:
    templates: list | None = None  # the zero-shot prompt ensemble; null: DEFAULT_TEMPLATES

    def __post_init__(self):
        if self.templates is None:
            self.templates = list(DEFAULT_TEMPLATES)
        if not self.templates or not all(isinstance(t, str) and "{}" in t for t in self.templates):
            raise ConfigError(
                f"eval.templates={self.templates!r}: must be a list of prompts with {{}} for the "
                "class name, e.g. ['This is a sound of {}.']"
            )


def source_metrics(
    audio: torch.Tensor,
    text: torch.Tensor | None,
    owner: torch.Tensor | None,
    tags: list[list[str]] | None = None,
    classes: list[str] | None = None,
    prototypes: torch.Tensor | None = None,
) -> tuple[dict[str, float], torch.Tensor | None]:
    """audio [N, D], text [M, D] with owner [M] (caption -> clip; None: no captions), L2-normalised;
    `prototypes` [C, D] the classes' prompt embeddings. Returns the metrics and the clips' labels."""
    m: dict[str, float] = {}
    if text is not None:
        m.update(retrieval_metrics(audio, text, owner))
        m["n_captions"] = float(len(owner))
    m["n_clips"] = float(audio.shape[0])
    labels = None
    if classes:
        labels = labels_from_tags(tags or [[] for _ in range(audio.shape[0])], classes)
        m.update(zeroshot_metrics(audio, prototypes, labels))
    return m, labels
