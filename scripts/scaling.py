"""What scale-out costs, measured at small scale on CPU (gloo) for docs/SCALING.md's extrapolation.

    python scripts/scaling.py --out scaling.json          # worlds 2, 4, 8; real-size checkpoint (~4 min)
    python scripts/scaling.py --quick --out scaling.json  # CI size: checks that it runs

Parts:
  loss        one rank's gathered contrastive loss (features all-gathered with their graph, as training
              does), forward + backward, local (b x N logits) and full (N x N), at world sizes 2-8: peak
              resident memory above the baseline (the kernel's high-water mark, reset per case, a fresh
              process per case) against the tensors the formula says must exist, time per step, and the
              bytes each rank receives
  eval        the eval gather (eval.accumulate.gather_dedup: every rank's features, keys and captions to every rank)
              for AudioCaps- and Clotho-sized test sets, sharded over the ranks: time and bytes per rank
  checkpoint  a full training checkpoint of HTS-AT-tiny + RoBERTa-base with AdamW state: bytes, write time
              (our atomic writer: temp file, fsync, rename) and read time on this machine's disk
Ranks share this machine's cores, so times at world > cores are inflated by time-sharing: they show how
cost grows with N, not what a GPU cluster's links do (docs/SCALING.md models those).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# the published test sets (clips, captions per clip): AudioCaps test 975 x 5; Clotho v2 evaluation 1045 x 5
EVAL_SETS = {"audiocaps_test": (975, 5), "clotho_eval": (1045, 5)}


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak() -> int:
    """Reset the kernel's resident high-water mark (clear_refs 5); returns the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _kib("VmRSS") * 1024


def loss_bytes_formula(b: int, n: int, d: int, local: bool) -> int:
    """fp32 tensors alive at the loss's peak on one rank: the two gathered feature sets and their gradients,
    the two logit matrices, their softmax and gradients (cross-entropy keeps one of each per direction)."""
    rows = b if local else n
    return 4 * (4 * n * d + 4 * rows * n)


def _leave() -> None:
    """Every rank past its last collective before any tears gloo down: a rank destroying the group while
    the other still reduces aborted it once in CI ("terminate called without an active exception")."""
    dist.barrier()
    dist.destroy_process_group()


