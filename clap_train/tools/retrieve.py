"""`clap-train embed` / `retrieve`: embeddings saved as .npy (+ a rows file naming each row), and ranked
search text->audio or audio->text over a folder, a listing, or embeddings saved earlier."""

from __future__ import annotations

import os

import numpy as np
import torch

from clap_train.data.audio_files import list_many
from clap_train.inference import AudioEmbeddings, Progress, embed_items, embed_texts, no_progress, top_k
from clap_train.long_audio import LongAudio
from clap_train.model import CLAP


def rows_path(npy: str) -> str:
    return os.path.splitext(npy)[0] + ".rows.txt"


def save_embeddings(path: str, emb: torch.Tensor, rows: list[str]) -> None:
    """`path` (.npy, float32 [N, D]) and `<path>.rows.txt`: what row i is (a file or a text), one per line."""
    if any("\n" in r for r in rows):
        raise ValueError("row names must not contain newlines")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.save(path, emb.numpy().astype(np.float32))
    with open(rows_path(path), "w", encoding="utf-8") as f:
        f.write("".join(r + "\n" for r in rows))


def load_embeddings(path: str) -> tuple[torch.Tensor, list[str]]:
    emb = torch.from_numpy(np.load(path, allow_pickle=False))  # never unpickles
    with open(rows_path(path), encoding="utf-8") as f:
        rows = [line.rstrip("\n") for line in f]
    if len(rows) != emb.shape[0]:
        raise ValueError(f"{path}: {emb.shape[0]} rows but {rows_path(path)} names {len(rows)}")
    return emb, rows


def audio_embeddings(
    model: CLAP,
    sources: list[str],
    batch_size: int = 16,
    progress: Progress = no_progress,
    long_audio: LongAudio | None = None,
) -> tuple[torch.Tensor, list[str], list[dict]]:
    """Audio files / folders / listings, or one .npy written by `embed` -> (emb, row names, skipped)."""
    if len(sources) == 1 and sources[0].endswith(".npy"):
        emb, rows = load_embeddings(sources[0])
        if emb.shape[1] != model.embed_dim:
            raise ValueError(f"{sources[0]} holds {emb.shape[1]}-d embeddings; this model makes {model.embed_dim}-d")
        return emb.float(), rows, []
    got: AudioEmbeddings = embed_items(model, list_many(sources).items, batch_size, progress, long_audio=long_audio)
    return got.emb, [it.rel for it in got.items], got.skipped


def ranked(query_emb: torch.Tensor, queries: list[str], item_emb: torch.Tensor, items: list[str], k: int) -> list[dict]:
    scores, idx = top_k(query_emb, item_emb, k)
    return [
        {
            "query": q,
            "results": [
                {"rank": r + 1, "item": items[j], "score": round(float(s), 4)}
                for r, (s, j) in enumerate(zip(scores[qi], idx[qi]))
            ],
        }
        for qi, q in enumerate(queries)
    ]


DIRECTIONS = ("text->audio", "audio->text")


def search(
    model: CLAP,
    audio_sources: list[str],
    texts: list[str],
    direction: str = "text->audio",
    k: int = 10,
    batch_size: int = 16,
    progress: Progress = no_progress,
    long_audio: LongAudio | None = None,
) -> dict:
    """text->audio: each query in `texts` with its k best audio items; audio->text: each audio item with its k
    best captions from `texts`. Audio that cannot be read is listed under "skipped"."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}; valid choices: {', '.join(DIRECTIONS)}")
    emb, rows, skipped = audio_embeddings(model, audio_sources, batch_size, progress, long_audio)
    if not rows:
        raise ValueError("no audio could be embedded" + (f" (skipped {len(skipped)})" if skipped else ""))
    t = embed_texts(model, texts)
    queries = ranked(t, texts, emb, rows, k) if direction == "text->audio" else ranked(emb, rows, t, texts, k)
    return {"direction": direction, "queries": queries, "skipped": skipped}


def read_captions(path: str) -> list[str]:
    """A text file with one caption per line, or a CSV/JSONL listing (its captions, each once)."""
    if path.lower().endswith((".csv", ".tsv", ".jsonl", ".json")):
        seen: dict[str, None] = {}
        for it in list_many([path]).items:
            for c in it.captions:
                seen.setdefault(c)
        return list(seen)
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def format_ranked(res: dict) -> str:
    lines = []
    for q in res["queries"]:
        lines.append(f"{q['query']}")
        lines += [f"  {r['rank']:3d}. {r['score']:.3f}  {r['item']}" for r in q["results"]]
    if res["skipped"]:
        lines.append(
            f"skipped {len(res['skipped'])} file(s): "
            + "; ".join(f"{s['path']} ({s['reason']})" for s in res["skipped"][:5])
        )
    return "\n".join(lines)
