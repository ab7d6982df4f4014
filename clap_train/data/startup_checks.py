"""Start-up checks of the data settings against the world they run in (ranks x workers, shared memory,
the shards themselves): what would otherwise end as a hang, a bus error or a crash inside a worker is one
line before the first step."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

from clap_train.config import ConfigError
from clap_train.data.decode import AudioSpec
from clap_train.data.stream import SourceSpec

log = logging.getLogger("clap_train.data")


def check_sources(specs: list[SourceSpec], what: str, world: int, num_workers: int) -> None:
    """Start-up checks that would otherwise surface as a hang or a crash inside a worker."""
    from clap_train.data.check import probe_source

    readers = world * max(1, num_workers)
    for s in specs:
        if what == "sources" and s.weight > 0 and not s.resample and len(s.shards) < readers:
            raise ConfigError(
                f"data.sources.{s.name}: {len(s.shards)} shard(s) for {world} rank(s) x "
                f"{max(1, num_workers)} worker(s) = {readers} readers; use fewer workers, more shards "
                f"or data.sources.{s.name}.resample=true"
            )
        if s.weight > 0:
            try:
                probe_source(s.name, s.shards, s.caption_key, s.tag_templates, what=what)
            except ValueError as e:
                raise ConfigError(str(e)) from None


def check_shared_memory(
    a: AudioSpec, num_workers: int, prefetch_factor: int, batch: int, ranks: int, shm: str = "/dev/shm"
) -> None:
    """Loader workers hand batches over in shared memory: `num_workers x prefetch_factor` batches per
    rank, times the ranks of a node. More than the tmpfs holds (a container's default is 64 MB) ends in
    a bus error mid-run; here it is one line at start-up."""
    if not num_workers or not os.path.isdir(shm):
        return
    seconds = a.fusion_max_seconds if a.fusion else a.clip_seconds  # fusion keeps long clips whole
    clip = int(seconds * a.sample_rate) * (2 if a.transport == "int16" else 4)
    need = num_workers * prefetch_factor * batch * clip * ranks
    free = shutil.disk_usage(shm).free
    if need > free:
        raise ConfigError(
            f"{shm} has {free / 2**20:.1f} MiB free but the loaders may hold {need / 2**20:.1f} MiB: "
            f"data.num_workers={num_workers} x data.prefetch_factor={prefetch_factor} batches of "
            f"{batch} clips of {seconds:g} s ({a.transport}) x {ranks} rank(s) on this node. Lower "
            "data.num_workers or data.prefetch_factor, keep data.audio.transport=int16, or give the "
            "container more shared memory (docker run --shm-size=16g)"
        )


def resolve_resample(specs: list[SourceSpec], readers: int) -> list[SourceSpec]:
    """`resample: auto`: shards drawn with replacement where a source has fewer shards than readers
    (ranks x workers), each pass in order otherwise."""
    out = []
    for s in specs:
        if s.resample == "auto":
            s = dataclasses.replace(s, resample=len(s.shards) < readers)
            if s.resample:
                log.info(
                    "data.sources.%s: %d shard(s) for %d readers: shards drawn with replacement",
                    s.name,
                    len(s.shards),
                    readers,
                )
        out.append(s)
    return out
