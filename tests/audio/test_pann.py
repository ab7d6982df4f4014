import pytest
import torch

from clap_train.audio.encoder import AudioEncoder
from clap_train.audio.pann import Cnn14, CnnTiny, build_pann

B, T, F = 2, 101, 64
# name -> (frame_dim, time_stride)
SPECS = {"cnn14": (2048, 32), "cnn10": (1024, 32), "cnn6": (512, 16), "tiny": (128, 16)}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_pann(name) for name in SPECS}


@pytest.mark.parametrize("name", list(SPECS))
def test_shapes_and_backward(models, name):
    m = models[name].train()
    dim, stride = SPECS[name]
    assert isinstance(m, AudioEncoder)
    assert m.frame_dim == m.out_dim == dim and m.n_mels == F and m.time_stride == stride
    mel = torch.randn(B, T, F, requires_grad=True)
    frames = m.forward_frames(mel)
    assert frames.shape == (B, T // stride, dim)
    emb = m.post_pool(frames.amax(1) + frames.mean(1))
    assert emb.shape == (B, m.out_dim)
    emb.sum().backward()
    assert mel.grad is not None and torch.isfinite(mel.grad).all()
    assert m.conv_block1.conv1.weight.grad is not None and m.post_pool.fc1.weight.grad is not None
    m.zero_grad(set_to_none=True)


def test_eval_deterministic_and_batch_independent():
    m = CnnTiny(spec_augment={}).eval()  # SpecAugment present but inactive in eval
    mel = torch.randn(B, T, F)
    a = m.post_pool(m(mel).mean(1))
    torch.testing.assert_close(a, m.post_pool(m(mel).mean(1)), rtol=0, atol=0)
    torch.testing.assert_close(m(mel[:1]), m(mel)[:1])


def test_train_mode_is_stochastic_with_spec_augment():
    m = CnnTiny(spec_augment={"time_drop_width": 8, "freq_drop_width": 4}, dropout=0.0).train()
    mel = torch.randn(B, T, F)
    torch.manual_seed(5)
    a = m(mel)
    torch.manual_seed(5)
    b = m(mel)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, m(mel))


def test_cnn14_parameter_count(models):
    m = models["cnn14"]
    chans = [1, 64, 128, 256, 512, 1024, 2048]
    # double 3x3 conv (no bias) + two BN (weight, bias) per block; bn0; fc1 (w + b)
    expected = sum(9 * ci * co + 9 * co * co + 4 * co for ci, co in zip(chans, chans[1:]))
    expected += 2 * 64 + 2048 * 2048 + 2048
    n = sum(p.numel() for p in m.parameters())
    assert n == expected == 79_673_792
    # PANN's Cnn14 adds fc_audioset (2048 -> 527): 80,753,615 parameters in total
    assert n + 2048 * 527 + 527 == 80_753_615


def test_channels_last_matches():
    torch.manual_seed(0)
    a = CnnTiny().eval()
    b = CnnTiny(channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    mel = torch.randn(B, T, F)
    torch.testing.assert_close(b(mel), a(mel), rtol=1e-4, atol=1e-5)


def test_state_dict_names_and_init():
    m = CnnTiny(channels=(8, 16))
    keys = set(m.state_dict())
    for k in [
        "bn0.weight",
        "bn0.running_mean",
        "conv_block1.conv1.weight",
        "conv_block1.bn1.weight",
        "conv_block1.conv2.weight",
        "conv_block2.bn2.bias",
        "post_pool.fc1.weight",
    ]:
        assert k in keys
    assert not any("conv1.bias" in k for k in keys)  # PANN convs have no bias
    assert torch.equal(m.post_pool.fc1.bias, torch.zeros(16))
    assert torch.equal(m.bn0.weight, torch.ones(F))
    assert "conv_block1.conv2.weight" not in build_pann("cnn6").state_dict()  # single 5x5 conv
    assert build_pann("cnn6").conv_block1.conv1.kernel_size == (5, 5)


def test_custom_config(models):
    assert isinstance(models["cnn14"], Cnn14) and models["cnn14"].pools == (2, 2, 2, 2, 2, 1)
    tiny = CnnTiny(channels=(4, 8, 16), n_mels=32, post_dropout=0.1)
    assert tiny.bn0.num_features == 32 and tiny.post_pool.dropout.p == 0.1
    assert tiny(torch.randn(1, 40, 32)).shape == (1, 5, 16)


def test_unknown_name():
    with pytest.raises(ValueError, match="cnn10.*cnn14.*cnn6.*tiny"):
        build_pann("cnn12")


def test_gradient_checkpointing_gives_equal_gradients():
    torch.manual_seed(0)
    a = CnnTiny(channels=(4, 8), dropout=0.0, post_dropout=0.0).double()
    b = CnnTiny(channels=(4, 8), dropout=0.0, post_dropout=0.0, gradient_checkpointing=True).double()
    b.load_state_dict(a.state_dict())
    mel = torch.randn(3, 40, 64, dtype=torch.float64)
    for m in (a, b):
        m.train()
        m.post_pool(m.forward_frames(mel).mean(1)).pow(2).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=n)
    # running statistics advance once per forward, not again in the recomputation
    torch.testing.assert_close(a.conv_block1.bn1.running_mean, b.conv_block1.bn1.running_mean)
