import csv
import json
import os

import torch

from clap_train.cli import main
from clap_train.data.audio_files import ReadSpec, list_audio, read_audio_file
from clap_train.eval.zeroshot import zeroshot_metrics
from clap_train.tools.zeroshot import format_zeroshot, run_zeroshot

UNREADABLE = {
    "bell/broken.wav": "corrupt_audio",
    "bell/empty.flac": "empty_file",
    "whistle/silence.wav": "silent_audio",
}


def test_zeroshot_equals_a_direct_computation(small_model, messy_dir, tmp_path):
    src, info = messy_dir
    listing = list_audio(src, classes_from_dirs=True)
    res = run_zeroshot(small_model, listing, listing.classes, ["a {}", "the sound of {}"], str(tmp_path))
    assert {s["path"]: s["reason"] for s in res["skipped"]} == UNREADABLE  # the 0.02 s blip is padded, kept
    kept = [it for it in listing.items if it.rel not in UNREADABLE]
    spec = ReadSpec(sample_rate=16000, min_seconds=0.0)
    emb = torch.cat([small_model.encode_audio([read_audio_file(it.path, spec)[0]], sample_rate=16000) for it in kept])
    protos = small_model.class_embeddings(listing.classes, ["a {}", "the sound of {}"])
    labels = torch.tensor([listing.classes.index(it.labels[0]) for it in kept])
    assert res["metrics"] == zeroshot_metrics(emb, protos, labels)
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == len(kept) == res["n_embedded"]
    pred = (emb @ protos.T).argmax(1)
    assert [r["predicted"] for r in rows] == [listing.classes[i] for i in pred]
    per = {r["class"]: r for r in res["per_class"]}
    assert per["bell"]["n"] == 6 and per["whistle"]["n"] == 8  # whistle: 6 clips, the blip, an MP3
    assert open(tmp_path / "confusion.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.load(open(tmp_path / "results.json"))["metrics"] == res["metrics"]
    assert "most confused with" in format_zeroshot(res)


def test_cli_classes_subset_and_errors(small_ckpt, messy_dir, tmp_path, capsys):
    src, _ = messy_dir
    out = tmp_path / "zs"
    assert (
        main(
            [
                "zeroshot",
                "--checkpoint",
                small_ckpt,
                "--audio",
                src,
                "--classes-from-dirs",
                "--classes",
                "bell,whistle",
                "--out",
                str(out),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "labels that name no class (counted as unlabelled): buzzer, drum" in text
    res = json.load(open(tmp_path / "r.json"))  # bell: 6 clips, whistle: 6 clips + the padded blip
    assert res["metrics"]["zeroshot_n"] == 14 and res["classes"] == ["bell", "whistle"]
    assert os.path.exists(out / "confusion.png")
    # a folder without --classes-from-dirs has no labels and no classes
    assert main(["zeroshot", "--checkpoint", small_ckpt, "--audio", src, "--out", str(out)]) == 2
    assert "no classes" in capsys.readouterr().err
    assert main(["zeroshot", "--checkpoint", str(tmp_path / "none.ckpt"), "--audio", src, "--classes", "a"]) == 2
    assert "not found" in capsys.readouterr().err
