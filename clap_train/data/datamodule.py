"""The LightningDataModule: sources -> mixture -> per-rank batches, with an exact-resume position.

`batch_size` is global (negatives per optimiser step): each rank's loader yields batches of
`batch_size / world_size`; the training module may split those further into micro-batches.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from clap_train.config import ConfigError, build, check_number
from clap_train.data.collate import Tokenize
from clap_train.data.datasets import EvalStream, TrainStream, worker_init
from clap_train.data.decode import AudioSpec
from clap_train.data.make_shards import find_classes_file
from clap_train.data.shards import ensure_sizes, expand_shards
from clap_train.data.stream import SourceSpec, StreamOpts
from clap_train.data.synthetic import SyntheticSpec, ensure_synthetic
from clap_train.distributed import gather_objects

log = logging.getLogger("clap_train.data")


@dataclasses.dataclass
class SourceConfig:
    """One entry of data.sources / val_sources / test_sources."""

    shards: Any = None  # a folder, glob, brace pattern, URL or list
    weight: Any = 1.0  # mixing weight (a number >= 0), or "size": the source's sample count
    caption_key: Any = "text"  # the JSON field(s) with captions: a name or a list of names
    tag_key: str = "tag"
    tag_templates: list | None = None  # captions made from tags; null: data.tag_templates
    resample: Any = False  # true, false or auto: when the source has fewer shards than readers
    zeroshot_classes: Any = None  # a list or a classes.json path; null: classes.json beside the shards


def check_source(node, key: str) -> dict:
    """One source's settings, checked without touching its shards (so at construction, before any read)."""
    cfg = vars(build(SourceConfig, node, key))
    check_resample(f"{key}.resample", cfg["resample"])
    if cfg["weight"] != "size":
        check_number(f"{key}.weight", cfg["weight"], float, 0)
    return cfg


def parse_sources(sources: Mapping | None, what: str, default_tag_templates: list[str]) -> list[SourceSpec]:
    out = []
    for name, node in (sources or {}).items():
        if node is None:  # `~data.sources.x` or `data.sources.x=null` drops a source
            continue
        cfg = check_source(node, f"data.{what}.{name}")
        shards = expand_shards(cfg.get("shards"))
        missing = [s for s in shards if "://" not in s and not s.startswith("pipe:") and not os.path.exists(s)]
        if not shards or len(missing) == len(shards):
            raise ConfigError(f"data.{what}.{name}: no shards found at {cfg.get('shards')!r}")
        if missing:
            warnings.warn(
                f"data.{what}.{name}: {len(missing)} of {len(shards)} shards are missing "
                f"(first: {missing[0]}); they will be counted as unreadable",
                stacklevel=2,
            )
        weight = cfg["weight"]
        if weight == "size":  # weight by the number of samples (LAION's default mixing)
            sizes = ensure_sizes(shards)
            if sizes is None:
                raise ConfigError(
                    f"data.{what}.{name}.weight=size needs sizes.json for remote shards; give a number instead"
                )
            weight = sum(sizes.values())
        out.append(
            SourceSpec(
                name=str(name),
                shards=shards,
                weight=float(weight),
                caption_key=_caption_key(cfg.get("caption_key", "text")),
                tag_key=cfg.get("tag_key", "tag"),
                tag_templates=list(cfg.get("tag_templates") or default_tag_templates),
                resample=cfg["resample"],
            )
        )
    return out


def check_resample(key: str, v) -> None:
    if not (isinstance(v, bool) or v == "auto"):
        raise ConfigError(
            f"{key}={v!r}; valid choices: true, false, auto (resample when the source has fewer shards than readers)"
        )


def _caption_key(k):
    return k if isinstance(k, str) else [str(x) for x in k]


@dataclasses.dataclass
class LaionConfig:
    """data.laion: the LAION-Audio-630K folder layout `<root>/<dataset>/<split>/NNNNNN.tar`."""

    root: str | None = None
    train: list | None = None  # dataset folder names per stage
    val: list | None = None
    test: list | None = None
    splits: dict | None = None  # stage -> split folder name; default train/valid/test
    weight: Any = "size"  # training sources' mixing weight
    resample: Any = "auto"


