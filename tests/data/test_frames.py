"""Frame counts trusted only where the format makes them exact: an MP3's estimate is never taken for
its length, in either direction; a short read of WAV/FLAC/AIFF stays `truncated_audio`."""

import io

import numpy as np
import pytest
import soundfile as sf

from clap_train.data.crop import choose_window
from clap_train.data.decode import AudioSpec, decode_audio, read_clip
from clap_train.data.skips import BadSample
from tests.data.mp3 import encode_mp3, misestimated_mp3

SR = 44100
SPEC = AudioSpec(sample_rate=SR, clip_seconds=1.0, max_seconds=60.0)
# an MP3 without its Xing frame decodes to the encoded audio plus the encoder's delay and padding
SLACK = 3 * 1152


@pytest.mark.parametrize("kind", ["over", "under", "cbr"])
def test_misestimated_mp3_decodes_to_its_real_end(kind):
    data, n = misestimated_mp3(kind, seconds=5.0, sr=SR)
    estimate = sf.info(io.BytesIO(data)).frames
    assert abs(estimate - n) > SR  # the header is off by more than a second
    clip = read_clip(data, SPEC, None, "start", None, "mp3")
    assert n <= clip.frames <= n + SLACK and clip.samples.shape == (clip.frames,) and clip.format == "MP3"
    loud = clip.samples[-SR:] if kind == "over" else clip.samples[SR // 2 : SR]
    assert np.sqrt(np.mean(loud**2)) > 0.2  # the noise is there, wherever the estimate stopped


@pytest.mark.parametrize("kind", ["over", "under"])
def test_crop_windows_come_from_the_decoded_length(kind):
    """Every random window is a full window of the file as decoded whole: none starts past the real end
    of an over-estimated file, and windows beyond an under-estimate (read through a pipe) are real."""
    data, _ = misestimated_mp3(kind, seconds=5.0, sr=SR)
    whole = read_clip(data, SPEC, None, "start", None).samples
    estimate = sf.info(io.BytesIO(data)).frames
    starts = []
    for seed in range(12):
        clip = read_clip(data, SPEC, 1.0, "rand_trunc", np.random.default_rng(seed))
        start = choose_window(whole.shape[0], SR, "rand_trunc", np.random.default_rng(seed))
        starts.append(start)
        assert clip.samples.shape == (SR,)
        np.testing.assert_allclose(clip.samples, whole[start : start + SR], atol=1e-4)
    if kind == "under":
        assert any(s + SR > estimate for s in starts)  # some windows lie beyond what libsndfile reports
    wav, true_len, longer = decode_audio(data, SPEC, "center", None, "mp3")
    assert wav.shape == (SR,) and true_len == SR and longer


def test_mp3_with_exact_header_is_read_as_before():
    x = (0.3 * np.random.default_rng(0).standard_normal(SR * 2)).astype(np.float32)
    data = encode_mp3(x, SR)  # LAME's Xing frame states the exact length
    clip = read_clip(data, SPEC, None, "start", None)
    assert clip.frames == sf.info(io.BytesIO(data)).frames == x.shape[0]


def _cut(fmt, subtype):
    x = (0.3 * np.random.default_rng(1).standard_normal(SR * 2)).astype(np.float32)
    b = io.BytesIO()
    sf.write(b, x, SR, format=fmt, subtype=subtype)
    return b.getvalue()[: len(b.getvalue()) * 3 // 4]


def test_short_read_of_flac_is_truncation():
    """FLAC's STREAMINFO states the exact sample count: fewer decoded is damage, not the file's end."""
    with pytest.raises(BadSample) as e:
        read_clip(_cut("FLAC", "PCM_16"), SPEC, None, "start", None)
    assert e.value.reason in ("truncated_audio", "corrupt_audio")  # or the decoder loses sync first


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("AIFF", "PCM_24")])
def test_cut_pcm_file_is_the_part_that_is_there(fmt, subtype):
    """libsndfile sizes a PCM file whose data chunk runs past the end by the bytes present; that count
    is exact for what the file holds, so the whole of it is read and nothing is reported short."""
    clip = read_clip(_cut(fmt, subtype), SPEC, None, "start", None)
    assert SR * 2 * 3 // 4 - 100 < clip.frames < SR * 2 * 3 // 4 and clip.samples.shape == (clip.frames,)


def test_estimated_length_is_bounded_by_max_seconds_while_decoding():
    data, _ = misestimated_mp3("under", seconds=5.0, sr=SR)  # reported 1.3 s, really 5 s
    with pytest.raises(BadSample) as e:
        read_clip(data, AudioSpec(sample_rate=SR, clip_seconds=1.0, max_seconds=3.0), None, "start", None)
    assert e.value.reason == "too_long" and "> max_seconds=3" in e.value.detail


def test_silent_stretch_is_content_but_a_silent_file_is_not():
    data, _ = misestimated_mp3("over", seconds=5.0, sr=SR)  # two seconds of digital silence first
    clip = read_clip(data, SPEC, 1.0, "start", None)
    assert clip.samples.shape == (SR,) and not np.any(clip.samples[: SR // 2])
    with pytest.raises(BadSample) as e:
        read_clip(encode_mp3(np.zeros(SR, np.float32), SR), SPEC, None, "start", None)
    assert e.value.reason == "silent_audio"
