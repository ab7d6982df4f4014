"""The error every configuration mistake raises, the checks that raise it (numbers, choices, whole
dataclass blocks), and the OmegaConf resolvers used by conf/ (registered by clap_train.schema.register).
A leaf module: every part of the package may import it."""

from __future__ import annotations

import dataclasses
import hashlib

from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A configuration mistake, reported at start-up (one line, no traceback) with the key at fault."""


def run_suffix(overrides, ignored) -> str:
    """'' when no override changes the result, else '-<8 hex>' of those that do, normalised: order,
    `+`/`++` and spelling (`1e-4` = `0.0001`, quotes) do not matter; keys in `ignored` (and below them:
    `logger` covers `logger.wandb.project`) are left out, so "train longer" or more loader workers land in
    the same folder and resume there. Deterministic, short, safe as a folder name."""
    import json

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    kept = {}
    for text in overrides or []:
        o = parser.parse_override(str(text))
        key = o.key_or_group
        if any(key == k or key.startswith((k + ".", k + "/")) for k in ignored or []):
            continue
        kept[("~" if o.is_delete() else "") + key] = None if o.is_delete() else _plain(o.value())
    if not kept:
        return ""
    blob = json.dumps(sorted(kept.items()), sort_keys=True, default=str)
    return "-" + hashlib.sha1(blob.encode()).hexdigest()[:8]


def _plain(value):
    """An override's parsed value with whole floats as ints (`lr=1` = `lr=1.0`), containers recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("clap.suffix"):
        OmegaConf.register_new_resolver("clap.suffix", run_suffix)


def check_number(
    key: str,
    value,
    kind: type = int,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    none_ok: bool = False,
):
    """`value` as `kind` (int: a whole number; float: any number) within [low, high] (low excluded when
    `low_open`), else a ConfigError naming the key, the value and what is allowed. Returns the value."""
    if value is None and none_ok:
        return None
    whole = isinstance(value, int) and not isinstance(value, bool)
    ok_type = whole if kind is int else (whole or isinstance(value, float))
    ok = (
        ok_type
        and value == value
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or value <= high)
    )
    if not ok:
        what = "a whole number" if kind is int else "a number"
        rng = (f" {'>' if low_open else '>='} {low}" if low is not None else "") + (
            f"{' and' if low is not None else ''} <= {high}" if high is not None else ""
        )
        raise ConfigError(f"{key}={value!r}: must be {what}{rng}" + (" (or null)" if none_ok else ""))
    return value


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; valid choices: {', '.join(map(str, choices))}")


def micro_batch(batch_size: int, world: int, accumulate: int = 1) -> int:
    """The per-rank micro-batch of a global `data.batch_size`: the one divisibility check of the codebase."""
    if batch_size % (world * accumulate):
        raise ConfigError(
            f"data.batch_size={batch_size} (global) is not divisible by world size {world} x "
            f"optim.accumulate={accumulate}"
        )
    return batch_size // (world * accumulate)


def instantiate(node, **kwargs):
    """hydra's instantiate, with our ConfigError (a bad value in that node) raised as itself: Hydra wraps
    every constructor error in an InstantiationException, which would end the run in a traceback."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise


# --- typed configuration: a dataclass per config block is its one source of keys, defaults, types and
# ranges. `setting(...)` declares a field; `build(cls, node, key)` turns a config node into the dataclass
# (unknown keys refused, every field checked); `defaults_of(cls)` is the node registered in Hydra's
# ConfigStore (clap_train/schema.py), so conf/ files hold only what differs from the defaults.


def setting(
    default=None,
    *,
    kind: type | None = None,
    low=None,
    high=None,
    low_open: bool = False,
    choices=None,
    none_ok: bool = False,
    factory=None,
):
    """A dataclass field with its check: `kind` int/float with [low, high] (check_number), or `choices`."""
    meta = {"kind": kind, "low": low, "high": high, "low_open": low_open, "choices": choices, "none_ok": none_ok}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_fields(obj, key: str) -> None:
    """Every `setting` field of a dataclass instance against its declared type, range or choices."""
    for f in dataclasses.fields(obj):
        m, v, name = f.metadata, getattr(obj, f.name), f"{key}.{f.name}"
        if m.get("choices") is not None and not (v is None and m["none_ok"]):
            check_choice(name, v, m["choices"])
        elif m.get("kind") in (int, float):
            check_number(name, v, m["kind"], m["low"], m["high"], m["low_open"], m["none_ok"])
        elif m.get("kind") is bool and not isinstance(v, bool):
            raise ConfigError(f"{name}={v!r}: must be true or false")


def build(cls, node, key: str):
    """The dataclass `cls` from a config node (a mapping or None: all defaults), checked."""
    from omegaconf import DictConfig, OmegaConf

    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {unknown}; valid keys: {', '.join(names)}")
    obj = cls(**data)
    check_fields(obj, key)
    return obj


def defaults_of(cls) -> dict:
    """The dataclass's defaults as a plain dict (the ConfigStore node of its block)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