def expand_laion(node: Mapping | None) -> tuple[dict, dict, dict]:
    """Naming a root and the datasets per stage gives the sources; training sources are weighted by size
    unless told otherwise."""
    laion = vars(build(LaionConfig, node, "data.laion"))
    check_resample("data.laion.resample", laion["resample"])
    if not laion.get("root"):
        return {}, {}, {}
    splits = {"train": "train", "val": "valid", "test": "test", **(laion.get("splits") or {})}
    out = []
    for stage in ("train", "val", "test"):
        entry = {}
        for ds in laion.get(stage) or []:
            entry[str(ds)] = {"shards": os.path.join(str(laion["root"]), str(ds), splits[stage])}
            if stage == "train":
                entry[str(ds)]["weight"] = laion.get("weight", "size")
                # a small set (Clotho: a handful of shards) cannot give every rank x worker its own shards
                entry[str(ds)]["resample"] = laion.get("resample", "auto")
        out.append(entry)
    return out[0], out[1], out[2]


def _merge(base: dict, extra: dict) -> dict:
    """Sources named in `data.sources` refine (or with null, drop) the ones the layout generated."""
    out = {k: dict(v) for k, v in base.items()}
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = {**out.get(k, {}), **dict(v)}
    return out


class _TrainLoader(DataLoader):
    """A DataLoader whose position Lightning saves and restores (the `_Stateful` protocol).

    `state` = batches trained on so far (per rank) and each virtual slot's stream position.
    """

    def __init__(self, dataset: TrainStream, **kw):
        super().__init__(dataset, batch_size=None, **kw)
        self.n_slots = dataset.n_slots
        self.state: dict = {"batches": 0, "slots": {}, "n_slots": self.n_slots, "world": dataset.world, "carry": {}}

    def __iter__(self):
        k0, spe = self.state["batches"], self.dataset.steps_per_epoch
        if self._iterator is not None and not self._workers_continue(k0):
            self._iterator._shutdown_workers()  # persistent workers that would serve other slots: new ones
            self._iterator = None
        self._iter_span = (k0, (k0 // spe + 1) * spe)
        self.dataset.start = {"batches": k0, "slots": dict(self.state["slots"]), "carry": self.state["carry"]}
        return super().__iter__()

    def _workers_continue(self, k0: int) -> bool:
        """Persistent workers carry their own slot's position into the next epoch; that is right only when
        the last epoch ran to its end and a worker's slot ((k0 + worker) mod workers) is unchanged."""
        start, end = getattr(self, "_iter_span", (None, None))
        return k0 == end and (end - start) % self.n_slots == 0

    def record(self, ds: dict) -> None:
        self.state["batches"] = ds["batch"] + 1
        self.state["slots"][ds["slot"]] = ds["state"]

    def state_dict(self) -> dict:
        """Every rank's slot positions (a checkpoint is written by rank 0 but each rank reads its own
        shards, so each needs its own position back): gathered when running distributed."""
        ranks = gather_objects({str(k): v for k, v in self.state["slots"].items()}, "the loader positions")
        return {
            "batches": self.state["batches"],
            "slots": ranks[0],
            "rank_slots": ranks,
            "n_slots": self.n_slots,
            "world": self.dataset.world,
            "carry": self.state["carry"],
        }

    def load_state_dict(self, sd: dict) -> None:
        same = sd.get("n_slots") == self.n_slots and sd.get("world") == self.dataset.world
        self.state["batches"] = int(sd.get("batches", 0))
        if same:
            slots = sd["rank_slots"][self.dataset.rank] if "rank_slots" in sd else sd.get("slots", {})
            self.state["slots"] = {int(k): v for k, v in slots.items()}
            self.state["carry"] = dict(sd.get("carry") or {})
            return
        warnings.warn(
            f"resuming with {self.dataset.world} rank(s) x {self.n_slots} worker(s) where the checkpoint had "
            f"{sd.get('world')} x {sd.get('n_slots')}: the step count continues and the shards not yet read in "
            "the current pass are shared out among the new readers (none is read twice), but the data order "
            "is not that of an uninterrupted run",
            stacklevel=2,
        )
        self.state["slots"] = {}
        self.state["carry"] = self._carry_over(sd)

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
        for st in self.state["slots"].values():
            for k, v in st.get("skips", {}).items():
                total[k] = total.get(k, 0) + v
        return total


MP_CONTEXTS = ("auto", None, "fork", "spawn", "forkserver")


class ClapDataModule(L.LightningDataModule):
    def __init__(
        self,
        sources: Mapping | None = None,
        val_sources: Mapping | None = None,
        test_sources: Mapping | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        num_workers: int = 2,
        steps_per_epoch: int | None = None,
        audio: Mapping | None = None,
        stream: Mapping | None = None,
        tag_templates: list[str] | None = None,
        train_shards: Any = None,
        val_shards: Any = None,
        test_shards: Any = None,
        pin_memory: bool | str = "auto",
        multiprocessing_context: str | None = "auto",
        prefetch_factor: int = 2,
        laion: Mapping | None = None,
        persistent_workers: bool | str = "auto",
        synthetic: Mapping | None = None,
    ):
        super().__init__()
        # data=synthetic: the set `prepare_data` writes on first use (the top-level `synthetic` block)
        self.synthetic = build(SyntheticSpec, synthetic, "synthetic") if synthetic else None
        lt, lv, ls = expand_laion(laion)
        # `data.train_shards=...` is shorthand for a one-source mixture
        self.cfg_sources = {"train": {"shards": train_shards}} if train_shards else _merge(lt, dict(sources or {}))
        self.cfg_val = {"val": {"shards": val_shards}} if val_shards else _merge(lv, dict(val_sources or {}))
        self.cfg_test = {"test": {"shards": test_shards}} if test_shards else _merge(ls, dict(test_sources or {}))
        for what, sources in (
            ("sources", self.cfg_sources),
            ("val_sources", self.cfg_val),
            ("test_sources", self.cfg_test),
        ):
            for name, node in sources.items():
                if node is not None:
                    check_source(node, f"data.{what}.{name}")
        self.batch_size = check_number("data.batch_size", batch_size, int, 1)
        self.eval_batch_size = check_number("data.eval_batch_size", eval_batch_size, int, 1)
        self.num_workers = check_number("data.num_workers", num_workers, int, 0, 256)
        self.steps_per_epoch = check_number("data.steps_per_epoch", steps_per_epoch, int, 1, none_ok=True)
        self.audio = AudioSpec(**dict(audio or {}))
        self.opts = StreamOpts(**dict(stream or {}))
        self.tag_templates = list(tag_templates or ["{}"])
        for key, v in (("pin_memory", pin_memory), ("persistent_workers", persistent_workers)):
            if not isinstance(v, bool) and v != "auto":
                raise ConfigError(f"data.{key}={v!r}; valid choices: true, false, auto (on for GPU runs)")
        if multiprocessing_context not in MP_CONTEXTS:
            raise ConfigError(
                f"data.multiprocessing_context={multiprocessing_context!r}; valid choices: "
                f"{', '.join(str(c) for c in MP_CONTEXTS)} (auto: forkserver on GPU)"
            )
        if isinstance(prefetch_factor, bool) or not isinstance(prefetch_factor, int) or prefetch_factor < 1:
            raise ConfigError(f"data.prefetch_factor={prefetch_factor!r}: must be a whole number >= 1")
        self.loader_opts = {
            "pin_memory": pin_memory,
            "multiprocessing_context": multiprocessing_context,
            "persistent_workers": persistent_workers,
        }
        self.prefetch_factor = prefetch_factor
        self.resolve_loader_opts(gpu=False)
        self.tokenize: Tokenize | None = None
        self.zeroshot: dict[str, list[str]] = {}
        self._train_loader: _TrainLoader | None = None
        self.rank, self.world = 0, 1
        # stage -> source names of the loaders last built: every rank evaluates (and gathers) each source,
        # also one whose shards all went to other ranks
        self.eval_sources: dict[str, list[str]] = {}

    # --- wiring -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the synthetic set unless a complete copy is there (every rank may call it: one writes, the
        others wait on its lock). run.py calls it before the start-up checks that read the shards."""
        if self.synthetic is not None and self.synthetic.enabled:
            ensure_synthetic(self.synthetic, log=log.info)

    def bind(self, tokenize: Tokenize) -> ClapDataModule:
        """The text tower's tokenizer runs inside the loader workers (data/ never imports models)."""
        self.tokenize = tokenize
        return self

    def per_rank_batch(self, world: int) -> int:
        if self.batch_size % world:
            raise ConfigError(f"data.batch_size={self.batch_size} (global) is not divisible by world size {world}")
        return self.batch_size // world

    def train_specs(self) -> list[SourceSpec]:
        return parse_sources(self.cfg_sources, "sources", self.tag_templates)

    def eval_specs(self, stage: str) -> list[SourceSpec]:
        cfg = self.cfg_val if stage == "val" else self.cfg_test
        specs = parse_sources(cfg, what_key(stage), self.tag_templates)
        for spec in specs:
            c = cfg.get(spec.name) or {}
            found = c.get("zeroshot_classes") or find_classes_file(spec.shards)  # make-shards writes classes.json
            if found:
                self.zeroshot[spec.name] = load_classes(found)
                if not c.get("zeroshot_classes"):
                    log.info("data.%s.%s: zero-shot classes from %s", what_key(stage), spec.name, found)
        return specs

    def train_samples(self) -> int | None:
        sizes = [ensure_sizes(s.shards) for s in self.train_specs() if s.weight > 0]
        return None if any(x is None for x in sizes) else sum(sum(x.values()) for x in sizes)

    def resolve_steps_per_epoch(self) -> int:
        if self.steps_per_epoch:
            return int(self.steps_per_epoch)
        n = self.train_samples()
        if n is None:
            raise ConfigError("data.steps_per_epoch is required when the shards have no sizes.json")
        return max(1, n // self.batch_size)

    def resolve_loader_opts(self, gpu: bool) -> None:
        """`auto` loader options for where the run trains: pinned memory, forkserver workers that live across
        epochs on a GPU; plain forked workers on CPU (pinning there only costs a copy)."""
        o = self.loader_opts
        self.pin_memory = gpu if o["pin_memory"] == "auto" else o["pin_memory"]
        self.persistent_workers = gpu if o["persistent_workers"] == "auto" else o["persistent_workers"]
        mp = o["multiprocessing_context"]
        self.mp_context = ("forkserver" if gpu else None) if mp == "auto" else mp

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.rank, self.world = self.trainer.global_rank, self.trainer.world_size
            self.resolve_loader_opts(gpu=self.trainer.strategy.root_device.type == "cuda")
        if self.tokenize is None:
            raise RuntimeError("ClapDataModule.bind(tokenize) must be called before setup")

    # --- loaders ------------------------------------------------------------------------------------
    def _loader_kw(self, workers: int) -> dict:
        # Our streams seed themselves; a private generator keeps DataLoader from drawing its worker base
        # seed from the global torch RNG, so creating loaders (e.g. for validation) never shifts the
        # training RNG (dropout, SpecAugment) and a resume at any step replays it exactly.
        kw: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": self.pin_memory,
            "generator": torch.Generator().manual_seed(int(self.opts.seed)),
        }
        if workers:
            kw.update(
                worker_init_fn=worker_init,
                prefetch_factor=self.prefetch_factor,
                multiprocessing_context=self.mp_context,
                persistent_workers=self.persistent_workers,
            )
        return kw

    def check_sources(self, specs: list[SourceSpec], what: str) -> None:
        """Start-up checks that would otherwise surface as a hang or a crash inside a worker."""
        from clap_train.data.check import probe_source

        readers = self.world * max(1, self.num_workers)
        for s in specs:
            if what == "sources" and s.weight > 0 and not s.resample and len(s.shards) < readers:
                raise ConfigError(
                    f"data.sources.{s.name}: {len(s.shards)} shard(s) for {self.world} rank(s) x "
                    f"{max(1, self.num_workers)} worker(s) = {readers} readers; use fewer workers, more shards "
                    f"or data.sources.{s.name}.resample=true"
                )
            if s.weight > 0:
                try:
                    probe_source(s.name, s.shards, s.caption_key, s.tag_templates, what=what)
                except ValueError as e:
                    raise ConfigError(str(e)) from None

    def check_shared_memory(self, shm: str = "/dev/shm") -> None:
        """Loader workers hand batches over in shared memory: `num_workers x prefetch_factor` batches per
        rank, times the ranks of a node. More than the tmpfs holds (a container's default is 64 MB) ends in
        a bus error mid-run; here it is one line at start-up."""
        if not self.num_workers or not os.path.isdir(shm):
            return
        a = self.audio
        seconds = a.fusion_max_seconds if a.fusion else a.clip_seconds  # fusion keeps long clips whole
        clip = int(seconds * a.sample_rate) * (2 if a.transport == "int16" else 4)
        ranks = int(getattr(self.trainer, "num_devices", 1) or 1) if self.trainer is not None else 1
        batch = self.per_rank_batch(self.world)
        need = self.num_workers * self.prefetch_factor * batch * clip * ranks
        free = shutil.disk_usage(shm).free
        if need > free:
            raise ConfigError(
                f"{shm} has {free / 2**20:.1f} MiB free but the loaders may hold {need / 2**20:.1f} MiB: "
                f"data.num_workers={self.num_workers} x data.prefetch_factor={self.prefetch_factor} batches of "
                f"{batch} clips of {seconds:g} s ({a.transport}) x {ranks} rank(s) on this node. Lower "
                "data.num_workers or data.prefetch_factor, keep data.audio.transport=int16, or give the "
                "container more shared memory (docker run --shm-size=16g)"
            )

    def resolve_resample(self, specs: list[SourceSpec]) -> list[SourceSpec]:
        """`resample: auto`: shards drawn with replacement where a source has fewer shards than readers
        (ranks x workers), each pass in order otherwise."""
        readers = self.world * max(1, self.num_workers)
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

    def train_dataloader(self) -> DataLoader:
        specs = self.resolve_resample(self.train_specs())
        self.check_sources(specs, "sources")
        self.check_shared_memory()
        ds = TrainStream(
            specs,
            self.audio,
            self.opts,
            self.per_rank_batch(self.world),
            self.resolve_steps_per_epoch(),
            self.rank,
            self.world,
            max(1, self.num_workers),
            self.tokenize,
        )
        self._train_loader = _TrainLoader(ds, **self._loader_kw(self.num_workers))
        return self._train_loader

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        loaders = []
        specs = self.eval_specs(stage)
        self.check_sources(specs, what_key(stage))
        self.eval_sources[stage] = [s.name for s in specs]
        for spec in specs:
            ds = EvalStream(spec, self.audio, self.opts, self.eval_batch_size, self.rank, self.world, self.tokenize)
            workers = min(self.num_workers, max(1, len(spec.shards[self.rank :: self.world])))
            loaders.append(DataLoader(ds, batch_size=None, **self._loader_kw(workers)))
        return loaders

    def eval_source_names(self, stage: str) -> list[str]:
        return [s.name for s in self.eval_specs(stage)]

    def val_dataloader(self):
        return self._eval_loaders("val")

    def test_dataloader(self):
        return self._eval_loaders("test")

    # --- exact resume -------------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        ds = batch.pop("_data_state", None) if isinstance(batch, dict) else None
        if ds is not None and self._train_loader is not None:
            self._train_loader.record(ds)
        return batch

    def skip_counts(self) -> dict[str, int]:
        return self._train_loader.skip_counts() if self._train_loader else {}


def what_key(stage: str) -> str:
    return "val_sources" if stage == "val" else "test_sources"


def load_classes(spec) -> list[str]:
    """A list of class names, or a path to a JSON list."""
    if isinstance(spec, str):
        import json

        with open(spec) as f:
            return list(json.load(f))
    return [str(c) for c in spec]
