"""Random state: the torch generators a checkpoint saves and a GradCache re-forward replays, and the named
domains of the data pipeline's position-seeded draws (one stream per kind of choice, so adding draws of
one kind never shifts another)."""

from __future__ import annotations

import enum

import numpy as np
import torch


class Domain(enum.IntEnum):
    SHARD_ORDER = 1  # a pass's permutation of a source's shards
    SHARD_DRAW = 2  # with resampling: the shard a slot reads next
    SHUFFLE = 3  # the order of samples within a group of shards
    SAMPLE = 4  # one sample's crop and caption choice
    MIXTURE = 5  # which source the next sample comes from


def rng_for(seed: int, domain: Domain, *position: int) -> np.random.Generator:
    """The generator of one draw: from the seed, the domain and the draw's position (ints), nothing else."""
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in (seed, domain, *position)])


def torch_rng_state() -> dict:
    st = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def set_torch_rng_state(st: dict) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"])
