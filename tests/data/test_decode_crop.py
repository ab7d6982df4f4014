import io

import numpy as np
import pytest
import soundfile as sf

from clap_train.data.crop import choose_window, fit_length
from clap_train.data.decode import AudioSpec, decode_audio, decode_captions
from clap_train.data.skips import BadSample


def enc(x, sr, fmt="FLAC"):
    b = io.BytesIO()
    sf.write(b, x, sr, format=fmt, subtype="PCM_16")
    return b.getvalue()


def test_resample_to_model_rate_and_mono():
    sr = 32000
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1) * 0.5
    spec = AudioSpec(sample_rate=48000, clip_seconds=1.0)
    y, n, longer = decode_audio(enc(stereo, sr), spec, "start", None)
    assert y.shape == (48000,) and y.dtype == np.float32 and n == 48000 and not longer
    # a 440 Hz tone stays a 440 Hz tone after resampling
    f = np.fft.rfftfreq(48000, 1 / 48000)[np.abs(np.fft.rfft(y)).argmax()]
    assert abs(f - 440) < 2


def test_crop_is_a_window_of_the_file_and_flags_longer():
    x = (np.arange(48000 * 3) % 1000 / 1000 - 0.5).astype(np.float32)
    spec = AudioSpec(sample_rate=48000, clip_seconds=1.0)
    y, n, longer = decode_audio(enc(x, 48000), spec, "rand_trunc", np.random.default_rng(3))
    start = choose_window(len(x), 48000, "rand_trunc", np.random.default_rng(3))
    q = np.round(x * 32767) / 32767
    assert longer and n == 48000 and np.abs(y - q[start : start + 48000]).max() < 1e-4


@pytest.mark.parametrize(
    "pad,expect",
    [("pad", [1, 2, 3, 0, 0, 0, 0]), ("repeatpad", [1, 2, 3, 1, 2, 3, 0]), ("repeat", [1, 2, 3, 1, 2, 3, 1])],
)
def test_pad_modes(pad, expect):
    assert fit_length(np.array([1, 2, 3], np.float32), 7, pad).tolist() == expect


def test_crop_modes():
    assert choose_window(100, 10, "start", None) == 0
    assert choose_window(100, 10, "center", None) == 45
    assert choose_window(5, 10, "rand_trunc", None) == 0
    with pytest.raises(ValueError, match="valid choices"):
        choose_window(100, 10, "middle", None)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"not audio at all", "corrupt_audio"),
        (enc(np.zeros(1000), 16000), "silent_audio"),
        (enc(np.full((100, 9), 0.1), 16000, "WAV"), "too_many_channels"),  # 7.1 is 8
    ],
)
def test_bad_audio_reasons(data, reason):
    with pytest.raises(BadSample) as e:
        decode_audio(data, AudioSpec(), "start", None)
    assert e.value.reason == reason


def test_nan_audio_rejected():
    b = io.BytesIO()
    sf.write(b, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, format="WAV", subtype="FLOAT")
    with pytest.raises(BadSample) as e:
        decode_audio(b.getvalue(), AudioSpec(), "start", None)
    assert e.value.reason == "nonfinite_audio"


def test_too_long_is_rejected_before_decoding():
    spec = AudioSpec(max_seconds=0.5)
    with pytest.raises(BadSample) as e:
        decode_audio(enc(np.full(16000, 0.1), 16000), spec, "start", None)
    assert e.value.reason == "too_long"


def test_captions_string_list_tags_and_errors():
    assert decode_captions({"json": b'{"text": "a dog"}'})[0] == ["a dog"]
    assert decode_captions({"json": b'{"text": ["a", " ", "b", 3]}'})[0] == ["a", "b"]
    assert decode_captions({"json": b'{"tag": ["dog", "bark"]}'}, tag_templates=["{}", "The sound of {}."])[0] == [
        "dog, bark",
        "The sound of dog, bark.",
    ]
    assert decode_captions({"txt": b"hello"})[0] == ["hello"]
    for raw, reason in [
        (b"{bad", "json_invalid"),
        (b"\xff\xfe", "json_not_utf8"),
        (b"[1]", "json_invalid"),
        (b'{"text": ""}', "empty_caption"),
        (b'{"tag": ["x"]}', "missing_caption"),
    ]:
        with pytest.raises(BadSample) as e:
            decode_captions({"json": raw})
        assert e.value.reason == reason


def test_caption_key_list_pools_original_and_augmented():
    raw = {"json": b'{"text": ["a dog"], "text_augment_t5": "a dog is barking loudly"}'}
    assert decode_captions(raw, caption_key=["text", "text_augment_t5"])[0] == ["a dog", "a dog is barking loudly"]
    assert decode_captions(raw, caption_key="text")[0] == ["a dog"]
