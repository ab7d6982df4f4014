import torch

from clap_train.audio.augment import SpecAugment


def test_eval_is_identity():
    x = torch.randn(2, 1, 100, 64)
    m = SpecAugment().eval()
    assert m(x) is x


def test_train_zeros_stripes_and_keeps_shape():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 200, 64)
    y = SpecAugment(time_drop_width=64, freq_drop_width=8).train()(x)
    assert y.shape == x.shape
    zero = y == 0
    assert zero.any() and not zero.all()
    kept = ~zero
    torch.testing.assert_close(y[kept], x[kept])
    # zeros form whole stripes: each zeroed element lies in a fully zero row or column
    row = zero.all(dim=3, keepdim=True)
    col = zero.all(dim=2, keepdim=True)
    assert torch.equal(zero, row | col)
    assert row.squeeze().sum(1).max() < 2 * 64 and col.squeeze().sum(1).max() < 2 * 8


def test_same_seed_same_mask():
    x = torch.randn(3, 1, 120, 64)
    m = SpecAugment().train()
    torch.manual_seed(123)
    a = m(x)
    torch.manual_seed(123)
    b = m(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, m(x))  # RNG advanced -> new mask


def test_zero_widths_disable():
    x = torch.randn(2, 1, 50, 64)
    m = SpecAugment(time_drop_width=0, freq_drop_width=0).train()
    assert not m.enabled and m(x) is x
    only_freq = SpecAugment(time_drop_width=0).train()
    torch.manual_seed(1)
    y = only_freq(x)
    assert torch.equal((y == 0).all(dim=2, keepdim=True).expand_as(y), y == 0)
