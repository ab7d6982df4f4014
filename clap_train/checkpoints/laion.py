"""LAION-CLAP's checkpoint layout <-> ours.

Our parameter names are LAION's (audio_branch / text_branch / *_projection / logit_scale_*), so the
mapping is small: LAION's text tower is the bare Hugging Face model (`text_branch.X`, ours
`text_branch.model.X`), PANN's `fc1` is our `post_pool.fc1`, and LAION carries tensors no CLAP
embedding uses (the in-model STFT/mel kernels, the AudioSet classifier, the `*_transform` MLPs of its
optional MLP loss, derived buffers). Importing drops those after checking the derived ones against
ours; exporting writes them back (derived ones exact, unused classifier/MLPs freshly initialised).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

# LAION keys with no counterpart in our model; every one is checked or reported, never silently lost.
DERIVED = (
    "audio_branch.spectrogram_extractor.",
    "audio_branch.logmel_extractor.",
    "text_branch.embeddings.position_ids",
    "text_branch.embeddings.token_type_ids",
)
UNUSED = (
    "audio_branch.tscam_conv.",
    "audio_branch.head.",
    "audio_branch.fc_audioset.",
    "audio_transform.",
    "text_transform.",
)
ATTN_MASK = re.compile(r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$")


def is_laion_state(sd: dict) -> bool:
    return any(k.startswith("text_branch.") for k in sd) and not any(k.startswith("text_branch.model.") for k in sd)


def to_ours(sd: dict) -> tuple[dict, list[str]]:
    """LAION state_dict (prefixes already stripped) -> (our state_dict, keys dropped as derived/unused)."""
    out, dropped = {}, []
    for k, v in sd.items():
        if k.startswith(DERIVED + UNUSED) or ATTN_MASK.match(k):
            dropped.append(k)
        elif k.startswith("text_branch."):
            out["text_branch.model." + k[len("text_branch.") :]] = v
        elif re.match(r"audio_branch\.fc1\.", k):
            out["audio_branch.post_pool." + k[len("audio_branch.") :]] = v
        else:
            out[k] = v
    return out, dropped


def _conv_dft(n_fft: int, win_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchlibrosa's STFT as two conv1d kernels [n_fft//2+1, 1, n_fft]: periodic Hann x DFT rows."""
    n = np.arange(n_fft)
    win = np.zeros(n_fft)
    off = (n_fft - win_length) // 2
    win[off : off + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    w = np.exp(-2j * np.pi * np.outer(n, n) / n_fft)[:, : n_fft // 2 + 1] * win[:, None]
    as_t = lambda a: torch.from_numpy(a.T[:, None, :].astype(np.float32))  # noqa: E731
    return as_t(np.real(w)), as_t(np.imag(w))


def check_derived(sd: dict, model) -> list[str]:
    """Differences between LAION's derived buffers and what our model computes (empty: all agree)."""
    notes = []
    fb = sd.get("audio_branch.logmel_extractor.melW")
    if fb is not None and not model.audio_branch.fusion:  # fusion models compute their mel outside
        ours = model.frontend.fb.cpu()
        if fb.shape != ours.shape or (fb.float() - ours).abs().max() > 1e-5 * ours.abs().max():
            notes.append(
                f"logmel_extractor.melW differs from this model's mel filterbank (mel_scale={model.frontend.mel_scale})"
            )
    own = {k: v for k, v in model.audio_branch.named_buffers() if k.endswith("attn_mask")}
    for k, v in sd.items():
        if ATTN_MASK.match(k):
            mine = own.get(k[len("audio_branch.") :])
            if mine is None or mine.shape != v.shape or not torch.equal(mine.cpu(), v.float()):
                notes.append(f"{k} differs from the shift mask this model builds")
    return notes


def from_ours(model) -> dict:
    """Our model -> a state_dict in LAION's layout (loads into LAION-CLAP's CLAP with strict=True)."""
    text = model.text_branch
    kind = text.model.config.model_type
    if kind != "roberta" or text.pooling != "pooler":  # what the layout means, and what text_config reads
        raise ValueError(
            "cannot export to LAION-CLAP's layout: its text tower is RoBERTa read through its pooler (LAION's "
            f"code and our reader load nothing else); this model's is {kind} with {text.pooling} pooling. "
            "Export with --format ours instead."
        )
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("text_branch.model."):
            sd["text_branch." + k[len("text_branch.model.") :]] = v
        elif k.startswith("audio_branch.post_pool.fc1."):
            sd["audio_branch." + k[len("audio_branch.post_pool.") :]] = v
        elif k.startswith("audio_branch.") or k.startswith(("audio_projection.", "text_projection.", "logit_scale_")):
            sd[k] = v
    fe = model.frontend
    real, imag = _conv_dft(fe.n_fft, fe.win_length)
    sd["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = real
    sd["audio_branch.spectrogram_extractor.stft.conv_imag.weight"] = imag
    from clap_train.audio.frontend import mel_filterbank

    sd["audio_branch.logmel_extractor.melW"] = mel_filterbank(
        fe.sample_rate, fe.n_fft, fe.n_mels, fe.f_min, fe.f_max, "slaney", "slaney"
    ).T.contiguous()
    for k, v in model.audio_branch.named_buffers():
        if k.endswith("attn_mask") and v is not None:
            sd["audio_branch." + k] = v.clone()
    cfg = model.text_branch.model.config
    sd["text_branch.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    g = torch.Generator().manual_seed(0)  # unused by CLAP embeddings; deterministic for byte-identical exports
    d = model.embed_dim
    for side in ("audio_transform", "text_transform"):
        for i in (0, 3):
            sd[f"{side}.sequential.{i}.weight"] = _init_linear(d, d, g)
            sd[f"{side}.sequential.{i}.bias"] = torch.zeros(d)
    enc = model.audio_branch
    if hasattr(enc, "layers"):  # HTS-AT's AudioSet head (LAION builds it; CLAP never reads it)
        sd["audio_branch.tscam_conv.weight"] = _init_linear(527, enc.out_dim * 2 * 3, g).view(527, enc.out_dim, 2, 3)
        sd["audio_branch.tscam_conv.bias"] = torch.zeros(527)
        sd["audio_branch.head.weight"] = _init_linear(527, 527, g)
        sd["audio_branch.head.bias"] = torch.zeros(527)
    else:
        sd["audio_branch.fc_audioset.weight"] = _init_linear(527, enc.out_dim, g)
        sd["audio_branch.fc_audioset.bias"] = torch.zeros(527)
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def _init_linear(d_out: int, d_in: int, g: torch.Generator) -> torch.Tensor:
    bound = 1 / math.sqrt(d_in)
    return (torch.rand(d_out, d_in, generator=g) * 2 - 1) * bound


# --- what model a LAION state_dict describes -----------------------------------------------------------
def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [rx.match(k)] if m})


def audio_config(sd: dict) -> dict:
    """The audio tower (HTS-AT size and fusion, or PANN) read off the keys and shapes."""
    n_mels = int(sd["audio_branch.bn0.weight"].shape[0])
    if "audio_branch.patch_embed.proj.weight" in sd:
        from clap_train.audio.htsat import HTSAT_SIZES

        embed = int(sd["audio_branch.patch_embed.proj.weight"].shape[0])
        stride = int(sd["audio_branch.patch_embed.proj.weight"].shape[-1])
        n_layers = _count(sd, r"audio_branch\.layers\.(\d+)\.")
        depths = [_count(sd, rf"audio_branch\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_layers)]
        heads = [
            int(sd[f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1])
            for i in range(n_layers)
        ]
        window = math.isqrt(int(sd["audio_branch.layers.0.blocks.0.attn.relative_position_index"].shape[0]))
        mask = sd.get("audio_branch.layers.0.blocks.1.attn_mask")
        spec = math.isqrt(int(mask.shape[0])) * window * stride if mask is not None else 256
        name = next(
            (
                n
                for n, (e, d, h) in HTSAT_SIZES.items()
                if (e, tuple(d), tuple(h)) == (embed, tuple(depths), tuple(heads))
            ),
            None,
        )
        cfg = {
            "_target_": "clap_train.audio.htsat.build_htsat",
            "name": name,
            "n_mels": n_mels,
            "spec_size": spec,
            "patch_size": stride,
            "patch_stride": stride,
            "window_size": window,
            "fusion": "audio_branch.patch_embed.mel_conv2d.weight" in sd,
        }
        if name is None:
            cfg.update(embed_dim=embed, depths=depths, num_heads=heads)
        return cfg
    if "audio_branch.conv_block1.conv1.weight" in sd:
        blocks = _count(sd, r"audio_branch\.conv_block(\d+)\.")
        k = int(sd["audio_branch.conv_block1.conv1.weight"].shape[-1])
        name = {(6, 3): "cnn14", (5, 3): "cnn10", (4, 5): "cnn6"}.get((blocks, k))
        if name is None:
            raise ValueError(f"unrecognised PANN: {blocks} conv blocks of kernel {k}")
        return {"_target_": "clap_train.audio.pann.build_pann", "name": name, "n_mels": n_mels}
    raise ValueError("no audio tower recognised in the checkpoint (expected HTS-AT or PANN keys)")


def text_config(sd: dict, prefix: str = "text_branch.") -> dict:
    """A RoBERTa config from the text tower's shapes (heads assumed 64-wide, as every RoBERTa)."""
    if prefix + "embeddings.word_embeddings.weight" not in sd:
        raise ValueError("no text tower in the checkpoint")
    vocab, hidden = sd[prefix + "embeddings.word_embeddings.weight"].shape
    if (
        prefix + "embeddings.token_type_embeddings.weight" in sd
        and sd[prefix + "embeddings.token_type_embeddings.weight"].shape[0] != 1
    ):
        raise ValueError("only RoBERTa text towers (LAION's released checkpoints) are recognised")
    return {
        "model_type": "roberta",
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": _count(sd, re.escape(prefix) + r"encoder\.layer\.(\d+)\."),
        "num_attention_heads": max(int(hidden) // 64, 1),
        "intermediate_size": int(sd[prefix + "encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(sd[prefix + "embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


def model_config(sd: dict, sample_rate: int = 48000) -> dict:
    """The full `build_model` config of a LAION checkpoint: official front end (HTK mel for fusion)."""
    audio = audio_config(sd)
    embed = int(sd["audio_projection.2.weight"].shape[0])
    return {
        "embed_dim": embed,
        "logit_scale_init": 1 / 0.07,
        "logit_scale_max": 100.0,
        "clip_seconds": 10.0,
        "mask_padding": False,
        "frontend": {
            "sample_rate": sample_rate,
            "n_fft": 1024,
            "win_length": 1024,
            "hop_length": 480,
            "n_mels": audio["n_mels"],
            "f_min": 50.0,
            "f_max": 14000.0,
            "mel_scale": "htk" if audio.get("fusion") else "slaney",
            "mel_norm": "auto",
        },
        "audio_encoder": audio,
        # HTS-AT's embedding is the token mean; PANN's is max + mean over time
        "pooling": {"name": "mean" if "htsat" in audio["_target_"] else "maxmean"},
        "text_encoder": {"pooling": "pooler", "max_length": 77},
    }
