"""`clap-train <command>`: user commands around training (see `clap-train --help`)."""

from __future__ import annotations

import argparse
import os
import sys

from clap_train.prompts import DEFAULT_TEMPLATE, DEFAULT_TEMPLATES


def cmd_make_synthetic(args) -> int:
    from clap_train.data.synthetic import SyntheticSpec, ensure_synthetic

    root = ensure_synthetic(
        SyntheticSpec(
            root=args.out,
            seed=args.seed,
            sample_rate=args.sample_rate,
            n_train={"sentences": args.n_train, "tags": args.n_train // 2},
            n_valid=args.n_valid,
            n_test=args.n_test,
            shard_size=args.shard_size,
        )
    )
    print(f"synthetic set ready at {root}")
    return 0


def cmd_check_data(args) -> int:
    """Exit status 0 when the data can train, 1 when it cannot (the reason is printed)."""
    from tqdm import tqdm

    from clap_train.data.check import check_shards, format_report, save_json, verdict

    caption_key = args.caption_key if len(args.caption_key) > 1 else args.caption_key[0]
    rep = check_shards(
        args.shards,
        caption_key=caption_key,
        tag_templates=args.tag_template,
        max_seconds=args.max_seconds,
        progress=lambda xs: tqdm(xs, desc="shards", unit="shard", disable=not sys.stderr.isatty()),
    )
    print(format_report(rep))
    ok, why = verdict(rep, args.max_bad_fraction)
    print(("OK: " if ok else "CANNOT TRAIN: ") + why)
    if args.json:
        save_json(rep, args.json)
    return 0 if ok else 1


def _progress():
    from clap_train.inference import tqdm_progress

    return tqdm_progress


def _model(args):
    from clap_train.checkpoints.load import load_model

    model = load_model(
        args.checkpoint, map_location=args.device, trust_checkpoint=args.trust_checkpoint, tokenizer=args.tokenizer
    )
    return model.eval()


def _write_json(obj, path: str | None) -> None:
    if path:
        import json

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, indent=1)
        print(f"wrote {path}")


def cmd_make_shards(args) -> int:
    """Exit status 0 when at least one file was written."""
    from tqdm import tqdm

    from clap_train.data.make_shards import MakeShardsSpec, format_report, make_shards

    spec = MakeShardsSpec(
        sample_rate=args.sample_rate,
        splits=_parse_splits(args.splits),
        seed=args.seed,
        templates=tuple(args.template or DEFAULT_TEMPLATES),
        shard_size=args.shard_size,
        workers=args.workers,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        classes_from_dirs=not args.no_classes_from_dirs,
        codec=args.codec,
    )
    rep = make_shards(
        args.input, args.out_dir, spec, progress=lambda it, n: tqdm(it, total=n, desc="files", unit="file")
    )
    print(format_report(rep))
    out = os.path.normpath(args.out_dir)
    print(f"shards in {out}/<split>/, report in {out}/report.json")
    return 0 if sum(rep["written"].values()) else 1


def cmd_convert_shards(args) -> int:
    """Exit status 0 when every shard was converted (or already was), 1 when some audio stayed as it was."""
    from tqdm import tqdm

    from clap_train.data.convert_shards import convert_shards, format_report

    rep = convert_shards(
        args.shards,
        args.out_dir,
        codec=args.codec,
        workers=args.workers,
        progress=lambda it, n: tqdm(it, total=n, desc="shards", unit="shard"),
    )
    print(format_report(rep))
    print(f"report in {os.path.normpath(args.out_dir)}/convert_report.json")
    return 1 if rep.get("kept_undecodable") else 0


