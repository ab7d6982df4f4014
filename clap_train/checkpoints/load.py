"""Loading checkpoints safely (`weights_only=True`): ours, LAION-CLAP `.pt` files and Hugging Face CLAP
directories, as a model for users or as weights for fine-tuning."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import torch

from clap_train.checkpoints.files import checkpoint_file
from clap_train.checkpoints.integrity import damaged
from clap_train.model import CLAP, build_model

PREFIXES = ("model.", "module.", "_orig_mod.")


def numpy_safe_globals() -> list:
    """numpy scalars and dtypes, as LAION's released .pt files carry them (numpy 1 and 2 spellings).
    They rebuild plain numbers and dtypes only, so they are safe under weights_only."""
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    dtypes = {
        type(np.dtype(t))
        for t in (
            "float16",
            "float32",
            "float64",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "bool",
            "complex64",
            "complex128",
        )
    }
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


class UntrustedCheckpoint(RuntimeError):
    pass


class DamagedCheckpoint(ValueError):
    """A file torch cannot read as a checkpoint at all (cut short, overwritten, or another kind of file)."""


def read_checkpoint(
    path: str, map_location="cpu", mmap: bool = False, trust: bool = False, verify: bool = True
) -> dict:
    """torch.load with weights_only=True (plus numpy scalars). A file that needs more than that is
    refused with the name of the global it wanted, unless `trust` (trust_checkpoint=true) is given. With
    `verify`, a sealed file whose contents changed is refused (checkpoints/integrity.py)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):  # a DeepSpeed checkpoint folder: rank 0's model states carry the metadata
        ck = read_checkpoint(checkpoint_file(path), map_location, mmap, trust, verify)
        if "module" in ck and "state_dict" not in ck:
            if "ds_config" in ck and (ck["ds_config"].get("zero_optimization") or {}).get("stage") == 3:
                ck["state_dict"] = {}  # partitioned: only DeepSpeed itself (resume) or its zero_to_fp32.py
            else:
                ck["state_dict"] = ck.pop("module")
        return ck
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            ck = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        if not isinstance(e, pickle.UnpicklingError) and "Weights only load failed" not in str(e):
            why = str(e).split(". ")[0] if str(e).strip() and not str(e).strip().isdigit() else type(e).__name__
            raise DamagedCheckpoint(
                f"{path} is not a readable checkpoint ({os.path.getsize(path)} bytes; torch.load: {why}): "
                "cut short, damaged or not a checkpoint file"
            ) from None
        wanted = _refused_global(str(e))
        if not trust:
            raise UntrustedCheckpoint(
                f"{path} needs full pickle to load ({wanted or 'a global outside the allow-list'}), which can run "
                "arbitrary code from the file. If you trust its source, pass trust_checkpoint=true "
                "(--trust-checkpoint); better, do that once in a sandbox, save its state_dict (or "
                "safetensors) and use that file, which loads safely."
            ) from None
    else:
        if verify and isinstance(ck, dict) and damaged(ck):
            raise DamagedCheckpoint(
                f"{path} is damaged: its contents do not match the digest written with it (bytes changed on "
                "disk or in transfer); use another checkpoint or copy it again"
            )
        return ck
    import warnings

    warnings.warn(
        f"loading {path} with full pickle (trust_checkpoint=true): it can run code from the file", stacklevel=2
    )
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
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


@dataclass
class Imported:
    """Weights in our names, whatever the file's format, plus what is known of the model they fit."""

    state_dict: dict
    origin: str  # "clap_train" | "laion" | "hf"
    model_cfg: dict | None = None  # build_model config (None: unknown)
    text_assets: dict | None = None  # text config + tokenizer files
    text_config: dict | None = None  # text config only (LAION files carry no tokenizer)
    raw: dict = field(default_factory=dict)  # the file's own state_dict (LAION: derived-buffer checks)
    dropped: list = field(default_factory=list)
    ck: dict = field(default_factory=dict)


