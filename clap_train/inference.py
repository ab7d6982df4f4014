"""Using a trained model on users' files and shards: embeddings in batches with a progress bar, skips
reported (never silently dropped). The commands in cli.py are thin wrappers over these functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from clap_train.audio.frontend import pcm_to_float
from clap_train.data.audio_files import AudioItem, ReadSpec, read_audio_file, stream_audio_file
from clap_train.data.skips import BadSample
from clap_train.long_audio import LongAudio, slide
from clap_train.model import CLAP

Progress = Callable[[Iterable, int, str], Iterable]


def no_progress(it: Iterable, total: int, desc: str) -> Iterable:
    return it


def tqdm_progress(it: Iterable, total: int, desc: str) -> Iterable:
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="file" if desc.startswith("audio") else "batch")


@dataclass
class AudioEmbeddings:
    emb: torch.Tensor  # [N, D], L2-normalised, rows = `items`
    items: list[AudioItem]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason", "detail"}


def embed_items(
    model: CLAP,
    items: list[AudioItem],
    batch_size: int = 16,
    progress: Progress = no_progress,
    max_seconds: float = 3600.0,
    long_audio: LongAudio | None = None,
) -> AudioEmbeddings:
    """Read (any format, rate, channels), resample to the model rate, embed as at evaluation; a file
    longer than the model's clip as `long_audio` says (its first window, decoding nothing after it;
    sliding windows, streamed; or a fusion model's fusion path over its start)."""
    la = (long_audio or LongAudio()).resolve(model.clip_seconds, model.audio_branch.fusion)
    spec = ReadSpec(sample_rate=model.sample_rate, min_seconds=0.0, max_seconds=max_seconds)
    kept, skipped, out, clips = [], [], [], []

    def flush():
        if clips:
            out.append(model.encode_audio(clips, batch_size=batch_size, long_audio=la).cpu())
            clips.clear()

    window, hop = la.samples(model.sample_rate)
    head = model.clip_seconds if la.mode == "first" else la.fusion_max_seconds
    for it in progress(items, len(items), "audio files"):
        try:
            if la.mode == "slide":
                windows = slide(stream_audio_file(it.path, spec), window, hop)
                out.append(model.encode_windows(windows, batch_size)[None].cpu())
            else:
                clips.append(read_audio_file(it.path, spec, head)[0])
        except BadSample as e:
            skipped.append({"path": it.rel, "reason": e.reason, "detail": e.detail})
            continue
        kept.append(it)
        if len(clips) == batch_size:
            flush()
    flush()
    emb = torch.cat(out) if out else torch.zeros(0, model.embed_dim)
    return AudioEmbeddings(emb.float(), kept, skipped)


def embed_texts(model: CLAP, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    return model.encode_text(list(texts), batch_size=batch_size).float().cpu()


def top_k(queries: torch.Tensor, items: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine ranking: (scores [Q, k], indices [Q, k]), best first."""
    k = min(k, items.shape[0])
    s, i = (queries.float() @ items.float().T).topk(k, dim=1)
    return s.numpy(), i.numpy()


@torch.no_grad()
def embed_shards(
    model: CLAP,
    shards: list[str],
    caption_key="text",
    tag_templates: list[str] | None = None,
    batch_size: int = 32,
    progress: Progress = no_progress,
    long_audio: LongAudio | None = None,
) -> dict:
    """Every sample of a shard set once, as evaluation sees it (start crop, all captions); a sample longer
    than the model's clip as `long_audio` says (slide and fusion over its first fusion_max_seconds).
    Returns {"keys", "audio" [N, D], "text" [M, D], "captions" [M], "owner" [M], "tags", "skips"}.
    One process, so every skip is counted here and reported."""
    from clap_train.data.datasets import EvalStream
    from clap_train.data.decode import AudioSpec
    from clap_train.data.stream import SourceSpec, StreamOpts

    src = SourceSpec(
        name="eval",
        shards=shards,
        weight=1.0,
        caption_key=caption_key,
        tag_key="tag",
        tag_templates=list(tag_templates or ["{}"]),
        resample=False,
    )
    la = (long_audio or LongAudio()).resolve(model.clip_seconds, model.audio_branch.fusion)
    whole = la.mode != "first"  # the stream keeps samples whole (up to fusion_max_seconds), as for fusion training
    audio = AudioSpec(
        sample_rate=model.sample_rate,
        clip_seconds=model.clip_seconds,
        fusion=whole,
        fusion_max_seconds=max(la.fusion_max_seconds, model.clip_seconds),
    )
    ds = EvalStream(src, audio, StreamOpts(), batch_size, 0, 1, model.tokenizer)
    dev = next(model.parameters()).device
    keys, A, T, O, tags, caps = [], [], [], [], [], []
    for batch in progress(ds, 0, "batches"):
        text = {k: v.to(dev) for k, v in batch["text"].items()}
        if whole:
            clips = [pcm_to_float(w[:n]).numpy() for w, n in zip(batch["audio"], batch["audio_len"].tolist())]
            a = model.encode_audio(clips, batch_size=batch_size, long_audio=la)
            t = F.normalize(model.text_features(text), dim=-1)
        else:
            a, t, _ = model({"audio": batch["audio"].to(dev), "audio_len": batch["audio_len"].to(dev), "text": text})
        O.append(batch["caption_owner"] + len(keys))
        keys += batch["key"]
        tags += batch["tags"]
        caps += batch["captions"]
        A.append(a.float().cpu())
        T.append(t.float().cpu())
    if not keys:
        raise ValueError(f"no usable samples in {len(shards)} shard(s) (skipped: {dict(ds.skips.counts) or 'none'})")
    return {
        "keys": keys,
        "audio": torch.cat(A),
        "text": torch.cat(T),
        "owner": torch.cat(O),
        "tags": tags,
        "captions": caps,
        "skips": dict(ds.skips.counts),
    }
