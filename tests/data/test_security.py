"""Shards from strangers: pickle members are never unpickled, nothing is extracted, oversize is bounded."""

import csv
import io
import os
import pickle
import tarfile

from clap_train.cli import main as cli_main
from tests.data.damage import good
from tests.e2e.conftest import compose_cfg


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling would create the marker file


def hostile_shard(d, marker):
    """Good samples that also carry pickle members, plus traversal and absolute member names."""
    evil = pickle.dumps(Payload(marker))
    members = []
    for i in range(12):
        for ext, data in good(i).items():
            members.append((f"k{i:02d}.{ext}", data))
        members += [(f"k{i:02d}.pyd", evil), (f"k{i:02d}.pickle", evil)]
    members += [("../../escaped.flac", b"evil"), (os.path.join(d, "abs.json"), b"evil")]
    path = os.path.join(d, "000000.tar")
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return path


def test_training_and_check_data_never_unpickle_or_extract(tmp_path):
    from clap_train.run import run

    shards = tmp_path / "shards"
    shards.mkdir()
    marker = str(tmp_path / "PWNED")
    path = hostile_shard(str(shards), marker)

    assert cli_main(["check-data", str(shards), "--json", str(tmp_path / "r.json")]) == 0
    cfg = compose_cfg(
        tmp_path,
        [
            "data.sources.sentences=null",
            "data.sources.tags=null",
            f"+data.sources.web.shards={path}",
            "+data.sources.web.resample=true",
            "data.val_sources=null",
            "data.test_sources=null",
            "synthetic.enabled=false",
            "data.batch_size=4",
            "data.steps_per_epoch=3",
            "data.audio.sample_rate=16000",
            "data.audio.clip_seconds=1.0",
            "callbacks.best_checkpoint=null",
            "callbacks.throughput.log_every_n_steps=3",
            "test_after_fit=false",
        ],
    )
    res = run(cfg)
    assert res["global_step"] == 3
    assert not os.path.exists(marker)
    assert not os.path.exists(tmp_path / "escaped.flac") and not os.path.exists(shards / "abs.json")
    assert not os.path.exists(os.path.join(os.path.dirname(str(tmp_path)), "escaped.flac"))
    rows = list(csv.DictReader(open(os.path.join(res["run_dir"], "csv", "metrics.csv"))))
    skipped = {k: float(v) for r in rows for k, v in r.items() if k.startswith("data/skipped/") and v}
    assert skipped["data/skipped/unknown_member"] > 0 and skipped["data/skipped/tar_unsafe_name"] > 0


def test_make_shards_and_its_pipelines_never_unpickle(tmp_path, small_ckpt):
    """make-shards input with pickles beside the audio (and one posing as a .wav); its shards, later laced
    with pickle members and traversal names, read by check-data and evaluate: the marker never appears."""
    import numpy as np
    import soundfile as sf

    marker = str(tmp_path / "PWNED")
    evil = pickle.dumps(Payload(marker))
    src = tmp_path / "in"
    for cls in ("bell", "drum"):
        (src / cls).mkdir(parents=True)
        for i in range(3):
            sf.write(src / cls / f"{i}.wav", np.random.default_rng(i).uniform(-0.5, 0.5, 8000).astype("f4"), 16000)
        for name in ("evil.pkl", "evil.pyd", "evil.pickle", "trojan.wav"):
            (src / cls / name).write_bytes(evil)
    out = tmp_path / "shards"
    assert (
        cli_main(["make-shards", str(src), str(out), "--sample-rate", "16000", "--workers", "2", "--splits", "test=1"])
        == 0
    )
    rep = __import__("json").load(open(out / "report.json"))
    assert rep["written"] == {"test": 6}
    assert {(s["path"].split("/")[1], s["reason"]) for s in rep["skipped_files"]} == {("trojan.wav", "corrupt_audio")}
    assert sum(n.startswith(("bell/evil", "drum/evil")) for n in rep["ignored_not_audio"]) == 6
    # lace the produced shard with pickle members and unsafe names, as a stranger passing it on could
    shard = out / "test" / "000000.tar"
    with tarfile.open(shard) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    members += [("00000000.pyd", evil), ("00000001.pickle", evil), ("../../escaped.json", b"{}")]
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    assert cli_main(["check-data", str(out / "test")]) == 0
    assert (
        cli_main(
            ["evaluate", "--checkpoint", small_ckpt, "--shards", str(out / "test"), "--json", str(tmp_path / "r.json")]
        )
        == 0
    )
    res = __import__("json").load(open(tmp_path / "r.json"))
    assert res["metrics"]["n_clips"] == 6 and res["skipped"]["unknown_member"] == 2
    assert res["skipped"]["tar_unsafe_name"] == 1
    assert not os.path.exists(marker) and not os.path.exists(tmp_path / "escaped.json")
