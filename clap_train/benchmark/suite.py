"""`clap-train benchmark`: checkpoints x data sets -> one table in the shape of the published CLAP table.

Zero-shot (ESC-50, UrbanSound8K): class names as prompts (the protocol's templates, averaged when several),
top-1/top-5 over all clips, per fold and the mean over folds. Retrieval (AudioCaps, Clotho): every caption a
query; audio->text counts the best-ranked of a clip's captions (eval/retrieval.py). Audio is embedded as at
evaluation (start crop or repeat-pad; fusion checkpoints see long clips whole).
"""

from __future__ import annotations

import os

import torch

from clap_train.benchmark.readers import BenchData, read
from clap_train.eval.metrics import source_metrics
from clap_train.eval.zeroshot import zeroshot_metrics
from clap_train.inference import Progress, embed_items, embed_shards, embed_texts, no_progress
from clap_train.long_audio import LongAudio
from clap_train.model import CLAP
from clap_train.prompts import DEFAULT_TEMPLATES

RETRIEVAL_COLUMNS = (
    ("t2a_R@1", "T2A R@1"),
    ("t2a_R@5", "R@5"),
    ("t2a_R@10", "R@10"),
    ("a2t_R@1", "A2T R@1"),
    ("a2t_R@5", "R@5"),
    ("a2t_R@10", "R@10"),
    ("t2a_mAP@10", "mAP@10"),
)
ZEROSHOT_COLUMNS = (("zeroshot_top1", "top-1"),)


def load_protocols() -> dict:
    from omegaconf import OmegaConf

    path = os.path.join(os.path.dirname(__file__), "protocols.yaml")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def subset(data: BenchData, max_items: int | None) -> BenchData:
    """Every k-th clip (keeps the class and fold mix): a cheap, fixed subset for evaluation during training."""
    if not max_items or len(data.items) <= max_items:
        return data
    step = len(data.items) / max_items
    keep = [int(i * step) for i in range(max_items)]
    return BenchData(
        data.name,
        [data.items[i] for i in keep],
        data.classes,
        [data.folds[i] for i in keep] if data.folds else [],
        data.missing,
        data.source,
        data.shards,
    )


def evaluate(
    model: CLAP,
    data: BenchData,
    protocol: dict,
    batch_size: int = 16,
    progress: Progress = no_progress,
    long_audio: LongAudio | None = None,
) -> dict:
    """One data set -> {"metrics": {...}, "missing", "skipped"} following its protocol."""
    if protocol["task"] not in ("zeroshot", "retrieval"):
        raise ValueError(f"protocol task {protocol['task']!r}; valid: zeroshot, retrieval")
    zeroshot = protocol["task"] == "zeroshot"
    templates = protocol.get("templates") or list(DEFAULT_TEMPLATES)
    skipped: list[dict] | dict = []
    text = owner = protos = None
    folds: list[int] = []
    if data.shards:
        e = embed_shards(model, data.shards, batch_size=batch_size, progress=progress, long_audio=long_audio)
        audio, text, owner, tags, skipped = e["audio"], e["text"], e["owner"], e["tags"], e["skips"]
    else:
        got = embed_items(model, data.items, batch_size, progress, long_audio=long_audio)
        audio, skipped, tags = got.emb, got.skipped, [it.labels for it in got.items]
        kept = {id(it) for it in got.items}
        folds = [f for it, f in zip(data.items, data.folds) if id(it) in kept] if data.folds else []
        if not zeroshot:
            caps = [c for it in got.items for c in it.captions]
            owner = torch.tensor([i for i, it in enumerate(got.items) for _ in it.captions], dtype=torch.long)
            text = embed_texts(model, caps)
    if zeroshot:
        if not data.classes:
            raise ValueError(f"{data.name}: no class list (classes.json) beside the shards")
        protos = model.class_embeddings(data.classes, templates).float().cpu()
    # the protocol's task decides what is scored: a zero-shot set's captions are not
    metrics, labels = source_metrics(
        audio, None if zeroshot else text, owner, tags, data.classes if zeroshot else None, protos
    )
    if zeroshot and folds:
        fold_t = torch.tensor(folds)
        per = {}
        for k in sorted(set(folds)):
            sel = fold_t == k
            per[k] = zeroshot_metrics(audio[sel], protos, labels[sel]).get("zeroshot_top1", 0.0)
            metrics[f"fold{k}_top1"] = per[k]
        metrics["mean_fold_top1"] = sum(per.values()) / len(per)
    metrics["n_missing"] = float(len(data.missing))
    metrics["n_unreadable"] = float(len(skipped) if isinstance(skipped, list) else sum(skipped.values()))
    return {"metrics": metrics, "missing": data.missing, "skipped": skipped}


