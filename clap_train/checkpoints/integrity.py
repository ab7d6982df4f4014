"""A digest sealed into every checkpoint we write, checked on every load: torch reads tensor bytes of a
zip checkpoint without checking them, so a file with bytes zeroed or flipped inside would otherwise load
and train or predict with damaged weights. The digest (SHA-256, ~1.7 GB/s here) covers every tensor
(name, dtype, shape, bytes) and every plain value of the checkpoint, in order."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

KEY = "clap_train_integrity"


def digest(ck: Mapping) -> str:
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in ck.items() if k != KEY})
    return h.hexdigest()


def seal(ck: dict) -> dict:
    """`ck` with its digest under KEY (in place; returned for chaining)."""
    ck[KEY] = {"sha256": digest(ck)}
    return ck


def damaged(ck: Mapping) -> bool:
    """True when `ck` carries a digest that its contents no longer match. Files without one (LAION's,
    DeepSpeed's folders, ours from before the digest) cannot be checked and count as intact."""
    sealed = ck.get(KEY)
    return isinstance(sealed, Mapping) and sealed.get("sha256") != digest(ck)


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()))
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k, v in obj.items():
            h.update(repr(k).encode())
            _feed(h, v)
        h.update(b"}")
    elif isinstance(obj, list | tuple):  # a tuple may come back as a list: the same digest
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, set | frozenset):  # string hashing differs per process: sort
        h.update(repr(sorted(map(repr, obj))).encode())
    elif obj is None or isinstance(obj, str | bytes | int | float | complex | torch.dtype | torch.device):
        h.update(repr(obj).encode())
    else:  # numpy scalars and the like: their value; anything else by type (a repr may hold an address)
        h.update(repr(obj.item() if hasattr(obj, "item") else type(obj).__qualname__).encode())
