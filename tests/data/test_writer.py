import hashlib
import io
import json
import os
import tarfile

import numpy as np
import soundfile as sf

from clap_train.data.writer import ShardWriter, encode_flac, encode_json


def write(out, n=7, maxcount=3):
    rng = np.random.default_rng(0)
    wavs = [rng.uniform(-0.5, 0.5, 1000 + 10 * i).astype(np.float32) for i in range(n)]
    with ShardWriter(str(out), maxcount=maxcount) as w:
        for i, x in enumerate(wavs):
            w.write(f"k{i:03d}", {"flac": encode_flac(x, 16000), "json": encode_json({"text": [f"cap {i}"]})})
    return wavs


def test_layout_sizes_and_rollover(tmp_path):
    write(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["000000.tar", "000001.tar", "000002.tar", "sizes.json"]
    assert json.load(open(tmp_path / "sizes.json")) == {"000000.tar": 3, "000001.tar": 3, "000002.tar": 1}


def test_byte_identical_rewrite(tmp_path):
    write(tmp_path / "a")
    write(tmp_path / "b")
    for name in ("000000.tar", "000001.tar", "000002.tar", "sizes.json"):
        h = [hashlib.sha256(open(tmp_path / d / name, "rb").read()).hexdigest() for d in "ab"]
        assert h[0] == h[1], name


def test_headers_carry_no_time_or_owner(tmp_path):
    write(tmp_path, n=1)
    with tarfile.open(tmp_path / "000000.tar") as t:
        for m in t.getmembers():
            assert m.mtime == 0 and m.uid == 0 and m.uname == "" and m.isreg()


def test_flac_roundtrip_is_16bit_exact(tmp_path):
    wavs = write(tmp_path, n=2)
    with tarfile.open(tmp_path / "000000.tar") as t:
        data = t.extractfile("k001.flac").read()
    y, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == 16000 and len(y) == len(wavs[1])
    assert np.abs(y - wavs[1]).max() <= 1 / 32768 + 1e-7


def test_bad_keys_rejected(tmp_path):
    w = ShardWriter(str(tmp_path))
    for bad in ("a.b", "a/b", ".x"):
        try:
            w.write(bad, {"flac": b""})
        except ValueError:
            continue
        raise AssertionError(bad)
