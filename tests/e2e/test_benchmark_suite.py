"""The benchmark suite on the default run's checkpoint (trained on the synthetic sources the fixtures use),
and as a training callback through the real conf/."""

import csv
import os

import pytest

from clap_train.cli import main
from tests.benchmark.fixtures import write_all, write_esc50
from tests.e2e.conftest import compose_cfg


@pytest.mark.slow
def test_default_run_checkpoint_scores_well_above_chance(default_run, tmp_path, capsys):
    import json

    _, res = default_run
    write_all(str(tmp_path / "data"))
    assert (
        main(
            [
                "benchmark",
                "--checkpoint",
                res["checkpoint"],
                "--data-root",
                str(tmp_path / "data"),
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    print(capsys.readouterr().out)  # the table, for the closing note
    got = json.load(open(tmp_path / "b.json"))["results"][res["checkpoint"]]
    esc, us8k = got["esc50"]["metrics"], got["us8k"]["metrics"]
    assert esc["zeroshot_top1"] >= 3 * esc["zeroshot_chance"] and us8k["zeroshot_top1"] >= 2 * us8k["zeroshot_chance"]
    ac = got["audiocaps"]["metrics"]
    assert ac["t2a_R@1"] >= 3 / ac["n_clips"] and ac["n_missing"] == 1  # 3x chance


@pytest.mark.slow
def test_benchmark_callback_logs_curves(tmp_path, data_root):
    from clap_train.run import run

    write_esc50(str(tmp_path / "bench"))
    cfg = compose_cfg(
        tmp_path,
        [
            "benchmark.suite=[esc50]",
            f"benchmark.data_root={tmp_path / 'bench'}",
            "benchmark.max_items=16",
            "test_after_fit=false",
            "trainer.max_epochs=2",
        ],
        data_root,
    )
    res = run(cfg)
    rows = list(csv.DictReader(open(os.path.join(res["run_dir"], "csv", "metrics.csv"))))
    vals = [float(r["bench/esc50/zeroshot_top1"]) for r in rows if r.get("bench/esc50/zeroshot_top1")]
    assert len(vals) == 2 and all(0 <= v <= 1 for v in vals)  # one point per validation
    with pytest.raises(ValueError, match="benchmark.suite: unknown"):
        run(compose_cfg(tmp_path, ["benchmark.suite=[esc]", f"benchmark.data_root={tmp_path}"], data_root))
