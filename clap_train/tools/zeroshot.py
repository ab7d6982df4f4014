"""`clap-train zeroshot`: classify users' audio files by prompt similarity; accuracy when labels are known,
a per-class table, a predictions CSV and a confusion-matrix PNG."""

from __future__ import annotations

import csv
import json
import os

import torch

from clap_train.data.audio_files import AudioItem, Listing
from clap_train.eval.zeroshot import labels_from_tags, zeroshot_metrics
from clap_train.inference import Progress, embed_items, no_progress
from clap_train.long_audio import LongAudio
from clap_train.model import CLAP
from clap_train.plots import zeroshot_confusion_png
from clap_train.prompts import class_key, class_phrase


def label_indices(items: list[AudioItem], classes: list[str]) -> tuple[torch.Tensor, list[str]]:
    """Each item's class index by the rule of `labels_from_tags` (-1: unlabelled, or its labels name no
    class or several); the labels that name no class."""
    known = {class_key(c) for c in classes}
    unknown = {lb for it in items for lb in it.labels if class_key(lb) not in known}
    return labels_from_tags([it.labels for it in items], classes), sorted(unknown)


def per_class_table(labels: torch.Tensor, pred: torch.Tensor, classes: list[str]) -> list[dict]:
    rows = []
    for c, name in enumerate(classes):
        mine = labels == c
        n = int(mine.sum())
        wrong = pred[mine & (pred != c)]
        confused = classes[int(torch.bincount(wrong, minlength=len(classes)).argmax())] if len(wrong) else ""
        rows.append(
            {
                "class": name,
                "n": n,
                "top1": float((pred[mine] == c).float().mean()) if n else None,
                "most_confused_with": confused,
            }
        )
    return rows


def run_zeroshot(
    model: CLAP,
    listing: Listing,
    classes: list[str],
    templates: list[str],
    out_dir: str | None,
    batch_size: int = 16,
    progress: Progress = no_progress,
    long_audio: LongAudio | None = None,
) -> dict:
    if not classes:
        raise ValueError("no classes: pass --classes a,b,c, --classes-from-dirs, or labels in the CSV/JSONL")
    got = embed_items(model, listing.items, batch_size, progress, long_audio=long_audio)
    labels, unknown = label_indices(got.items, classes)
    protos = model.class_embeddings([class_phrase(c) for c in classes], templates).float().cpu()
    sim = got.emb @ protos.T
    k = min(5, len(classes))
    top_s, top_i = sim.topk(k, dim=1)
    pred = top_i[:, 0]
    result = {
        "classes": classes,
        "templates": templates,
        "n_files": len(listing.items),
        "n_embedded": len(got.items),
        "skipped": got.skipped,
        "labels_not_in_classes": unknown,
        "metrics": zeroshot_metrics(got.emb, protos, labels) if (labels >= 0).any() else {},
    }
    if (labels >= 0).any():
        result["per_class"] = per_class_table(labels, pred, classes)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "predictions.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "predicted", "score", f"top{k}"])
            for it, lab, s, i in zip(got.items, labels.tolist(), top_s.tolist(), top_i.tolist()):
                w.writerow(
                    [
                        it.rel,
                        classes[lab] if lab >= 0 else "",
                        classes[i[0]],
                        f"{s[0]:.4f}",
                        ";".join(classes[j] for j in i),
                    ]
                )
        if (labels >= 0).any():
            zeroshot_confusion_png(got.emb, protos, labels, classes, os.path.join(out_dir, "confusion.png"))
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(result, f, indent=1)
    return result


def format_zeroshot(res: dict) -> str:
    m = res["metrics"]
    lines = [f"{res['n_embedded']} of {res['n_files']} files classified into {len(res['classes'])} classes"]
    if res["skipped"]:
        lines.append(
            f"skipped {len(res['skipped'])}: " + "; ".join(f"{s['path']} ({s['reason']})" for s in res["skipped"][:5])
        )
    if res["labels_not_in_classes"]:
        lines.append(f"labels that name no class (counted as unlabelled): {', '.join(res['labels_not_in_classes'])}")
    if m:
        lines.append(
            f"top-1 {m['zeroshot_top1']:.1%}"
            + (f"  top-5 {m['zeroshot_top5']:.1%}" if "zeroshot_top5" in m else "")
            + f"  (chance {m['zeroshot_chance']:.1%}, "
            f"n={int(m['zeroshot_n'])})"
        )
        lines.append(f"{'class':24s} {'n':>5s} {'top-1':>7s}  most confused with")
        for r in res.get("per_class", []):
            acc = "-" if r["top1"] is None else f"{r['top1']:.1%}"
            lines.append(f"{r['class'][:24]:24s} {r['n']:5d} {acc:>7s}  {r['most_confused_with']}")
    return "\n".join(lines)
