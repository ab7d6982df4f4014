"""Shard listing, per-slot shard plans and robust opening of local or remote shards."""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import zlib
from typing import IO

import braceexpand

from clap_train.atomic import write_atomic
from clap_train.rng import Domain, rng_for

log = logging.getLogger("clap_train.data")

REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://", "hf://")


def is_remote(url: str) -> bool:
    return url.startswith(REMOTE_PREFIXES)


def expand_shards(spec) -> list[str]:
    """A folder, a glob, a brace pattern (`train/{000000..000127}.tar`), a URL, or a list of these."""
    if spec is None:
        return []
    if isinstance(spec, str):
        spec = [spec]
    out: list[str] = []
    for item in spec:
        item = str(item)
        for url in braceexpand.braceexpand(item):
            if is_remote(url):
                out.append(url)
            elif os.path.isdir(url):
                out.extend(sorted(glob.glob(os.path.join(url, "*.tar"))))
            elif any(c in url for c in "*?["):
                out.extend(sorted(glob.glob(url)))
            else:
                out.append(url)
    return out


def count_samples(path: str) -> int:
    """Samples in a local tar, from its headers alone (payloads are skipped, nothing is decoded)."""
    import tarfile

    from clap_train.data.tar_reader import AUDIO_EXTS, split_name

    keys = set()
    try:
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                key, ext = split_name(m.name)
                if m.isreg() and ext in AUDIO_EXTS:
                    keys.add(key)
    except (tarfile.TarError, OSError, EOFError):
        pass  # a damaged shard counts what it holds before the damage
    return len(keys)


def ensure_sizes(shards: list[str], log=log.warning) -> dict[str, int] | None:
    """`read_sizes`, but a local folder without `sizes.json` is counted once and the result cached beside
    its shards (never guessed). Remote shards: None."""
    sizes = read_sizes(shards)
    if sizes is not None or any(is_remote(s) for s in shards):
        return sizes
    by_dir: dict[str, list[str]] = {}
    for s in shards:
        by_dir.setdefault(os.path.dirname(s), []).append(s)
    for d, group in by_dir.items():
        p = os.path.join(d, "sizes.json")
        try:
            with open(p) as f:
                known = json.load(f)
        except (OSError, ValueError):
            known = {}
        todo = [s for s in group if os.path.basename(s) not in known and os.path.exists(s)]
        if not todo:
            continue
        log(f"{d}: no sample count for {len(todo)} shard(s) in sizes.json; counting them from the tar headers once")
        known.update({os.path.basename(s): count_samples(s) for s in todo})
        try:
            write_atomic(p, json.dumps(known, indent=1, sort_keys=True))
        except OSError as e:
            log(f"could not cache {p} ({e}); the count is used for this run only")
            return {s: known.get(os.path.basename(s), 0) for s in shards}
    return read_sizes([s for s in shards if os.path.exists(s)])


def read_sizes(shards: list[str]) -> dict[str, int] | None:
    """Sample counts from the `sizes.json` beside local shards; None when any shard is not covered."""
    sizes: dict[str, int] = {}
    cache: dict[str, dict] = {}
    for s in shards:
        if is_remote(s):
            return None
        d, base = os.path.split(s)
        if d not in cache:
            p = os.path.join(d, "sizes.json")
            try:
                with open(p) as f:
                    cache[d] = json.load(f)
            except (OSError, ValueError):
                cache[d] = {}
        if base not in cache[d]:
            return None
        sizes[s] = int(cache[d][base])
    return sizes


