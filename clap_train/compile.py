"""The `compile` block: `torch.compile` of both towers (meant for GPU runs; docs/PERFORMANCE.md has the CPU
measurement)."""

from __future__ import annotations

import dataclasses

from clap_train.config import build, setting


@dataclasses.dataclass
class CompileConfig:
    enabled: bool = setting(False, kind=bool)
    backend: str = "inductor"
    mode: str | None = None  # e.g. max-autotune
    dynamic: bool | None = None
    fullgraph: bool | None = None
    # captions padded to a multiple of this many tokens (<= max_length): a few shapes to compile; null: to
    # each batch's longest
    text_pad_multiple: int | None = setting(16, kind=int, low=1, none_ok=True)


def compile_towers(model, cfg: CompileConfig | dict) -> None:
    """`torch.compile` the two towers in place (`nn.Module.compile`: parameter names and checkpoints are
    unchanged). The log-mel front end stays eager (fp32 STFT)."""
    if not isinstance(cfg, CompileConfig):
        cfg = build(CompileConfig, cfg, "compile")
    if not cfg.enabled:
        return
    kw = {k: getattr(cfg, k) for k in ("backend", "mode", "dynamic", "fullgraph") if getattr(cfg, k) is not None}
    model.tokenizer.pad_multiple = cfg.text_pad_multiple  # caption lengths in a few buckets: few recompiles
    model.audio_branch.compile(**kw)
    model.text_branch.compile(**kw)
