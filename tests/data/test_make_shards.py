"""make-shards on messy real-world input: every format, rate and channel count; bad files reported with
reasons; byte-identical output whatever the process count; seeded stratified splits."""

import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest
import soundfile as sf

from clap_train.cli import main
from clap_train.data.audio_files import InputError, list_audio
from clap_train.data.make_shards import MakeShardsSpec, assign_splits, make_shards, split_counts, split_warnings
from tests.data.messy import write_messy_folder


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    info = write_messy_folder(str(root / "in"))
    return root, info


def _members(out):
    got = {}
    for split in sorted(os.listdir(out)):
        d = os.path.join(out, split)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".tar"):
                with tarfile.open(os.path.join(d, name)) as tf:
                    for m in tf.getmembers():
                        got[(split, m.name)] = tf.extractfile(m).read()
    return got


def _digest(out):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            h.update(f.encode())
            h.update(open(os.path.join(dirpath, f), "rb").read())
    return h.hexdigest()


def test_messy_folder(messy):
    root, info = messy
    out = str(root / "out1")
    rep = make_shards(str(root / "in"), out, MakeShardsSpec(workers=1, shard_size=8))
    assert rep["files"] == len(info["good"]) + len(info["bad"])
    assert sum(rep["written"].values()) == len(info["good"])
    assert {s["path"]: s["reason"] for s in rep["skipped_files"]} == info["bad"]
    assert sorted(rep["ignored_not_audio"]) == info["ignored"]  # the side-car caption file is not "ignored"
    assert rep["notes"]["rescaled"] == 4 + 2 and rep["notes"]["downmixed"] >= 8 and rep["notes"]["resampled"] >= 16
    assert json.load(open(os.path.join(out, "classes.json"))) == ["bell", "buzzer", "drum", "whistle"]
    members = _members(out)
    metas = {k: json.loads(v) for k, v in members.items() if k[1].endswith(".json")}
    by_path = {m["original_data"]["path"]: (k, m) for k, m in metas.items()}
    assert sorted(by_path) == info["good"]
    for rel, (k, m) in by_path.items():
        wav, sr = sf.read(io.BytesIO(members[(k[0], k[1][:-4] + "flac")]))
        assert sr == 48000 and wav.ndim == 1 and np.abs(wav).max() <= 1.0
        assert abs(len(wav) / sr - m["original_data"]["seconds"]) < 0.01, rel
        assert m["tag"] == [rel.split("/")[0]]
    long_meta = by_path[info["long"]][1]
    assert long_meta["text"] == ["A low drum is struck again and again.", "Drum hits repeat for a long time."]
    assert by_path["bell/clip_00.wav"][1]["text"] == ["This is a sound of bell."]
    assert by_path["bell/clip_00.wav"][1]["original_data"]["channels"] == 2
    for split, n in rep["written"].items():
        assert (
            json.load(open(os.path.join(out, split, "sizes.json")))
            and sum(json.load(open(os.path.join(out, split, "sizes.json"))).values()) == n
        )
    # stratified: every class is trained on, and the held-out splits are not empty
    for cls in ("bell", "buzzer", "drum", "whistle"):
        assert "train" in {k[0] for k, m in metas.items() if m["tag"] == [cls]}
    # every class in every split (bell's two files that cannot be opened take no share), but whistle's test
    # file is its silent one: one warning says so
    assert rep["written"]["valid"] == 4 and rep["written"]["test"] == 3
    assert rep["warnings"] == ["class 'whistle' (7 files written) has none in test"]


def test_byte_identical_whatever_the_process_count(messy):
    root, _ = messy
    a, b = str(root / "a"), str(root / "b")
    make_shards(str(root / "in"), a, MakeShardsSpec(workers=1, shard_size=5))
    make_shards(str(root / "in"), b, MakeShardsSpec(workers=2, shard_size=5))
    assert _digest(a) == _digest(b)
    make_shards(str(root / "in"), b, MakeShardsSpec(workers=2, shard_size=5))  # re-run over the old output
    assert _digest(a) == _digest(b)
    c = str(root / "c")
    make_shards(str(root / "in"), c, MakeShardsSpec(workers=1, shard_size=5, seed=7))
    assert _digest(a) != _digest(c)  # another seed, another split