def _parse_splits(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, frac = part.partition("=")
        try:
            out[name.strip()] = float(frac)
        except ValueError:
            raise ValueError(
                f"--splits: expected name=fraction,... (e.g. train=0.8,valid=0.1,test=0.1), got {text!r}"
            ) from None
    return out


def _classes(args, listing) -> list[str]:
    if args.classes:
        if args.classes.endswith(".json"):
            from clap_train.data.sources import load_classes

            return load_classes(args.classes)
        return [c.strip() for c in args.classes.split(",") if c.strip()]
    return listing.classes


def cmd_zeroshot(args) -> int:
    from clap_train.data.audio_files import list_many
    from clap_train.tools.zeroshot import format_zeroshot, run_zeroshot

    listing = list_many(args.audio, classes_from_dirs=args.classes_from_dirs)
    model = _model(args)
    res = run_zeroshot(
        model,
        listing,
        _classes(args, listing),
        args.template or list(DEFAULT_TEMPLATES),
        args.out,
        args.batch_size,
        _progress(),
        _long_audio(args),
    )
    print(format_zeroshot(res))
    if args.out:
        print(f"predictions, confusion matrix and results in {args.out}/")
    _write_json(res, args.json)
    return 0


def cmd_embed(args) -> int:
    from clap_train.inference import embed_texts
    from clap_train.tools.retrieve import audio_embeddings, save_embeddings

    model = _model(args)
    if args.audio:
        emb, rows, skipped = audio_embeddings(model, args.audio, args.batch_size, _progress(), _long_audio(args))
        for s in skipped:
            print(f"skipped {s['path']}: {s['reason']} {s['detail']}".rstrip())
    else:
        rows = list(args.text)
        emb = embed_texts(model, rows)
    save_embeddings(args.out, emb, rows)
    print(f"wrote {args.out} ({emb.shape[0]} x {emb.shape[1]}, float32) and its row names")
    return 0


def cmd_retrieve(args) -> int:
    from clap_train.tools.retrieve import format_ranked, read_captions, search

    texts, direction = (args.query, "text->audio") if args.query else (read_captions(args.captions), "audio->text")
    res = search(_model(args), args.audio, texts, direction, args.k, args.batch_size, _progress(), _long_audio(args))
    print(format_ranked(res))
    _write_json(res, args.json)
    return 0


def cmd_evaluate(args) -> int:
    from clap_train.data.make_shards import find_classes_file
    from clap_train.data.shards import expand_shards
    from clap_train.tools.evaluate import format_evaluate, run_evaluate

    classes = None
    if args.classes:
        classes = _classes(args, None)
    elif not args.no_zeroshot:
        found = find_classes_file(expand_shards(args.shards))
        if found:
            from clap_train.data.sources import load_classes

            classes = load_classes(found)
            print(f"zero-shot classes from {found}")
    model = _model(args)
    res = run_evaluate(
        model,
        args.shards,
        classes,
        args.template,
        args.caption_key if len(args.caption_key) > 1 else args.caption_key[0],
        args.tag_template,
        args.out,
        args.batch_size,
        _progress(),
        _long_audio(args),
    )
    print(format_evaluate(res))
    _write_json(res, args.json)
    return 0


def cmd_benchmark(args) -> int:
    from clap_train.benchmark.suite import format_markdown, format_table, run_suite

    names = [n.strip() for n in args.suite.split(",") if n.strip()]
    res = run_suite(
        args.checkpoint,
        names,
        args.data_root,
        args.batch_size,
        args.device,
        _progress(),
        trust_checkpoint=args.trust_checkpoint,
        tokenizer=args.tokenizer,
        long_audio=_long_audio(args),
    )
    print(format_table(res))
    _write_json(res, args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(res) + "\n")
        print(f"wrote {args.markdown}")
    return 0 if any(d["found"] for d in res["datasets"].values()) else 1


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


AUDIO_HELP = "audio files, folders (searched recursively) or CSV/JSONL listings with a path column"


def _long_audio_args(p) -> None:
    from clap_train.long_audio import MODES

    p.add_argument(
        "--long-audio",
        choices=MODES,
        help="audio longer than the model's clip: its first window, the average of sliding windows (streamed, "
        "deterministic), or a fusion model's fusion path (default: fusion for fusion models, else first)",
    )
    p.add_argument("--window-seconds", type=float, help="slide: window length (default: the model's clip)")
    p.add_argument("--hop-seconds", type=float, help="slide: step between windows (default: half a window)")
    p.add_argument(
        "--fusion-max-seconds", type=float, default=60.0, help="fusion (and slide over shards): seconds seen at most"
    )


def _long_audio(args):
    from clap_train.long_audio import LongAudio

    return LongAudio(args.long_audio, args.window_seconds, args.hop_seconds, args.fusion_max_seconds)


def _model_args(p) -> None:
    """What every command that loads a checkpoint takes."""
    _long_audio_args(p)
    p.add_argument("--checkpoint", required=True, help="ours (.ckpt), LAION-CLAP .pt, or a Hugging Face CLAP dir")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=16, help="clips or captions per forward pass")
    p.add_argument("--tokenizer", help="RoBERTa tokenizer for a LAION .pt (default roberta-base from the hub)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full pickle for a file that needs it (runs code from the file: trusted sources only)",
    )


