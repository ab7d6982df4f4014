"""The `data.sources` / `val_sources` / `test_sources` entries and the LAION-Audio-630K layout: each entry
checked at construction (SourceConfig: its keys, defaults and ranges), then expanded to a SourceSpec (the
shard list, the mixing weight) when the loaders are built."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any

from clap_train.config import ConfigError, build, check_number
from clap_train.data.make_shards import find_classes_file
from clap_train.data.shards import ensure_sizes, expand_shards
from clap_train.data.stream import SourceSpec

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
    out, sized = [], set()
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
            sized.add(str(name))
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
    return mix_shares(out, sized, what)


def mix_shares(specs: list[SourceSpec], sized: set[str], what: str) -> list[SourceSpec]:
    """Mixing weights as shares of samples. Sources weighted by size share what the numbers leave: beside
    `weight=size` sources a number is the share itself (clotho 0.5 -> half of all samples), and the sized
    ones split the rest in proportion to their sample counts. Numbers alone, or sizes alone, are relative
    weights (normalised), as before."""
    fixed = {s.name: s.weight for s in specs if s.name not in sized}
    if not sized or not fixed:
        return specs
    total = sum(fixed.values())
    if total > 1 + 1e-9:
        listed = ", ".join(f"{k}={v:g}" for k, v in fixed.items())
        raise ConfigError(
            f"data.{what}: weights {listed} sum to {total:g} beside sources weighted by size; there a weight is a "
            "share of samples, so the numbers must sum to at most 1 (the sized sources share the rest)"
        )
    n = sum(s.weight for s in specs if s.name in sized)
    rest = 1.0 - total
    return [dataclasses.replace(s, weight=rest * s.weight / n) if s.name in sized else s for s in specs]


def describe_mixture(specs: list[SourceSpec]) -> str:
    """'a 50.0%, b 50.0%': each training source's share of samples."""
    total = sum(s.weight for s in specs)
    return ", ".join(f"{s.name} {100 * s.weight / total:.1f}%" for s in specs) if total > 0 else "(no weight)"


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


def merge_sources(base: dict, extra: dict, what: str = "sources") -> dict:
    """Sources named in `data.sources` refine (or with null, drop) the ones the layout generated; a name the
    layout does not have must bring its own shards (a misspelt name is refused with the valid ones)."""
    out = {k: dict(v) for k, v in base.items()}
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
            continue
        if k not in out and not dict(v).get("shards"):
            known = ", ".join(sorted(set(base) | {n for n, e in extra.items() if e is not None and n != k})) or "none"
            raise ConfigError(
                f"data.{what}.{k}: no such source and no shards given; sources of this run: {known} "
                "(a new source needs `shards`)"
            )
        out[k] = {**out.get(k, {}), **dict(v)}
    return out


def what_key(stage: str) -> str:
    return "val_sources" if stage == "val" else "test_sources"


def load_classes(spec) -> list[str]:
    """A list of class names, or a path to a JSON list."""
    if isinstance(spec, str):
        import json

        with open(spec) as f:
            return list(json.load(f))
    return [str(c) for c in spec]


def zeroshot_classes(entry: Mapping, spec: SourceSpec, what: str) -> list[str] | None:
    """An eval source's zero-shot classes: its `zeroshot_classes`, else the classes.json that make-shards
    writes beside the shards, else None (retrieval only)."""
    found = entry.get("zeroshot_classes") or find_classes_file(spec.shards)
    if not found:
        return None
    if not entry.get("zeroshot_classes"):
        log.info("data.%s.%s: zero-shot classes from %s", what, spec.name, found)
    return load_classes(found)


def stage_sources(laion, sources, val_sources, test_sources, train_shards, val_shards, test_shards):
    """The train, val and test source entries, each checked: from the LAION layout refined by the named
    sources, or one source per stage from the `*_shards` shorthand (`data.train_shards=...`)."""
    lt, lv, ls = expand_laion(laion)
    out = tuple(
        # the shorthand's one source is named after its stage: data.sources.train.resample=true refines it
        {stage: {"shards": shorthand, **dict((named or {}).get(stage) or {})}}
        if shorthand
        else merge_sources(base, dict(named or {}), what)
        for stage, shorthand, base, named, what in (
            ("train", train_shards, lt, sources, "sources"),
            ("val", val_shards, lv, val_sources, "val_sources"),
            ("test", test_shards, ls, test_sources, "test_sources"),
        )
    )
    for what, entries in zip(("sources", "val_sources", "test_sources"), out):
        for name, node in entries.items():
            if node is not None:
                check_source(node, f"data.{what}.{name}")
    return out
