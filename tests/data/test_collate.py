"""Batches carry audio as int16 PCM by default (LAION's quantisation), turned back into floats on the device."""

import numpy as np
import pytest
import torch

from clap_train.audio.frontend import pcm_to_float
from clap_train.data.collate import stack_audio
from clap_train.data.decode import AudioSpec


def test_int16_transport_is_laions_quantisation_and_half_the_bytes():
    rng = np.random.default_rng(0)
    clips = [rng.uniform(-1.3, 1.3, 800).astype(np.float32), rng.uniform(-1, 1, 500).astype(np.float32)]
    samples = [{"audio": c} for c in clips]
    f32, pcm = stack_audio(samples, "float32"), stack_audio(samples, "int16")
    assert pcm.dtype == torch.int16 and pcm.element_size() * 2 == f32.element_size() and pcm.shape == f32.shape
    # LAION-AI/CLAP's loader: int16_to_float32(float32_to_int16(x)) = (clip(x, -1, 1) * 32767).astype(int16) / 32767
    laion = (np.clip(clips[0], -1, 1) * 32767.0).astype(np.int16) / 32767.0
    back = pcm_to_float(pcm)
    assert back.dtype == torch.float32 and np.allclose(back[0].numpy(), laion, atol=1e-7)
    assert (pcm[1, 500:] == 0).all() and (back - f32.clamp(-1, 1)).abs().max() < 1 / 16000
    assert pcm_to_float(f32) is f32  # float waveforms pass through


def test_model_features_from_int16_equal_those_from_its_floats():
    from clap_train.model import build_model
    from tests.test_model import CFG

    torch.manual_seed(0)
    model = build_model(CFG).eval()
    pcm = (torch.randn(2, 8000) * 3000).clamp(-32767, 32767).to(torch.int16)
    with torch.no_grad():
        assert torch.allclose(model.audio_features(pcm), model.audio_features(pcm.float() / 32767.0), atol=1e-6)


def test_unknown_transport_is_a_config_error():
    with pytest.raises(ValueError, match="data.audio.transport='fp16'; valid choices: int16, float32"):
        AudioSpec(transport="fp16")