def _args_make_synthetic(p) -> None:
    p.add_argument("out", help="folder for the synthetic shards")
    p.add_argument("--seed", type=int, default=1234, help="the data set is a function of this seed")
    p.add_argument("--sample-rate", type=int, default=32000, help="Hz")
    p.add_argument("--n-train", type=int, default=3000, help="training clips")
    p.add_argument("--n-valid", type=int, default=96, help="validation clips")
    p.add_argument("--n-test", type=int, default=240, help="test clips")
    p.add_argument("--shard-size", type=int, default=250, help="clips per shard")


def _args_check_data(p) -> None:
    p.add_argument("shards", nargs="+", help="folders, globs, brace patterns or URLs")
    p.add_argument("--caption-key", nargs="+", default=["text"], help="JSON field(s) holding the captions")
    p.add_argument("--tag-template", action="append", help="captions from tags when there is no caption")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="longer clips count as bad")
    p.add_argument("--max-bad-fraction", type=float, default=0.5, help="exit 1 above this fraction")
    p.add_argument("--json", help="write the report as JSON")


def _args_make_shards(p) -> None:
    from clap_train.data.writer import CODECS

    p.add_argument("input", help="a folder (each sub-folder a class) or a CSV/JSONL with path, caption(s), label(s)")
    p.add_argument("out_dir", help="where the split folders of shards, sizes.json and classes.json go")
    p.add_argument("--sample-rate", type=int, default=48000, help="rate of the written audio (every file resampled)")
    p.add_argument(
        "--codec",
        default="flac",
        choices=list(CODECS),
        help="flac (LAION's), pcm16 (16-bit WAV: cheaper to decode, more bytes), or lossy vorbis/opus/mp3 "
        "(smaller, re-encoded); docs/PERFORMANCE.md 'Data feed' has the measured figures",
    )
    p.add_argument(
        "--splits",
        default="train=0.8,valid=0.1,test=0.1",
        help="fractions per split (stratified by label, seeded); a 'split' column wins",
    )
    p.add_argument("--seed", type=int, default=0, help="the split rule's seed")
    p.add_argument(
        "--template",
        action="append",
        help=f"caption template for labelled files without captions (repeatable; default {DEFAULT_TEMPLATE!r})",
    )
    p.add_argument("--shard-size", type=int, default=512, help="samples per shard")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")
    p.add_argument("--min-seconds", type=float, default=0.1, help="shorter files are skipped")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="longer files are skipped unread")
    p.add_argument("--no-classes-from-dirs", action="store_true", help="folder input: sub-folders are not classes")


def _args_convert_shards(p) -> None:
    from clap_train.data.writer import CODECS

    p.add_argument("shards", nargs="+", help="a folder of .tar shards, globs or brace patterns (local)")
    p.add_argument("out_dir", help="where the converted shards (same names) and sizes.json go")
    p.add_argument(
        "--codec",
        default="pcm16",
        choices=list(CODECS),
        help="pcm16 (16-bit WAV; FLAC 16-bit input converts bit for bit) or flac, vorbis, opus, mp3",
    )
    p.add_argument("--workers", type=int, default=0, help="processes, one shard each at a time (0: one per core)")


def _args_zeroshot(p) -> None:
    _model_args(p)
    p.add_argument("--audio", nargs="+", required=True, help=AUDIO_HELP)
    p.add_argument("--classes", help="a,b,c or a JSON list file (default: the labels or sub-folders)")
    p.add_argument("--classes-from-dirs", action="store_true", help="sub-folders are the classes and the labels")
    p.add_argument("--template", action="append", help="prompt template (repeat for an ensemble)")
    p.add_argument("--out", default="zeroshot", help="folder for predictions.csv, confusion.png, results.json")
    p.add_argument("--json", help="also write the results here")


def _args_embed(p) -> None:
    _model_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--audio", nargs="+", help=AUDIO_HELP)
    g.add_argument("--text", nargs="+", help="texts to embed")
    p.add_argument("--out", required=True, help="the .npy file (float32 [N, D], L2-normalised)")


def _args_retrieve(p) -> None:
    _model_args(p)
    p.add_argument("--audio", nargs="+", required=True, help=AUDIO_HELP + ", or a .npy written by embed")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--query", action="append", help="text query (repeatable): text -> audio")
    g.add_argument("--captions", help="captions to rank for each audio file (.txt one per line, or a listing)")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument("--json", help="write the ranked lists here")