def _loss_rank(rank, world, port, b, d, local, reps, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from clap_train.loss import ContrastiveLoss

    loss_fn = ContrastiveLoss(local_loss=local, gather_with_grad=True)
    scale = torch.tensor(1 / 0.07)

    def step(bb):
        g = torch.Generator().manual_seed(rank)
        a = torch.nn.functional.normalize(torch.randn(bb, d, generator=g), dim=-1).requires_grad_()
        t = torch.nn.functional.normalize(torch.randn(bb, d, generator=g), dim=-1).requires_grad_()
        loss_fn(a, t, scale).backward()

    step(2)  # gloo's buffers and the allocator's paths set up at a toy size
    dist.barrier()
    base = _reset_peak()
    step(b)
    peak = _kib("VmHWM") * 1024 - base
    times = []
    for _ in range(reps):
        dist.barrier()
        t0 = time.perf_counter()
        step(b)
        dt = torch.tensor(time.perf_counter() - t0)
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)  # a step lasts as long as its slowest rank
        times.append(float(dt))
    peaks = [None] * world
    dist.all_gather_object(peaks, peak)
    if rank == 0:
        q.put({"peak_bytes_max_rank": max(peaks), "seconds": sorted(times)[len(times) // 2]})
    _leave()


def _eval_rank(rank, world, port, d, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import pickle

    from clap_train.eval.accumulate import gather_dedup

    out = {}
    for name, (clips, per_clip) in EVAL_SETS.items():
        mine = list(range(rank, clips, world))  # the loader shares eval shards out by rank; keys are unique
        g = torch.Generator().manual_seed(rank)
        st = {
            "keys": [f"{name}/{i:06d}" for i in mine],
            "audio": [torch.randn(len(mine), d, generator=g)],
            "text": [torch.randn(len(mine) * per_clip, d, generator=g)],
            "owner": [torch.arange(len(mine)).repeat_interleave(per_clip)],
            "tags": [[] for _ in mine],
            "captions": [
                f"a caption of about sixty characters describing clip {i} {j}" for i in mine for j in range(per_clip)
            ],
        }
        sent = len(
            pickle.dumps((st["keys"], st["audio"][0], st["text"][0], st["owner"][0], st["tags"], st["captions"]))
        )
        dist.barrier()
        t0 = time.perf_counter()
        keys, audio, text, owner, _, _ = gather_dedup(st, d, name)
        dt = time.perf_counter() - t0
        assert len(keys) == clips and text.shape[0] == clips * per_clip
        out[name] = {
            "seconds": dt,
            "bytes_sent_per_rank": sent,
            "bytes_received_per_rank": sent * world,
            "features_bytes": (audio.numel() + text.numel()) * 4,
        }
    if rank == 0:
        q.put(out)
    _leave()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, world, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=fn, args=(r, world, port, *args, q)) for r in range(world)]
    for p in procs:
        p.start()
    got = q.get(timeout=900)
    for p in procs:
        p.join(timeout=120)
        if p.exitcode != 0:
            raise RuntimeError(f"{fn.__name__} rank exited {p.exitcode}")
    return got


def part_loss(a) -> list[dict]:
    rows = []
    for world in a.worlds:
        for local in (True, False):
            r = _spawn(_loss_rank, world, a.local_batch, a.dim, local, a.reps)
            n = world * a.local_batch
            r.update(
                world=world,
                local_batch=a.local_batch,
                global_batch=n,
                dim=a.dim,
                local_loss=local,
                formula_bytes=loss_bytes_formula(a.local_batch, n, a.dim, local),
                received_bytes_per_rank=2 * (world - 1) * a.local_batch * a.dim * 4,
            )
            rows.append(r)
            print(
                f"  loss world {world} N {n} {'local' if local else 'full '}: "
                f"peak {r['peak_bytes_max_rank'] / 2**20:6.1f}"
                f" MiB (formula {r['formula_bytes'] / 2**20:6.1f}), {r['seconds'] * 1e3:7.1f} ms",
                flush=True,
            )
    return rows


def part_eval(a) -> list[dict]:
    rows = []
    for world in a.worlds:
        r = _spawn(_eval_rank, world, a.dim)
        for name, v in r.items():
            rows.append({"world": world, "set": name, **v})
            print(
                f"  eval gather world {world} {name}: {v['seconds'] * 1e3:.0f} ms, "
                f"{v['bytes_received_per_rank'] / 2**20:.1f} MiB received per rank",
                flush=True,
            )
    return rows


def part_checkpoint(a) -> dict:
    """A checkpoint as Lightning writes one for DDP (the model's state and AdamW's two moments)."""
    import bench

    from clap_train.checkpoints.io import atomic_save
    from clap_train.lit import ClapLit

    layers = 2 if a.quick else 12
    with tempfile.TemporaryDirectory(dir=a.ckpt_dir) as d:
        torch.manual_seed(0)
        lit = ClapLit(bench.step_model_cfg(d, layers), optim={"warmup_steps": 1, "total_steps": 10})
        params = [p for p in lit.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        ckpt = {"state_dict": lit.state_dict(), "optimizer_states": [opt.state_dict()], "global_step": 1}
        path = os.path.join(d, "step.ckpt")
        t0 = time.perf_counter()
        atomic_save(ckpt, path)
        write = time.perf_counter() - t0
        size = os.path.getsize(path)
        os.system("sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null")  # a cold read where allowed
        t0 = time.perf_counter()
        torch.load(path, map_location="cpu", weights_only=True)
        read = time.perf_counter() - t0
    n_params = sum(p.numel() for p in lit.parameters())
    r = {
        "text_layers": layers,
        "parameters": n_params,
        "trainable": sum(p.numel() for p in params),
        "bytes": size,
        "write_seconds": write,
        "read_seconds": read,
        "dir": a.ckpt_dir or tempfile.gettempdir(),
    }
    print(
        f"  checkpoint ({n_params / 1e6:.1f} M parameters): {size / 2**30:.2f} GiB, write {write:.1f} s "
        f"({size / write / 2**20:.0f} MiB/s), read {read:.1f} s",
        flush=True,
    )
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", default=None, help="comma-separated world sizes (default 2,4,8; quick 2)")
    ap.add_argument("--local-batch", type=int, default=None, help="pairs per rank for the loss (default 512)")
    ap.add_argument("--dim", type=int, default=512, help="embedding dimension (CLAP's: 512)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--parts", default="loss,eval,checkpoint")
    ap.add_argument("--ckpt-dir", default=None, help="where the checkpoint is written (default: the temp dir)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="scaling.json")
    a = ap.parse_args(argv)
    a.worlds = [int(w) for w in (a.worlds or ("2" if a.quick else "2,4,8")).split(",")]
    a.local_batch = a.local_batch or (64 if a.quick else 512)
    parts = a.parts.split(",")
    res = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "quick": a.quick,
            "command": " ".join(sys.argv),
        }
    }
    for p in parts:
        print(p, flush=True)
        res[p] = {"loss": part_loss, "eval": part_eval, "checkpoint": part_checkpoint}[p](a)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