def stable_id(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class ShardPlan:
    """The infinite sequence of shards one slot (rank, virtual worker) reads from one source.

    Without resampling every pass is a fresh seeded permutation split across all slots, so a shard is
    read once per pass overall. With resampling each slot draws shards with replacement.
    """

    def __init__(
        self,
        shards: list[str],
        seed: int,
        source_id: int,
        rank: int,
        world: int,
        slot: int,
        n_slots: int,
        resample: bool,
        carry: dict | None = None,
    ):
        if not shards:
            raise ValueError("empty shard list")
        self.shards, self.seed, self.source_id = shards, seed, source_id
        self.rank, self.slot = rank, slot
        self.gslot, self.n_total = rank * n_slots + slot, world * n_slots
        self.resample = resample
        if not resample and len(shards) < self.n_total:
            raise ValueError(
                f"{len(shards)} shard(s) for {world} rank(s) x {n_slots} worker(s) = {self.n_total} readers: "
                "each reader needs at least one shard; use fewer workers, more shards or resample=true"
            )
        self._pass_cache: tuple[int, list[str]] | None = None
        # After a resume onto another allocation: the rest of pass `carry["pass"]`, split over the new
        # readers, comes first (see carry_over); then the regular passes from the next one.
        carry = None if resample else carry
        self.carry_pass = int(carry["pass"]) if carry else -1
        self.prefix = list(carry["remaining"])[self.gslot :: self.n_total] if carry else []

    def _pass(self, p: int) -> list[str]:
        if self._pass_cache is None or self._pass_cache[0] != p:
            perm = rng_for(self.seed, Domain.SHARD_ORDER, self.source_id, p).permutation(len(self.shards))
            self._pass_cache = (p, [self.shards[j] for j in perm[self.gslot :: self.n_total]])
        return self._pass_cache[1]

    def shard(self, i: int) -> str:
        if self.resample:
            j = rng_for(self.seed, Domain.SHARD_DRAW, self.source_id, self.gslot, i).integers(len(self.shards))
            return self.shards[j]
        p, j = self.locate(i)
        return self.prefix[j] if p == self.carry_pass else self._pass(p)[j]

    def locate(self, i: int) -> tuple[int, int]:
        """(pass, index within this reader's share of that pass) of its i-th shard."""
        if i < len(self.prefix):
            return self.carry_pass, i
        i -= len(self.prefix)
        per = len(self._pass(0))  # the same count in every pass: gslot's share of n shards
        return self.carry_pass + 1 + i // per, i % per

    def pass_shards(self, p: int) -> list[str]:
        """Every shard of pass p (all readers), in the pass's order."""
        perm = rng_for(self.seed, Domain.SHARD_ORDER, self.source_id, p).permutation(len(self.shards))
        return [self.shards[j] for j in perm]


def carry_over(
    shards: list[str],
    seed: int,
    source_id: int,
    old_world: int,
    old_slots: int,
    started: dict[int, int],
    old_carry: dict | None,
) -> dict:
    """Resuming on another number of readers: which shards of the current pass are still unread.

    `started[g]` = shards reader g (rank x slots + slot) of the old allocation had begun reading. Shards
    a reader had begun count as read (the rest of a half-read shard is given up, never repeated). The
    new readers share out the remaining shards of the furthest pass any old reader had reached."""
    plans = {
        g: ShardPlan(shards, seed, source_id, g // old_slots, old_world, g % old_slots, old_slots, False, old_carry)
        for g in range(old_world * old_slots)
    }
    p_star = max(plans[g].locate(started.get(g, 0))[0] for g in plans)
    read = {plans[g].shard(i) for g in plans for i in range(started.get(g, 0)) if plans[g].locate(i)[0] == p_star}
    ref = next(iter(plans.values()))
    full = list(old_carry["remaining"]) if old_carry and p_star == int(old_carry["pass"]) else ref.pass_shards(p_star)
    return {"pass": p_star, "remaining": [x for x in full if x not in read]}


class TransientReadError(OSError):
    pass


def open_shard(url: str, retries: int = 3, backoff_s: float = 1.0) -> IO[bytes]:
    """Open a shard; remote reads are retried with back-off. A missing local file fails at once."""
    if not is_remote(url):
        return open(url, "rb")
    from webdataset.gopen import gopen

    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            return gopen(url, "rb")
        except Exception as e:  # network errors come in many types
            if attempt == retries:
                raise TransientReadError(f"{url}: {e}") from e
            log.warning("retrying %s after %s (attempt %d/%d)", url, e, attempt + 1, retries)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