def test_split_rule_is_stratified_and_seeded():
    from clap_train.data.audio_files import AudioItem

    items = [AudioItem(f"/x/{c}/{i}.wav", f"{c}/{i}.wav", labels=[c]) for c in "abcd" for i in range(20)]
    s = assign_splits(items, {"train": 0.8, "valid": 0.1, "test": 0.1}, seed=0)
    for c in "abcd":
        mine = [x for x, it in zip(s, items) if it.labels == [c]]
        assert (mine.count("train"), mine.count("valid"), mine.count("test")) == (16, 2, 2)
    assert s == assign_splits(items, {"train": 0.8, "valid": 0.1, "test": 0.1}, seed=0)
    assert s != assign_splits(items, {"train": 0.8, "valid": 0.1, "test": 0.1}, seed=1)
    items[0].split = "test"
    assert assign_splits(items, {"train": 1.0}, seed=0)[0] == "test"  # a split column wins
    with pytest.raises(ValueError, match="non-negative"):
        assign_splits(items, {"train": -1.0}, 0)


@pytest.mark.parametrize(
    "k,want",
    [(1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (5, (3, 1, 1)), (9, (7, 1, 1)), (10, (8, 1, 1)), (40, (32, 4, 4))],
)
def test_small_classes_reach_every_split(k, want):
    fr = {"train": 0.8, "valid": 0.1, "test": 0.1}
    assert tuple(split_counts(k, fr).values()) == want
    assert split_counts(4, {"train": 0.5, "valid": 0.0, "test": 0.5}) == {"train": 2, "valid": 0, "test": 2}


def test_split_warnings_name_empty_splits_and_unsplit_classes():
    from clap_train.data.audio_files import AudioItem

    fr = {"train": 0.8, "valid": 0.1, "test": 0.1}
    items = [
        AudioItem(f"/x/{c}/{i}.wav", f"{c}/{i}.wav", labels=[c]) for c, k in (("a", 5), ("b", 2)) for i in range(k)
    ]
    s = assign_splits(items, fr, seed=0)
    assert split_warnings(items, s, [True] * len(items), fr) == ["class 'b' (2 files written) has none in test"]
    lost = [not (it.labels == ["a"] and sp == "test") for it, sp in zip(items, s)]  # a's test file unreadable
    assert split_warnings(items, s, lost, fr) == ["split 'test' is empty"]  # no class has it: one warning


def test_csv_and_jsonl_inputs(messy, tmp_path):
    root, info = messy
    src = root / "in"
    with open(tmp_path / "list.csv", "w") as f:
        f.write("path,caption_1,caption_2,labels,split\n")
        f.write(f"{src}/{info['good'][0]},a bell rings,a struck bell,bell;metal,valid\n")
        drum = [g for g in info["good"] if g.startswith("drum/")][0]
        f.write(f"{src}/{drum},,,drum,\n")  # no captions: made from the template
        f.write("missing.wav,gone,,x,\n")  # relative to the CSV: not there
    rep = make_shards(str(tmp_path / "list.csv"), str(tmp_path / "o"), MakeShardsSpec(workers=1))
    assert rep["written"] == {"train": 1, "valid": 1}
    assert [(s["path"], s["reason"]) for s in rep["skipped_files"]] == [("missing.wav", "unreadable_file")]
    metas = [json.loads(v) for k, v in _members(str(tmp_path / "o")).items() if k[1].endswith(".json")]
    texts = sorted(m["text"][0] for m in metas)
    assert texts == ["This is a sound of drum.", "a bell rings"]
    assert json.load(open(tmp_path / "o" / "classes.json")) == ["bell", "drum", "metal", "x"]
    with open(tmp_path / "list.jsonl", "w") as f:
        f.write(
            json.dumps(
                {"path": f"{src}/{info['good'][-1]}", "captions": ["a whistle", "someone whistles"], "label": "whistle"}
            )
            + "\n\n"
        )
    items = list_audio(str(tmp_path / "list.jsonl")).items
    assert items[0].captions == ["a whistle", "someone whistles"] and items[0].labels == ["whistle"]
    with open(tmp_path / "bad.csv", "w") as f:
        f.write("file,caption\nx.wav,hi\n")
    with pytest.raises(InputError, match="no 'path' column.*found: caption, file"):
        list_audio(str(tmp_path / "bad.csv"))


def test_cli(messy, tmp_path, capsys):
    root, _ = messy
    assert (
        main(
            [
                "make-shards",
                str(root / "in"),
                str(tmp_path / "o"),
                "--workers",
                "1",
                "--splits",
                "train=0.5,test=0.5",
                "--template",
                "{}",
                "--template",
                "The sound of a {}.",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "skipped" in out and "corrupt_audio" in out and "4 classes" in out
    meta = json.loads(next(v for k, v in _members(str(tmp_path / "o")).items() if k[1].endswith(".json")))
    assert len(meta["text"]) == 2 and meta["text"][1].startswith("The sound of a ")
    assert main(["make-shards", str(tmp_path / "nothing"), str(tmp_path / "o2")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["make-shards", str(root / "in"), str(tmp_path / "o3"), "--splits", "train:1"]) != 0
