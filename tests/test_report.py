from clap_train.report import format_report


def test_report_shows_metrics_chance_and_paths():
    res = {
        "test": {
            "test/a/zeroshot_top1": 0.5,
            "test/a/zeroshot_chance": 0.125,
            "test/a/zeroshot_n": 40.0,
            "test/a/t2a_R@1": 0.25,
            "test/mean/zeroshot_top1": 0.5,
            "test/mean/t2a_R@1": 0.25,
        },
        "global_step": 7,
        "wall_seconds": 12.0,
        "run_dir": "/r",
        "checkpoint": "/r/c.ckpt",
    }
    out = format_report(res)
    assert "50.0%" in out and "25.0%" in out and "4.0x chance" in out and "/r/c.ckpt" in out
    assert "mean" not in out  # a single source is not repeated as its own mean
    res["test"]["test/b/t2a_R@1"] = 0.75
    assert "mean" in format_report(res)
