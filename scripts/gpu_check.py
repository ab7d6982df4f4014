"""The GPU check: every CUDA-only path of the framework run once on one GPU, with figures, in <= 8 minutes.

    bash scripts/gpu_check.sh                      # on the GPU machine (installs carried wheels first)
    python scripts/gpu_check.py --smoke --out d    # CPU smoke mode at toy sizes (CI runs it)

Sections (each timed; a failing section is recorded with its error and the others still run):
  env        torch / CUDA / GPU / driver
  peak       measured matmul peak in bf16 and fp32 (TF32 as training sets it): the MFU yardstick
  bench      scripts/bench.py frontend,tower,step in bf16 at per-GPU batch 96: samples/s, MFU, peak memory,
             ratio against transformers' ClapModel
  precision  fp32 vs bf16-mixed: first-step loss and gradient cosine, same weights and batch
  compile    torch.compile on/off in the Lightning loop: compile time, Dynamo graphs, step time, losses
  accumulate optim.accumulate=4 vs 1 on CUDA: with dropout (cosine) and without (equal)
  nccl       world size 1 on NCCL: features gathered with grad, forward and backward
  train      python train.py trainer=gpu, 40 steps from 10 s 48 kHz FLAC shards, 2 / 8 / 14 workers:
             samples/s and data-wait fraction
  presets    trainer=ddp / fsdp / deepspeed_stage_2 with trainer.devices=1, 3 steps each
One JSON (gpu_check.json) and one Markdown table (gpu_check.md) in --out, rewritten after every section.
The text tower is a RoBERTa-base-sized config with random weights and a tokenizer trained here
(clap_train.text.offline): no download, no MiniLM package.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from clap_train.testing import SMALL_HTSAT, bare_trainer, clap_cfg, repeat_loader, run_train_py  # noqa: E402

WORDS = [
    "a",
    "dog",
    "barks",
    "twice",
    "while",
    "rain",
    "falls",
    "on",
    "a",
    "tin",
    "roof",
    "and",
    "an",
    "engine",
    "idles",
    "then",
    "revs",
]


class Check:
    """Sizes and where things run: the GPU figures, or toy sizes on CPU (--smoke)."""

    def __init__(self, a):
        self.smoke, self.out = a.smoke, a.out
        self.dev = "cpu" if a.smoke else "cuda"
        self.batch = a.batch or (4 if a.smoke else 96)
        self.text_dir = os.path.join(a.out, "roberta")
        self.results: dict = {"sections": {}}
        self.t0 = time.time()

    def text_tower(self) -> str:
        from clap_train.text.offline import make_roberta_base_dir, make_roberta_dir

        if not os.path.exists(os.path.join(self.text_dir, "config.json")):
            # the GPU run times RoBERTa-base's shape, vocabulary included (39 M of its parameters)
            (make_roberta_dir if self.smoke else make_roberta_base_dir)(self.text_dir)
        return self.text_dir

    def model_cfg(self, dropout: bool = False) -> dict:
        enc = (
            dict(SMALL_HTSAT)
            if self.smoke
            else {
                "_target_": "clap_train.audio.htsat.build_htsat",
                "name": "tiny",
                "drop_path_rate": 0.1 if dropout else 0.0,
            }
        )
        cfg = clap_cfg(self.text_tower(), enc, embed_dim=32 if self.smoke else 512)
        if not dropout:
            cfg["text_encoder"]["config"] = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
        return cfg

    def lit(self, dropout=False, **kw):
        from clap_train.lit import ClapLit

        torch.manual_seed(0)
        return ClapLit(
            self.model_cfg(dropout),
            optim={"warmup_steps": 1, "total_steps": 100, "clip_grad": 1.0, **kw.pop("optim", {})},
            **kw,
        )

    def make_batch(self, lit, seed=0) -> dict:
        g = torch.Generator().manual_seed(seed)
        wav = torch.randn(self.batch, 480000, generator=g) * 0.1
        rng = np.random.default_rng(seed)
        caps = [" ".join(rng.choice(WORDS, int(rng.integers(3, 14)))) for _ in range(self.batch)]
        return {"audio": wav, "audio_len": torch.full((self.batch,), 480000), "text": lit.model.tokenizer(caps)}

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.time() - self.t0, 1)
        with open(os.path.join(self.out, "gpu_check.json"), "w") as f:
            json.dump(self.results, f, indent=1, default=str)
        with open(os.path.join(self.out, "gpu_check.md"), "w") as f:
            f.write(markdown(self.results))


def _fit(lit, batch, steps, device, precision="32-true", freeze_bn=False):
    import lightning as L

    rec: dict = {"loss": [], "time": [], "grads": None}

    class Rec(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, b, i):
            if freeze_bn:  # per-micro-batch statistics differ by design: frozen for an equality
                for m in pl_module.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.eval()
            if device == "cuda":
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if rec["grads"] is None:
                rec["grads"] = torch.cat(
                    [
                        p.grad.detach().float().flatten().cpu()
                        for p in pl_module.model.parameters()
                        if p.grad is not None
                    ]
                )

        def on_train_batch_end(self, trainer, pl_module, outputs, b, i):
            rec["loss"].append(float(outputs["loss"]))
            if device == "cuda":
                torch.cuda.synchronize()
            rec["time"].append(time.perf_counter() - self.t)

    trainer = bare_trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        max_steps=steps,
        precision=precision,
        callbacks=[Rec()],
    )
    trainer.fit(lit, train_dataloaders=repeat_loader(batch, steps))
    return rec


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


# --- sections ---------------------------------------------------------------------------------------------
def env(c: Check) -> dict:
    out = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%d"),
        "cuda": torch.version.cuda,
        "device": "cpu (smoke)",
    }
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name(0)
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        out["driver"] = smi.stdout.strip()
    return out


def peak(c: Check) -> dict:
    from clap_train.flops import measure_peak_flops

    torch.set_float32_matmul_precision("high")
    s = 0.3 if c.smoke else 3.0
    out = {
        "bf16_tflops": measure_peak_flops(s, c.dev, torch.bfloat16) / 1e12,
        "fp32_tf32_tflops": measure_peak_flops(s, c.dev, torch.float32) / 1e12,
    }
    c.peak_bf16 = out["bf16_tflops"] * 1e12
    return out


def bench(c: Check) -> dict:
    js = os.path.join(c.out, "bench.json")
    args = ["--parts", "frontend" if c.smoke else "frontend,tower,step", "--out", js]
    args += ["--quick"] if c.smoke else ["--device", "cuda", "--bf16", "--batch", str(c.batch)]
    p = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode:
        raise RuntimeError(f"bench.py exited {p.returncode}: {p.stderr[-2000:]}")
    return json.load(open(js))


def precision(c: Check) -> dict:
    lit = c.lit()
    batch = c.make_batch(lit)
    r32 = _fit(copy.deepcopy(lit), batch, 1, c.dev, "32-true")
    r16 = _fit(copy.deepcopy(lit), batch, 1, c.dev, "bf16-mixed")
    return {
        "loss_fp32": r32["loss"][0],
        "loss_bf16": r16["loss"][0],
        "loss_rel_diff": abs(r16["loss"][0] - r32["loss"][0]) / abs(r32["loss"][0]),
        "grad_cosine": cosine(r32["grads"], r16["grads"]),
    }


def compile_section(c: Check) -> dict:
    from torch._dynamo.utils import counters

    steps = 4 if c.smoke else 8
    backend = "aot_eager" if c.smoke else "inductor"
    lit = c.lit()
    batch = c.make_batch(lit)
    prec = "32-true" if c.smoke else "bf16-mixed"
    eager = _fit(copy.deepcopy(lit), batch, steps, c.dev, prec)
    torch._dynamo.reset()
    counters.clear()
    comp_lit = c.lit(compile={"enabled": True, "backend": backend})
    comp_lit.load_state_dict(lit.state_dict())
    comp = _fit(comp_lit, c.make_batch(comp_lit), steps, c.dev, prec)  # captions padded to buckets
    steady = lambda t: float(np.median(t[3:])) if len(t) > 3 else float(t[-1])  # noqa: E731
    return {
        "backend": backend,
        "graphs": int(counters["stats"]["unique_graphs"]),
        "first_compiled_step_s": comp["time"][1],
        "eager_step_s": steady(eager["time"]),
        "compiled_step_s": steady(comp["time"]),
        "speedup": steady(eager["time"]) / steady(comp["time"]),
        "max_loss_diff": max(abs(a - b) for a, b in zip(eager["loss"], comp["loss"])),
    }


def accumulate(c: Check) -> dict:
    """optim.accumulate=4 (2 for a smoke batch of 2) against 1 on the same batch: equal with dropout off and
    BatchNorm frozen; with dropout and BatchNorm training (micro-batch statistics) close."""
    k = 4 if c.batch % 4 == 0 else 2
    out = {"accumulate": k}
    for dropout in (False, True):
        lit = c.lit(dropout=dropout)
        batch = c.make_batch(lit)
        one = _fit(copy.deepcopy(lit), batch, 1, c.dev, freeze_bn=not dropout)
        four_lit = copy.deepcopy(lit)
        four_lit.optim_cfg.accumulate = k
        four = _fit(four_lit, batch, 1, c.dev, freeze_bn=not dropout)
        key = "dropout_bn_training" if dropout else "no_dropout_bn_frozen"
        out[key] = {
            "loss_diff": abs(one["loss"][0] - four["loss"][0]),
            "grad_cosine": cosine(one["grads"], four["grads"]),
            "grad_max_rel_diff": float((one["grads"] - four["grads"]).abs().max() / one["grads"].abs().max()),
        }
    return out


def nccl(c: Check) -> dict:
    import torch.distributed as dist

    from clap_train.loss import ContrastiveLoss, gathered_infonce

    backend = "gloo" if c.smoke else "nccl"
    dist.init_process_group(backend, init_method="tcp://127.0.0.1:29517", rank=0, world_size=1)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.nn.functional.normalize(torch.randn(c.batch, 64, generator=g), dim=-1).to(c.dev).requires_grad_()
        t = torch.nn.functional.normalize(torch.randn(c.batch, 64, generator=g), dim=-1).to(c.dev).requires_grad_()
        scale = torch.tensor(14.3, device=c.dev)
        # the distributed formulation forced at world size 1: NCCL's all_gather with grad both ways
        ga, gt = gather_features_forced(a), gather_features_forced(t)
        loss = gathered_infonce(a, t, ga, gt, scale, 0, True)
        loss.backward()
        da, dt = a.grad.clone(), t.grad.clone()
        a.grad = t.grad = None
        ref = ContrastiveLoss()(a, t, scale)  # world 1: no gather
        ref.backward()
        return {
            "backend": backend,
            "loss": float(loss),
            "loss_diff": abs(float(loss) - float(ref)),
            "grad_max_abs_diff": float(max((da - a.grad).abs().max(), (dt - t.grad).abs().max())),
        }
    finally:
        dist.destroy_process_group()


def gather_features_forced(x):
    import torch.distributed.nn.functional as dfn

    return torch.cat(dfn.all_gather(x), dim=0)


def _write_flac_shards(d: str, n: int, per_shard: int) -> list[str]:
    from clap_train.data.writer import ShardWriter, encode_flac, encode_json

    rng = np.random.default_rng(0)
    t = np.arange(480000) / 48000.0
    with ShardWriter(d, maxcount=per_shard) as w:
        for i in range(n):
            f = float(rng.uniform(100, 4000))
            wav = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
            caption = " ".join(rng.choice(WORDS, 6))
            w.write(
                f"c{i:06d}",
                {"flac": encode_flac(wav.astype(np.float32), 48000), "json": encode_json({"text": caption})},
            )
    return sorted(os.path.join(d, x) for x in os.listdir(d) if x.endswith(".tar"))


def _train_py(c: Check, root: str, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "DS_ACCELERATOR": "cpu" if c.smoke else ""}
    if not env["DS_ACCELERATOR"]:
        env.pop("DS_ACCELERATOR")
    base = [
        f"paths.root={root}",
        "synthetic.enabled=false",
        "audio_encoder=htsat_tiny",
        "text_encoder=roberta_base",
        f"text_encoder.name_or_path={c.text_tower()}",
        "text_encoder.pretrained=false",
        "test_after_fit=false",
        "callbacks.progress=null",
        "resume=never",
        "data.val_sources=null",
        "data.test_sources=null",
        "callbacks.best_checkpoint=null",
        "callbacks.eval_pictures=null",
    ]
    if c.smoke:
        base += [f"++audio_encoder.{k}={json.dumps(v)}" for k, v in SMALL_HTSAT.items() if k != "_target_"]
    p = run_train_py([*base, *args], root, env, timeout)
    if p.returncode:
        raise RuntimeError(f"train.py {' '.join(args)} exited {p.returncode}: {p.stderr[-2000:]}")
    return p


def _perf(run_dir: str) -> dict:
    import csv

    with open(os.path.join(run_dir, "csv", "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("perf/samples_per_s")]
    last = rows[-1]
    return {
        k.split("/")[1]: float(last[k])
        for k in ("perf/samples_per_s", "perf/data_wait_frac", "perf/mfu")
        if last.get(k)
    }


def _newest_run(root: str, name: str) -> str:
    runs = os.path.join(root, "runs")
    dirs = [os.path.join(runs, d) for d in os.listdir(runs) if d.startswith(name) and not d.endswith("multirun")]
    return max(dirs, key=os.path.getmtime)


def train(c: Check) -> dict:
    root = os.path.join(c.out, "train")
    os.makedirs(root, exist_ok=True)
    shards_dir = os.path.join(root, "shards")
    n_shards = 28
    if not os.path.isdir(shards_dir):
        _write_flac_shards(shards_dir, n=(2 * n_shards if c.smoke else 20 * n_shards), per_shard=2 if c.smoke else 20)
    steps, every = (4, 2) if c.smoke else (40, 10)
    out = {}
    for workers in [2] if c.smoke else [2, 8, 14]:
        name = f"w{workers}"
        _train_py(
            c,
            root,
            [
                f"name={name}",
                "trainer=cpu" if c.smoke else "trainer=gpu",
                f"data.train_shards={shards_dir}",
                f"data.batch_size={c.batch}",
                f"data.num_workers={workers}",
                f"data.steps_per_epoch={steps}",
                f"trainer.max_steps={steps}",
                "trainer.max_epochs=1",
                f"trainer.log_every_n_steps={every}",
                f"callbacks.throughput.log_every_n_steps={every}",
                "data.audio.clip_seconds=10",
            ],
        )
        out[name] = _perf(_newest_run(root, name))
    return out


def presets(c: Check) -> dict:
    root = os.path.join(c.out, "presets")
    os.makedirs(root, exist_ok=True)
    shards_dir = os.path.join(c.out, "train", "shards")
    if not os.path.isdir(shards_dir):
        _write_flac_shards(shards_dir, n=56, per_shard=2)
    out = {}
    # smoke: one preset proves this section's code; CPU CI trains every preset on 2 ranks already
    # (tests/e2e/test_presets_train.py)
    for preset in ("ddp",) if c.smoke else ("ddp", "fsdp", "deepspeed_stage_2"):
        t = time.time()
        extra = ["trainer.accelerator=cpu", "trainer.precision=32-true"] if c.smoke else []
        try:
            _train_py(
                c,
                root,
                [
                    f"name={preset}",
                    f"trainer={preset}",
                    "trainer.devices=1",
                    *extra,
                    f"data.train_shards={shards_dir}",
                    f"data.batch_size={c.batch}",
                    "data.num_workers=2",
                    "data.steps_per_epoch=3",
                    "trainer.max_steps=3",
                    "trainer.max_epochs=1",
                ],
            )
            out[preset] = {"ok": True, "seconds": round(time.time() - t, 1)}
        except Exception as e:  # one preset failing must not hide the others
            out[preset] = {"ok": False, "error": str(e)[-800:]}
    return out


SECTIONS = {
    "env": env,
    "peak": peak,
    "bench": bench,
    "precision": precision,
    "compile": compile_section,
    "accumulate": accumulate,
    "nccl": nccl,
    "train": train,
    "presets": presets,
}


def markdown(results: dict) -> str:
    e = results["sections"].get("env", {}).get("result", {})
    lines = [
        f"# GPU check: {e.get('device', '?')}, torch {e.get('torch', '?')}, CUDA {e.get('cuda')}, "
        f"{e.get('date', '')} ({results.get('elapsed_s', 0)} s)",
        "",
        "| section | s | result |",
        "|---|---|---|",
    ]
    for name, sec in results["sections"].items():
        body = sec.get("error") or json.dumps(sec.get("result"), default=str)
        body = re.sub(r"\s+", " ", body)[:600].replace("|", "\\|")
        lines.append(f"| {name} | {sec.get('seconds', '')} | {'FAILED: ' if 'error' in sec else ''}{body} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, toy sizes: every section runs, figures mean nothing")
    ap.add_argument("--out", default="gpu_check")
    ap.add_argument("--batch", type=int, default=None, help="per-GPU batch (default 96; smoke 4)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    a.out = os.path.abspath(a.out)
    if not a.smoke and not torch.cuda.is_available():
        print("no CUDA device: run with --smoke for the CPU mode", file=sys.stderr)
        return 2
    c = Check(a)
    failed = 0
    for name in a.sections.split(","):
        t = time.time()
        print(f"== {name}", flush=True)
        try:
            sec = {"result": SECTIONS[name](c)}
        except Exception as e:
            failed += 1
            sec = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            print(sec["traceback"], file=sys.stderr, flush=True)
        sec["seconds"] = round(time.time() - t, 1)
        c.results["sections"][name] = sec
        c.save()
        print(json.dumps(sec.get("result", sec.get("error")), default=str)[:1500], flush=True)
    print(markdown(c.results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
