"""Sharded strategies for the `trainer/` presets: FSDP (FSDP2 through Lightning) and DeepSpeed ZeRO.

What gets wrapped: each repeated block of either tower (Swin blocks, PANN conv blocks, the text
transformer's layers) is its own FSDP unit, so one block's full weights exist at a time. Checkpoints are
written as full state dicts, so they load anywhere (`load_model`, another world size, no FSDP).
"""

from __future__ import annotations

from datetime import timedelta

from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

# Names rather than imports: the text layer class depends on the configured Hugging Face model.
BLOCK_CLASS_NAMES = ("SwinBlock", "ConvBlock", "BertLayer", "RobertaLayer", "XLMRobertaLayer", "ClapTextLayer",
                     "MPNetLayer", "DistilBertLayer", "TransformerBlock")


def is_block(module: nn.Module) -> bool:
    return type(module).__name__ in BLOCK_CLASS_NAMES


class FSDP2(ModelParallelStrategy):
    """`trainer=fsdp`: FSDP2 (`fully_shard`) through Lightning's ModelParallelStrategy, data parallel only.

    FSDP2 rather than Lightning's FSDPStrategy (FSDP1): FSDP1 flattens parameters (so `ndim` no longer tells
    a weight from a bias and weight decay went silently off at >1 rank), its precision plugin refuses norm
    clipping, and Lightning refuses a CPU accelerator for it. FSDP2 keeps every parameter's name and shape
    (a DTensor sharded on dim 0), runs on CPU over gloo, and mixed precision stays torch.autocast, so the
    log-mel front end and `bn0` keep fp32 weights and inputs. `ClapLit.configure_model` does the sharding
    (`shard_model`). Checkpoints are full state dicts gathered on rank 0: they load anywhere.
    """

    def __init__(self, reshard_after_forward: bool = True, timeout_s: float | None = None, **kwargs):
        if timeout_s:
            kwargs["timeout"] = timedelta(seconds=timeout_s)
        super().__init__(save_distributed_checkpoint=False, **kwargs)
        self.reshard_after_forward = bool(reshard_after_forward)

    def _setup_distributed(self) -> None:
        super()._setup_distributed()
        # all ranks shard one data-parallel dimension (no tensor parallelism)
        self._data_parallel_size, self._tensor_parallel_size = self.world_size, 1


def shard_model(model: nn.Module, mesh, reshard_after_forward: bool = True) -> None:
    """FSDP2 units: every tower block, then each top-level part with parameters (towers, `post_pool`, pooling,
    projections). The two 0-d temperatures stay replicated: FSDP2 cannot shard a 0-d tensor (LAION's
    checkpoints store them 0-d), so their gradient is averaged by `ClapLit` itself."""
    from torch.distributed.fsdp import fully_shard

    kw = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    for mod in list(model.modules()):
        if is_block(mod):
            fully_shard(mod, **kw)
    post_pool = getattr(getattr(model, "audio_branch", None), "post_pool", None)
    parts = ([post_pool] if post_pool is not None else []) + [m for _, m in model.named_children()]
    for mod in parts:  # post_pool first: it runs after the audio tower's forward, outside it
        if any(True for _ in mod.parameters()):
            fully_shard(mod, **kw)


def deepspeed(stage: int = 2, offload_optimizer: bool = False, offload_parameters: bool = False, **kwargs):
    from lightning.pytorch.strategies import DeepSpeedStrategy

    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ImportError(f"trainer=deepspeed_stage_{stage} needs DeepSpeed, an optional extra built from source "
                          "on a CUDA machine: pip install -e '.[deepspeed]'") from None
    return DeepSpeedStrategy(stage=stage, offload_optimizer=offload_optimizer, offload_parameters=offload_parameters,
                             **kwargs)
