"""Freezing audio stages for fine-tuning: no gradients, no optimiser state, BatchNorm statistics untouched."""

import pytest
import torch

from clap_train.audio.htsat import build_htsat
from clap_train.audio.pann import build_pann


def _pann():
    return build_pann("tiny", channels=[4, 4, 8, 8], n_mels=32)


def test_pann_frozen_stages_keep_weights_and_running_stats():
    torch.manual_seed(0)
    enc = _pann()
    enc.freeze(2)
    enc.train()
    frozen = {n: p.clone() for n, p in enc.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("bn0", "conv_block1", "conv_block2")) for n in frozen)
    stats = {n: b.clone() for n, b in enc.named_buffers() if n.startswith(("bn0", "conv_block1", "conv_block2"))}
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        enc.forward_frames(torch.randn(3, 50, 32)).sum().backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in enc.named_parameters() if n in frozen)
    assert all(torch.equal(b, stats[n]) for n, b in enc.named_buffers() if n in stats)
    # the trainable stages did learn and their statistics moved
    assert enc.conv_block3.conv1.weight.grad is not None
    assert not torch.equal(enc.conv_block4.bn1.running_mean, torch.zeros_like(enc.conv_block4.bn1.running_mean))


def test_whole_tower_frozen_is_in_eval_mode_and_htsat_stages():
    enc = _pann()
    enc.freeze(-1)
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    h = build_htsat(None, embed_dim=8, depths=[1, 1], num_heads=[1, 2], n_mels=32, spec_size=64, window_size=4)
    h.freeze(1)
    trainable = {
        n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("layers") else "")
        for n, p in h.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"layers.1", "norm"}
    with pytest.raises(ValueError, match="valid: 0..2 stages"):
        build_htsat(None, embed_dim=8, depths=[1, 1], num_heads=[1, 2], n_mels=32, spec_size=64, window_size=4).freeze(
            3
        )
