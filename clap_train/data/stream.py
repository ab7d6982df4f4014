"""Per-slot sample streams with an exact, cheap-to-restore position.

A *slot* is one (rank, virtual worker) reader. Each source's stream for a slot is an infinite sequence
of shards (`ShardPlan`), read in groups of `group_shards` shards; the samples of a group go through a
shuffle buffer bounded in samples and bytes, which is drained at the group's end. The position is
therefore `(group, emitted, read)`: resuming re-reads at most one group of raw tar members, without
decoding them. Crop offsets and caption choices come from a generator seeded by the sample's position,
so they replay exactly too. Sources are mixed per sample by weight with a position-seeded choice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from clap_train.data.decode import AudioSpec, decode_audio, decode_captions, find_audio
from clap_train.data.shards import ShardPlan, TransientReadError, open_shard, stable_id
from clap_train.data.skips import BadSample, SkipCounter
from clap_train.data.tar_reader import DEFAULT_EXTS, iter_tar_samples
from clap_train.rng import Domain, rng_for

log = logging.getLogger("clap_train.data")


@dataclass
class SourceSpec:
    """One shard set in a mixture (a `data.sources.<name>` entry)."""

    name: str
    shards: list[str]
    weight: float = 1.0
    caption_key: str | list[str] = "text"
    tag_key: str = "tag"
    tag_templates: list[str] = field(default_factory=list)
    resample: bool | str = False  # "auto" until the datamodule knows the readers


@dataclass
class StreamOpts:
    seed: int = 0
    group_shards: int = 4
    buffer_samples: int = 512
    buffer_bytes: int = 256 << 20
    max_member_bytes: int = 64 << 20
    max_consecutive_bad: int = 1000
    max_bad_fraction: float = 0.5  # of a slot's samples, checked once `min_samples_for_fraction` were read
    min_samples_for_fraction: int = 500


def _nbytes(sample: dict) -> int:
    return sum(len(v) for k, v in sample.items() if isinstance(v, bytes))


def read_shard(url: str, skips: SkipCounter, max_member_bytes: int) -> Iterator[dict]:
    try:
        f = open_shard(url)
    except TransientReadError as e:
        skips.skip("shard_read_error", url, str(e)[:120])
        return
    except OSError as e:
        skips.skip("shard_unreadable", url, str(e)[:120])
        return
    with f:
        yield from iter_tar_samples(f, url, skips, DEFAULT_EXTS, max_member_bytes)


def decode_sample(raw: dict, src: SourceSpec, audio: AudioSpec, train: bool, rng: np.random.Generator | None) -> dict:
    ext, data = find_audio(raw)
    captions, tags = decode_captions(raw, src.caption_key, src.tag_key, src.tag_templates or None)
    # (the fusion towers' "longer" flag is the model's to compute, from audio_len: audio/fusion.py)
    wav, n, _ = decode_audio(data, audio, audio.train_crop if train else audio.eval_crop, rng, ext)
    out = {"audio": wav, "audio_len": n, "key": raw["__key__"], "tags": tags, "source": src.name}
    if train:
        out["caption"] = captions[int(rng.integers(len(captions)))]
    else:
        out["captions"] = captions
    return out


class SourceStream:
    """Decoded training samples of one source for one slot, restartable from `state()`."""

    def __init__(
        self,
        src: SourceSpec,
        audio: AudioSpec,
        opts: StreamOpts,
        rank: int,
        world: int,
        slot: int,
        n_slots: int,
        skips: SkipCounter,
        state: dict | None = None,
        carry: dict | None = None,
    ):
        self.src, self.audio, self.opts, self.skips = src, audio, opts, skips
        self.sid = stable_id(src.name)
        self.plan = ShardPlan(src.shards, opts.seed, self.sid, rank, world, slot, n_slots, src.resample, carry)
        self.gslot = self.plan.gslot
        st = state or {}
        self.group, self.emitted, self.read = st.get("group", 0), st.get("emitted", 0), st.get("read", 0)
        self._it = self._samples()

    def state(self) -> dict:
        return {"group": self.group, "emitted": self.emitted, "read": self.read}

    def _raw_group(self, g: int, mute_reads: int) -> Iterator[dict]:
        """Raw samples of group g in shuffled order; tar-level skips are muted for the first reads."""
        rng = rng_for(self.opts.seed, Domain.SHUFFLE, self.sid, self.gslot, g)
        buf: list[dict] = []
        nbytes = 0
        read = 0
        self.skips.muted = mute_reads > 0

        def pop():
            nonlocal nbytes
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            s = buf.pop()
            nbytes -= s["__nbytes__"]
            s["__read__"] = read  # raw samples read from the group when this one leaves the buffer
            return s

        G = self.opts.group_shards
        for i in range(g * G, (g + 1) * G):
            for s in read_shard(self.plan.shard(i), self.skips, self.opts.max_member_bytes):
                read += 1
                if read >= mute_reads:
                    self.skips.muted = False
                s["__nbytes__"] = _nbytes(s)
                buf.append(s)
                nbytes += s["__nbytes__"]
                while len(buf) > self.opts.buffer_samples or nbytes > self.opts.buffer_bytes:
                    yield pop()
        self.skips.muted = False
        while buf:
            yield pop()

    def _check_fraction(self, good: int, bad: int) -> None:
        n = good + bad
        if n >= self.opts.min_samples_for_fraction and bad > self.opts.max_bad_fraction * n:
            raise RuntimeError(
                f"source {self.src.name!r}: {bad} of the last {n} samples were unusable (more than "
                f"data.stream.max_bad_fraction={self.opts.max_bad_fraction}); skips: {dict(self.skips.counts)}"
            )

    def _samples(self) -> Iterator[dict]:
        bad_run, empty_groups, good, bad = 0, 0, 0, 0
        while True:
            g, skip_n, mute = self.group, self.emitted, self.read
            got = False
            for idx, raw in enumerate(self._raw_group(g, mute)):
                got = True
                if idx < skip_n:  # fast-forward after a resume: no decoding
                    continue
                self.emitted, self.read = idx + 1, raw["__read__"]
                rng = rng_for(self.opts.seed, Domain.SAMPLE, self.sid, self.gslot, g, idx)
                try:
                    if raw.get("__dup__"):
                        raise BadSample("duplicate_key")
                    sample = decode_sample(raw, self.src, self.audio, True, rng)
                except BadSample as e:
                    self.skips.skip(e.reason, f"{raw['__shard__']}:{raw['__key__']}", e.detail)
                    bad_run += 1
                    bad += 1
                    self._check_fraction(good, bad)
                    if bad_run >= self.opts.max_consecutive_bad:
                        raise RuntimeError(
                            f"source {self.src.name!r}: the last {bad_run} samples were all unusable "
                            f"(skips so far: {dict(self.skips.counts)}); check data.sources.{self.src.name} "
                            "(shards, caption_key) and the audio files"
                        ) from None
                    continue
                bad_run = 0
                good += 1
                if good + bad >= 4 * self.opts.min_samples_for_fraction:  # a sliding-ish window
                    good, bad = good // 2, bad // 2
                yield sample
            empty_groups = 0 if got else empty_groups + 1
            if empty_groups >= max(8, len(self.src.shards)):
                raise RuntimeError(
                    f"source {self.src.name!r}: {empty_groups} shard groups in a row held no readable sample "
                    f"(skips: {dict(self.skips.counts)})"
                )
            self.group, self.emitted, self.read = g + 1, 0, 0

    def __next__(self) -> dict:
        return next(self._it)


class MixtureStream:
    """Per-sample weighted choice among sources; the choice for position m is seeded by (seed, slot, m)."""

    def __init__(self, streams: list[SourceStream], weights: list[float], seed: int, gslot: int, m: int = 0):
        w = np.asarray(weights, dtype=np.float64)
        if len(streams) == 0 or (w < 0).any() or w.sum() <= 0:
            raise ValueError("a mixture needs at least one source with a positive weight")
        self.streams, self.cdf, self.seed, self.gslot, self.m = streams, np.cumsum(w / w.sum()), seed, gslot, m

    def __next__(self) -> dict:
        if len(self.streams) == 1:
            j = 0
        else:
            u = rng_for(self.seed, Domain.MIXTURE, self.gslot, self.m).random()
            j = min(int(np.searchsorted(self.cdf, u, side="right")), len(self.streams) - 1)
        self.m += 1
        return next(self.streams[j])
