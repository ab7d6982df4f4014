"""Sharded strategies for the `trainer/` presets: FSDP (FSDP2 through Lightning) and DeepSpeed ZeRO.

What gets wrapped: each repeated block of either tower, as the tower declares it (`wrap_units`: Swin
blocks, PANN conv blocks, the text transformer's layers), is its own FSDP unit, so one block's full
weights exist at a time; a new tower needs no edit here. Checkpoints are
written as full state dicts, so they load anywhere (`load_model`, another world size, no FSDP).
"""

from __future__ import annotations

from datetime import timedelta

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, ModelParallelStrategy
from torch import nn


def wrap_units(model: nn.Module) -> list[nn.Module]:
    """The blocks both towers declare as their FSDP units."""
    return model.audio_branch.wrap_units() + model.text_branch.wrap_units()


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
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if any(isinstance(m, FSDPModule) for m in model.modules()):  # `trainer.test` after `fit`: sharded already
        return
    kw = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    for mod in wrap_units(model):
        fully_shard(mod, **kw)
    post_pool = getattr(getattr(model, "audio_branch", None), "post_pool", None)
    parts = ([post_pool] if post_pool is not None else []) + [m for _, m in model.named_children()]
    for mod in parts:  # post_pool first: it runs after the audio tower's forward, outside it
        if any(True for _ in mod.parameters()):
            fully_shard(mod, **kw)


def full_weights_for_eval(model: nn.Module, on: bool, reshard_after_forward: bool) -> None:
    """Under FSDP2 every forward is a collective, but eval sets split unevenly across ranks: evaluation runs
    on gathered full weights (no gradients or optimiser state alongside), so no eval forward communicates;
    `on=False` shards them again."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_reshard_after_forward(reshard_after_forward if not on else False, recurse=False)
            m.unshard() if on else m.reshard()


def deepspeed_config(trainer) -> dict | None:
    """The DeepSpeed config dict of the trainer's strategy, or None under any other strategy."""
    cfg = getattr(getattr(trainer, "strategy", None), "config", None)
    return cfg if isinstance(cfg, dict) and "zero_optimization" in cfg else None


def fill_deepspeed_config(ds: dict, clip_grad: float, precision: str, micro_batch: int) -> None:
    """Our settings in DeepSpeed's config, before the strategy builds the engine (after LightningModule.setup)."""
    # DeepSpeed clips inside its step (p.grad is empty under ZeRO), with the same global norm as ours
    ds["gradient_clipping"] = float(clip_grad or 0.0)
    if precision.startswith("bf16"):
        # skip non-finite steps in bf16 too (DeepSpeed checks fp16 and fp32 only by default)
        ds.setdefault("bf16", {"enabled": True})["check_grad_overflow"] = True
    # Lightning would read `train_dataloader.batch_sampler.batch_size`; our loader batches itself
    ds.setdefault("train_micro_batch_size_per_gpu", micro_batch)


