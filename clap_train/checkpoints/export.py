"""Writing a model out: Hugging Face ClapModel directory, LAION-CLAP `.pt`, or our own checkpoint."""

from __future__ import annotations

import os

FORMATS = ("hf", "laion", "ours")


def save_ours(model, path: str) -> None:
    """A weights-only clap_train checkpoint (plain containers: loads with weights_only=True, offline)."""
    from clap_train.checkpoints.io import atomic_save

    ck = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": {"model_cfg": model.model_cfg},
        "text_assets": model.text_branch.assets(),
    }
    atomic_save(ck, path)


def save_laion(model, path: str, name: str = "clap_train-export") -> None:
    """LAION's released layout: {epoch, name, state_dict} with `module.` prefixes (their loader strips them)."""
    from clap_train.checkpoints import laion
    from clap_train.checkpoints.io import atomic_save

    sd = {"module." + k: v for k, v in laion.from_ours(model).items()}
    atomic_save({"epoch": 0, "name": name, "state_dict": sd}, path)


def export(model, fmt: str, out: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    if fmt == "hf":
        from clap_train.checkpoints import hf

        hf.export(model, out)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        (save_laion if fmt == "laion" else save_ours)(model, out)
    return out
