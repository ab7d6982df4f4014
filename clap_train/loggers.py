"""Logger factories for config groups. wandb goes offline by itself when there is no API key."""

from __future__ import annotations

import hashlib
import os


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    try:
        with open(netrc) as f:
            return "api.wandb.ai" in f.read()
    except OSError:
        return False


def run_id(name: str, run_dir: str) -> str:
    """Deterministic: a requeued job logs into the same wandb run."""
    return hashlib.sha1(f"{name}:{os.path.abspath(run_dir)}".encode()).hexdigest()[:12]


def wandb_logger(project: str, name: str, save_dir: str, offline: bool | None = None, **kw):
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not _wandb_has_key()
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline,
                       id=run_id(name, save_dir), resume="allow", **kw)
