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


def test_the_mean_counts_the_clips_of_all_its_sources():
    flat = {"val/mean/zeroshot_top1": 0.5, "val/mean/zeroshot_chance": 0.25}
    for s, n in (("a", 4.0), ("b", 16.0)):
        flat.update({f"val/{s}/zeroshot_top1": 0.5, f"val/{s}/zeroshot_chance": 0.25, f"val/{s}/zeroshot_n": n})
    flat["val/mean/zeroshot_n"] = 10.0  # the mean of the counts, which is no count of clips
    out = format_report({"val": flat, "global_step": 1, "run_dir": "/r", "checkpoint": "/c"})
    assert "zero-shot on the mean of 2 sources: 50.0% vs chance 25.0% (2.0x chance, 20 clips)" in out
    assert "zero-shot on b: 50.0% vs chance 25.0% (2.0x chance, 16 clips)" in out and "10 clips" not in out
