import pytest
import torch

from clap_train.audio.frontend import LogMel
from clap_train.audio.fusion import crop_ranges, fusion_mels
from clap_train.audio.htsat import HTSAT, build_htsat

SMALL = dict(
    name=None, embed_dim=16, depths=[2, 2], num_heads=[2, 4], n_mels=16, spec_size=64, window_size=4, drop_path_rate=0.0
)


@pytest.mark.parametrize("name,dim", [("tiny", 768), ("base", 1024), ("large", 2048)])
def test_sizes_build_on_meta(name, dim):
    with torch.device("meta"):
        m = build_htsat(name)
    assert m.out_dim == m.frame_dim == dim and m.time_stride == 32 and m.freq_ratio == 4


def test_frames_are_time_ordered_and_average_to_the_clip_embedding():
    torch.manual_seed(0)
    m = HTSAT(**SMALL).eval()
    mel = torch.randn(2, 101, 16)
    frames = m.forward_frames(mel)
    assert frames.shape == (2, 32, 32)  # 4 time chunks x 8 token columns, width 16 * 2
    # LAION's clip embedding is the mean of all final tokens: our frames must average to it
    x = m.bn0(mel[:, None].transpose(1, 3)).transpose(1, 3)
    tokens = m.patch_embed(m.fold(x), None)
    for layer in m.layers:
        tokens = layer(tokens)
    torch.testing.assert_close(frames.mean(1), m.norm(tokens).mean(1))
    # a change confined to the last quarter of the clip moves mostly the last quarter of the frames
    late = mel.clone()
    late[:, 80:] += 5
    d = (m.forward_frames(late) - frames).abs().mean((0, 2))
    assert d[-8:].mean() > 3 * d[:8].mean()


def test_too_many_frames_is_a_clear_error():
    m = HTSAT(**SMALL)
    with pytest.raises(ValueError, match="at most 256 mel frames"):
        m.forward_frames(torch.randn(1, 300, 16))


def test_gradient_checkpointing_gives_equal_gradients():
    torch.manual_seed(0)
    a = HTSAT(**SMALL).double()
    b = HTSAT(**SMALL, gradient_checkpointing=True).double()
    b.load_state_dict(a.state_dict())
    mel = torch.randn(2, 101, 16, dtype=torch.float64)
    for m in (a, b):
        m.train()
        m.bn0.eval()  # batch statistics are not what is compared here
        m.forward_frames(mel).pow(2).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=n)


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    m = HTSAT(**SMALL).eval()
    mel = torch.randn(2, 101, 16)
    ref = m.forward_frames(mel)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.forward_frames(mel)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_crop_ranges_match_numpy_array_split():
    import numpy as np

    for total in (1002, 1003, 1004, 1500, 2999):
        want = [(int(r[0]), int(r[-1])) if len(r) else (0, 0) for r in np.array_split(list(range(total - 1001 + 1)), 3)]
        assert crop_ranges(total, 1001) == want


def test_fusion_input_deterministic_in_eval_random_in_training():
    fe = LogMel(n_mels=16)
    clip = 48000
    audio = torch.zeros(3, 3 * clip)
    audio.normal_(generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([clip, clip // 2, 3 * clip])
    audio[1, clip // 2 :] = 0
    x1, l1 = fusion_mels(fe, audio, lens, clip, training=False)
    x2, _ = fusion_mels(fe, audio, lens, clip, training=False)
    assert torch.equal(x1, x2) and l1.tolist() == [False, False, True]
    assert x1.shape == (3, 4, 101, 16)
    assert torch.equal(x1[0, 0], x1[0, 3])  # not longer: four copies
    torch.manual_seed(0)
    draws = {tuple(fusion_mels(fe, audio, lens, clip, training=True)[0][2, 1, :, 0].tolist()[:3]) for _ in range(5)}
    assert len(draws) > 1
    # a batch with no long clip gets one marked longer in training (fusion weights stay in the graph)
    _, l3 = fusion_mels(fe, audio[:2, :clip], lens[:2], clip, training=True)
    assert int(l3.sum()) == 1
    _, l4 = fusion_mels(fe, audio[:2, :clip], lens[:2], clip, training=False)
    assert int(l4.sum()) == 0


def test_fusion_trains_on_a_batch_whose_only_longer_clip_is_the_forced_one():
    # short clips only: one is marked longer, so AFF's pooled BatchNorms see one value per channel
    from clap_train.audio.fusion import AFF

    torch.manual_seed(0)
    m = HTSAT(**{**SMALL, "fusion": True}).train()
    fe = LogMel(n_mels=16)
    clip = 16000
    audio = torch.randn(3, clip) * 0.1
    x, longer = fusion_mels(fe, audio, torch.full((3,), clip), clip, training=True)
    assert int(longer.sum()) == 1
    m.forward_frames(x, longer).sum().backward()
    aff = m.patch_embed.fusion_model
    assert aff.training and all(p.grad is not None for p in aff.parameters())
    # that branch used the running statistics; batches of two or more use their own, as before
    a = AFF(8).train()
    z = torch.randn(1, 8, 3, 3)
    ref = torch.sigmoid(a.local_att(z + z) + a.global_att.eval()(z + z))
    a.train()
    assert torch.allclose(a(z, z), 2 * z * ref + 2 * z * (1 - ref))
    assert all(n.training for n in a.global_att)