def _args_evaluate(p) -> None:
    _model_args(p)
    p.add_argument("--shards", nargs="+", required=True, help="folders, globs, brace patterns or URLs")
    p.add_argument("--classes", help="a,b,c or a JSON list file (default: classes.json beside the shards)")
    p.add_argument("--no-zeroshot", action="store_true", help="retrieval only, even when classes are found")
    p.add_argument("--template", action="append", help="prompt template (repeat for an ensemble)")
    p.add_argument("--caption-key", nargs="+", default=["text"], help="JSON field(s) holding the captions")
    p.add_argument("--tag-template", action="append", help="captions from tags when a sample has none")
    p.add_argument("--out", help="folder for similarity.png, confusion.png, results.json")
    p.add_argument("--json", help="write the results here")


def _args_benchmark(p) -> None:
    p.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="ours (.ckpt), LAION-CLAP .pt or a Hugging Face CLAP dir; repeat for several (one row each)",
    )
    p.add_argument("--suite", default="esc50,us8k,audiocaps,clotho", help="comma-separated data sets")
    p.add_argument(
        "--data-root", required=True, help="folder holding the data sets as downloaded (or make-shards output)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=16, help="clips or captions per forward pass")
    p.add_argument("--tokenizer", help="RoBERTa tokenizer for a LAION .pt (default roberta-base from the hub)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full pickle (trusted files only)")
    _long_audio_args(p)
    p.add_argument("--json", help="write every metric (per fold, counts, missing clips) here")
    p.add_argument("--markdown", help="write the table as Markdown here")


def _args_export(p) -> None:
    p.add_argument("checkpoint", help="ours (.ckpt), LAION-CLAP .pt, or a Hugging Face CLAP dir / hub id")
    p.add_argument("out", help="output directory (hf) or file (laion, ours)")
    p.add_argument("--format", required=True, choices=["hf", "laion", "ours"], help="what to write")
    p.add_argument("--tokenizer", help="RoBERTa tokenizer for LAION .pt input (default roberta-base from the hub)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full pickle for a file that needs it (runs code from the file: trusted sources only)",
    )


# (name, help), the function adding its arguments, the function running it
COMMANDS = [
    (
        ("make-synthetic", "write the compositional synthetic audio-caption shards"),
        _args_make_synthetic,
        cmd_make_synthetic,
    ),
    (("check-data", "read shards as training would; report contents and damage"), _args_check_data, cmd_check_data),
    (
        ("make-shards", "a folder / CSV / JSONL of audio -> webdataset shards (LAION layout)"),
        _args_make_shards,
        cmd_make_shards,
    ),
    (
        ("convert-shards", "re-encode the audio of existing shards (e.g. LAION FLAC -> pcm16)"),
        _args_convert_shards,
        cmd_convert_shards,
    ),
    (
        ("zeroshot", "classify audio files by prompt similarity; accuracy, confusion matrix"),
        _args_zeroshot,
        cmd_zeroshot,
    ),
    (("embed", "embed audio files or texts; write OUT.npy and OUT.rows.txt"), _args_embed, cmd_embed),
    (("retrieve", "rank audio for text queries, or captions for audio"), _args_retrieve, cmd_retrieve),
    (
        ("evaluate", "retrieval (R@1/5/10, mAP@10, both directions) and zero-shot on shards"),
        _args_evaluate,
        cmd_evaluate,
    ),
    (
        ("benchmark", "the published CLAP benchmarks (ESC-50, US8K, AudioCaps, Clotho) for checkpoints"),
        _args_benchmark,
        cmd_benchmark,
    ),
    (("export", "write a checkpoint as a Hugging Face ClapModel dir, LAION .pt or ours"), _args_export, cmd_export),
]


class _ShowDefaults(argparse.HelpFormatter):
    """Help lines end with the option's default where it has a real one (not None/False) not already said."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if d in (None, False, argparse.SUPPRESS) or "default" in h or not action.option_strings:
            return h
        return f"{h} (default: {' '.join(map(str, d)) if isinstance(d, list | tuple) else d})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clap-train", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    for (name, help_), add_args, func in COMMANDS:
        p = sub.add_parser(name, help=help_, formatter_class=_ShowDefaults)
        add_args(p)
        p.set_defaults(func=func)
    args = ap.parse_args(argv)
    from clap_train.checkpoints.load import UntrustedCheckpoint
    from clap_train.data.audio_files import InputError

    try:
        return args.func(args)
    except (InputError, UntrustedCheckpoint, FileNotFoundError, ValueError) as e:
        # users' mistakes (a missing file, a bad listing, no classes ...): the message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
