"""A new user's path, offline: a messy folder of their own audio -> make-shards -> train a few steps through
the real conf/ -> zeroshot -> embed -> export -> the exported model gives the same embeddings."""

import json
import os

import numpy as np
import pytest
import torch

from clap_train.cli import main
from tests.data.messy import write_messy_folder
from tests.e2e.conftest import compose_cfg


@pytest.mark.slow
def test_folder_to_trained_evaluated_exported_model(tmp_path, capsys):
    from clap_train import load_model
    from clap_train.run import run

    src, shards = str(tmp_path / "my_audio"), str(tmp_path / "shards")
    info = write_messy_folder(src, per_class=8)
    assert main(["make-shards", src, shards, "--sample-rate", "32000", "--shard-size", "6", "--workers", "2"]) == 0
    report = json.load(open(os.path.join(shards, "report.json")))
    assert report["skipped"] == len(info["bad"]) and report["written"]["train"] >= 20

    cfg = compose_cfg(
        tmp_path,
        [
            "data=shards",
            f"data.train_shards={shards}/train",
            f"data.val_shards={shards}/valid",
            f"data.test_shards={shards}/test",
            "data.audio.sample_rate=32000",
            "data.audio.clip_seconds=2",
            "synthetic.enabled=false",
            "audio_encoder.freeze_layers=1",
        ],
    )
    res = run(cfg)
    assert res["global_step"] == 4
    for stage in ("val", "test"):  # classes.json found beside the shards: zero-shot is measured
        assert f"{stage}/{stage}/zeroshot_top1" in res[stage] and f"{stage}/{stage}/t2a_R@1" in res[stage]
    assert res["test"]["test/test/n_clips"] == report["written"]["test"]
    assert "test_confusion.png" in {os.path.basename(p) for p in res["plots"]}  # not test_test_ (source "test")
    ckpt = res["checkpoint"]
    capsys.readouterr()

    assert (
        main(["zeroshot", "--checkpoint", ckpt, "--audio", src, "--classes-from-dirs", "--out", str(tmp_path / "zs")])
        == 0
    )
    out = capsys.readouterr().out
    assert "top-1" in out and "skipped 3" in out  # broken, empty, silent: reported, not fatal
    assert os.path.getsize(tmp_path / "zs" / "confusion.png") > 1000

    assert main(["embed", "--checkpoint", ckpt, "--audio", src, "--out", str(tmp_path / "emb.npy")]) == 0
    emb = np.load(tmp_path / "emb.npy")
    assert emb.shape == (len(info["good"]) + 1, 32)  # + the 0.02 s blip, repeat-padded at inference

    assert main(["export", ckpt, str(tmp_path / "copy.ckpt"), "--format", "ours"]) == 0
    a, b = load_model(ckpt), load_model(str(tmp_path / "copy.ckpt"))
    wav = torch.randn(2, 64000) * 0.1
    assert torch.equal(a.encode_audio(wav, sample_rate=32000), b.encode_audio(wav, sample_rate=32000))
    assert torch.equal(a.encode_text(["a bell"]), b.encode_text(["a bell"]))
