import math

import torch
import torch.nn.functional as F

from clap_train.loss import ContrastiveLoss


def naive(a, t, s):
    """Symmetric InfoNCE written out row by row."""
    n = a.shape[0]
    la = lt = 0.0
    for i in range(n):
        la += -math.log(math.exp(s * (a[i] @ t[i]).item()) / sum(math.exp(s * (a[i] @ t[j]).item()) for j in range(n)))
        lt += -math.log(math.exp(s * (t[i] @ a[i]).item()) / sum(math.exp(s * (t[i] @ a[j]).item()) for j in range(n)))
    return (la + lt) / (2 * n)


def test_matches_naive_reference():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=-1)
    got = ContrastiveLoss()(a, t, torch.tensor(7.0, dtype=torch.float64)).item()
    assert abs(got - naive(a, t, 7.0)) < 1e-10


def test_perfect_alignment_low_loss_and_gradients_flow():
    a = F.normalize(torch.randn(8, 16), dim=-1).requires_grad_(True)
    loss_same = ContrastiveLoss()(a, a.detach(), torch.tensor(100.0))
    loss_rand = ContrastiveLoss()(a, F.normalize(torch.randn(8, 16), dim=-1), torch.tensor(100.0))
    assert loss_same < 0.01 < loss_rand
    loss_rand.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_symmetric_in_swapping_towers():
    a, t = F.normalize(torch.randn(5, 4), dim=-1), F.normalize(torch.randn(5, 4), dim=-1)
    s = torch.tensor(3.0)
    assert torch.allclose(ContrastiveLoss()(a, t, s), ContrastiveLoss()(t, a, s))