class ClapDeepSpeed(DeepSpeedStrategy):
    """Lightning's DeepSpeedStrategy, also on CPU ranks (DS_ACCELERATOR=cpu, gloo): Lightning refuses any
    accelerator but CUDA in `setup_environment` and checks CUDA device indices in `setup_distributed`;
    DeepSpeed itself runs ZeRO-2/3 on CPU. On GPUs nothing changes."""

    @property
    def root_device(self):
        # DeepSpeed reads the rank's device index (`device_rank`), None for a plain "cpu"; a CPU tensor's
        # device never carries an index, so "cpu:<local rank>" changes nothing else
        d = super().root_device
        return torch.device("cpu", self.local_rank) if d.type == "cpu" else d

    def setup_environment(self) -> None:
        if self.root_device.type == "cpu":
            super(DeepSpeedStrategy, self).setup_environment()  # DDPStrategy's: processes, ranks, gloo
            return
        super().setup_environment()

    def setup_distributed(self) -> None:
        if self.root_device.type != "cpu":
            return super().setup_distributed()
        import deepspeed.ops
        from lightning.fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce on start-up (a C++ build: ~55 s
        # on a fresh machine) that only its inference path calls; ZeRO's collectives go through gloo
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        self._init_deepspeed_distributed()

    def setup(self, trainer) -> None:
        # DeepSpeed's bf16/fp16 casts every floating tensor of a batch: the waveform would be rounded
        # before the fp32 log-mel. It stays as it came; the model casts the mel for the towers.
        convert = self.precision_plugin.convert_input

        def keep_waveform(batch):
            out = convert(batch)
            if isinstance(batch, dict) and "audio" in batch:
                out["audio"] = batch["audio"]
            return out

        self.precision_plugin.convert_input = keep_waveform
        super().setup(trainer)

    def init_deepspeed(self, *args, **kwargs):
        # DeepSpeed broadcasts (and ZeRO-3 partitions) parameters through byte views, which a 0-d tensor
        # cannot give: the temperatures, 0-d as in LAION's checkpoints, become 1-element parameters
        # here (before the optimiser is built), and still save and load as 0-d
        one_element_scalars(self.lightning_module)
        if "mixed" in str(self.precision_plugin.precision):  # bf16-mixed / 16-mixed: half weights, fp32 stats
            fp32_batchnorm(self.lightning_module)
        return super().init_deepspeed(*args, **kwargs)


def deepspeed(stage: int = 2, offload_optimizer: bool = False, offload_parameters: bool = False, **kwargs):
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ImportError(
            f"trainer=deepspeed_stage_{stage} needs DeepSpeed, an optional extra: pip install -e '.[deepspeed]'"
        ) from None
    return ClapDeepSpeed(
        stage=stage, offload_optimizer=offload_optimizer, offload_parameters=offload_parameters, **kwargs
    )


def fit_scalar_shapes(state_dict: dict, own: dict) -> dict:
    """0-d temperatures in files, 1-element parameters under DeepSpeed (one_element_scalars): each loads
    into the other's shape."""
    return {
        k: v.reshape(own[k]) if k in own and v.shape != own[k] and v.numel() == 1 == own[k].numel() else v
        for k, v in state_dict.items()
    }


def one_element_scalars(module: nn.Module) -> None:
    """Every 0-d parameter of `module` becomes a 1-element one; its state dict still holds the 0-d shape."""
    for mod in module.modules():
        names = [n for n, p in mod.named_parameters(recurse=False) if p.ndim == 0]
        if not names:
            continue
        for n in names:
            p = getattr(mod, n)
            setattr(mod, n, nn.Parameter(p.detach().reshape(1), requires_grad=p.requires_grad))

        def save(m, state, prefix, local, names=tuple(names)):
            for n in names:
                if prefix + n in state and state[prefix + n].numel() == 1:  # (ZeRO-3 partitions are empty)
                    state[prefix + n] = state[prefix + n].reshape(())

        mod.register_state_dict_post_hook(save)  # loading: ClapLit.load_state_dict fits the shape


def fp32_batchnorm(module: nn.Module) -> None:
    """BatchNorm in fp32 inside DeepSpeed's bf16/fp16 engines: they cast parameters but keep the running
    statistics fp32, which torch's batch_norm refuses beside half-precision weights. Each BatchNorm computes
    in fp32 (weights upcast, gradients flow back to the half-precision parameters) and returns the input's
    dtype. Also what LAION's recipe keeps fp32 under AMP: the normalisation of the log-mel (`bn0`)."""
    import types

    import torch.nn.functional as F

    def forward(self, x):
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        train = self.training or self.running_mean is None
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        y = F.batch_norm(x.float(), self.running_mean, self.running_var, w, b, train, momentum, self.eps)
        return y.to(x.dtype)

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.forward = types.MethodType(forward, m)
