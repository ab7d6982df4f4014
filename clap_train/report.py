"""The end-of-run metrics table."""

from __future__ import annotations

METRICS = (
    "zeroshot_top1",
    "zeroshot_top5",
    "t2a_R@1",
    "t2a_R@5",
    "t2a_R@10",
    "t2a_mAP@10",
    "a2t_R@1",
    "a2t_R@5",
    "a2t_R@10",
    "a2t_mAP@10",
)


def format_report(results: dict) -> str:
    lines = ["", "=" * 78, "clap_train results"]
    for stage in ("val", "test"):
        flat = results.get(stage) or {}
        sources = sorted({k.split("/")[1] for k in flat})
        if len(sources) == 2 and "mean" in sources:  # one source: its mean is itself
            sources.remove("mean")
        if not sources:
            continue
        lines.append(f"\n{stage} split")
        lines.append(f"  {'metric':<16}" + "".join(f"{s:>14}" for s in sources))
        for m in METRICS:
            if any(f"{stage}/{s}/{m}" in flat for s in sources):
                lines.append(
                    f"  {m:<16}"
                    + "".join(
                        f"{flat[f'{stage}/{s}/{m}'] * 100:>13.1f}%" if f"{stage}/{s}/{m}" in flat else f"{'-':>14}"
                        for s in sources
                    )
                )
        named = [s for s in sources if s != "mean"]
        for s in sources:
            ch = flat.get(f"{stage}/{s}/zeroshot_chance")
            top1 = flat.get(f"{stage}/{s}/zeroshot_top1")
            if ch and top1 is not None:
                parts = named if s == "mean" else [s]  # the mean's count is the clips of all its sources
                n = sum(int(flat.get(f"{stage}/{p}/zeroshot_n", 0)) for p in parts)
                what = f"the mean of {len(named)} sources" if s == "mean" else s
                lines.append(
                    f"  zero-shot on {what}: {top1 * 100:.1f}% vs chance {ch * 100:.1f}% "
                    f"({top1 / ch:.1f}x chance, {n} clips)"
                )
    lines.append("")
    lines.append(f"  steps: {results.get('global_step')}   wall time: {results.get('wall_seconds', 0):.0f} s")
    lines.append(f"  run dir:    {results.get('run_dir')}")
    lines.append(f"  checkpoint: {results.get('checkpoint')}")
    pics = results.get("plots") or []
    if pics:
        import os

        names = [os.path.basename(p) for p in pics if os.path.basename(p).startswith("test_")] or [
            os.path.basename(p) for p in pics
        ]
        lines.append(f"  pictures:   {os.path.dirname(pics[0])}/ ({', '.join(names)})")
    lines.append("=" * 78)
    return "\n".join(lines)
