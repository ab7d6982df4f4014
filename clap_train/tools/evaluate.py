"""`clap-train evaluate`: the retrieval protocol (R@1/5/10, mAP@10, both directions) and zero-shot
classification on any shard set, with the similarity heatmap and confusion matrix as pictures."""

from __future__ import annotations

import json
import os

from clap_train.data.shards import expand_shards
from clap_train.eval.metrics import source_metrics
from clap_train.eval.retrieval import paired_similarity
from clap_train.inference import Progress, embed_shards, no_progress
from clap_train.long_audio import LongAudio
from clap_train.model import CLAP
from clap_train.plots import similarity_heatmap, zeroshot_confusion_png
from clap_train.prompts import DEFAULT_TEMPLATES


def run_evaluate(
    model: CLAP,
    shards,
    classes: list[str] | None = None,
    templates: list[str] | None = None,
    caption_key="text",
    tag_templates: list[str] | None = None,
    out_dir: str | None = None,
    batch_size: int = 32,
    progress: Progress = no_progress,
    long_audio: LongAudio | None = None,
) -> dict:
    urls = expand_shards(shards)
    if not urls:
        raise ValueError(f"no shards found at {shards!r}")
    templates = templates or list(DEFAULT_TEMPLATES)
    e = embed_shards(model, urls, caption_key, tag_templates, batch_size, progress, long_audio)
    protos = model.class_embeddings(classes, templates).float().cpu() if classes else None
    metrics, labels = source_metrics(e["audio"], e["text"], e["owner"], e["tags"], classes, protos)
    result = {"shards": len(urls), "metrics": metrics, "skipped": e["skips"], "classes": classes or []}
    if classes:
        result["unlabelled_clips"] = int((labels < 0).sum())
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        sim, clips, caps = paired_similarity(e["audio"], e["text"], e["owner"])
        similarity_heatmap(
            sim.numpy(),
            [e["keys"][i] for i in clips.tolist()],
            [e["captions"][j] for j in caps.tolist()],
            f"audio-text similarity, first {len(clips)} clips",
            os.path.join(out_dir, "similarity.png"),
        )
        if labels is not None and (labels >= 0).any():
            zeroshot_confusion_png(e["audio"], protos, labels, classes, os.path.join(out_dir, "confusion.png"))
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(result, f, indent=1)
    return result


def format_evaluate(res: dict) -> str:
    m = res["metrics"]
    lines = [
        f"{int(m['n_clips'])} clips, {int(m['n_captions'])} captions from {res['shards']} shard(s)"
        + (f"; skipped {res['skipped']}" if res["skipped"] else "")
    ]
    lines.append(f"{'':14s} {'R@1':>7s} {'R@5':>7s} {'R@10':>7s} {'mAP@10':>7s}")
    for d, name in (("t2a", "text->audio"), ("a2t", "audio->text")):
        lines.append(f"{name:14s} " + " ".join(f"{m[f'{d}_{k}']:7.1%}" for k in ("R@1", "R@5", "R@10", "mAP@10")))
    if "zeroshot_top1" in m:
        lines.append(
            f"zero-shot top-1 {m['zeroshot_top1']:.1%}"
            + (f", top-5 {m['zeroshot_top5']:.1%}" if "zeroshot_top5" in m else "")
            + f" over {int(m['zeroshot_n'])} labelled clips "
            f"(chance {m['zeroshot_chance']:.1%})"
        )
    return "\n".join(lines)
