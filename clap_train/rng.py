"""Random state: the torch generators a checkpoint saves and a GradCache re-forward replays, and the named
domains of the data pipeline's position-seeded draws (one stream per kind of choice, so adding draws of
one kind never shifts another)."""

from __future__ import annotations

import enum
import random

import numpy as np
import torch


class Domain(enum.IntEnum):
    SHARD_ORDER = 1  # a pass's permutation of a source's shards
    SHARD_DRAW = 2  # with resampling: the shard a slot reads next
    SHUFFLE = 3  # the order of samples within a group of shards
    SAMPLE = 4  # one sample's crop and caption choice
    MIXTURE = 5  # which source the next sample comes from


def rng_for(seed: int, domain: int, *position: int) -> np.random.Generator:
    """The generator of one draw: from the seed, the domain and the draw's position (ints), nothing else.

    The integers keep the layout of the first release (a data domain after the position, the mixture's
    before it), so every data order, and the exact resume of a run started with an earlier version, is
    unchanged. Any other int is a domain of its own placed first (the synthetic set's ids)."""
    d = int(domain)
    parts = (seed, *position, d) if d in _AFTER_POSITION else (seed, d, *position)
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


_AFTER_POSITION = {Domain.SHARD_ORDER, Domain.SHARD_DRAW, Domain.SHUFFLE, Domain.SAMPLE}


def torch_rng_state() -> dict:
    st = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def set_torch_rng_state(st: dict) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"])


def gather_rng_states() -> list[dict]:
    """Every rank's torch and Python RNG states (tensors and tuples of ints: weights_only-safe). Each rank
    needs its own back: dropout draws as many numbers as its tensors have elements, and text batches are
    padded per rank, so the ranks' generators drift apart."""
    from clap_train.distributed import gather_objects

    return gather_objects({**torch_rng_state(), "python": random.getstate()}, "the RNG states")


def own_rng_state(checkpoint: dict, rank: int, world: int) -> dict | None:
    """This rank's saved state (rank 0's when the world size changed, or from an older checkpoint)."""
    per_rank = checkpoint.get("rng_per_rank") or []
    return per_rank[rank] if len(per_rank) == world else checkpoint.get("rng")


def restore_rng_state(st: dict) -> None:
    set_torch_rng_state(st)
    random.setstate(st["python"])
