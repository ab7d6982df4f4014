"""Collating decoded samples into dict batches keyed by modality."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Tokenize = Callable[[list[str]], dict]


def stack_audio(samples: list[dict], transport: str = "float32") -> torch.Tensor:
    """[B, T]; clips kept whole for fusion can differ in length: zero-padded to the longest
    (`audio_len` keeps each true length). int16 transport: LAION's quantisation (clip to [-1, 1], x 32767,
    truncate); the model turns it back into floats on its device (audio/frontend.pcm_to_float)."""
    width = max(s["audio"].shape[0] for s in samples)
    pcm = transport == "int16"
    out = np.empty((len(samples), width), dtype=np.int16 if pcm else np.float32)  # one write per element
    for i, s in enumerate(samples):
        n = s["audio"].shape[0]
        out[i, :n] = (np.clip(s["audio"], -1.0, 1.0) * 32767.0) if pcm else s["audio"]
        out[i, n:] = 0
    return torch.from_numpy(out)


def collate_train(samples: list[dict], tokenize: Tokenize, transport: str = "float32") -> dict:
    return {
        "audio": stack_audio(samples, transport),
        "audio_len": torch.tensor([s["audio_len"] for s in samples], dtype=torch.long),
        "text": tokenize([s["caption"] for s in samples]),
        "key": [s["key"] for s in samples],
        "source": [s["source"] for s in samples],
    }


def collate_eval(samples: list[dict], tokenize: Tokenize, transport: str = "float32") -> dict:
    """Every caption of every clip; `caption_owner[j]` is the clip (row) caption j describes."""
    caps = [c for s in samples for c in s["captions"]]
    owner = [i for i, s in enumerate(samples) for _ in s["captions"]]
    return {
        "audio": stack_audio(samples, transport),
        "audio_len": torch.tensor([s["audio_len"] for s in samples], dtype=torch.long),
        "text": tokenize(caps),
        "captions": caps,
        "caption_owner": torch.tensor(owner, dtype=torch.long),
        "key": [s["key"] for s in samples],
        "tags": [s["tags"] for s in samples],
        "source": [s["source"] for s in samples],
    }
