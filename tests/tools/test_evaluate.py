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


def test_long_audio_over_shards(small_ckpt, small_model, messy_dir, tmp_path, capsys):
    """--long-audio slide over shards: each sample is seen whole (up to --fusion-max-seconds) and embedded
    as encode_audio's sliding windows of it; the 24 s clip differs from its first window."""
    import io
    import tarfile

    import numpy as np
    import soundfile as sf
    import torch

    from clap_train.long_audio import LongAudio

    src, info = messy_dir
    out = str(tmp_path / "shards")
    make_shards(src, out, MakeShardsSpec(sample_rate=16000, workers=1, splits={"all": 1.0}))
    urls = sorted(os.path.join(out, "all", f) for f in os.listdir(f"{out}/all") if f.endswith(".tar"))
    slid = embed_shards(small_model, urls, long_audio=LongAudio("slide"))
    first = embed_shards(small_model, urls)
    clips = {}
    for url in urls:
        with tarfile.open(url) as tf:
            metas = {m.name[:-5]: json.load(tf.extractfile(m)) for m in tf.getmembers() if m.name.endswith(".json")}
            for m in tf.getmembers():
                if m.name.endswith(".flac"):
                    clips[m.name[:-5]] = (
                        sf.read(io.BytesIO(tf.extractfile(m).read()), dtype="float32")[0],
                        metas[m.name[:-5]],
                    )
    i = next(i for i, k in enumerate(slid["keys"]) if clips[k][1]["original_data"]["path"] == info["long"])
    wav = clips[slid["keys"][i]][0]
    assert wav.shape[0] == sf.info(os.path.join(src, info["long"])).frames  # 23.75 s at 16 kHz, whole
    want = small_model.encode_audio([wav], 16000, long_audio="slide")[0]
    assert torch.allclose(slid["audio"][i], want, atol=5e-4)  # the stream carries int16 (LAION: x / 32767)
    assert (slid["audio"][i] - first["audio"][i]).abs().max() > 1e-3
    assert np.allclose(slid["text"].numpy(), first["text"].numpy(), atol=1e-6)  # captions unchanged
    args = ["evaluate", "--checkpoint", small_ckpt, "--shards", f"{out}/all", "--json", str(tmp_path / "r.json")]
    assert main([*args, "--long-audio", "slide"]) == 0
    assert json.load(open(tmp_path / "r.json"))["metrics"]["n_clips"] == len(slid["keys"])
    assert main([*args, "--long-audio", "fusion"]) == 2
    assert "--long-audio fusion needs a model with a fusion audio tower" in capsys.readouterr().err
