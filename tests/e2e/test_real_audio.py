"""Real recordings from Debian packages (scripts/real_audio_corpus.py) through make-shards, check-data, a
training run on shards that carry the files' own bytes, embed and zeroshot: every file an independent
decoder reads whole is used at every step, for its whole length; every file left out is left out for a
reason that decoder confirms (it fails too, the file is digital silence, or shorter than asked).

The independent decoders are Debian's: mpg123 for MP3, oggdec for Vorbis, opusdec for Opus (ours are
ffmpeg's, through PyAV), and ffmpeg for everything else (ours is libsndfile).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO

pytestmark = pytest.mark.slow

TOOLS = ("apt-get", "dpkg-deb", "ffmpeg", "lame", "mpg123", "oggdec", "opusdec")
DECODE_FAILURES = {"corrupt_audio", "truncated_audio", "empty_audio", "mislabeled_audio", "empty_file"}
MEMBER_EXT = {"oga": "ogg", "aif": "aiff"}  # shard members are named by what the reader expects


@dataclass
class Ref:
    whole: bool  # the independent decoder read it to the end without an error
    seconds: float
    silent: bool
    why: str = ""


def _probe(path: str) -> tuple[str, str]:
    p = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=format_name:stream=codec_name", "-of", "json", path],
        capture_output=True,
        text=True,
    )
    try:
        got = json.loads(p.stdout)
        return got["format"]["format_name"], got["streams"][0]["codec_name"]
    except (ValueError, KeyError, IndexError):
        return "", ""


def reference(path: str, tmp: str) -> Ref:
    fmt, codec = _probe(path)
    out = os.path.join(tmp, hashlib.sha1(path.encode()).hexdigest() + ".wav")
    if fmt == "mp3":
        cmd = ["mpg123", "-q", "-w", out, path]
    elif fmt == "ogg" and codec == "vorbis":
        cmd = ["oggdec", "-Q", "-o", out, path]
    elif fmt == "ogg" and codec == "opus":
        cmd = ["opusdec", "--quiet", path, out]
    else:
        cmd = ["ffmpeg", "-v", "error", "-y", "-i", path, "-c:a", "pcm_f32le", out]
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.run(cmd, capture_output=True, text=True)
    err = (p.stderr or "").strip()
    if p.returncode or err or not os.path.exists(out):
        return Ref(False, 0.0, False, f"{cmd[0]}: rc {p.returncode} {err[:100]}")
    x, sr = sf.read(out, dtype="float32", always_2d=True)
    os.remove(out)
    if x.shape[0] == 0:
        return Ref(False, 0.0, False, f"{cmd[0]}: no samples")
    return Ref(True, x.shape[0] / sr, not np.any(x), "")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        if os.environ.get("CLAP_REQUIRE_REAL_AUDIO"):
            pytest.fail(
                f"CLAP_REQUIRE_REAL_AUDIO is set but {missing} are missing (scripts/install_audio_tools_debian.sh)"
            )
        pytest.skip(f"{missing} not installed (scripts/install_audio_tools_debian.sh)")
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    try:
        import real_audio_corpus
    finally:
        sys.path.pop(0)
    root = os.path.join(real_audio_corpus.default_cache(), "corpus")
    manifest = real_audio_corpus.build(root, reuse=True, log=lambda *_: None)
    tmp = str(tmp_path_factory.mktemp("ref"))
    paths = [f["path"] for f in manifest["files"]]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # the decoders are processes: both cores work
        refs = dict(zip(paths, pool.map(lambda p: reference(os.path.join(root, p), tmp), paths)))
    return root, manifest, refs


def _explained(reason: str, ref: Ref, min_seconds: float = 0.0) -> bool:
    """A file we left out, and why, agrees with the independent decoder."""
    if reason in DECODE_FAILURES:
        return not ref.whole
    if reason == "silent_audio":
        return ref.whole and ref.silent
    if reason == "too_short":
        return ref.whole and ref.seconds < min_seconds + 1e-3
    return False


def test_the_corpus_is_real_and_varied(corpus):
    root, manifest, refs = corpus
    files = manifest["files"]
    assert len(files) >= 350 and len(manifest["packages"]) >= 15
    assert all(f["licence"] and os.path.exists(os.path.join(root, f["licence"])) for f in files)
    made = {f["made"] for f in files}
    assert {"as shipped", "lame-vbr5-notag", "lame-id3pad", "opus", "flac24-96k", "wav-u8-8k"} <= made
    exts = {os.path.splitext(f["path"])[1] for f in files}
    assert {".wav", ".ogg", ".oga", ".flac", ".mp3", ".opus", ".aiff", ".au", ".caf", ".w64"} <= exts
    rates = {sf.info(os.path.join(root, p)).samplerate for p, r in refs.items() if r.whole and not p.endswith(".opus")}
    assert {8000, 16000, 22050, 44100, 48000, 96000} <= rates
    assert sum(r.whole for r in refs.values()) >= 0.95 * len(refs)


def test_make_shards_then_check_data_use_every_whole_file(corpus, tmp_path):
    from clap_train.data.check import check_shards
    from clap_train.data.make_shards import MakeShardsSpec, make_shards

    root, manifest, refs = corpus
    rep = make_shards(root, str(tmp_path / "shards"), MakeShardsSpec(workers=2, shard_size=128))
    skipped = {s["path"]: s["reason"] for s in rep["skipped_files"]}
    unexplained = {p: (r, refs[p]) for p, r in skipped.items() if not _explained(r, refs[p], 0.1)}
    assert not unexplained
    lost = [p for p, r in refs.items() if r.whole and not r.silent and r.seconds >= 0.1 and p in skipped]
    assert not lost
    assert sum(rep["written"].values()) == len(refs) - len(skipped)
    # every written clip is as long as the independent decoder says (nothing cut short)
    for split in rep["written"]:
        for tar in sorted((tmp_path / "shards" / split).glob("*.tar")):
            with tarfile.open(tar) as tf:
                for m in tf.getmembers():
                    if m.name.endswith(".json"):
                        meta = json.load(tf.extractfile(m))
                        ref = refs[meta["original_data"]["path"]]
                        assert (
                            not ref.whole
                            or abs(meta["original_data"]["seconds"] - ref.seconds) < 0.06 + 0.002 * ref.seconds
                        )
    check = check_shards([str(tmp_path / "shards" / s) for s in rep["written"]])
    assert check.good == sum(rep["written"].values()) and not check.bad


def test_training_on_the_files_own_bytes_uses_every_whole_file(corpus, tmp_path):
    """Shards carrying each file's bytes as shipped (mp3, ogg, opus, flac, wav, aiff, au members), as a
    LAION-style collection holds them: one training epoch decodes each once; the skips it logs are
    exactly the files the independent decoder cannot read or hears as silence."""
    from clap_train.run import run
    from tests.e2e.conftest import compose_cfg

    root, manifest, refs = corpus
    from clap_train.data.tar_reader import AUDIO_EXTS

    members, want = [], {}
    for f in manifest["files"]:
        ext = os.path.splitext(f["path"])[1].lstrip(".").lower()
        ext = MEMBER_EXT.get(ext, ext)
        if ext not in AUDIO_EXTS:
            continue  # caf, w64: no shard member extension; make-shards reads them above
        data = open(os.path.join(root, f["path"]), "rb").read()
        members.append((f"{len(members):06d}", {ext: data, "json": json.dumps({"text": [f["package"]]}).encode()}))
        ref = refs[f["path"]]
        reason = None if ref.whole and not ref.silent else "silent_audio" if ref.whole else "undecodable"
        want[members[-1][0]] = reason
    n_good = sum(r is None for r in want.values())
    batch = 8
    usable = n_good - n_good % batch
    os.makedirs(tmp_path / "raw")
    for i in range(4):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for key, ms in members[i::4]:
                for ext, data in ms.items():
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size = len(data)
                    tar.addfile(ti, io.BytesIO(data))
        (tmp_path / "raw" / f"{i:06d}.tar").write_bytes(buf.getvalue())
    cfg = compose_cfg(
        tmp_path,
        [
            "data.sources.sentences=null",
            "data.sources.tags=null",
            f"+data.sources.real.shards={tmp_path / 'raw'}",
            "data.val_sources=null",
            "data.test_sources=null",
            "synthetic.enabled=false",
            f"data.batch_size={batch}",
            f"data.steps_per_epoch={usable // batch}",
            "data.stream.buffer_samples=0",
            "data.audio.sample_rate=16000",
            "data.audio.clip_seconds=1.0",
            "callbacks.throughput.log_every_n_steps=5",
            "callbacks.best_checkpoint=null",
            "test_after_fit=false",
            "name=real_audio",
        ],
    )
    res = run(cfg)
    assert res["global_step"] == usable // batch
    rows = list(csv.DictReader(open(os.path.join(res["run_dir"], "csv", "metrics.csv"))))
    last = {k.split("/")[-1]: int(float(v)) for r in rows for k, v in r.items() if k.startswith("data/skipped/") and v}
    undecodable = sum(r == "undecodable" for r in want.values())
    silent = sum(r == "silent_audio" for r in want.values())
    got_undecodable = sum(v for k, v in last.items() if k in DECODE_FAILURES)
    # the epoch stops at a whole batch: files after the last batch may be unread, never more skipped
    assert got_undecodable <= undecodable and last.get("silent_audio", 0) <= silent
    assert set(last) <= DECODE_FAILURES | {"silent_audio"}
    assert 0 <= len(members) - usable - sum(last.values()) < batch  # all but the last partial batch read


def test_embed_and_zeroshot_use_every_whole_file(corpus, small_ckpt, tmp_path, capsys):
    from clap_train.cli import main

    root, manifest, refs = corpus
    npy = str(tmp_path / "emb.npy")
    assert main(["embed", "--checkpoint", small_ckpt, "--audio", root, "--out", npy, "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    rows = open(npy[:-4] + ".rows.txt").read().splitlines()
    skipped = {
        line.split(": ")[0].removeprefix("skipped "): line.split(": ")[1].split()[0]
        for line in out.splitlines()
        if line.startswith("skipped ")
    }
    assert not {p: r for p, r in skipped.items() if not _explained(r, refs[p])}
    whole = {p for p, r in refs.items() if r.whole and not r.silent}
    assert whole <= set(rows)  # every file the reference reads whole is embedded
    # and what we read beyond that, the reference refused (chained Ogg links with other parameters)
    assert all(not refs[p].whole for p in set(rows) - whole)
    assert (
        main(
            [
                "zeroshot",
                "--checkpoint",
                small_ckpt,
                "--audio",
                root,
                "--classes-from-dirs",
                "--out",
                str(tmp_path / "z"),
                "--json",
                str(tmp_path / "z.json"),
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    res = json.load(open(tmp_path / "z.json"))
    assert res["n_embedded"] == len(rows) and res["n_files"] == len(refs)
