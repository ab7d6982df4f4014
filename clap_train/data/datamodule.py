"""The LightningDataModule: sources -> mixture -> per-rank batches, with an exact-resume position.

`batch_size` is global (negatives per optimiser step): each rank's loader yields batches of
`batch_size / world_size`; the training module may split those further into micro-batches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from clap_train.config import ConfigError, build, check_number, micro_batch
from clap_train.data.collate import Tokenize
from clap_train.data.datasets import EvalStream, TrainStream
from clap_train.data.decode import AudioSpec
from clap_train.data.loader import LoaderOptions, TrainLoader, loader_kwargs
from clap_train.data.shards import ensure_sizes
from clap_train.data.sources import describe_mixture, parse_sources, stage_sources, what_key, zeroshot_classes
from clap_train.data.startup_checks import check_shared_memory, check_sources, resolve_resample
from clap_train.data.stream import SourceSpec, StreamOpts
from clap_train.data.synthetic import SyntheticSpec, ensure_synthetic

log = logging.getLogger("clap_train.data")


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
        self.cfg_sources, self.cfg_val, self.cfg_test = stage_sources(
            laion, sources, val_sources, test_sources, train_shards, val_shards, test_shards
        )
        self.batch_size = check_number("data.batch_size", batch_size, int, 1)
        self.eval_batch_size = check_number("data.eval_batch_size", eval_batch_size, int, 1)
        self.num_workers = check_number("data.num_workers", num_workers, int, 0, 256)
        self.steps_per_epoch = check_number("data.steps_per_epoch", steps_per_epoch, int, 1, none_ok=True)
        self.audio = AudioSpec(**dict(audio or {}))
        self.opts = StreamOpts(**dict(stream or {}))
        self.tag_templates = list(tag_templates or ["{}"])
        self.loader = LoaderOptions(pin_memory, persistent_workers, multiprocessing_context, prefetch_factor)
        self.resolve_loader_opts(gpu=False)
        self.tokenize: Tokenize | None = None
        self.zeroshot: dict[str, list[str]] = {}
        self._train_loader: TrainLoader | None = None
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
        return micro_batch(self.batch_size, world)

    def train_specs(self) -> list[SourceSpec]:
        return parse_sources(self.cfg_sources, "sources", self.tag_templates)

    def eval_specs(self, stage: str) -> list[SourceSpec]:
        cfg = self.cfg_val if stage == "val" else self.cfg_test
        specs = parse_sources(cfg, what_key(stage), self.tag_templates)
        for spec in specs:
            classes = zeroshot_classes(cfg.get(spec.name) or {}, spec, what_key(stage))
            if classes is not None:
                self.zeroshot[spec.name] = classes
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
        self.pin_memory, self.persistent_workers, self.mp_context = self.loader.resolve(gpu)

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.rank, self.world = self.trainer.global_rank, self.trainer.world_size
            self.resolve_loader_opts(gpu=self.trainer.strategy.root_device.type == "cuda")
        if self.tokenize is None:
            raise RuntimeError("ClapDataModule.bind(tokenize) must be called before setup")

    # --- loaders ------------------------------------------------------------------------------------
    def _loader_kw(self, workers: int) -> dict:
        resolved = (self.pin_memory, self.persistent_workers, self.mp_context)
        return loader_kwargs(workers, int(self.opts.seed), self.loader.prefetch_factor, resolved)

    def resolve_resample(self, specs: list[SourceSpec]) -> list[SourceSpec]:
        return resolve_resample(specs, self.world * max(1, self.num_workers))

    def train_dataloader(self) -> DataLoader:
        specs = self.resolve_resample(self.train_specs())
        check_sources(specs, "sources", self.world, self.num_workers)
        if self.rank == 0:
            log.info("training mixture (share of samples): %s", describe_mixture(specs))
        ranks = int(getattr(self.trainer, "num_devices", 1) or 1) if self.trainer is not None else 1
        check_shared_memory(
            self.audio, self.num_workers, self.loader.prefetch_factor, self.per_rank_batch(self.world), ranks
        )
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
        self._train_loader = TrainLoader(ds, **self._loader_kw(self.num_workers))
        return self._train_loader

    def _eval_loaders(self, stage: str) -> list[DataLoader]:
        loaders = []
        specs = self.eval_specs(stage)
        check_sources(specs, what_key(stage), self.world, self.num_workers)
        self.eval_sources[stage] = [s.name for s in specs]
        for spec in specs:
            ds = EvalStream(spec, self.audio, self.opts, self.eval_batch_size, self.rank, self.world, self.tokenize)
            workers = min(self.num_workers, max(1, len(spec.shards[self.rank :: self.world])))
            ds.count_batches(max(1, workers))
            loaders.append(DataLoader(ds, batch_size=None, **self._loader_kw(workers)))
        return loaders

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
