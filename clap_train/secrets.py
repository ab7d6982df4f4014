"""Keeping secrets (API keys, tokens) out of saved configs, checkpoints and logs."""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential|private[_-]?key)", re.I)
MASK = "***"


def secret_values() -> set[str]:
    """Values of environment variables whose names look secret (WANDB_API_KEY, HF_TOKEN, ...)."""
    return {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 6}


def redact(obj, _values: set[str] | None = None):
    """A copy of a plain container with secret-named keys masked and secret values cut out of strings."""
    values = secret_values() if _values is None else _values
    if isinstance(obj, dict):
        return {
            k: (MASK if SECRET_NAME.search(str(k)) and obj[k] not in (None, "") else redact(v, values))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, values) for v in obj)
    if isinstance(obj, str):
        for v in values:
            obj = obj.replace(v, MASK)
        return obj
    return obj
