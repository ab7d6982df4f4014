"""Hugging Face `transformers.ClapModel` <-> ours: key names, configs, whole-directory import and export.

transformers' ClapModel is the same maths as LAION-CLAP (HTS-AT + RoBERTa) with renamed keys and the
fused `qkv` projection split into query/key/value. Export exists only for that architecture: a PANN
tower or a non-RoBERTa text tower has no ClapModel counterpart (use our or LAION's format).
"""

from __future__ import annotations

import os
import re

import torch

from clap_train.checkpoints.hf_frontend import from_extractor, laion_default, to_extractor

AUDIO = "audio_model.audio_encoder."
# (ours, HF) suffix pairs inside one Swin block; the rest of the audio tower keeps its names.
BLOCK_NAMES = [
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.relative_position_", "attention.self.relative_position_"),
    ("attn.proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
]
BLOCK = re.compile(r"(layers\.\d+\.blocks\.\d+\.)(.*)$")
HF_DERIVED = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


def _rename(rest: str, pairs, to_hf: bool) -> str:
    for ours, hf in pairs:
        a, b = (ours, hf) if to_hf else (hf, ours)
        if rest.startswith(a):
            return b + rest[len(a) :]
    return rest


def to_hf(sd: dict) -> dict:
    """Our state_dict -> ClapModel's (without its derived text buffers)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("audio_branch."):
            rest = k[len("audio_branch.") :]
            if rest.startswith("bn0."):
                out[AUDIO + "batch_norm." + rest[4:]] = v
                continue
            m = BLOCK.match(rest)
            if m and m.group(2).startswith("attn.qkv."):
                for name, part in zip(("query", "key", "value"), v.chunk(3, dim=0)):
                    out[f"{AUDIO}{m.group(1)}attention.self.{name}.{m.group(2)[len('attn.qkv.') :]}"] = part.clone()
                continue
            if m:
                rest = m.group(1) + _rename(m.group(2), BLOCK_NAMES, True)
            out[AUDIO + rest] = v
        elif k.startswith("text_branch.model."):
            out["text_model." + k[len("text_branch.model.") :]] = v
        elif k.startswith(("audio_projection.", "text_projection.")):
            side, idx, rest = k.split(".", 2)
            out[f"{side}.{ {'0': 'linear1', '2': 'linear2'}[idx] }.{rest}"] = v
        elif k.startswith("logit_scale_"):
            out[k] = v
        else:
            raise KeyError(f"{k} has no place in transformers' ClapModel")
    return out


def from_hf(sd: dict) -> tuple[dict, list[str]]:
    """ClapModel's state_dict -> (ours, HF keys dropped as derived buffers)."""
    out, dropped, qkv = {}, [], {}
    for k, v in sd.items():
        if k in HF_DERIVED:
            dropped.append(k)
        elif k.startswith(AUDIO):
            rest = k[len(AUDIO) :]
            if rest.startswith("batch_norm."):
                out["audio_branch.bn0." + rest[len("batch_norm.") :]] = v
                continue
            m = BLOCK.match(rest)
            q = re.match(r"attention\.self\.(query|key|value)\.(\w+)$", m.group(2)) if m else None
            if q:
                qkv.setdefault((m.group(1), q.group(2)), {})[q.group(1)] = v
                continue
            if m:
                rest = m.group(1) + _rename(m.group(2), BLOCK_NAMES, False)
            out["audio_branch." + rest] = v
        elif k.startswith("text_model."):
            out["text_branch.model." + k[len("text_model.") :]] = v
        elif k.startswith(("audio_projection.", "text_projection.")):
            side, name, rest = k.split(".", 2)
            out[f"{side}.{ {'linear1': '0', 'linear2': '2'}[name] }.{rest}"] = v
        else:
            out[k] = v
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise KeyError(f"{AUDIO}{block}attention.self: incomplete query/key/value {kind}")
        out[f"audio_branch.{block}attn.qkv.{kind}"] = torch.cat([parts[n] for n in ("query", "key", "value")])
    return out, dropped


def is_hf_state(sd: dict) -> bool:
    return any(k.startswith((AUDIO, "text_model.")) for k in sd)


# --- configs -------------------------------------------------------------------------------------------
def model_config(hf_config, extractor: dict | None = None) -> tuple[dict, dict]:
    """A transformers ClapConfig and its feature extractor's settings (preprocessor_config.json; None:
    LAION's front end) -> (our build_model config, our text-tower config dict)."""
    a, t = hf_config.audio_config, hf_config.text_config
    stride = a.patch_stride if isinstance(a.patch_stride, int) else a.patch_stride[0]
    audio = {
        "_target_": "clap_train.audio.htsat.build_htsat",
        "name": None,
        "embed_dim": a.patch_embeds_hidden_size,
        "depths": list(a.depths),
        "num_heads": list(a.num_attention_heads),
        "n_mels": a.num_mel_bins,
        "spec_size": a.spec_size,
        "patch_size": a.patch_size,
        "patch_stride": stride,
        "window_size": a.window_size,
        "mlp_ratio": a.mlp_ratio,
        "qkv_bias": a.qkv_bias,
        "drop_path_rate": a.drop_path_rate,
        "fusion": bool(a.enable_fusion),
    }
    fusion = bool(a.enable_fusion)
    front = (
        laion_default(fusion, a.num_mel_bins)
        if extractor is None
        else from_extractor(extractor, fusion, a.num_mel_bins)
    )
    cfg = {
        "embed_dim": hf_config.projection_dim,
        "logit_scale_init": float(hf_config.logit_scale_init_value),
        "logit_scale_max": 100.0,
        "mask_padding": False,
        **front,
        "audio_encoder": audio,
        "pooling": {"name": "mean"},
        "text_encoder": {"pooling": "pooler", "max_length": 77},
    }
    text = {
        k: v
        for k, v in t.to_dict().items()
        if k not in ("projection_dim", "projection_hidden_act", "model_type", "architectures", "transformers_version")
    }
    text["model_type"] = "roberta"
    return cfg, text


def hf_config(model):
    """Our model -> transformers ClapConfig, or a ValueError naming what ClapModel cannot represent."""
    from transformers import ClapConfig

    from clap_train.audio.htsat import HTSAT

    enc, text = model.audio_branch, model.text_branch
    problems = []
    if not isinstance(enc, HTSAT):
        problems.append(f"audio tower {type(enc).__name__} (ClapModel has HTS-AT only)")
    if text.model.config.model_type != "roberta":
        problems.append(f"text tower {text.model.config.model_type!r} (ClapModel's is RoBERTa)")
    if text.pooling != "pooler":
        problems.append(f"text pooling {text.pooling!r} (ClapModel uses pooler_output)")
    if type(model.pooling).__name__ != "MeanPool":
        problems.append("audio pooling other than mean (ClapModel averages the tokens)")
    if model.frontend.sample_rate != 48000 or model.frontend.hop_length != 480 or model.frontend.n_fft != 1024:
        problems.append("a front end other than 48 kHz / n_fft 1024 / hop 480")
    if problems:
        raise ValueError(
            "cannot export to transformers' ClapModel: "
            + "; ".join(problems)
            + ". Export with --format ours or --format laion instead."
        )
    blocks = [len(layer.blocks) for layer in enc.layers]
    audio = dict(
        spec_size=enc.spec_size,
        num_mel_bins=enc.n_mels,
        window_size=enc.layers[0].blocks[0].window,
        patch_size=enc.patch_embed.proj.kernel_size[0],
        patch_stride=list(enc.patch_embed.proj.stride),
        patch_embeds_hidden_size=enc.patch_embed.proj.out_channels,
        depths=blocks,
        num_attention_heads=[layer.blocks[0].attn.heads for layer in enc.layers],
        hidden_size=enc.out_dim,
        enable_fusion=enc.fusion,
        qkv_bias=enc.layers[0].blocks[0].attn.qkv.bias is not None,
        mlp_ratio=enc.layers[0].blocks[0].mlp.fc1.out_features / enc.patch_embed.proj.out_channels,
        projection_dim=model.embed_dim,
        projection_hidden_act="relu",
    )
    tcfg = {
        k: v
        for k, v in text.model.config.to_dict().items()
        if k not in ("model_type", "architectures", "transformers_version", "_name_or_path")
    }
    tcfg.update(projection_dim=model.embed_dim, projection_hidden_act="relu")
    return ClapConfig(
        text_config=tcfg,
        audio_config=audio,
        projection_dim=model.embed_dim,
        logit_scale_init_value=float(model.logit_scale_a.detach().exp()),
    )


def feature_extractor(model):
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(**to_extractor(model))


def export(model, out_dir: str) -> None:
    """Write a directory that ClapModel.from_pretrained and ClapProcessor.from_pretrained load (safetensors)."""
    from transformers import ClapModel, ClapProcessor

    cfg = hf_config(model)
    extractor = feature_extractor(model)  # before any file is written: a front end it cannot hold is refused
    hf = ClapModel(cfg)
    sd = to_hf(model.state_dict())
    own = hf.state_dict()
    for k in HF_DERIVED:
        sd[k] = own[k]
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"export to ClapModel: missing={missing[:5]} unexpected={unexpected[:5]}")
    os.makedirs(out_dir, exist_ok=True)
    hf.save_pretrained(out_dir, safe_serialization=True)
    ClapProcessor(feature_extractor=extractor, tokenizer=model.tokenizer.tok).save_pretrained(out_dir)


def read(path_or_id: str) -> tuple[dict, dict, dict, object]:
    """A ClapModel directory or hub id -> (our state_dict, our model config, text config, tokenizer)."""
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    try:
        hf = ClapModel.from_pretrained(path_or_id)
        tok = AutoTokenizer.from_pretrained(path_or_id)
        try:
            extractor = ClapFeatureExtractor.get_feature_extractor_dict(path_or_id)[0]
        except OSError:  # a folder saved without its processor: LAION's front end, as its checkpoints use
            extractor = None
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load the Hugging Face CLAP model {path_or_id!r}: {e}. A hub id needs network access "
            "(unset HF_HUB_OFFLINE); without it, pass a local directory (e.g. from `huggingface-cli download`)."
        ) from None
    try:
        cfg, text = model_config(hf.config, extractor)
    except ValueError as e:
        raise ValueError(f"{path_or_id}: {e}") from None
    sd, _ = from_hf(hf.state_dict())
    return sd, cfg, text, tok
