"""Sharded strategies for the `trainer/` presets: FSDP (Lightning's FSDPStrategy) and DeepSpeed ZeRO.

What gets wrapped: each repeated block of either tower (Swin blocks, PANN conv blocks, the text
transformer's layers) is its own FSDP unit, so one block's full weights exist at a time. Checkpoints are
written as full state dicts, so they load anywhere (`load_model`, another world size, no FSDP).
"""

from __future__ import annotations

from torch import nn

# Names rather than imports: the text layer class depends on the configured Hugging Face model.
BLOCK_CLASS_NAMES = ("SwinBlock", "ConvBlock", "BertLayer", "RobertaLayer", "XLMRobertaLayer", "ClapTextLayer",
                     "MPNetLayer", "DistilBertLayer", "TransformerBlock")


def is_block(module: nn.Module) -> bool:
    return type(module).__name__ in BLOCK_CLASS_NAMES


def block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy (the callable form): descend everywhere, wrap every tower block."""
    return True if recurse else is_block(module)


def fsdp(sharding_strategy: str = "FULL_SHARD", state_dict_type: str = "full", cpu_offload: bool = False,
         activation_checkpointing: bool = False, **kwargs):
    from lightning.pytorch.strategies import FSDPStrategy

    kw = {}
    if activation_checkpointing:
        kw["activation_checkpointing_policy"] = block_wrap_policy
    return FSDPStrategy(sharding_strategy=sharding_strategy, state_dict_type=state_dict_type,
                        cpu_offload=cpu_offload, auto_wrap_policy=block_wrap_policy, **kw, **kwargs)


def deepspeed(stage: int = 2, offload_optimizer: bool = False, offload_parameters: bool = False, **kwargs):
    from lightning.pytorch.strategies import DeepSpeedStrategy

    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ImportError(f"trainer=deepspeed_stage_{stage} needs DeepSpeed, an optional extra built from source "
                          "on a CUDA machine: pip install -e '.[deepspeed]'") from None
    return DeepSpeedStrategy(stage=stage, offload_optimizer=offload_optimizer, offload_parameters=offload_parameters,
                             **kwargs)
