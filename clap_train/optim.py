"""The `optim` block: AdamW with LAION's decay groups, linear warmup then cosine (or constant), and the
step rules around it (clipping, contrastive accumulation, non-finite skips). `OptimConfig` is the one place
its keys, defaults and ranges are written; conf/optim/adamw.yaml holds only what differs."""

from __future__ import annotations

import dataclasses
import functools
import math

import torch

from clap_train.config import ConfigError, check_number, setting

SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass
class OptimConfig:
    lr: float = setting(1e-3, kind=float, low=0, low_open=True)
    weight_decay: float = setting(0.1, kind=float, low=0)  # not applied to biases, norms or the temperature
    betas: list = setting(factory=lambda: [0.9, 0.99])
    eps: float = setting(1e-8, kind=float, low=0, low_open=True)
    warmup_steps: int = setting(30, kind=int, low=0)
    schedule: str = setting("cosine", choices=SCHEDULES)  # after warmup
    min_lr_ratio: float = setting(0.0, kind=float, low=0, high=1)  # the cosine's floor, as a fraction of lr
    clip_grad: float = setting(1.0, kind=float, low=0)  # global gradient norm; 0: no clipping
    # micro-batches per step; negatives still span the whole batch (GradCache)
    accumulate: int = setting(1, kind=int, low=1)
    # torch's fused AdamW kernel (CUDA and CPU; docs/PERFORMANCE.md); false: foreach
    fused: bool | str = setting("auto", choices=("auto", True, False))
    max_nonfinite: int = setting(20, kind=int, low=0)  # steps in a row with a non-finite loss before stopping
    total_steps: int | None = setting(None, kind=int, low=1, none_ok=True)  # null: max_steps or epochs x steps

    def __post_init__(self):
        b = self.betas
        if not isinstance(b, (list, tuple)) or len(b) != 2:
            raise ConfigError(f"optim.betas={b!r}: must be two numbers in [0, 1), e.g. [0.9, 0.99]")
        for i, x in enumerate(b):
            check_number(f"optim.betas[{i}]", x, float, 0, 0.999999)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Biases, norms and the temperature are not decayed (the LAION/open_clip rule); frozen ones are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, o: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    fused = device.type in ("cuda", "cpu") if o.fused == "auto" else bool(o.fused)
    return torch.optim.AdamW(
        param_groups(model, o.weight_decay), lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused or None
    )


def lr_factor(step: int, warmup: int, total: int, schedule: str, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, o: OptimConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimiser step, `total` steps long."""
    f = functools.partial(lr_factor, warmup=o.warmup_steps, total=total, schedule=o.schedule, floor=o.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def total_steps(o: OptimConfig, trainer) -> int:
    """The schedule's length: optim.total_steps, else trainer.max_steps, else max_epochs x the data's steps
    per epoch (from the config and sizes.json: `trainer.estimated_stepping_batches` would build the train
    loader before a resumed loader state is restored)."""
    if o.total_steps or trainer is None:
        return int(o.total_steps or 1)
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    return int(trainer.max_epochs) * trainer.datamodule.resolve_steps_per_epoch()
