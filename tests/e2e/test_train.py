"""End-to-end: the real conf/ composed with overrides, a few real steps on real shards."""

import csv
import glob
import json
import os

import pytest
import torch

from clap_train.testing import run_train_py
from tests.e2e.conftest import SMALL_DATA, compose_cfg


def losses(run_dir):
    rows = list(csv.DictReader(open(os.path.join(run_dir, "csv", "metrics.csv"))))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def test_fast_run_trains_validates_tests_and_checkpoints(fast_run):
    cfg, res = fast_run
    assert res["global_step"] == 8
    for stage in ("val", "test"):
        for src in ("sentences", "tags", "mean"):  # per source, and their mean
            for m in ("t2a_R@1", "a2t_R@10", "t2a_mAP@10", "zeroshot_top1", "zeroshot_chance"):
                assert f"{stage}/{src}/{m}" in res[stage], (src, m)
    m = res["test"]
    assert m["test/mean/t2a_R@1"] == pytest.approx((m["test/sentences/t2a_R@1"] + m["test/tags/t2a_R@1"]) / 2)
    assert res["test"]["test/sentences/n_clips"] == 24 and res["test"]["test/tags/n_clips"] == 24
    run_dir = res["run_dir"]
    assert json.load(open(os.path.join(run_dir, "results.json")))["global_step"] == 8
    assert os.path.exists(os.path.join(run_dir, "checkpoints", "last.ckpt"))
    assert len(losses(run_dir)) == 8
    metrics = open(os.path.join(run_dir, "csv", "metrics.csv")).read()
    assert "perf/samples_per_s" in metrics and "perf/mfu" in metrics and "train/lr" in metrics