def run_suite(
    checkpoints: list[str],
    names: list[str],
    data_root: str,
    batch_size: int = 16,
    device: str = "cpu",
    progress: Progress = no_progress,
    log=print,
    trust_checkpoint: bool = False,
    tokenizer: str | None = None,
    long_audio: LongAudio | None = None,
) -> dict:
    from clap_train.checkpoints.load import load_model

    protocols = load_protocols()
    bad = [n for n in names if n not in protocols]
    if bad:
        raise ValueError(f"unknown benchmark(s) {bad}; valid: {', '.join(protocols)}")
    found: dict[str, BenchData] = {}
    datasets = {}
    for n in names:
        d = read(n, data_root, protocols[n].get("split"))
        datasets[n] = {"found": d is not None}
        if d is None:
            log(f"{protocols[n]['title']}: not found under {data_root} (skipped)")
            continue
        found[n] = d
        datasets[n].update(
            source=d.source, clips=len(d.items) or None, shards=len(d.shards) or None, missing=len(d.missing)
        )
        what = f"{len(d.items)} clips" if d.items else f"{len(d.shards)} shards"
        msg = f"{protocols[n]['title']}: {what} from {d.source}"
        if d.missing:
            msg += (
                f"; {len(d.missing)} listed clip(s) not found (e.g. {d.missing[0]}): left out of every metric "
                "and counted as n_missing"
            )
        log(msg)
    results: dict[str, dict] = {}
    for ck in checkpoints:
        model = load_model(ck, map_location=device, trust_checkpoint=trust_checkpoint, tokenizer=tokenizer).eval()
        results[ck] = {}
        for n, d in found.items():
            results[ck][n] = evaluate(model, d, protocols[n], batch_size, progress, long_audio)
    return {
        "datasets": datasets,
        "results": results,
        "protocols": {n: {k: v for k, v in protocols[n].items()} for n in names if n in protocols},
    }


def _columns(res: dict) -> list[tuple[str, str, str]]:
    cols = []
    for n, p in res["protocols"].items():
        if res["datasets"][n]["found"]:
            for key, head in ZEROSHOT_COLUMNS if p["task"] == "zeroshot" else RETRIEVAL_COLUMNS:
                cols.append((n, key, f"{p['title']} {head}" if head in ("top-1", "T2A R@1") else head))
    return cols


def _rows(res: dict) -> list[list[str]]:
    rows = []
    for ck, per in res["results"].items():
        cells = [f"{per[n]['metrics'][k] * 100:.1f}" for n, k, _ in _columns(res)]
        rows.append([os.path.basename(ck.rstrip("/"))] + cells)
    return rows


def format_table(res: dict) -> str:
    cols = _columns(res)
    if not cols:
        return "no benchmark data found"
    heads = ["checkpoint"] + [h for _, _, h in cols]
    rows = _rows(res)
    widths = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(heads), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def format_markdown(res: dict) -> str:
    cols = _columns(res)
    heads = ["checkpoint"] + [h for _, _, h in cols]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(res)]
    pub = [
        (p["title"], who, k, v)
        for n, p in res["protocols"].items()
        for who, m in (p.get("published") or {}).items()
        for k, v in m.items()
    ]
    if pub:
        lines += ["", "Published (reference): " + "; ".join(f"{t} {k} {v * 100:.1f}% ({who})" for t, who, k, v in pub)]
    return "\n".join(lines)
