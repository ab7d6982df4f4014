"""convert-shards (FLAC shards -> 16-bit WAV and the other codecs) and make-shards --codec: the samples
survive bit for bit where the codec is lossless, nothing else changes, damage is counted and kept, and the
training loader reads the result."""

import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from clap_train.cli import main
from clap_train.data.check import check_shards
from clap_train.data.convert_shards import convert_shards
from clap_train.data.decode import AudioSpec, decode_audio
from clap_train.data.make_shards import MakeShardsSpec, make_shards
from clap_train.data.writer import CODECS, ShardWriter, encode_flac, encode_json

SR = 48000


def _clip(i, seconds=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (0.4 * np.sin(2 * np.pi * (220 + 40 * i) * t)).astype(np.float32)


def _members(path):
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


@pytest.fixture
def flac_shards(tmp_path):
    d = tmp_path / "laion" / "train"
    with ShardWriter(str(d), maxcount=3) as w:
        for i in range(7):
            members = {"flac": encode_flac(_clip(i), SR), "json": encode_json({"text": [f"clip {i}"], "tag": ["x"]})}
            if i == 4:  # damaged audio: copied as it is, counted
                members["flac"] = b"fLaC" + b"\x00" * 300
            w.write(f"k{i:03d}", members)
    return d


def test_flac_to_pcm16_is_bit_exact_keeps_everything_else_and_counts_damage(flac_shards, tmp_path, capsys):
    out = tmp_path / "pcm16" / "train"
    assert main(["convert-shards", str(flac_shards), str(out), "--workers", "2"]) == 1  # one clip kept as it was
    printed = capsys.readouterr().out
    assert "kept_undecodable: 1" in printed and "converted: 6" in printed
    src_tars = sorted(p.name for p in flac_shards.glob("*.tar"))
    assert sorted(p.name for p in out.glob("*.tar")) == src_tars == ["000000.tar", "000001.tar", "000002.tar"]
    assert json.load(open(out / "sizes.json")) == json.load(open(flac_shards / "sizes.json"))
    for name in src_tars:
        a, b = _members(flac_shards / name), _members(out / name)
        assert [n.split(".")[0] for n in a] == [n.split(".")[0] for n in b]  # same samples, same order
        for n, data in a.items():
            key, ext = n.split(".", 1)
            if ext == "json":
                assert b[n] == data
            elif key == "k004":
                assert b[n] == data  # undecodable: unchanged
            else:
                want, _ = sf.read(io.BytesIO(data), dtype="int16")
                got, sr = sf.read(io.BytesIO(b[f"{key}.wav"]), dtype="int16")
                assert sr == SR and np.array_equal(got, want)
    rep = json.load(open(out / "convert_report.json"))
    assert rep["samples"] == 7 and rep["shards_converted"] == 3 and rep["bytes_out"] > rep["bytes_in"]
    # the loader reads the new shards as it read the old: six good clips, the damaged one skipped with a reason
    got = check_shards(str(out))
    assert got.samples == 7 and dict(got.bad) == {"corrupt_audio": 1}
    # run again: nothing redone (an interrupted conversion resumes)
    again = convert_shards(str(flac_shards), str(out))
    assert again["shards_already_done"] == 3 and "converted" not in again


def test_a_truncated_source_shard_is_counted_not_fatal(flac_shards, tmp_path):
    src = flac_shards / "000001.tar"
    src.write_bytes(src.read_bytes()[:2000])
    rep = convert_shards(str(flac_shards), str(tmp_path / "out"), workers=1)
    assert rep["not_copied_truncated_tar"] == 1 and rep["shards_converted"] == 3


@pytest.mark.parametrize("codec", list(CODECS))
def test_make_shards_writes_every_codec_the_loader_reads(tmp_path, codec):
    src = tmp_path / "in" / "bell"
    src.mkdir(parents=True)
    for i in range(3):
        sf.write(src / f"{i}.wav", _clip(i, 1.0), 44100)
    out = tmp_path / "out"
    rep = make_shards(str(tmp_path / "in"), str(out), MakeShardsSpec(codec=codec, splits={"train": 1.0}, workers=1))
    assert rep["written"] == {"train": 3} and rep["settings"]["codec"] == codec
    ext = CODECS[codec][0]
    members = _members(out / "train" / "000000.tar")
    audio = [v for k, v in members.items() if k.endswith("." + ext)]
    assert len(audio) == 3
    x, n, _ = decode_audio(audio[0], AudioSpec(clip_seconds=1.0), "start", None, ext)
    assert n == SR and np.abs(x).max() > 0.1
    assert not check_shards(str(out / "train")).bad


def test_codec_mistakes_fail_before_any_work(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert (
        main(["make-shards", str(tmp_path / "in"), str(tmp_path / "o"), "--codec", "opus", "--sample-rate", "44100"])
        == 2
    )
    assert "codec opus cannot store 44100 Hz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert-shards", str(tmp_path), str(tmp_path / "o"), "--codec", "aac"])


@pytest.mark.parametrize("kind", ["over", "under"])
def test_mp3_members_convert_whole_whatever_their_header_says(tmp_path, kind):
    """An MP3 member whose header misstates its length becomes a WAV of its real length (libsndfile
    alone would have stopped at the estimate: 1.3 s of 5 s for "under")."""
    from tests.data.mp3 import misestimated_mp3

    data, n = misestimated_mp3(kind, seconds=5.0, sr=44100)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    with tarfile.open(src / "000000.tar", "w") as tar:
        for name, payload in (("a.mp3", data), ("a.json", encode_json({"text": "noise"}))):
            ti = tarfile.TarInfo(name)
            ti.size = len(payload)
            tar.addfile(ti, io.BytesIO(payload))
    rep = convert_shards([str(src)], str(dst), "pcm16", workers=1)
    assert rep["converted"] == 1
    with tarfile.open(dst / "000000.tar") as tar:
        wav, sr = sf.read(io.BytesIO(tar.extractfile("a.wav").read()))
    assert sr == 44100 and n <= wav.shape[0] <= n + 3 * 1152
