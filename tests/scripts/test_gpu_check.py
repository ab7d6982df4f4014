"""The GPU check's CPU smoke mode: every section runs (toy sizes), the JSON and the Markdown table are written,
and the equalities it reports on a GPU hold here too."""

import json

import pytest

from tests.conftest import run_script


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section(tmp_path):
    p = run_script(
        "gpu_check.py",
        "--smoke",
        "--batch",
        2,
        "--out",
        tmp_path,
        timeout=900,
        WANDB_MODE="offline",
        OMP_NUM_THREADS="2",
    )
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    got = json.load(open(tmp_path / "gpu_check.json"))["sections"]
    assert set(got) == {"env", "peak", "bench", "precision", "compile", "accumulate", "nccl", "train", "presets"}
    assert not [k for k, v in got.items() if "error" in v]
    r = {k: v["result"] for k, v in got.items()}
    assert r["peak"]["bf16_tflops"] > 0 and r["peak"]["fp32_tf32_tflops"] > 0
    assert r["precision"]["grad_cosine"] > 0.9 and r["precision"]["loss_rel_diff"] < 0.05
    assert r["compile"]["graphs"] >= 2 and r["compile"]["max_loss_diff"] < 1e-4
    assert r["accumulate"]["no_dropout_bn_frozen"]["grad_cosine"] > 0.99999
    assert r["nccl"]["loss_diff"] < 1e-5 and r["nccl"]["grad_max_abs_diff"] < 1e-5
    assert r["train"]["w2"]["samples_per_s"] > 0 and 0 <= r["train"]["w2"]["data_wait_frac"] <= 1
    assert r["presets"] and all(v["ok"] for v in r["presets"].values()), r["presets"]
    md = (tmp_path / "gpu_check.md").read_text()
    assert md.startswith("# GPU check: cpu (smoke)") and "| presets |" in md
