"""Atomic checkpoint writes: a checkpoint file is either the old one or the complete new one."""

from __future__ import annotations

import errno
import os
import shutil

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from clap_train.atomic import atomic_path
from clap_train.checkpoints.integrity import seal


class DiskFull(RuntimeError):
    """A checkpoint did not fit on its disk: the partial file is gone, the older checkpoints are untouched."""


def _payload_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_payload_bytes(v) for v in obj)
    return 0


def _atomic(write, obj, path: str) -> None:
    """write(obj, tmp) + fsync + rename: readers never see a partial file. A full disk (ENOSPC/EDQUOT) is
    one clear DiskFull naming the path, the bytes needed and free, and the newest complete checkpoint."""
    try:
        with atomic_path(path, fsync=True) as tmp:
            write(obj, tmp)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from clap_train.checkpoints.files import newest_valid

        d = os.path.dirname(os.path.abspath(path))
        free, good = shutil.disk_usage(d).free, newest_valid(d)
        raise DiskFull(
            f"no space left for checkpoint {path}: it needs about {_payload_bytes(obj) / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB are free on that disk. "
            + (f"The newest complete checkpoint, {good}, is untouched: " if good else "")
            + "free space (or lower callbacks.keep_last_checkpoints.keep_last) and run the same "
            "command again to resume"
        ) from None


def atomic_save(obj: dict, path: str) -> None:
    """torch.save of a sealed checkpoint through a temp file + fsync + rename: readers never see a
    partial file, and a file damaged later is refused on load (checkpoints/integrity.py)."""
    _atomic(torch.save, seal(obj), path)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        seal(checkpoint)
        _atomic(
            lambda obj, tmp: super(AtomicCheckpointIO, self).save_checkpoint(obj, tmp, storage_options),
            checkpoint,
            str(path),
        )
