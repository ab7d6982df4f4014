import librosa
import numpy as np
import pytest
import torch

from clap_train.audio.frontend import LogMel, mel_filterbank

SR = 48000
FLAVOURS = [("slaney", False, "slaney"), ("htk", True, None)]  # (mel_scale, htk, librosa norm)


def _signal(seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    y = 0.1 * rng.standard_normal(t.size) + 0.5 * np.sin(2 * np.pi * 440.0 * t)
    y[int(0.4 * t.size) : int(0.6 * t.size)] = 0.0  # digital silence exercises the amin clamp
    return y.astype(np.float32)


def _librosa_power(y, htk, norm):
    return librosa.feature.melspectrogram(
        y=y.astype(np.float64),
        sr=SR,
        n_fft=1024,
        hop_length=480,
        win_length=1024,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=64,
        fmin=50.0,
        fmax=14000.0,
        htk=htk,
        norm=norm,
    ).T  # [frames, n_mels]


@pytest.mark.parametrize("mel_scale,htk,norm", FLAVOURS)
def test_filterbank_matches_librosa(mel_scale, htk, norm):
    ref = librosa.filters.mel(
        sr=SR, n_fft=1024, n_mels=64, fmin=50.0, fmax=14000.0, htk=htk, norm=norm, dtype=np.float64
    )
    ours = mel_filterbank(SR, 1024, 64, 50.0, 14000.0, mel_scale, norm).double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mel_scale,htk,norm", FLAVOURS)
def test_logmel_matches_librosa(mel_scale, htk, norm):
    y = _signal()
    ref_pow = _librosa_power(y, htk, norm)
    ref_db = 10 * np.log10(np.maximum(ref_pow, 1e-10))
    out = LogMel(mel_scale=mel_scale)(torch.from_numpy(y)[None])[0].double().numpy()
    assert out.shape == ref_db.shape == (SR // 480 + 1, 64)
    loud = ref_pow > 1e-8
    assert 0.5 < loud.mean() < 1.0
    assert np.abs(out - ref_db)[loud].max() < 1e-3
    # quiet bins (frames straddling the silence, or the amin floor): compare power; atol
    # covers fp32 STFT rounding, ~1e-13 next to a frame peak of ~1e2
    np.testing.assert_allclose(10 ** (out[~loud] / 10), np.maximum(ref_pow[~loud], 1e-10), rtol=1e-4, atol=1e-12)
    assert (ref_pow == 0).any() and np.all(out[ref_pow == 0] == -100.0)


def test_flavours_differ_and_num_frames():
    wav = torch.from_numpy(_signal(0.3))[None]
    a, b = LogMel(mel_scale="slaney")(wav), LogMel(mel_scale="htk")(wav)
    assert a.shape == b.shape == (1, LogMel().num_frames(wav.shape[1]), 64)
    # area norm alone shifts levels by tens of dB; scale change moves band edges
    assert (a - b).abs().mean() > 5.0


def test_batch_independence_and_no_state():
    m = LogMel()
    wav = torch.randn(3, 9600)
    full = m(wav)
    for i in range(3):
        torch.testing.assert_close(m(wav[i : i + 1])[0], full[i], rtol=0, atol=1e-4)
    assert len(m.state_dict()) == 0
    assert {n for n, _ in m.named_buffers()} == {"window", "fb"}


def test_bf16_under_autocast_is_fp32():
    m = LogMel()
    wav = torch.randn(2, 9600).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(wav)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, m(wav.float()), rtol=0, atol=0)


def test_buffers_stay_fp32_after_module_cast():
    wav = torch.randn(1, 4800)
    ref = LogMel()(wav)
    m = LogMel().to(torch.bfloat16)
    assert m.window.dtype == m.fb.dtype == torch.float32
    torch.testing.assert_close(m(wav), ref, rtol=0, atol=0)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="mel_scale.*'slaney'.*'htk'"):
        LogMel(mel_scale="mel")
    with pytest.raises(ValueError, match="mel_norm"):
        LogMel(mel_norm="area")
