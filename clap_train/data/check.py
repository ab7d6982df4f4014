"""`clap-train check-data`: read shards as training would and report what is in them and what is wrong."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from clap_train.data.decode import AudioSpec, decode_captions, find_audio, read_clip
from clap_train.data.shards import expand_shards
from clap_train.data.skips import BadSample, SkipCounter
from clap_train.data.stream import read_shard


@dataclass
class Report:
    shards: int = 0
    samples: int = 0
    good: int = 0
    member_exts: Counter = field(default_factory=Counter)
    json_fields: Counter = field(default_factory=Counter)
    sample_rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    durations: list = field(default_factory=list)
    captions_per_sample: Counter = field(default_factory=Counter)
    bad: Counter = field(default_factory=Counter)
    where: dict = field(default_factory=dict)

    def bad_fraction(self) -> float:
        return 1.0 - self.good / self.samples if self.samples else 1.0

    def as_dict(self) -> dict:
        d = np.asarray(self.durations) if self.durations else np.zeros(1)
        return {
            "shards": self.shards,
            "samples": self.samples,
            "good": self.good,
            "bad_fraction": round(self.bad_fraction(), 6),
            "member_extensions": dict(self.member_exts),
            "json_fields": dict(self.json_fields),
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "channels": {str(k): v for k, v in sorted(self.channels.items())},
            "duration_s": {
                "min": float(d.min()),
                "mean": float(d.mean()),
                "max": float(d.max()),
                "total_hours": float(d.sum() / 3600),
            },
            "captions_per_sample": {str(k): v for k, v in sorted(self.captions_per_sample.items())},
            "bad_by_reason": dict(self.bad),
            "bad_examples": self.where,
        }


def _count_keys(raw: dict, exts: Counter, fields: Counter) -> None:
    """Member extensions and top-level JSON fields of a raw sample (bad JSON is reported elsewhere)."""
    exts.update(k for k in raw if not k.startswith("__"))
    try:
        meta = json.loads(raw["json"]) if "json" in raw else {}
    except ValueError:
        return
    fields.update(list(meta) if isinstance(meta, dict) else [])


class _Recorder(SkipCounter):
    def __init__(self, report: Report, examples: int):
        super().__init__(warn_every_s=1e9)
        self.report, self.examples = report, examples

    def skip(self, reason: str, where: str = "", detail: str = "") -> None:
        self.report.bad[reason] += 1
        self.report.where.setdefault(reason, [])
        if len(self.report.where[reason]) < self.examples:
            self.report.where[reason].append(f"{where} {detail}".strip())


def check_shards(
    spec,
    caption_key="text",
    tag_templates=None,
    max_seconds=3600.0,
    max_member_bytes=256 << 20,
    examples=5,
    progress=None,
) -> Report:
    """Every sample decoded whole (as training would, without the crop), checked and described."""
    shards = expand_shards(spec)
    rep = Report(shards=len(shards))
    rec = _Recorder(rep, examples)
    audio = AudioSpec(max_seconds=max_seconds)
    for url in progress(shards) if progress else shards:
        for raw in read_shard(url, rec, max_member_bytes):
            rep.samples += 1
            _count_keys(raw, rep.member_exts, rep.json_fields)
            try:
                if raw.get("__dup__"):
                    raise BadSample("duplicate_key")
                ext, data = find_audio(raw)
                captions, _ = decode_captions(raw, caption_key, "tag", list(tag_templates or []) or None)
                clip = read_clip(data, audio, None, "start", None, ext)
            except BadSample as e:
                rec.skip(e.reason, f"{url}:{raw['__key__']}", e.detail)
                continue
            rep.good += 1
            rep.sample_rates[clip.sample_rate] += 1
            rep.channels[clip.channels] += 1
            rep.durations.append(clip.frames / clip.sample_rate)
            rep.captions_per_sample[len(captions)] += 1
    return rep


def format_report(rep: Report) -> str:
    d = rep.as_dict()
    lines = [
        f"shards: {d['shards']}   samples: {d['samples']}   usable: {d['good']}   "
        f"bad: {rep.samples - rep.good} ({d['bad_fraction'] * 100:.2f}%)",
        f"members: {d['member_extensions']}   JSON fields: {d['json_fields']}",
        f"sample rates: {d['sample_rates']}   channels: {d['channels']}",
        "durations (s): min {min:.2f}  mean {mean:.2f}  max {max:.2f}  total {total_hours:.2f} h".format(
            **d["duration_s"]
        ),
        f"captions per sample: {d['captions_per_sample']}",
    ]
    if rep.bad:
        lines.append("skipped, by reason:")
        for reason, n in rep.bad.most_common():
            lines.append(f"  {reason:<22} {n:>8}   e.g. {rep.where[reason][0]}")
    return "\n".join(lines)


def verdict(rep: Report, max_bad_fraction: float) -> tuple[bool, str]:
    """Can this data train? (no usable sample, or too large a bad fraction -> no)."""
    if rep.samples == 0:
        return False, "no samples found (wrong path or pattern?)"
    if rep.good == 0:
        return False, f"no usable sample; reasons: {dict(rep.bad)}"
    if rep.bad_fraction() > max_bad_fraction:
        return False, f"{rep.bad_fraction() * 100:.1f}% of samples are unusable (limit {max_bad_fraction * 100:.0f}%)"
    return True, "ok"


def save_json(rep: Report, path: str) -> None:
    with open(path, "w") as f:
        json.dump(rep.as_dict(), f, indent=1)


def probe_source(
    name: str, shards: list[str], caption_key="text", tag_templates=None, n: int = 64, what: str = "sources"
) -> None:
    """Fail at start-up, not after hours of silence, when the configured keys match nothing: the first
    readable shard must hold samples with an audio member and a caption under `caption_key` (or tags
    with templates). Raises ValueError naming the source, the keys seen and the fix."""
    from clap_train.data.decode import decode_captions

    counter = SkipCounter(warn_every_s=1e9)
    exts, fields, seen, with_audio, with_caption = Counter(), Counter(), 0, 0, 0
    for url in shards[:4]:
        for raw in read_shard(url, counter, 256 << 20):
            seen += 1
            _count_keys(raw, exts, fields)
            try:
                find_audio(raw)
                with_audio += 1
                decode_captions(raw, caption_key, "tag", list(tag_templates or []) or None)
                with_caption += 1
            except BadSample:
                pass
            if seen >= n:
                break
        if seen:
            break
    where = f"data.{what}.{name}"
    if not seen:
        raise ValueError(f"{where}: none of the first shards could be read ({dict(counter.counts)})")
    if not with_audio:
        raise ValueError(f"{where}: no audio member in the first {seen} samples; members seen: {dict(exts)}")
    keys = [caption_key] if isinstance(caption_key, str) else list(caption_key)
    if keys != ["text"] and "txt" not in exts and not any(fields[k] for k in keys):
        # a caption_key the user chose that matches nothing would train on tag captions without a word
        raise ValueError(
            f"{where}: caption_key={caption_key!r} matches no JSON field in the first {seen} samples; fields "
            f"seen: {dict(fields)} (check-data would report missing_caption; fix data.{what}.{name}.caption_key)"
        )
    if not with_caption:
        raise ValueError(
            f"{where}: no sample among the first {seen} has a caption under caption_key={caption_key!r}"
            f"; JSON fields seen: {dict(fields)} (set data.{what}.{name}.caption_key, or "
            "tag_templates for tag-only data)"
        )