def _looks_like_hub_id(path: str) -> bool:
    return not os.path.exists(path) and path.count("/") == 1 and not path.endswith((".pt", ".ckpt", ".bin"))


def read_weights(path: str, trust: bool = False, map_location="cpu") -> Imported:
    """Our checkpoints (files, or DeepSpeed folders), LAION-CLAP `.pt` files as released, and Hugging Face
    ClapModel dirs / hub ids."""
    deepspeed_dir = os.path.isfile(os.path.join(path, "latest"))
    if (os.path.isdir(path) and not deepspeed_dir) or _looks_like_hub_id(path):
        from clap_train.checkpoints import hf
        from clap_train.text.tower import make_assets

        sd, cfg, text, tok = hf.read(path)
        return Imported(sd, "hf", cfg, make_assets(text, tok))
    ck = read_checkpoint(path, map_location, trust=trust)
    if deepspeed_dir and not ck["state_dict"]:
        raise ValueError(
            f"{path} is a ZeRO-3 checkpoint: its weights are partitioned over the ranks' files. "
            f"Consolidate them first: python {os.path.join(path, 'zero_to_fp32.py')} {path} OUT_DIR"
        )
    hp = ck.get("hyper_parameters") or {}
    if "model_cfg" in hp and "text_assets" in ck:
        return Imported(strip_prefixes(ck["state_dict"]), "clap_train", hp["model_cfg"], ck["text_assets"], ck=ck)
    raw = strip_prefixes(ck.get("state_dict", ck))
    if not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{path}: not a checkpoint this tool knows (no tensor state_dict)")
    from clap_train.checkpoints import hf, laion

    if laion.is_laion_state(raw):
        sd, dropped = laion.to_ours(raw)
        return Imported(sd, "laion", laion.model_config(raw), None, laion.text_config(raw), raw, dropped, ck)
    if hf.is_hf_state(raw):
        sd, dropped = hf.from_hf(raw)
        return Imported(sd, "hf", dropped=dropped, ck=ck)
    return Imported(raw, "clap_train", ck=ck)


def load_model(path: str, map_location="cpu", trust_checkpoint: bool = False, tokenizer: str | None = None) -> CLAP:
    """Any supported checkpoint -> CLAP in eval mode.

    Ours rebuild from the config and tokenizer they carry; LAION `.pt` files from their keys (HTS-AT
    size, fusion, RoBERTa shapes) plus a RoBERTa tokenizer (`tokenizer`: a local folder or hub id,
    default `roberta-base`); Hugging Face ClapModel directories or hub ids from their config.
    """
    imp = read_weights(path, trust_checkpoint)
    if imp.model_cfg is None:
        raise ValueError(
            f"{path}: a bare state_dict does not say which model it is; load it into a configured "
            "model with init_from= instead"
        )
    assets = imp.text_assets
    if assets is None:  # LAION: shapes known, tokenizer not carried
        from transformers import AutoTokenizer

        from clap_train.text.tower import make_assets, resolve

        name = tokenizer or "roberta-base"
        try:
            tok = AutoTokenizer.from_pretrained(resolve(name))
        except OSError as e:
            why = str(e).strip().splitlines()[0]
            raise FileNotFoundError(
                f"{path} is a LAION-CLAP checkpoint; its text tower needs the {name!r} tokenizer, which could "
                f"not be loaded ({why}). With network access it downloads once; offline, pass tokenizer=<local "
                "roberta-base folder> (--tokenizer)."
            ) from None
        assets = make_assets(imp.text_config, tok)
    model = build_model(imp.model_cfg, assets)
    _report_derived(imp, model, print)
    missing, unexpected = model.load_state_dict(imp.state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} ({imp.origin}): state_dict does not match the model it describes: "
            f"missing={missing[:5]} unexpected={unexpected[:5]}"
        )
    return model.to(map_location).eval()


def _report_derived(imp: Imported, model: CLAP, log) -> None:
    if imp.origin == "laion":
        from clap_train.checkpoints import laion

        for note in laion.check_derived(imp.raw, model):
            log(f"warning: {note}")


