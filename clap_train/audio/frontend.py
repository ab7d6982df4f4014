"""Log-mel front-end computed on the model's device (LAION-CLAP parameters)."""

import math

import torch
from torch import nn

from clap_train.config import ConfigError

MEL_SCALES = ("slaney", "htk")
# The official LAION-CLAP log-mel (conf/model/clap.yaml writes the same values).
LAION_FRONTEND = {
    "sample_rate": 48000,
    "n_fft": 1024,
    "win_length": 1024,
    "hop_length": 480,
    "n_mels": 64,
    "f_min": 50.0,
    "f_max": 14000.0,
}
MEL_NORMS = ("auto", "slaney", None)

# Slaney ("auditory toolbox") mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(f: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    log_part = _MIN_LOG_MEL + torch.log(f.clamp(min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def mel_to_hz(m: torch.Tensor, mel_scale: str) -> torch.Tensor:
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    log_part = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return torch.where(m >= _MIN_LOG_MEL, log_part, m * _F_SP)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float,
    f_max: float,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> torch.Tensor:
    """Triangular mel filters [n_mels, n_fft // 2 + 1], same layout and values as
    librosa.filters.mel (built in float64, returned as float32)."""
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64), mel_scale)
    mels = torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64)
    edges = mel_to_hz(mels, mel_scale)  # filter corners, evenly spaced in mel
    widths = edges.diff()  # [n_mels + 1]
    ramps = edges[:, None] - fft_hz[None, :]  # [n_mels + 2, n_freq]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    fb = torch.minimum(rising, falling).clamp(min=0)
    if norm == "slaney":  # equal-area triangles
        fb = fb * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb.float()


def pcm_to_float(audio: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """int16 PCM (the loader's default transport) -> `dtype` in [-1, 1], on the tensor's device, as LAION's
    loader maps it back (x / 32767); float waveforms pass through (a precision plugin already cast them)."""
    return audio.to(dtype) / 32767.0 if audio.dtype == torch.int16 else audio


class LogMel(nn.Module):
    """Waveform [B, T] -> log-mel [B, frames, n_mels] in dB (ref 1.0, no top_db).

    mel_norm="auto": slaney scale -> slaney area norm (librosa default, LAION
    non-fusion checkpoints); htk scale -> no norm (torchaudio default, fusion).
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        n_fft: int = 1024,
        win_length: int = 1024,
        hop_length: int = 480,
        n_mels: int = 64,
        f_min: float = 50.0,
        f_max: float = 14000.0,
        mel_scale: str = "slaney",
        mel_norm: str | None = "auto",
        amin: float = 1e-10,
    ):
        super().__init__()
        if mel_scale not in MEL_SCALES:
            raise ConfigError(f"model.frontend.mel_scale={mel_scale!r} is invalid; choose one of {MEL_SCALES}")
        if mel_norm not in MEL_NORMS:
            raise ConfigError(f"model.frontend.mel_norm={mel_norm!r} is invalid; choose one of {MEL_NORMS}")
        if mel_norm == "auto":
            mel_norm = "slaney" if mel_scale == "slaney" else None
        self.sample_rate, self.n_fft, self.win_length = sample_rate, n_fft, win_length
        self.hop_length, self.n_mels, self.amin = hop_length, n_mels, amin
        self.mel_scale, self.mel_norm, self.f_min, self.f_max = mel_scale, mel_norm, f_min, f_max
        # Derived constants: non-persistent so checkpoints stay config-independent.
        window = torch.hann_window(win_length, periodic=True)
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, mel_norm)
        self._fp32 = {"window": window, "fb": fb.T.contiguous()}  # fb: [n_freq, n_mels]
        for name, t in self._fp32.items():
            self.register_buffer(name, t.clone(), persistent=False)

    def _apply(self, fn, recurse=True):
        # model.to(bfloat16)/.half() would round the constants; follow device moves only.
        super()._apply(fn, recurse)
        for name, t in self._fp32.items():
            setattr(self, name, t.to(getattr(self, name).device))
        return self

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1  # center=True padding

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # fp32 regardless of autocast: bf16 STFT/log would lose several dB of precision.
        # float64 input (gradient-equality proofs) stays float64.
        dtype = torch.float64 if wav.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=wav.device.type, enabled=False):
            spec = torch.stft(
                wav.to(dtype),
                self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=self.window.to(dtype),
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = torch.view_as_real(spec).pow(2).sum(-1)  # [B, n_freq, frames]
            mel = power.transpose(-1, -2) @ self.fb.to(dtype)  # [B, frames, n_mels]
            return 10.0 * torch.log10(mel.clamp(min=self.amin))
