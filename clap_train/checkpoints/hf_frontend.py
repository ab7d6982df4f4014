"""transformers' `ClapFeatureExtractor` (a folder's processor/preprocessor_config.json) <-> our front end.

The extractor's settings are the model's input contract: rates, FFT and hop, mel bins and band, clip
length, padding. On import they become our `frontend`, `clip_seconds` and `pad`; on export they are
written from ours. A setting one side cannot express is an error that names it, never a silent
difference. transformers ties the mel filters to `truncation`: "fusion" uses HTK mel without area
norm, "rand_trunc" Slaney mel with Slaney norm, both 10*log10(max(power, 1e-10)) with no top_db (its
`top_db` is stored but never applied, so it is ignored here too).
"""

from __future__ import annotations

from clap_train.audio.frontend import LAION_FRONTEND

TRUNCATIONS = ("rand_trunc", "fusion")


def from_extractor(fe: dict, fusion: bool, n_mels: int) -> dict:
    """The extractor's settings (processor_config.json; preprocessor_config.json before transformers 5)
    -> {"frontend", "clip_seconds", "pad"} for build_model, or a ValueError naming each setting our front
    end cannot represent."""
    trunc = fe.get("truncation", "fusion")
    problems = []
    if trunc not in TRUNCATIONS:
        problems.append(f"truncation={trunc!r} (transformers knows {', '.join(TRUNCATIONS)})")
    elif (trunc == "fusion") != fusion:
        model = "has fusion" if fusion else "has no fusion"
        problems.append(f"truncation={trunc!r} while the model {model} (transformers' own model could not run it)")
    if fe.get("feature_size", 64) != n_mels:
        problems.append(f"feature_size={fe.get('feature_size')} while the audio tower takes {n_mels} mel bins")
    if float(fe.get("padding_value", 0.0)) != 0.0:
        problems.append(f"padding_value={fe['padding_value']} (our padding is silence)")
    if problems:
        raise ValueError("its feature extractor (processor_config.json): cannot represent " + "; ".join(problems))
    n_fft = int(fe.get("fft_window_size", 1024))
    pad = fe.get("padding", "repeatpad")
    return {
        "frontend": {
            "sample_rate": int(fe.get("sampling_rate", 48000)),
            "n_fft": n_fft,
            "win_length": n_fft,
            "hop_length": int(fe.get("hop_length", 480)),
            "n_mels": n_mels,
            "f_min": float(fe.get("frequency_min", 0)),
            "f_max": float(fe.get("frequency_max", 14000)),
            "mel_scale": "htk" if fusion else "slaney",
            "mel_norm": "auto",
        },
        "clip_seconds": float(fe.get("max_length_s", 10)),
        "pad": pad if pad in ("repeat", "repeatpad") else "pad",  # transformers zero-pads for any other value
    }


def laion_default(fusion: bool, n_mels: int) -> dict:
    """A folder without preprocessor_config.json: LAION's front end (what its checkpoints were trained on)."""
    fe = {**LAION_FRONTEND, "n_mels": n_mels, "mel_scale": "htk" if fusion else "slaney", "mel_norm": "auto"}
    return {"frontend": fe, "clip_seconds": 10.0, "pad": "repeatpad"}


def to_extractor(model) -> dict:
    """Our model's front end -> ClapFeatureExtractor keyword arguments, or a ValueError naming each setting
    transformers' extractor cannot express."""
    fe, fusion = model.frontend, model.audio_branch.fusion
    want = ("htk", None) if fusion else ("slaney", "slaney")
    problems = []
    if fe.win_length != fe.n_fft:
        problems.append(f"win_length {fe.win_length} != n_fft {fe.n_fft} (the extractor's window is the FFT size)")
    if (fe.mel_scale, fe.mel_norm) != want:
        problems.append(
            f"mel_scale={fe.mel_scale!r}, mel_norm={fe.mel_norm!r} (with truncation "
            f"{'fusion' if fusion else 'rand_trunc'} the extractor uses {want[0]!r}, {want[1]!r})"
        )
    if fe.amin != 1e-10:
        problems.append(f"amin={fe.amin:g} (the extractor floors power at 1e-10)")
    if model.clip_seconds != int(model.clip_seconds):
        problems.append(f"clip_seconds={model.clip_seconds:g} (the extractor's max_length_s is whole seconds)")
    if problems:
        raise ValueError("cannot write transformers' feature extractor: " + "; ".join(problems))
    return dict(
        feature_size=fe.n_mels,
        sampling_rate=fe.sample_rate,
        hop_length=fe.hop_length,
        max_length_s=int(model.clip_seconds),
        fft_window_size=fe.n_fft,
        frequency_min=fe.f_min,
        frequency_max=fe.f_max,
        top_db=None,
        truncation="fusion" if fusion else "rand_trunc",
        padding=model.pad,
    )
