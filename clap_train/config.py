"""OmegaConf resolvers used by conf/ (registered by train.py and by tests composing the config), and the
error every configuration mistake raises."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A configuration mistake, reported at start-up (one line, no traceback) with the key at fault."""


def _suffix(overrides: str) -> str:
    """'' for no overrides, else '-<8 hex>' of them: deterministic, short, safe as a folder name."""
    return "" if not overrides else "-" + hashlib.sha1(overrides.encode()).hexdigest()[:8]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("clap.suffix"):
        OmegaConf.register_new_resolver("clap.suffix", _suffix)


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
