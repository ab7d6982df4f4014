"""Speed options from the config give the results of the plain path: torch.compile of the towers, fused
AdamW, bf16 autocast, SDPA attention in both towers, pinned memory reaching the loader."""

import copy

import lightning as L
import pytest
import torch

from clap_train.compile import compile_towers
from clap_train.lit import ClapLit
from clap_train.testing import bare_trainer, repeat_loader
from tests.test_model import CFG


def _batch(model, b=4):
    g = torch.Generator().manual_seed(3)
    return {
        "audio": torch.randn(b, 8000, generator=g) * 0.1,
        "audio_len": torch.full((b,), 8000),
        "text": model.tokenizer([f"sound number {i}" for i in range(b)]),
    }


def _loss_and_grads(lit, batch):
    lit.model.zero_grad(set_to_none=True)
    a, t, s = lit.model(batch)
    loss = lit.loss_fn(a, t, s)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in lit.model.named_parameters() if p.grad is not None}


def test_compiled_towers_give_the_eager_loss_and_gradients():
    torch.manual_seed(0)
    eager = ClapLit(CFG).eval()
    compiled = copy.deepcopy(eager)
    compile_towers(compiled.model, {"enabled": True, "backend": "aot_eager"})
    batch = _batch(eager.model)
    (l1, g1), (l2, g2) = _loss_and_grads(eager, batch), _loss_and_grads(compiled, batch)
    assert torch.allclose(l1, l2, atol=1e-6) and g1.keys() == g2.keys()
    assert all(torch.allclose(g1[k], g2[k], atol=1e-6) for k in g1)
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())  # checkpoints unchanged
    with pytest.raises(ValueError, match="compile: unknown key.*valid keys"):
        ClapLit(CFG, compile={"enable": True})


def test_compile_compiles_in_the_real_training_loop():
    """Step 1 is counted for FLOPs (eagerly); Dynamo must still compile the towers for the steps after it (it
    compiled nothing when the count ran under its dispatch mode), with the eager losses."""
    from torch._dynamo.utils import counters

    # dropout off: compiled and eager code do not draw the same random masks
    cfg = {
        **CFG,
        "audio_encoder": {**CFG["audio_encoder"], "dropout": 0.0, "post_dropout": 0.0},
        "text_encoder": {
            **CFG["text_encoder"],
            "config": {
                **CFG["text_encoder"]["config"],
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
            },
        },
    }
    _, eager = _train(steps=4, cfg=cfg)
    torch._dynamo.reset()
    counters.clear()
    lit, compiled = _train(steps=4, compile={"enabled": True, "backend": "aot_eager"}, cfg=cfg)
    assert lit.flops_per_step > 0
    assert counters["stats"]["unique_graphs"] >= 2, dict(counters["stats"])  # both towers at least
    assert compiled == pytest.approx(eager, abs=1e-5)


def test_compiling_pads_captions_to_a_few_lengths():
    lit = ClapLit(CFG, compile={"enabled": True, "backend": "aot_eager"})
    tok = lit.model.tokenizer
    lengths = {tok(["word " * n])["input_ids"].shape[1] for n in range(1, 120)}
    assert lengths == {16, 32, 48, 64, 77}  # max_length 77: never longer
    out = tok(["a", "a b c"])
    assert out["attention_mask"].sum(1).tolist() == [3, 5] and out["input_ids"].shape[1] == 16
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="compile.text_pad_multiple"):
            ClapLit(CFG, compile={"text_pad_multiple": bad})


class _Steps(L.LightningDataModule):
    def __init__(self, batch, n):
        super().__init__()
        self.batch, self.n = batch, n

    def train_dataloader(self):
        return repeat_loader(self.batch, self.n)


