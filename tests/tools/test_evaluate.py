import json
import os

from clap_train.cli import main
from clap_train.data.make_shards import MakeShardsSpec, make_shards
from clap_train.eval.retrieval import retrieval_metrics
from clap_train.eval.zeroshot import labels_from_tags, zeroshot_metrics
from clap_train.inference import embed_shards
from clap_train.tools.evaluate import format_evaluate, run_evaluate


def test_evaluate_on_made_shards_equals_the_eval_functions(small_ckpt, small_model, messy_dir, tmp_path, capsys):
    src, info = messy_dir
    out = str(tmp_path / "shards")
    make_shards(src, out, MakeShardsSpec(sample_rate=16000, workers=1, splits={"train": 0.5, "test": 0.5}))
    res = run_evaluate(small_model, f"{out}/test", ["bell", "buzzer", "drum", "whistle"], out_dir=str(tmp_path / "ev"))
    e = embed_shards(
        small_model, sorted(os.path.join(out, "test", f) for f in os.listdir(f"{out}/test") if f.endswith(".tar"))
    )
    want = retrieval_metrics(e["audio"], e["text"], e["owner"])
    protos = small_model.class_embeddings(["bell", "buzzer", "drum", "whistle"])
    classes = ["bell", "buzzer", "drum", "whistle"]
    want.update(zeroshot_metrics(e["audio"], protos, labels_from_tags(e["tags"], classes)))
    assert {k: v for k, v in res["metrics"].items() if k in want} == want
    assert res["metrics"]["n_clips"] == json.load(open(f"{out}/report.json"))["written"]["test"]
    assert res["unlabelled_clips"] == 0
    assert {"similarity.png", "confusion.png", "results.json"} <= set(os.listdir(tmp_path / "ev"))
    assert "text->audio" in format_evaluate(res)
    # the CLI finds classes.json one folder up, as make-shards writes it
    assert (
        main(["evaluate", "--checkpoint", small_ckpt, "--shards", f"{out}/test", "--json", str(tmp_path / "r.json")])
        == 0
    )
    assert "zero-shot classes from" in capsys.readouterr().out
    got = json.load(open(tmp_path / "r.json"))["metrics"]
    assert got["zeroshot_top1"] == res["metrics"]["zeroshot_top1"] and got["t2a_R@1"] == want["t2a_R@1"]
    assert main(["evaluate", "--checkpoint", small_ckpt, "--shards", str(tmp_path / "none")]) == 2
