"""Small model configs and a bare Lightning trainer shared by the tests, scripts/bench.py and
scripts/gpu_check.py, so all three build the same geometry and drive the same kind of fit."""

from __future__ import annotations

from clap_train.audio.frontend import LAION_FRONTEND

# A two-stage HTS-AT (16-d, 2+2 blocks) in the real 256x256 geometry: seconds per step on a CPU.
SMALL_HTSAT = {
    "_target_": "clap_train.audio.htsat.build_htsat",
    "name": None,
    "embed_dim": 16,
    "depths": [2, 2],
    "num_heads": [2, 4],
    "window_size": 8,
    "drop_path_rate": 0.0,
}


def clap_cfg(text_dir: str, audio_encoder: dict, embed_dim: int = 512, **model) -> dict:
    """A model config at 10 s / 48 kHz with LAION's log-mel, mean pooling and a pooler-pooled text tower read
    from `text_dir` with random weights; `model` adds or replaces top-level keys."""
    return {
        "embed_dim": embed_dim,
        "clip_seconds": 10.0,
        "frontend": dict(LAION_FRONTEND),
        "audio_encoder": audio_encoder,
        "pooling": {"name": "mean"},
        "text_encoder": {"name_or_path": text_dir, "pretrained": False, "pooling": "pooler", "max_length": 77},
        **model,
    }


def repeat_loader(batch, n: int):
    """A loader yielding the same ready-made batch n times (Lightning reads a plain list as n loaders)."""
    from torch.utils.data import DataLoader, IterableDataset

    class Same(IterableDataset):
        def __iter__(self):
            return iter([batch] * n)

    return DataLoader(Same(), batch_size=None)


def bare_trainer(**kwargs):
    """A Lightning Trainer with no logger, checkpoints, progress bar or summary: for fits whose result is read
    from the module or from callbacks. `kwargs` go to the Trainer (steps, devices, precision, callbacks...)."""
    import lightning as L

    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def run_train_py(args, cwd, env: dict, timeout: int):
    """`python train.py args...` from this source checkout, run in `cwd` as a user launches it (output captured;
    the caller reads returncode)."""
    import os
    import subprocess
    import sys

    train_py = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train.py")
    return subprocess.run(
        [sys.executable, train_py, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
