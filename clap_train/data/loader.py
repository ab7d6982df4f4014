"""The training DataLoader that owns the data position: Lightning saves and restores it with the trainer
state (the `_Stateful` protocol), so a resumed run reads exactly the batches an uninterrupted one would."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from clap_train.config import ConfigError
from clap_train.data.datasets import TrainStream, worker_init
from clap_train.data.position import StreamPosition
from clap_train.distributed import gather_objects


class TrainLoader(DataLoader):
    """A DataLoader whose position (`position`, the one owner of it) Lightning saves and restores (the
    `_Stateful` protocol)."""

    def __init__(self, dataset: TrainStream, **kw):
        super().__init__(dataset, batch_size=None, **kw)
        self.n_slots = dataset.n_slots
        self.position = StreamPosition()

    def __iter__(self):
        k0, spe = self.position.batches, self.dataset.steps_per_epoch
        if self._iterator is not None and not self._workers_continue(k0):
            self._iterator._shutdown_workers()  # persistent workers that would serve other slots: new ones
            self._iterator = None
        self._iter_span = (k0, (k0 // spe + 1) * spe)
        self.dataset.start = self.position  # read when (fresh) workers start this epoch
        return super().__iter__()

    def _workers_continue(self, k0: int) -> bool:
        """Persistent workers carry their own slot's position into the next epoch; that is right only when
        the last epoch ran to its end and a worker's slot ((k0 + worker) mod workers) is unchanged."""
        start, end = getattr(self, "_iter_span", (None, None))
        return k0 == end and (end - start) % self.n_slots == 0

    def record(self, ds: dict) -> None:
        """A batch was trained on: the position moves past it (its `_data_state`)."""
        self.position = self.position.after(ds["batch"], ds["slot"], ds["state"])

    def state_dict(self) -> dict:
        """Every rank's slot positions (a checkpoint is written by rank 0 but each rank reads its own
        shards, so each needs its own position back): gathered when running distributed."""
        ranks = gather_objects({str(k): v for k, v in self.position.slots.items()}, "the loader positions")
        return {
            "batches": self.position.batches,
            "slots": ranks[0],
            "rank_slots": ranks,
            "n_slots": self.n_slots,
            "world": self.dataset.world,
            "carry": self.position.carry,
        }

    def load_state_dict(self, sd: dict) -> None:
        same = sd.get("n_slots") == self.n_slots and sd.get("world") == self.dataset.world
        batches = int(sd.get("batches", 0))
        if same:
            slots = sd["rank_slots"][self.dataset.rank] if "rank_slots" in sd else sd.get("slots", {})
            self.position = StreamPosition(batches, {int(k): v for k, v in slots.items()}, dict(sd.get("carry") or {}))
            return
        warnings.warn(
            f"resuming with {self.dataset.world} rank(s) x {self.n_slots} worker(s) where the checkpoint had "
            f"{sd.get('world')} x {sd.get('n_slots')}: the step count continues and the shards not yet read in "
            "the current pass are shared out among the new readers (none is read twice), but the data order "
            "is not that of an uninterrupted run",
            stacklevel=2,
        )
        self.position = StreamPosition(batches, {}, self._carry_over(sd))

    def _carry_over(self, sd: dict) -> dict:
        from clap_train.data.shards import carry_over, stable_id

        old_world, old_slots = int(sd.get("world") or 1), int(sd.get("n_slots") or 1)
        rank_slots = sd.get("rank_slots") or [sd.get("slots", {})]
        if len(rank_slots) != old_world:  # an older checkpoint with rank 0's positions only
            return {}
        G = self.dataset.opts.group_shards
        carry = {}
        for src in self.dataset.sources:
            if src.resample:
                continue
            started = {}
            for r, slots in enumerate(rank_slots):
                for v, st in slots.items():
                    pos = (st.get("sources") or {}).get(src.name) or {}
                    g = int(pos.get("group", 0))
                    begun = pos.get("emitted", 0) or pos.get("read", 0)
                    started[r * old_slots + int(v)] = (g + (1 if begun else 0)) * G
            carry[src.name] = carry_over(
                src.shards,
                self.dataset.opts.seed,
                stable_id(src.name),
                old_world,
                old_slots,
                started,
                (sd.get("carry") or {}).get(src.name),
            )
        return carry

    def skip_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for st in self.position.slots.values():
            for k, v in st.get("skips", {}).items():
                total[k] = total.get(k, 0) + v
        return total


MP_CONTEXTS = ("auto", None, "fork", "spawn", "forkserver")


@dataclass(frozen=True)
class LoaderOptions:
    """The DataLoader settings of `data.*`, checked when built; `auto` resolves to where the run trains:
    pinned memory and forkserver workers that live across epochs on a GPU, plain forked workers on CPU
    (pinning there only costs a copy)."""

    pin_memory: bool | str = "auto"
    persistent_workers: bool | str = "auto"
    multiprocessing_context: str | None = "auto"
    prefetch_factor: int = 2

    def __post_init__(self):
        for key in ("pin_memory", "persistent_workers"):
            v = getattr(self, key)
            if not isinstance(v, bool) and v != "auto":
                raise ConfigError(f"data.{key}={v!r}; valid choices: true, false, auto (on for GPU runs)")
        if self.multiprocessing_context not in MP_CONTEXTS:
            raise ConfigError(
                f"data.multiprocessing_context={self.multiprocessing_context!r}; valid choices: "
                f"{', '.join(str(c) for c in MP_CONTEXTS)} (auto: forkserver on GPU)"
            )
        pf = self.prefetch_factor
        if isinstance(pf, bool) or not isinstance(pf, int) or pf < 1:
            raise ConfigError(f"data.prefetch_factor={pf!r}: must be a whole number >= 1")

    def resolve(self, gpu: bool) -> tuple[bool, bool, str | None]:
        """(pin_memory, persistent_workers, multiprocessing context) for a GPU or a CPU run."""
        mp = self.multiprocessing_context
        return (
            gpu if self.pin_memory == "auto" else self.pin_memory,
            gpu if self.persistent_workers == "auto" else self.persistent_workers,
            ("forkserver" if gpu else None) if mp == "auto" else mp,
        )


def loader_kwargs(workers: int, seed: int, prefetch_factor: int, resolved: tuple) -> dict:
    """DataLoader keywords. Our streams seed themselves; a private generator keeps DataLoader from drawing
    its worker base seed from the global torch RNG, so creating loaders (e.g. for validation) never shifts
    the training RNG (dropout, SpecAugment) and a resume at any step replays it exactly."""
    pin, persistent, mp = resolved
    kw: dict[str, Any] = {"num_workers": workers, "pin_memory": pin, "generator": torch.Generator().manual_seed(seed)}
    if workers:
        kw.update(
            worker_init_fn=worker_init,
            prefetch_factor=prefetch_factor,
            multiprocessing_context=mp,
            persistent_workers=persistent,
        )
    return kw
