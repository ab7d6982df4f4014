"""Loading our own checkpoints safely (`weights_only=True`): the model for users, weights for fine-tuning."""

from __future__ import annotations

import os
import pickle

import torch

from clap_train.model import CLAP, build_model

PREFIXES = ("model.", "module.", "_orig_mod.")


def numpy_safe_globals() -> list:
    """numpy scalars and dtypes, as LAION's released .pt files carry them (numpy 1 and 2 spellings).
    They rebuild plain numbers and dtypes only, so they are safe under weights_only."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = {type(np.dtype(t)) for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                           "uint8", "bool", "complex64", "complex128")}
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


class UntrustedCheckpoint(RuntimeError):
    pass


def read_checkpoint(path: str, map_location="cpu", mmap: bool = False, trust: bool = False) -> dict:
    """torch.load with weights_only=True (plus numpy scalars). A file that needs more than that is
    refused with the name of the global it wanted, unless `trust` (trust_checkpoint=true) is given."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        if not isinstance(e, pickle.UnpicklingError) and "Weights only load failed" not in str(e):
            raise RuntimeError(f"{path} cannot be loaded safely (weights_only=True): {e}") from None
        wanted = _refused_global(str(e))
        if not trust:
            raise UntrustedCheckpoint(
                f"{path} needs full pickle to load ({wanted or 'a global outside the allow-list'}), which can run "
                "arbitrary code from the file. If you trust its source, pass trust_checkpoint=true "
                "(--trust-checkpoint); better, do that once in a sandbox, save its state_dict (or "
                "safetensors) and use that file, which loads safely.") from None
    import warnings

    warnings.warn(f"loading {path} with full pickle (trust_checkpoint=true): it can run code from the file")
    return torch.load(path, map_location=map_location, weights_only=False)


def _refused_global(msg: str) -> str:
    import re

    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg) or re.search(r"global ([\w.]+)", msg)
    return f"global {m.group(1)}" if m else ""


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


def load_model(path: str, map_location="cpu", trust_checkpoint: bool = False) -> CLAP:
    """A clap_train checkpoint -> CLAP in eval mode, rebuilt from the config and tokenizer it carries."""
    ck = read_checkpoint(path, map_location, trust=trust_checkpoint)
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


def init_weights(model: CLAP, path: str, log=print, trust: bool = False) -> None:
    """`init_from=`: weights only (no optimiser, step or data state) for fine-tuning."""
    ck = read_checkpoint(path, trust=trust)
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
