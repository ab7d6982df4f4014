"""Every trainer/ preset's strategy object, built from the real conf/, and the sharded maths proven with
torch's own FSDP2 (`fully_shard`) on 2 gloo processes: the same gradients as one process, whole batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate

from tests.e2e.conftest import compose_cfg
from tests.test_lit import MODEL

PRESETS = sorted(f[:-5] for f in os.listdir(os.path.join(os.path.dirname(__file__), "..", "conf", "trainer")))


def test_every_preset_is_covered():
    assert PRESETS == ["cpu", "ddp", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp", "gpu"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_its_strategy(tmp_path, preset):
    from lightning.pytorch.strategies import FSDPStrategy

    from clap_train.strategies import block_wrap_policy

    t = compose_cfg(tmp_path, [f"trainer={preset}"]).trainer
    assert t.use_distributed_sampler is False and t.num_sanity_val_steps == 0  # inherited from cpu
    strategy = t.get("strategy")
    if preset in ("cpu", "gpu"):
        assert strategy is None and t.devices == 1
    elif preset == "ddp":
        assert strategy == "ddp" and t.precision == "bf16-mixed"
    elif preset == "fsdp":
        s = instantiate(strategy)
        assert isinstance(s, FSDPStrategy) and t.accelerator == "gpu" and t.precision == "bf16-mixed"
        assert s.sharding_strategy.name == "FULL_SHARD" and s._state_dict_type == "full"
        assert s.kwargs["auto_wrap_policy"] is block_wrap_policy
    else:
        stage = int(preset[-1])
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            with pytest.raises(Exception, match=r"needs DeepSpeed.*pip install -e '\.\[deepspeed\]'"):
                instantiate(strategy)
            return
        s = instantiate(strategy)
        assert s.config["zero_optimization"]["stage"] == stage


def test_wrap_policy_takes_every_tower_block(tmp_path):
    from clap_train.model import build_model
    from clap_train.strategies import block_wrap_policy, is_block

    cfg = compose_cfg(tmp_path, ["audio_encoder=htsat_mini"])
    from omegaconf import OmegaConf

    m = build_model(OmegaConf.to_container(cfg.model, resolve=True))
    blocks = [n for n, mod in m.named_modules() if is_block(mod)]
    assert sum(n.startswith("audio_branch.layers.") for n in blocks) == 6  # htsat_mini: 2+2+2 Swin blocks
    assert sum(n.startswith("text_branch.model.encoder.layer.") for n in blocks) == m.text_branch.model.config.num_hidden_layers
    assert block_wrap_policy(m, True, 0) and not block_wrap_policy(m.audio_branch, False, 0)


# --- FSDP2 on CPU ----------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_and_batch():
    from clap_train.model import build_model

    torch.manual_seed(0)
    m = build_model(MODEL).double()
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.eval()
    g = torch.Generator().manual_seed(1)
    caps = [f"clip {i} is {'a bell' if i % 3 else 'a drum'} played {i} times" for i in range(8)]
    batch = {"audio": (torch.randn(8, 4000, generator=g) * 0.1).double(), "audio_len": torch.full((8,), 4000),
             "text": m.tokenizer(caps)}
    return m, batch


def fsdp_worker(rank, world, port, out):
    from datetime import timedelta

    from torch.distributed.fsdp import fully_shard

    from clap_train.loss import ContrastiveLoss
    from clap_train.strategies import is_block

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=120))
    m, full = model_and_batch()
    for mod in list(m.modules()):
        if is_block(mod):
            fully_shard(mod)
    # FSDP2 refuses 0-d parameters (the temperatures, 0-d in LAION's checkpoints): the towers and heads
    # are sharded, the two scalars stay replicated and their gradient is averaged by hand
    for mod in (m.audio_branch, m.text_branch, m.audio_projection, m.text_projection):
        fully_shard(mod)
    b = 8 // world
    sl = slice(rank * b, (rank + 1) * b)
    mine = {"audio": full["audio"][sl], "audio_len": full["audio_len"][sl],
            "text": {k: v[sl] for k, v in full["text"].items()}}
    a, t, s = m(mine)
    ContrastiveLoss()(a, t, s).backward()  # FSDP2 reduce-scatters: each rank keeps the mean grad's shard
    dist.all_reduce(m.logit_scale_a.grad)
    m.logit_scale_a.grad /= world
    local = lambda t: t.full_tensor() if hasattr(t, "full_tensor") else t  # noqa: E731
    grads = {n: local(p.grad) for n, p in m.named_parameters() if p.grad is not None}
    sharded = sum(p.to_local().numel() for p in m.parameters() if hasattr(p, "to_local"))
    sharded = 0 < sharded < sum(p.numel() for p in m.parameters() if hasattr(p, "to_local"))
    if rank == 0:
        torch.save({"grads": grads, "sharded": sharded}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_on_two_gloo_ranks_gives_the_single_process_gradients(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(fsdp_worker, args=(2, free_port(), out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    m, batch = model_and_batch()
    from clap_train.loss import ContrastiveLoss

    a, t, s = m(batch)
    ContrastiveLoss()(a, t, s).backward()
    want = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    assert got["sharded"] and got["grads"].keys() == want.keys()
    worst = max((got["grads"][k] - want[k]).abs().max().item() / max(1.0, want[k].abs().max().item()) for k in want)
    print(f"FSDP2 2 ranks vs 1 process, float64: max relative grad diff {worst:.1e}")
    assert worst < 1e-10
