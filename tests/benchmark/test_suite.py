import json

import pytest
import torch

from clap_train.benchmark.readers import read
from clap_train.benchmark.suite import evaluate, format_markdown, load_protocols, run_suite
from clap_train.cli import main
from clap_train.eval.retrieval import retrieval_metrics
from clap_train.eval.zeroshot import zeroshot_metrics
from clap_train.inference import embed_items, embed_texts
from tests.benchmark.fixtures import write_all


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("bench_suite")
    write_all(str(r))
    return str(r)


@pytest.fixture(scope="module")
def ckpt(small_ckpt, tmp_path_factory):
    """The shared small random checkpoint, under the name the table rows show."""
    import shutil

    path = str(tmp_path_factory.mktemp("bench_ckpt") / "random.ckpt")
    shutil.copy(small_ckpt, path)
    return path


def test_metrics_equal_the_eval_functions_on_the_same_embeddings(root, ckpt):
    from clap_train import load_model

    model, protocols = load_model(ckpt), load_protocols()
    esc = read("esc50", root)
    got = evaluate(model, esc, protocols["esc50"])["metrics"]
    emb = embed_items(model, esc.items).emb
    protos = model.class_embeddings(esc.classes, ["This is a sound of {}."])
    labels = torch.tensor([esc.classes.index(it.labels[0]) for it in esc.items])
    want = zeroshot_metrics(emb, protos, labels)
    assert {k: got[k] for k in want} == want
    for fold in range(1, 6):  # per fold: the same function on that fold's clips
        sel = torch.tensor(esc.folds) == fold
        assert got[f"fold{fold}_top1"] == zeroshot_metrics(emb[sel], protos, labels[sel])["zeroshot_top1"]
    assert got["mean_fold_top1"] == pytest.approx(sum(got[f"fold{k}_top1"] for k in range(1, 6)) / 5)
    # a random model scores near chance (8 classes)
    assert got["zeroshot_top1"] <= 3 * got["zeroshot_chance"]

    ac = read("audiocaps", root, "test")
    got = evaluate(model, ac, protocols["audiocaps"])["metrics"]
    caps = [c for it in ac.items for c in it.captions]
    owner = torch.tensor([i for i, it in enumerate(ac.items) for _ in it.captions])
    want = retrieval_metrics(embed_items(model, ac.items).emb, embed_texts(model, caps), owner)
    assert {k: got[k] for k in want} == want
    assert got["n_clips"] == 7 and got["n_missing"] == 1 and got["n_captions"] == 35


def test_cli_table_json_markdown_two_checkpoints(root, ckpt, tmp_path, capsys):
    import shutil

    other = str(tmp_path / "copy.ckpt")
    shutil.copy(ckpt, other)
    assert (
        main(
            [
                "benchmark",
                "--checkpoint",
                ckpt,
                "--checkpoint",
                other,
                "--data-root",
                root,
                "--json",
                str(tmp_path / "b.json"),
                "--markdown",
                str(tmp_path / "b.md"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 listed clip(s) not found (e.g. yt007xYz_7)" in out and "ESC-50 top-1" in out
    rows = [line.split()[0] for line in out.splitlines() if line.endswith(".ckpt") is False and ".ckpt " in line]
    assert rows == ["random.ckpt", "copy.ckpt"]
    res = json.load(open(tmp_path / "b.json"))
    assert set(res["results"][ckpt]) == {"esc50", "us8k", "audiocaps", "clotho"}
    assert res["results"][ckpt]["us8k"]["metrics"]["fold3_top1"] >= 0
    md = open(tmp_path / "b.md").read()
    assert md.startswith("| checkpoint | ESC-50 top-1 |") and "Published (reference)" in md
    assert main(["benchmark", "--checkpoint", ckpt, "--data-root", str(tmp_path), "--suite", "esc50"]) == 1
    assert main(["benchmark", "--checkpoint", ckpt, "--data-root", root, "--suite", "esc-50"]) == 2


def test_make_shards_output_works_as_a_benchmark_set(root, ckpt, tmp_path):
    # the fixture's ESC-50 clips as class folders -> make-shards -> <root>/esc50/test
    import os
    import shutil

    from clap_train.data.make_shards import MakeShardsSpec, make_shards

    src = tmp_path / "folders"
    for it in read("esc50", root).items:
        os.makedirs(src / it.labels[0], exist_ok=True)
        shutil.copy(it.path, src / it.labels[0] / it.rel)
    make_shards(
        str(src), str(tmp_path / "data" / "esc50"), MakeShardsSpec(sample_rate=16000, workers=1, splits={"test": 1.0})
    )
    res = run_suite([ckpt], ["esc50"], str(tmp_path / "data"), log=lambda *_: None)
    m = res["results"][ckpt]["esc50"]["metrics"]
    assert m["n_clips"] == 40 and m["zeroshot_n"] == 40 and "zeroshot_top1" in m
    assert "| random.ckpt |" in format_markdown(res)


def test_benchmark_with_sliding_windows(root, ckpt, tmp_path):
    """`--long-audio slide` reaches the suite: its metrics are those of the same model's sliding-window
    embeddings, not of the first windows."""
    from clap_train import load_model
    from clap_train.long_audio import LongAudio

    out = tmp_path / "b.json"
    args = ["benchmark", "--checkpoint", ckpt, "--data-root", root, "--suite", "esc50", "--json", str(out)]
    assert main([*args, "--long-audio", "slide", "--hop-seconds", "0.1"]) == 0
    got = json.load(open(out))["results"][ckpt]["esc50"]["metrics"]
    model, protocol, esc = load_model(ckpt), load_protocols()["esc50"], read("esc50", root)
    want = evaluate(model, esc, protocol, long_audio=LongAudio("slide", hop_seconds=0.1))["metrics"]
    assert got == pytest.approx(want)
    slid = embed_items(model, esc.items, long_audio=LongAudio("slide", hop_seconds=0.1)).emb
    assert (slid - embed_items(model, esc.items).emb).abs().max() > 1e-3  # the clips are longer than 0.5 s
