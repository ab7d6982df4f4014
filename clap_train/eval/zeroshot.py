"""Zero-shot classification: each clip takes the class whose prompt embedding is most similar."""

from __future__ import annotations

import torch

from clap_train.prompts import class_key


def labels_from_tags(tags: list[list[str]], classes: list[str]) -> torch.Tensor:
    """The class index of each clip (its one tag that names a class), or -1 when none or several do. Tags and
    class names match by `class_key` (case, underscores and hyphens ignored): the one rule of every tool."""
    index = {class_key(c): i for i, c in enumerate(classes)}
    out = []
    for t in tags:
        hits = {index[class_key(x)] for x in t if class_key(x) in index}
        out.append(hits.pop() if len(hits) == 1 else -1)
    return torch.tensor(out, dtype=torch.long)


METRICS = ("zeroshot_top1", "zeroshot_top5", "zeroshot_chance", "zeroshot_n")  # top5 with >= 5 classes


def zeroshot_metrics(
    audio: torch.Tensor, class_text: torch.Tensor, labels: torch.Tensor, ks=(1, 5)
) -> dict[str, float]:
    """audio [N, D], class_text [C, D] (L2-normalised), labels [N] (-1 = unlabelled, ignored)."""
    keep = labels >= 0
    audio, labels = audio[keep].float(), labels[keep]
    if len(labels) == 0:
        return {}
    sim = audio @ class_text.float().T
    rank = (sim > sim.gather(1, labels[:, None])).sum(1)
    out = {f"zeroshot_top{k}": (rank < k).float().mean().item() for k in ks if k <= class_text.shape[0]}
    out["zeroshot_chance"] = 1.0 / class_text.shape[0]
    out["zeroshot_n"] = float(len(labels))
    return out


def confusion_matrix(audio: torch.Tensor, class_text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    keep = labels >= 0
    pred = (audio[keep].float() @ class_text.float().T).argmax(1)
    c = class_text.shape[0]
    return torch.bincount(labels[keep] * c + pred, minlength=c * c).reshape(c, c)
