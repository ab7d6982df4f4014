"""`clap-train <command>`: user commands around training (see `clap-train --help`)."""

from __future__ import annotations

import argparse
import sys


def cmd_make_synthetic(args) -> int:
    from clap_train.data.synthetic import SyntheticSpec, ensure_synthetic

    root = ensure_synthetic(SyntheticSpec(root=args.out, seed=args.seed, sample_rate=args.sample_rate,
                                          n_train={"sentences": args.n_train, "tags": args.n_train // 2},
                                          n_valid=args.n_valid, n_test=args.n_test, shard_size=args.shard_size))
    print(f"synthetic set ready at {root}")
    return 0


def cmd_check_data(args) -> int:
    """Exit status 0 when the data can train, 1 when it cannot (the reason is printed)."""
    from tqdm import tqdm

    from clap_train.data.check import check_shards, format_report, save_json, verdict

    caption_key = args.caption_key if len(args.caption_key) > 1 else args.caption_key[0]
    rep = check_shards(args.shards, caption_key=caption_key, tag_templates=args.tag_template,
                       max_seconds=args.max_seconds,
                       progress=lambda xs: tqdm(xs, desc="shards", unit="shard", disable=not sys.stderr.isatty()))
    print(format_report(rep))
    ok, why = verdict(rep, args.max_bad_fraction)
    print(("OK: " if ok else "CANNOT TRAIN: ") + why)
    if args.json:
        save_json(rep, args.json)
    return 0 if ok else 1


def cmd_encode(args) -> int:
    """Embed audio files and/or texts with a trained checkpoint (a quick check of a model)."""
    import numpy as np
    import soundfile as sf

    from clap_train import load_model

    model = load_model(args.checkpoint)
    out = {}
    if args.audio:
        clips, rates = [], set()
        for p in args.audio:
            x, sr = sf.read(p, dtype="float32", always_2d=True)
            clips.append(x.mean(1))
            rates.add(sr)
        if len(rates) > 1:
            out["audio"] = np.concatenate([model.encode_audio([c], sample_rate=sf.info(p).samplerate).numpy()
                                           for c, p in zip(clips, args.audio)])
        else:
            out["audio"] = model.encode_audio(clips, sample_rate=rates.pop()).numpy()
    if args.text:
        out["text"] = model.encode_text(args.text).numpy()
    if "audio" in out and "text" in out:
        sim = out["audio"] @ out["text"].T
        for i, p in enumerate(args.audio):
            best = int(sim[i].argmax())
            print(f"{p}: best match {args.text[best]!r} (cosine {sim[i, best]:.3f})")
    if args.out:
        np.savez(args.out, **out)
        print(f"wrote {args.out}")
    return 0


def cmd_export(args) -> int:
    """Convert any checkpoint we can load (ours, LAION .pt, Hugging Face dir) to another format."""
    from clap_train.checkpoints.export import export
    from clap_train.checkpoints.load import load_model

    model = load_model(args.checkpoint, trust_checkpoint=args.trust_checkpoint, tokenizer=args.tokenizer)
    try:
        export(model, args.format, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.format})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clap-train", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-synthetic", help="write the compositional synthetic audio-caption shards")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--sample-rate", type=int, default=32000)
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--n-valid", type=int, default=96)
    p.add_argument("--n-test", type=int, default=240)
    p.add_argument("--shard-size", type=int, default=250)
    p.set_defaults(func=cmd_make_synthetic)

    p = sub.add_parser("check-data", help="read shards as training would; report contents and damage")
    p.add_argument("shards", nargs="+", help="folders, globs, brace patterns or URLs")
    p.add_argument("--caption-key", nargs="+", default=["text"])
    p.add_argument("--tag-template", action="append", help="captions from tags when there is no caption")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="longer clips count as bad")
    p.add_argument("--max-bad-fraction", type=float, default=0.5, help="exit 1 above this fraction")
    p.add_argument("--json", help="write the report as JSON")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("encode", help="embed audio files and texts with a checkpoint; print best matches")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--audio", nargs="*", default=[])
    p.add_argument("--text", nargs="*", default=[])
    p.add_argument("--out", help="write embeddings to this .npz")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("export", help="write a checkpoint as a Hugging Face ClapModel dir, LAION .pt or ours")
    p.add_argument("checkpoint", help="ours (.ckpt), LAION-CLAP .pt, or a Hugging Face CLAP dir / hub id")
    p.add_argument("out", help="output directory (hf) or file (laion, ours)")
    p.add_argument("--format", required=True, choices=["hf", "laion", "ours"])
    p.add_argument("--tokenizer", help="RoBERTa tokenizer for LAION .pt input (default roberta-base from the hub)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full pickle for a file that needs it (runs code from the file: trusted sources only)")
    p.set_defaults(func=cmd_export)

    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
