import pytest
import torch

from clap_train.audio.pooling import AttentionPool, MaxMeanPool, MeanPool, build_pooling

B, T, C = 3, 7, 5
LENGTHS = [7, 4, 1]


def _data():
    torch.manual_seed(0)
    frames = torch.randn(B, T, C)
    mask = torch.arange(T)[None] < torch.tensor(LENGTHS)[:, None]
    return frames, mask


def _naive(pool, frames, mask):
    outs = []
    for b in range(B):
        valid = [frames[b, t] for t in range(T) if mask[b, t]]
        v = torch.stack(valid)
        if isinstance(pool, MeanPool):
            outs.append(v.mean(0))
        elif isinstance(pool, MaxMeanPool):
            outs.append(v.max(0).values + v.mean(0))
        else:
            scores = torch.stack([pool.score(torch.tanh(pool.proj(h))).squeeze() for h in valid])
            w = scores.exp() / scores.exp().sum()
            outs.append(sum(wi * h for wi, h in zip(w, valid)))
    return torch.stack(outs)


POOLS = [MeanPool(), MaxMeanPool(), AttentionPool(C, hidden=6)]


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: type(p).__name__)
def test_matches_naive_loop(pool):
    frames, mask = _data()
    torch.testing.assert_close(pool(frames, mask), _naive(pool, frames, mask))
    full = torch.ones(B, T, dtype=torch.bool)
    torch.testing.assert_close(pool(frames), _naive(pool, frames, full))
    torch.testing.assert_close(pool(frames, full), pool(frames))


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: type(p).__name__)
def test_padded_frames_do_not_matter(pool):
    frames, mask = _data()
    other = frames.clone()
    other[~mask] = torch.tensor([1e6, float("inf"), float("nan"), -1e6, 0.0])
    torch.testing.assert_close(pool(other, mask), pool(frames, mask))


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: type(p).__name__)
def test_gradients_flow_only_to_valid_frames(pool):
    frames, mask = _data()
    frames.requires_grad_(True)
    pool(frames, mask).sum().backward()
    assert torch.isfinite(frames.grad).all()
    assert frames.grad[~mask].abs().sum() == 0
    assert frames.grad[mask].abs().sum() > 0
    for p in pool.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: type(p).__name__)
def test_fully_padded_row_is_zero_and_finite(pool):
    frames, mask = _data()
    mask[2] = False
    frames.requires_grad_(True)
    out = pool(frames, mask)
    assert torch.equal(out[2], torch.zeros(C))
    out.sum().backward()
    assert torch.isfinite(frames.grad).all()


def test_build_pooling():
    assert isinstance(build_pooling("mean", 4), MeanPool)
    assert isinstance(build_pooling("maxmean", 4), MaxMeanPool)
    att = build_pooling("attention", 4)
    assert isinstance(att, AttentionPool) and att(torch.randn(2, 3, 4)).shape == (2, 4)
    with pytest.raises(ValueError, match="attention.*maxmean.*mean"):
        build_pooling("max", 4)