def _train(optim=None, precision="32-true", steps=3, compile=None, cfg=CFG):
    torch.manual_seed(0)
    lit = ClapLit(cfg, optim={"warmup_steps": 1, "total_steps": 10, **(optim or {})}, compile=compile)
    trainer = bare_trainer(accelerator="cpu", devices=1, max_steps=steps, precision=precision)
    losses = []

    class Rec(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer.callbacks.append(Rec())
    trainer.fit(lit, datamodule=_Steps(_batch(lit.model), steps))
    return lit, losses


def test_fused_adamw_steps_like_the_default():
    a, la = _train({"fused": False})
    b, lb = _train({"fused": True})  # torch's fused CPU kernel
    assert b.optimizers().optimizer.defaults["fused"] and not a.optimizers().optimizer.defaults["fused"]
    assert la == pytest.approx(lb, abs=1e-5)
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert max((pa[k] - pb[k]).abs().max().item() for k in pa) < 1e-5


def test_bf16_autocast_trains_close_to_fp32():
    _, l32 = _train()
    # with gradient clipping (ours: Lightning's refused fused optimisers under mixed precision)
    lit, l16 = _train(precision="bf16-mixed")
    assert l16[0] == pytest.approx(l32[0], rel=2e-2) and all(torch.isfinite(torch.tensor(l16)))
    assert all(p.dtype == torch.float32 for p in lit.model.parameters())  # master weights stay fp32
    assert lit.optimizers().optimizer.defaults["fused"]


def test_sdpa_in_both_towers(monkeypatch):
    import torch.nn.functional as F

    from clap_train.audio.htsat import build_htsat
    from clap_train.text.tower import TextTower

    tower = TextTower(pretrained=False, config={"num_hidden_layers": 1})
    assert tower.model.config._attn_implementation == "sdpa"
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    h = build_htsat(None, embed_dim=8, depths=[1, 1], num_heads=[1, 2], n_mels=32, spec_size=64, window_size=4)
    h(torch.randn(1, 100, 32))
    assert len(calls) == 2  # one per Swin block


def test_loader_options_reach_the_dataloader(synth_root, tokenize):
    from tests.data.test_datamodule import make_dm

    dl = (
        make_dm(synth_root, pin_memory=True, persistent_workers=True, multiprocessing_context="forkserver")
        .bind(tokenize)
        .train_dataloader()
    )
    assert dl.pin_memory and dl.persistent_workers and dl.multiprocessing_context.get_start_method() == "forkserver"


def test_loader_options_auto_are_on_for_gpu_runs_only(synth_root):
    from tests.data.test_datamodule import make_dm

    dm = make_dm(synth_root)  # the defaults: auto
    assert (dm.pin_memory, dm.persistent_workers, dm.mp_context) == (False, False, None)
    dm.resolve_loader_opts(gpu=True)
    assert (dm.pin_memory, dm.persistent_workers, dm.mp_context) == (True, True, "forkserver")
    dm = make_dm(synth_root, pin_memory=False, multiprocessing_context="spawn")
    dm.resolve_loader_opts(gpu=True)
    assert (dm.pin_memory, dm.persistent_workers, dm.mp_context) == (False, True, "spawn")
    for bad in (
        {"pin_memory": "yes"},
        {"persistent_workers": 1},
        {"multiprocessing_context": "threads"},
        {"prefetch_factor": 0},
    ):
        with pytest.raises(ValueError, match=f"data.{next(iter(bad))}="):
            make_dm(synth_root, **bad)


def test_accumulation_runs_on_one_device_through_lightning():
    """`optim.accumulate` on a single device (trainer=gpu, trainer=cpu): Lightning's SingleDeviceStrategy has
    no `block_backward_sync`, which the micro-batch backward asked it for (AttributeError at step 1)."""
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in ClapLit(CFG).model.state_dict().items()}
    lit, four = _train(optim={"accumulate": 4}, steps=2)
    assert lit.optim_cfg.accumulate == 4 and len(four) == 2 and all(torch.isfinite(torch.tensor(four)))
    assert any(not torch.equal(init[k], v) for k, v in lit.model.state_dict().items())  # it stepped
    # (equal to one batch with BatchNorm frozen and dropout off: tests/test_lit.py, scripts/gpu_check.py)