def test_checkpoint_loads_safely_and_has_plain_hparams(fast_run):
    ck = torch.load(os.path.join(fast_run[1]["run_dir"], "checkpoints", "last.ckpt"), weights_only=True)
    assert ck["global_step"] == 8 and "text_assets" in ck and "rng" in ck
    assert {"val/sentences/t2a_R@1", "val/tags/t2a_R@1", "val/mean/t2a_R@1"} <= set(ck["metrics"]["val"])
    assert type(ck["hyper_parameters"]["model_cfg"]) is dict
    assert ck["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == 8


def test_load_model_api(fast_run):
    from clap_train import load_model

    m = load_model(os.path.join(fast_run[1]["run_dir"], "checkpoints", "last.ckpt"))
    assert not m.training
    wav = torch.randn(2, 22050) * 0.1
    a1, a2 = m.encode_audio(wav, sample_rate=22050), m.encode_audio(wav, sample_rate=22050)
    t = m.encode_text(["a bell rings twice", "a low drum"])
    assert a1.shape == t.shape == (2, 32) and torch.equal(a1, a2)
    assert torch.allclose(a1.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_exact_resume_mid_epoch(fast_run, tmp_path, data_root):
    """Resume from the step-2 checkpoint (mid-epoch): steps 3..8 give the same losses as the unbroken run."""
    from clap_train.run import run

    cfg, res = fast_run
    ref = losses(res["run_dir"])
    ck = sorted(glob.glob(os.path.join(res["run_dir"], "checkpoints", "step*2.ckpt")))
    assert ck, os.listdir(os.path.join(res["run_dir"], "checkpoints"))
    cfg2 = compose_cfg(tmp_path, ["trainer.max_epochs=2", f"ckpt_path={ck[0]}", "test_after_fit=false"], data_root)
    res2 = run(cfg2)
    assert res2["global_step"] == 8
    got = losses(res2["run_dir"])
    assert sorted(got) == [3, 4, 5, 6, 7, 8] or sorted(got) == list(range(2, 8)) or len(got) == 6
    for step, loss in got.items():
        assert abs(loss - ref[step]) < 1e-6, (step, loss, ref[step])


def test_resuming_a_checkpoint_past_the_configured_end_is_one_clear_error(tmp_path, data_root):
    from clap_train.config import ConfigError
    from clap_train.run import run

    three = ["trainer.max_epochs=3", "data.steps_per_epoch=1", "callbacks.last_checkpoint.every_n_train_steps=1"]
    first = run(compose_cfg(tmp_path, [*three, "test_after_fit=false"], data_root))
    last = os.path.join(first["run_dir"], "checkpoints", "step0000003.ckpt")  # in epoch 3: 2 completed
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=1: .* after 2 completed epochs, past this config"):
        run(compose_cfg(tmp_path, ["trainer.max_epochs=1", f"ckpt_path={last}"], data_root))


def test_auto_resume_continues_step_and_optimizer(tmp_path, data_root):
    from clap_train.run import run

    run(compose_cfg(tmp_path, ["trainer.max_epochs=1", "test_after_fit=false", "name=resume"], data_root))
    res = run(compose_cfg(tmp_path, ["trainer.max_epochs=2", "test_after_fit=false", "name=resume"], data_root))
    assert res["global_step"] == 8
    ck = torch.load(os.path.join(res["run_dir"], "checkpoints", "last.ckpt"), weights_only=True)
    steps = {int(s["step"]) for s in ck["optimizer_states"][0]["state"].values()}
    assert steps == {8}


def test_relaunch_finished_then_longer_then_never(tmp_path, data_root, caplog, monkeypatch):
    """A finished run re-launched does nothing; `trainer.max_epochs` raised continues it in the same folder;
    `resume=never` moves the old files aside and starts clean; a requeued `resume=never` job resumes."""
    import logging

    from clap_train.run import run

    caplog.set_level(logging.INFO, logger="clap_train")
    args = ["trainer.max_epochs=1", "name=done"]
    first = run(compose_cfg(tmp_path, args, data_root))
    run_dir, path = first["run_dir"], os.path.join(first["run_dir"], "results.json")
    assert run_dir == str(tmp_path / "runs" / "done") or run_dir.startswith(str(tmp_path / "runs" / "done-"))
    before = open(path).read()
    assert json.loads(before)["val"] and json.loads(before)["test"]
    again = run(compose_cfg(tmp_path, args, data_root))
    assert again["global_step"] == first["global_step"] == 4 and open(path).read() == before  # not re-tested
    assert "this run finished at step 4" in caplog.text and "raise trainer.max_epochs" in caplog.text

    longer = run(compose_cfg(tmp_path, ["trainer.max_epochs=2", "name=done"], data_root))  # train longer
    assert longer["run_dir"] == run_dir and longer["global_step"] == 8
    assert "resuming from" in caplog.text, caplog.text[-3000:]
    assert sorted(losses(run_dir)) == list(range(8))

    fresh = run(compose_cfg(tmp_path, [*args, "resume=never"], data_root))
    (aside,) = glob.glob(run_dir + ".old-*")
    assert json.loads(open(os.path.join(aside, "results.json")).read())["global_step"] == 8
    assert fresh["run_dir"] == run_dir and fresh["global_step"] == 4
    assert sorted(losses(run_dir)) == list(range(4))  # each step once: no rows of the old run
    assert not glob.glob(os.path.join(run_dir, "checkpoints", "*-v1.ckpt"))
    assert max(os.listdir(os.path.join(run_dir, "checkpoints"))) <= "step0000004.ckpt"

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the same command, requeued: resumes, moves nothing
    run(compose_cfg(tmp_path, [*args, "resume=never"], data_root))
    assert len(glob.glob(run_dir + ".old-*")) == 1 and "this job was requeued" in caplog.text


def test_init_from_fine_tunes(fast_run, tmp_path, data_root):
    from clap_train.run import run

    src = os.path.join(fast_run[1]["run_dir"], "checkpoints", "last.ckpt")
    res = run(compose_cfg(tmp_path, [f"init_from={src}", "test_after_fit=false", "optim.lr=1e-4"], data_root))
    assert res["global_step"] == 4 and os.path.exists(res["checkpoint"])


def test_init_from_a_checkpoint_of_other_sizes_is_refused_unless_asked(fast_run, tmp_path, data_root):
    from clap_train.config import ConfigError
    from clap_train.run import run

    src = os.path.join(fast_run[1]["run_dir"], "checkpoints", "last.ckpt")
    other = [f"init_from={src}", "model.embed_dim=40", "test_after_fit=false"]  # projections of another size
    with pytest.raises(ConfigError, match=r"(?s)shape mismatch [1-9].*init_from_strict=false.*\n  shape mismatch: "):
        run(compose_cfg(tmp_path / "strict", other, data_root))
    assert run(compose_cfg(tmp_path / "lenient", [*other, "init_from_strict=false"], data_root))["global_step"] == 4


def cli(args, tmp_path, timeout=600):
    return run_train_py(args, tmp_path, {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}, timeout)


def test_wrong_group_option_names_choices(tmp_path):
    p = cli(["audio_encoder=nope"], tmp_path, timeout=120)
    assert p.returncode != 0
    assert "nope" in p.stderr and "pann_tiny" in p.stderr and "pann_cnn14" in p.stderr


def test_unknown_key_is_named(tmp_path):
    p = cli(["optim.lrr=1"], tmp_path, timeout=120)
    assert p.returncode != 0 and "lrr" in p.stderr


@pytest.mark.slow
def test_all_loggers_offline(tmp_path, data_root, monkeypatch):
    """csv + tensorboard + wandb together; wandb goes offline by itself without an API key."""
    from clap_train.run import run

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    res = run(compose_cfg(tmp_path, ["logger=many", "test_after_fit=false"], data_root))
    d = res["run_dir"]
    assert glob.glob(os.path.join(d, "tensorboard", "events.out.tfevents.*"))
    assert os.path.exists(os.path.join(d, "csv", "metrics.csv"))
    offline = glob.glob(os.path.join(d, "wandb", "offline-run-*"))
    assert offline, os.listdir(os.path.join(d, "wandb")) if os.path.exists(os.path.join(d, "wandb")) else d


def test_requeue_resumes_past_a_corrupted_newest_checkpoint(fast_run, tmp_path, data_root):
    """The newest checkpoint is damaged: auto-resume warns and continues from the newest valid one."""
    import shutil

    from clap_train.resume import find_resume

    cfg, res = fast_run
    d = tmp_path / "ck"
    shutil.copytree(os.path.join(res["run_dir"], "checkpoints"), d)
    for name in ("last.ckpt", "step0000008.ckpt"):
        with open(d / name, "r+b") as f:
            f.truncate(1000)
    got = find_resume(compose_cfg(tmp_path, [], data_root), str(d))
    assert got.endswith("step0000006.ckpt")
    assert torch.load(got, weights_only=True)["global_step"] == 6


def test_init_from_other_sample_rate_is_a_clear_error(fast_run, tmp_path, data_root):
    from clap_train.config import ConfigError
    from clap_train.run import run

    src = os.path.join(fast_run[1]["run_dir"], "checkpoints", "last.ckpt")
    with pytest.raises(ConfigError, match="trained at 48000 Hz.*data.audio.sample_rate=48000"):
        run(compose_cfg(tmp_path, [f"init_from={src}", "data.audio.sample_rate=32000"], data_root))


def test_config_errors_are_one_line_not_tracebacks(tmp_path):
    p = cli(["ckpt_path=/nonexistent/x.ckpt", "debug=fast", *SMALL_DATA, f"paths.root={tmp_path}"], tmp_path)
    assert p.returncode == 2
    assert "error: ckpt_path=/nonexistent/x.ckpt: file not found" in p.stderr and "Traceback" not in p.stderr
    # a bad value (tests/e2e/test_bad_values.py has the table): the same one line from train.py
    p = cli(["optim.accumulate=0", "debug=fast", *SMALL_DATA, f"paths.root={tmp_path}"], tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "error: optim.accumulate=0: must be a whole number >= 1" in p.stderr


def test_pictures_of_validation_and_test(fast_run):
    """The similarity heatmap and the zero-shot confusion matrix of each eval source, as PNGs in the run dir."""
    from matplotlib.image import imread

    res = fast_run[1]
    names = sorted(os.path.basename(p) for p in res["plots"])
    assert names == sorted(
        f"{stage}_{src}_{kind}.png"
        for stage in ("test", "val")
        for src in ("sentences", "tags")
        for kind in ("confusion", "similarity")
    )
    img = imread(os.path.join(res["run_dir"], "plots", "test_sentences_similarity.png"))
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    from clap_train.report import format_report

    assert "pictures:" in format_report(res) and "test_tags_confusion.png" in format_report(res)