def check_compatible(ck: dict, model: CLAP, path: str) -> None:
    """A checkpoint trained at another sample rate, or with another tokenizer, cannot be continued."""
    hp = (ck.get("hyper_parameters") or {}).get("model_cfg") or {}
    sr = (hp.get("frontend") or {}).get("sample_rate")
    if sr is not None and int(sr) != model.sample_rate:
        raise ValueError(
            f"{path} was trained at {sr} Hz but this run's model is at {model.sample_rate} Hz "
            f"(data.audio.sample_rate); set data.audio.sample_rate={sr}"
        )
    vocab = ((ck.get("text_assets") or {}).get("config") or {}).get("vocab_size")
    ours = model.text_branch.model.config.vocab_size
    if vocab is not None and int(vocab) != ours:
        raise ValueError(
            f"{path} has a text tower with a {vocab}-token vocabulary but text_encoder has {ours}: "
            "the tokenizer does not match; use the checkpoint's text_encoder"
        )


def _front_end_differences(cfg: dict, model: CLAP) -> list[tuple[str, object, object]]:
    """(key, the checkpoint's value, this model's) for each input setting the two disagree on."""
    fe, mine = cfg["frontend"], model.frontend
    keys = ("n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "mel_scale")
    out = [(f"model.frontend.{k}", fe[k], getattr(mine, k)) for k in keys if k in fe and fe[k] != getattr(mine, k)]
    for k in ("clip_seconds", "pad"):
        if k in cfg and cfg[k] != getattr(model, k):
            out.append((f"data.audio.{k}", cfg[k], getattr(model, k)))
    return out


def init_weights(
    model: CLAP, path: str, log=print, trust: bool = False, strict: bool = True, imported: Imported | None = None
) -> None:
    """`init_from=`: weights only (no optimiser, step or data state) for fine-tuning, from our checkpoints,
    LAION `.pt` files or Hugging Face ClapModel directories; every key that does not fit is reported, and
    with `strict` (init_from_strict, the default) any such key is an error: a model built with other tower
    sizes would otherwise fine-tune from mostly random weights without a word. `imported`: the file
    already read (read_weights)."""
    imp = imported or read_weights(path, trust)
    if imp.origin == "clap_train" and imp.ck:
        check_compatible(imp.ck, model, path)
    elif imp.model_cfg:  # LAION / Hugging Face: the front end their weights were trained with
        fe = imp.model_cfg["frontend"]
        if int(fe["sample_rate"]) != model.sample_rate:
            raise ValueError(
                f"{path} was trained at {fe['sample_rate']} Hz but this model runs at "
                f"{model.sample_rate} Hz: set data.audio.sample_rate={fe['sample_rate']}"
            )
        for key, theirs, mine in _front_end_differences(imp.model_cfg, model):
            log(f"warning: {path} was trained with {key}={theirs!r}; this run uses {mine!r} (set {key} to match)")
    _report_derived(imp, model, log)
    sd, own = imp.state_dict, model.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    shape_mismatch = [k for k in sd if k in own and own[k].shape != sd[k].shape]
    missing = [k for k in own if k not in usable]
    unexpected = [k for k in sd if k not in own]
    if not usable:
        raise ValueError(f"init_from={path}: no parameter matches this model ({len(unexpected)} unexpected keys)")
    misfit = (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape_mismatch))
    table = "".join(
        f"\n  {kind}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}" for kind, keys in misfit if keys
    )
    summary = (
        f"init_from={path} ({imp.origin}): loaded {len(usable)} tensors; missing {len(missing)}, "
        f"unexpected {len(unexpected)}, shape mismatch {len(shape_mismatch)}"
        + (f"; not used by CLAP: {len(imp.dropped)}" if imp.dropped else "")
    )
    if strict and table:
        raise ValueError(
            f"{summary} - the model's towers differ from the checkpoint's (set the same audio_encoder / "
            f"text_encoder, or init_from_strict=false to load only what fits){table}"
        )
    model.load_state_dict(usable, strict=False)
    log(summary + table)
