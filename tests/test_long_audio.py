"""Long audio: window positions, streaming windows equal to windows of the whole, sliding-window
embeddings deterministic and equal to the average of their windows, bounded reads in `first` mode."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from clap_train.cli import main
from clap_train.config import ConfigError
from clap_train.long_audio import LongAudio, slide, window_starts


def test_window_starts():
    assert window_starts(5, 10, 5) == [0]  # shorter than a window: one (padded) window
    assert window_starts(10, 10, 5) == [0]
    assert window_starts(20, 10, 5) == [0, 5, 10]
    assert window_starts(23, 10, 5) == [0, 5, 10, 13]  # the last window ends at the end
    assert window_starts(23, 10, 10) == [0, 10, 13]


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 400),
    window=st.integers(1, 60),
    hop=st.integers(1, 70),
    cuts=st.lists(st.integers(1, 90), min_size=1, max_size=12),
)
def test_streamed_windows_are_the_windows_of_the_whole(n, window, hop, cuts):
    x = np.arange(n, dtype=np.float32)
    chunks, i = [], 0
    for c in cuts * (n // sum(cuts) + 1):
        if i >= n:
            break
        chunks.append(x[i : i + c])
        i += c
    got = list(slide(iter(chunks), window, hop))
    want = [x[s : s + window] for s in window_starts(n, window, hop)]
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))


def _long_clip(seconds, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = np.where(t < seconds / 2, 300.0, 2500.0)  # the second half sounds different
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.shape[0])).astype(np.float32)


def test_sliding_embedding_is_the_average_of_its_windows(small_model):
    clip = _long_clip(3.3)  # the model's clip is 0.5 s: windows at 0, 0.25 ... and one ending at 3.3 s
    la = LongAudio("slide")
    a = small_model.encode_audio([clip], sample_rate=16000, long_audio=la)
    b = small_model.encode_audio([clip], sample_rate=16000, long_audio="slide")
    assert torch.equal(a, b)  # deterministic
    starts = window_starts(clip.shape[0], 8000, 4000)
    assert len(starts) == 13 and starts[-1] == clip.shape[0] - 8000
    per = small_model.encode_audio([clip[s : s + 8000] for s in starts], sample_rate=16000)
    assert (a[0] - F.normalize(per.mean(0), dim=-1)).abs().max() < 1e-6
    first = small_model.encode_audio([clip], sample_rate=16000)
    assert (a - first).abs().max() > 1e-3  # the second half counts
    short = _long_clip(0.3)
    assert torch.allclose(
        small_model.encode_audio([short], 16000, long_audio="slide"),
        small_model.encode_audio([short], 16000),
        atol=1e-6,
    )
    w = small_model.encode_audio([clip], 16000, long_audio=LongAudio("slide", window_seconds=0.25, hop_seconds=0.5))
    assert (w - a).abs().max() > 1e-4


def test_settings_a_model_cannot_use_are_refused(small_model):
    with pytest.raises(ConfigError, match="--long-audio fusion needs a model with a fusion audio tower"):
        small_model.encode_audio([_long_clip(1.0)], 16000, long_audio="fusion")
    with pytest.raises(ConfigError, match="--window-seconds=2 is longer than the model's clip"):
        small_model.encode_audio([_long_clip(1.0)], 16000, long_audio=LongAudio("slide", window_seconds=2.0))
    with pytest.raises(ConfigError, match="--long-audio='middle'; valid choices: first, slide, fusion"):
        LongAudio("middle")
    with pytest.raises(ConfigError, match="--hop-seconds"):
        LongAudio("slide", hop_seconds=0.0)


def test_embed_streams_a_long_file_as_the_whole_would_embed(small_ckpt, small_model, tmp_path, capsys):
    """embed --long-audio slide over a 44.1 kHz stereo file: decoded and resampled a block at a time,
    equal to the in-memory sliding embedding of the whole file; the same bytes in another process."""
    from clap_train.data.audio_files import ReadSpec, read_audio_file

    x = _long_clip(20.0, sr=44100)
    sf.write(tmp_path / "long.flac", np.stack([x, 0.5 * x], 1), 44100)
    out = []
    for i in range(2):  # once in this process, once in a fresh one: the same bytes
        npy = str(tmp_path / f"e{i}.npy")
        args = ["embed", "--checkpoint", small_ckpt, "--audio", str(tmp_path / "long.flac"), "--out", npy]
        args += ["--long-audio", "slide", "--hop-seconds", "0.5"]
        if i == 0:
            assert main(args) == 0
        else:
            p = subprocess.run([sys.executable, "-m", "clap_train.cli", *args], capture_output=True, text=True)
            assert p.returncode == 0, p.stderr[-2000:]
        out.append(np.load(npy))
    assert np.array_equal(out[0], out[1])
    whole = read_audio_file(str(tmp_path / "long.flac"), ReadSpec(sample_rate=16000, min_seconds=0))[0]
    want = small_model.encode_audio([whole], 16000, long_audio=LongAudio("slide", hop_seconds=0.5))
    assert np.abs(out[0] - want.numpy()).max() < 1e-3  # streamed vs one-shot resampling at block edges
    assert (
        main(["embed", "--checkpoint", small_ckpt, "--audio", str(tmp_path), "--out", npy, "--long-audio", "fusion"])
        == 2
    )
    assert "--long-audio fusion needs a model with a fusion audio tower" in capsys.readouterr().err


def test_first_window_decodes_nothing_after_it(small_ckpt, small_model, tmp_path):
    """A 60 s FLAC whose second half is overwritten: `first` embeds it (only 0.5 s is decoded) and equals
    the embedding of its start; `slide` must decode all of it and reports the damage."""
    from clap_train.data.audio_files import list_audio
    from clap_train.inference import embed_items

    x = _long_clip(60.0)
    sf.write(tmp_path / "cut.flac", x, 16000)
    data = bytearray((tmp_path / "cut.flac").read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    (tmp_path / "cut.flac").write_bytes(bytes(data))
    items = list_audio(str(tmp_path)).items
    first = embed_items(small_model, items)
    assert len(first.items) == 1
    assert torch.allclose(first.emb, small_model.encode_audio([x[:8000]], 16000), atol=1e-5)
    slid = embed_items(small_model, items, long_audio=LongAudio("slide"))
    assert not slid.items and slid.skipped[0]["reason"] in ("corrupt_audio", "truncated_audio")
