"""Finding, validating and pruning checkpoint files in a run directory."""

from __future__ import annotations

import logging
import os
import re
import shutil

import torch

from clap_train.checkpoints.integrity import damaged

log = logging.getLogger("clap_train")
_STEP = re.compile(r"step(\d+)\.ckpt$")
_valid_cache: dict[tuple[str, float, int], bool] = {}


def checkpoint_file(path: str) -> str:
    """The file holding a checkpoint's metadata: the path itself, or inside a DeepSpeed checkpoint folder
    (`<path>/<tag in latest>/`) rank 0's model-states file, which Lightning's client state (global step,
    loops, callbacks) travels in. DeepSpeed writes `latest` last: a folder without it is incomplete."""
    if not os.path.isdir(path):
        return path
    try:
        with open(os.path.join(path, "latest")) as f:
            tag = f.read().strip()
    except OSError:
        return os.path.join(path, "latest")  # missing: not valid
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if os.path.exists(os.path.join(path, tag, name)):
            return os.path.join(path, tag, name)
    return os.path.join(path, tag, "mp_rank_00_model_states.pt")


def is_valid(path: str) -> bool:
    """Loads (memory-mapped, weights only), matches its sealed digest and has the keys a resume needs.
    Cached per (path, mtime, size)."""
    path = checkpoint_file(path)
    try:
        st = os.stat(path)
    except OSError:
        return False
    key = (path, st.st_mtime, st.st_size)
    if key not in _valid_cache:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            _valid_cache[key] = (
                isinstance(ck, dict)
                and ("state_dict" in ck or "module" in ck)
                and "global_step" in ck
                and not damaged(ck)
            )
        except Exception:
            _valid_cache[key] = False
    return _valid_cache[key]


def step_files(ckpt_dir: str) -> list[str]:
    """`step*.ckpt` files, newest step first."""
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        return []
    found = [(int(m.group(1)), n) for n in names if (m := _STEP.search(n))]
    return [os.path.join(ckpt_dir, n) for _, n in sorted(found, reverse=True)]


def newest_valid(ckpt_dir: str) -> str | None:
    """The checkpoint to resume from: last.ckpt or the newest step file that loads; broken ones are
    reported and passed over (a half-written or corrupted file never stops a requeued job)."""
    candidates = [os.path.join(ckpt_dir, "last.ckpt")] + step_files(ckpt_dir)
    candidates = [c for c in candidates if os.path.exists(c)]
    candidates.sort(key=lambda p: os.path.getmtime(checkpoint_file(p)) if is_valid(p) else 0.0, reverse=True)
    for c in candidates:
        if is_valid(c):
            return c
        log.warning("checkpoint %s is corrupted or incomplete; trying an older one", c)
    return None


def prune(ckpt_dir: str, keep_last: int) -> list[str]:
    """Delete all but the newest `keep_last` step checkpoints, never the newest valid one."""
    files = step_files(ckpt_dir)
    if keep_last <= 0 or len(files) <= keep_last:
        return []
    keep = set(files[:keep_last])
    if not any(is_valid(f) for f in files[:keep_last]):
        keep |= {next((f for f in files[keep_last:] if is_valid(f)), files[0])}
    removed = [f for f in files if f not in keep]
    for f in removed:
        shutil.rmtree(f) if os.path.isdir(f) else os.remove(f)  # DeepSpeed checkpoints are folders
    return removed
