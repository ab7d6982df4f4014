"""Loading our own checkpoints safely (`weights_only=True`): the model for users, weights for fine-tuning."""

from __future__ import annotations

import os

import torch

from clap_train.model import CLAP, build_model

PREFIXES = ("model.", "module.", "_orig_mod.")


def read_checkpoint(path: str, map_location="cpu", mmap: bool = False) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # the refusal names the global that is not allowed
        raise RuntimeError(f"{path} cannot be loaded safely (weights_only=True): {e}") from None


def strip_prefixes(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def load_model(path: str, map_location="cpu") -> CLAP:
    """A clap_train checkpoint -> CLAP in eval mode, rebuilt from the config and tokenizer it carries."""
    ck = read_checkpoint(path, map_location)
    hp = ck.get("hyper_parameters") or {}
    if "model_cfg" not in hp or "text_assets" not in ck:
        raise ValueError(f"{path} is not a clap_train checkpoint (no model_cfg/text_assets)")
    model = build_model(hp["model_cfg"], ck["text_assets"])
    missing, unexpected = model.load_state_dict(strip_prefixes(ck["state_dict"]), strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: state_dict does not match its config: missing={missing[:5]} "
                         f"unexpected={unexpected[:5]}")
    return model.to(map_location).eval()


def check_compatible(ck: dict, model: CLAP, path: str) -> None:
    """A checkpoint trained at another sample rate, or with another tokenizer, cannot be continued."""
    hp = (ck.get("hyper_parameters") or {}).get("model_cfg") or {}
    sr = (hp.get("frontend") or {}).get("sample_rate")
    if sr is not None and int(sr) != model.sample_rate:
        raise ValueError(f"{path} was trained at {sr} Hz but this run's model is at {model.sample_rate} Hz "
                         f"(data.audio.sample_rate); set data.audio.sample_rate={sr}")
    vocab = ((ck.get("text_assets") or {}).get("config") or {}).get("vocab_size")
    ours = model.text_branch.model.config.vocab_size
    if vocab is not None and int(vocab) != ours:
        raise ValueError(f"{path} has a text tower with a {vocab}-token vocabulary but text_encoder has {ours}: "
                         "the tokenizer does not match; use the checkpoint's text_encoder")


def init_weights(model: CLAP, path: str, log=print) -> None:
    """`init_from=`: weights only (no optimiser, step or data state) for fine-tuning."""
    ck = read_checkpoint(path)
    check_compatible(ck, model, path)
    sd = strip_prefixes(ck.get("state_dict", ck))
    own = model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    shape_mismatch = [k for k in sd if k in own and own[k].shape != sd[k].shape]
    missing = [k for k in own if k not in usable]
    unexpected = [k for k in sd if k not in own]
    if not usable:
        raise ValueError(f"init_from={path}: no parameter matches this model ({len(unexpected)} unexpected keys)")
    model.load_state_dict(usable, strict=False)
    log(f"init_from={path}: loaded {len(usable)} tensors; missing {len(missing)}, unexpected {len(unexpected)}, "
        f"shape mismatch {len(shape_mismatch)}" + (f" (e.g. {(missing + unexpected + shape_mismatch)[:3]})"
                                                     if missing or unexpected or shape_mismatch else ""))
