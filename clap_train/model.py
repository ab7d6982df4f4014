"""The CLAP model: audio tower + text tower, projection heads into one space, a learnable temperature.

Parameter names follow LAION-CLAP (`audio_branch`, `text_branch`, `audio_projection`,
`text_projection`, `logit_scale_a`, `logit_scale_t`) so checkpoints map by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clap_train.audio.frontend import LogMel, pcm_to_float
from clap_train.audio.fusion import fusion_mels
from clap_train.audio.pooling import build_pooling
from clap_train.config import check_choice, instantiate
from clap_train.data.crop import PADS, fit_length
from clap_train.long_audio import LongAudio, batched, mean_embedding, slide
from clap_train.prompts import DEFAULT_TEMPLATES
from clap_train.text.tower import TextTower


def projection(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


class CLAP(nn.Module):
    def __init__(
        self,
        frontend: LogMel,
        audio_encoder: nn.Module,
        pooling: nn.Module,
        text_encoder: TextTower,
        embed_dim: int = 512,
        logit_scale_init: float = 1 / 0.07,
        logit_scale_max: float = 100.0,
        clip_seconds: float = 10.0,
        mask_padding: bool = False,
        fusion_force_longer: bool = True,
        pad: str = "repeatpad",
    ):
        super().__init__()
        check_choice("model.pad", pad, PADS)
        self.pad = pad  # how encode_audio fills a short clip (data.audio.pad in training)
        self.frontend, self.audio_branch, self.pooling = frontend, audio_encoder, pooling
        self.text_branch = text_encoder
        self.audio_projection = projection(audio_encoder.out_dim, embed_dim)
        self.text_projection = projection(text_encoder.out_dim, embed_dim)
        # LAION keeps two temperatures; the contrastive loss uses `_a` (transformers' ClapModel uses `_t`
        # for text logits), both are kept for checkpoint compatibility.
        self.logit_scale_a = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        # `_t` is not used by the loss: frozen, so DDP (find_unused_parameters=False) never waits for it
        self.logit_scale_t = nn.Parameter(torch.tensor(math.log(logit_scale_init)), requires_grad=False)
        self.logit_scale_max = logit_scale_max
        self.sample_rate, self.clip_seconds, self.mask_padding = frontend.sample_rate, clip_seconds, mask_padding
        self.embed_dim = embed_dim
        self.clip_samples = int(round(clip_seconds * self.sample_rate))
        self.fusion_force_longer = fusion_force_longer

    @property
    def tokenizer(self):
        return self.text_branch.tokenizer

    def logit_scale(self) -> torch.Tensor:
        return self.logit_scale_a.clamp(max=math.log(self.logit_scale_max)).exp()

    # --- features (unnormalised, as the loss and accumulation need them) ------------------------------
    def audio_features(self, audio: torch.Tensor, audio_len: torch.Tensor | None = None) -> torch.Tensor:
        # fp32 (the front end's precision), or fp64 for a model cast to float64: Lightning's 64-true casts float
        # batches, not int16 ones
        f64 = next(self.audio_branch.parameters()).dtype == torch.float64
        audio = pcm_to_float(audio, torch.float64 if f64 else torch.float32)
        if self.audio_branch.fusion:  # long clips: global view + 3 local crops (audio/fusion.py)
            mel, longer = fusion_mels(
                self.frontend, audio, audio_len, self.clip_samples, self.training, self.fusion_force_longer
            )
            frames = self.audio_branch(self._to_tower(mel), longer)  # via __call__: FSDP hooks run on forward
            return self.audio_projection(self.audio_branch.post_pool(self.pooling(frames, None)))
        mel = self.frontend(audio)  # [B, T, F], fp32
        frames = self.audio_branch(self._to_tower(mel))  # [B, T', C] (via __call__: FSDP hooks)
        mask = None
        if self.mask_padding and audio_len is not None:
            valid = (audio_len // self.frontend.hop_length + 1).clamp(max=mel.shape[1])
            valid = torch.div(valid * frames.shape[1] + mel.shape[1] - 1, mel.shape[1], rounding_mode="floor")
            mask = torch.arange(frames.shape[1], device=frames.device)[None] < valid[:, None].clamp(min=1)
        pooled = self.pooling(frames, mask)
        return self.audio_projection(self.audio_branch.post_pool(pooled))

    def _to_tower(self, mel: torch.Tensor) -> torch.Tensor:
        """The fp32 log-mel into a tower whose weights are half precision (DeepSpeed's bf16/fp16 engines hold
        the towers in that dtype; BatchNorm would refuse fp32 input); under autocast's fp32 weights unchanged."""
        dtype = next(self.audio_branch.parameters()).dtype
        if dtype in (torch.bfloat16, torch.float16):
            return mel.to(dtype)
        return mel

    def text_features(self, text: dict) -> torch.Tensor:
        return self.text_projection(self.text_branch(text["input_ids"], text["attention_mask"]))

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = F.normalize(self.audio_features(batch["audio"], batch.get("audio_len")), dim=-1)
        t = F.normalize(self.text_features(batch["text"]), dim=-1)
        return a, t, self.logit_scale()

    # --- user API ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_audio(
        self,
        waveforms,
        sample_rate: int | None = None,
        lengths: Sequence[int] | None = None,
        batch_size: int = 32,
        long_audio: LongAudio | str | None = None,
    ) -> torch.Tensor:
        """Waveforms `[B, T]` (float, any rate) or a list of 1-D clips -> L2-normalised `[B, D]`.

        Clips are resampled to the model rate and padded (`model.pad`) to the model's clip length, exactly
        as at evaluation. A longer clip is seen as `long_audio` says (long_audio.py): its first window, the
        average of sliding windows, or (fusion towers, their default) the fusion path over its start.
        """
        la = long_audio if isinstance(long_audio, LongAudio) else LongAudio(long_audio)
        la = la.resolve(self.clip_seconds, self.audio_branch.fusion)
        clips = [self._at_model_rate(c, sample_rate) for c in _as_clips(waveforms, lengths)]
        if la.mode == "slide":
            window, hop = la.samples(self.sample_rate)
            return torch.stack([self.encode_windows(slide([c], window, hop), batch_size) for c in clips])
        keep = int(round(la.fusion_max_seconds * self.sample_rate)) if la.mode == "fusion" else self.clip_samples
        clips = [c[:keep] for c in clips]
        return torch.cat([self._encode_batch(clips[i : i + batch_size]) for i in range(0, len(clips), batch_size)])

    @torch.no_grad()
    def encode_windows(self, windows: Iterable[np.ndarray], batch_size: int = 32) -> torch.Tensor:
        """One embedding `[D]` for a stream of windows at the model rate: their embeddings averaged and
        re-normalised (long_audio.py `slide`); the stream is consumed a batch at a time."""
        return mean_embedding(batched(windows, batch_size), self._encode_batch)

    def _at_model_rate(self, clip: np.ndarray, sample_rate: int | None) -> np.ndarray:
        if (sample_rate or self.sample_rate) == self.sample_rate:
            return clip
        import soxr

        return soxr.resample(clip, sample_rate, self.sample_rate).astype(np.float32)

    def _encode_batch(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Clips at the model rate, each at most a clip long (fusion towers: longer ones kept whole)."""
        n, dev = self.clip_samples, next(self.parameters()).device
        chunk, lens = [], []
        for c in clips:
            keep = self.audio_branch.fusion and len(c) > n
            lens.append(len(c) if keep else min(len(c), n))
            chunk.append(c if keep else fit_length(c, n, self.pad))
        width = max(len(c) for c in chunk)
        x = torch.from_numpy(np.stack([np.pad(c, (0, width - len(c))) for c in chunk])).to(dev)
        return F.normalize(self.audio_features(x, torch.tensor(lens, device=dev)), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        dev = next(self.parameters()).device
        out = []
        for i in range(0, len(texts), batch_size):
            tok = {k: v.to(dev) for k, v in self.tokenizer(list(texts[i : i + batch_size])).items()}
            out.append(F.normalize(self.text_features(tok), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def class_embeddings(self, classes: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
        """Zero-shot class prototypes `[C, D]`: each template filled with each class name, the template
        embeddings averaged per class (a prompt ensemble) and re-normalised."""
        embs = [self.encode_text([tpl.format(c) for c in classes]) for tpl in templates]
        return F.normalize(torch.stack(embs).mean(0), dim=-1)


def _as_clips(waveforms, lengths) -> list[np.ndarray]:
    if isinstance(waveforms, (torch.Tensor, np.ndarray)):
        w = torch.as_tensor(waveforms).detach().float().cpu()
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2:
            raise ValueError(f"waveforms must be [B, T] or a list of 1-D clips, got shape {tuple(w.shape)}")
        clips = [w[i].numpy() for i in range(w.shape[0])]
    else:
        clips = [torch.as_tensor(c).detach().float().cpu().reshape(-1).numpy() for c in waveforms]
    if lengths is not None:
        clips = [c[: int(n)] for c, n in zip(clips, lengths)]
    if any(len(c) == 0 for c in clips):
        raise ValueError("empty clip")
    return clips


def build_model(cfg: dict, text_assets: dict | None = None) -> CLAP:
    """Build from a plain config: `frontend`, `audio_encoder` (with `_target_`), `pooling`, `text_encoder`."""
    cfg = dict(cfg)
    source = dict(cfg)
    enc_cfg = dict(cfg.pop("audio_encoder"))
    fe_cfg = dict(cfg.pop("frontend"))
    if fe_cfg.get("mel_scale", "auto") == "auto":  # LAION: HTK mel for fusion checkpoints, Slaney otherwise
        fe_cfg["mel_scale"] = "htk" if enc_cfg.get("fusion") else "slaney"
    frontend = LogMel(**fe_cfg)
    enc_cfg.setdefault("n_mels", frontend.n_mels)
    encoder = instantiate(enc_cfg)  # a ConfigError from the encoder stays one line
    pool_cfg = dict(cfg.pop("pooling"))
    pooling = build_pooling(pool_cfg.pop("name"), encoder.frame_dim, **pool_cfg)
    text_cfg = dict(cfg.pop("text_encoder"))
    if text_assets is not None:  # the tower's config and tokenizer travel with it; its options stay the run's
        text_cfg = {k: v for k, v in text_cfg.items() if k not in ("name_or_path", "pretrained", "config", "tokenizer")}
        text_cfg["assets"] = text_assets
    text = TextTower(**text_cfg)
    model = CLAP(frontend, encoder, pooling, text, **cfg)
    model.model_cfg = source  # what rebuilds it (exports in our format)
    return model
