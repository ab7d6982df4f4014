"""IterableDatasets: the training stream (stateful, equal length on every rank) and finite eval streams."""

from __future__ import annotations

import torch
from torch.utils.data import IterableDataset, get_worker_info

from clap_train.data.collate import Tokenize, collate_eval, collate_train
from clap_train.data.decode import AudioSpec
from clap_train.data.position import StreamPosition
from clap_train.data.shards import read_sizes
from clap_train.data.skips import BadSample, SkipCounter
from clap_train.data.stream import MixtureStream, SourceSpec, SourceStream, StreamOpts, decode_sample, read_shard


class TrainStream(IterableDataset):
    """Yields whole per-rank batches (one per optimiser step).

    Batch K (counted per rank since the start of training) comes from virtual slot K mod V, where V is
    the number of loader workers. The train loader sets `start` (its StreamPosition, read-only here) before
    each epoch's iterator is made; each batch carries `_data_state`, its slot's stream state right after
    it, which the loader records when the batch is actually trained on.
    """

    def __init__(
        self,
        sources: list[SourceSpec],
        audio: AudioSpec,
        opts: StreamOpts,
        batch_size: int,
        steps_per_epoch: int,
        rank: int,
        world: int,
        n_slots: int,
        tokenize: Tokenize,
    ):
        self.sources = [s for s in sources if s.weight > 0]
        self.audio, self.opts, self.batch_size = audio, opts, batch_size
        self.steps_per_epoch, self.rank, self.world, self.n_slots = steps_per_epoch, rank, world, n_slots
        self.tokenize = tokenize
        self.start = StreamPosition()
        # a persistent worker's own end of its last epoch: where it continues when the loader reuses it
        # (only then: the loader starts fresh workers, from `start`, whenever the slots would not line up)
        self._resume: StreamPosition | None = None

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _slot_stream(self, v: int, state: dict | None, carry: dict):
        state = state or {}
        skips = SkipCounter()
        skips.load(state.get("skips"))
        streams = [
            SourceStream(
                s,
                self.audio,
                self.opts,
                self.rank,
                self.world,
                v,
                self.n_slots,
                skips,
                state.get("sources", {}).get(s.name),
                carry.get(s.name),
            )
            for s in self.sources
        ]
        mix = MixtureStream(
            streams, [s.weight for s in self.sources], self.opts.seed, streams[0].gslot, state.get("mix", 0)
        )
        return mix, streams, skips

    def __iter__(self):
        info = get_worker_info()
        w, n_workers = (info.id, info.num_workers) if info else (0, 1)
        if n_workers != self.n_slots:
            raise RuntimeError(f"TrainStream built for {self.n_slots} workers, run with {n_workers}")
        pos = self._resume if info is not None and self._resume is not None else self.start
        k0 = pos.batches
        end = (k0 // self.steps_per_epoch + 1) * self.steps_per_epoch
        v = (k0 + w) % self.n_slots
        state = pos.slots.get(v)
        mix, streams, skips = self._slot_stream(v, state, pos.carry)
        for k in range(k0 + w, end, self.n_slots):
            samples = [next(mix) for _ in range(self.batch_size)]
            batch = collate_train(samples, self.tokenize, self.audio.transport)
            state = {"mix": mix.m, "sources": {s.src.name: s.state() for s in streams}, "skips": skips.state()}
            batch["_data_state"] = {"batch": k, "slot": v, "state": state}
            yield batch
        self._resume = StreamPosition(end, {v: state} if state else {}, pos.carry)


class EvalStream(IterableDataset):
    """Every sample of an eval source once: shards split by rank, then by worker; deterministic crops."""

    def __init__(
        self,
        source: SourceSpec,
        audio: AudioSpec,
        opts: StreamOpts,
        batch_size: int,
        rank: int,
        world: int,
        tokenize: Tokenize,
    ):
        self.source, self.audio, self.opts, self.batch_size = source, audio, opts, batch_size
        self.rank, self.world, self.tokenize = rank, world, tokenize
        self.skips = SkipCounter()
        self.n_batches: int | None = None

    def count_batches(self, n_workers: int) -> None:
        """The batches this rank's `n_workers` loader workers yield, from sizes.json (progress bars show
        `k/n`, not `k/?`). An upper bound: skipped samples only shorten the last batches. Left unknown
        when some shard has no count (remote shards), so no sample is ever cut off. At least 1: a rank
        whose share is empty must still run the evaluation loop (its end gathers from every rank)."""
        sizes = read_sizes(self.source.shards)
        if sizes is None:
            return
        mine = self.source.shards[self.rank :: self.world]
        per_worker = [sum(sizes[s] for s in mine[w::n_workers]) for w in range(max(1, n_workers))]
        self.n_batches = max(1, sum(-(-n // self.batch_size) for n in per_worker))

    def __len__(self) -> int:
        if self.n_batches is None:
            raise TypeError("this eval stream's length is unknown (no sizes.json)")
        return self.n_batches

    def __iter__(self):
        info = get_worker_info()
        w, n_workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.source.shards[self.rank :: self.world][w::n_workers]
        buf: list[dict] = []
        for url in mine:
            for raw in read_shard(url, self.skips, self.opts.max_member_bytes):
                try:
                    buf.append(decode_sample(raw, self.source, self.audio, False, None))
                except BadSample as e:
                    self.skips.skip(e.reason, f"{url}:{raw['__key__']}", e.detail)
                    continue
                if len(buf) == self.batch_size:
                    yield collate_eval(buf, self.tokenize, self.audio.transport)
                    buf = []
        if buf:
            yield collate_eval(buf, self.tokenize, self.audio.transport)


def worker_init(_):
    # Two cores shared by the trainer and the loaders: each worker decodes on one thread.
    torch.set_num_threads(1)
