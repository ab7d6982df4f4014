"""Every distributed `trainer/` preset trains for real: `python train.py trainer=<preset>` on 2 CPU processes
(gloo) through Lightning and the real conf/, 3 optimiser steps with weight decay and (active) clipping, and
the weights after them equal one process stepping on the same global batches.

The one-process replay is built here from what the run recorded: its initial weights and each rank's
batches (the union of the ranks' batches is the global batch). Dropout is off and BatchNorm frozen
(per-rank batch statistics differ by design; DESIGN.md)."""

import os

import lightning as L
import pytest
import torch

from clap_train.audio.frontend import pcm_to_float
from clap_train.testing import bare_trainer
from tests.e2e.conftest import train_py

STEPS = 3


class FreezeBatchNorm(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for m in pl_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


class Float64(L.Callback):
    """Float64 where Lightning refuses `precision=64-true` for the strategy (ModelParallelStrategy): the module
    is cast before the strategy shards it (`setup` runs before `configure_model`), each batch at its start."""

    def setup(self, trainer, pl_module, stage):
        pl_module.double()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        batch["audio"] = pcm_to_float(batch["audio"], torch.float64)


class Record(L.Callback):
    """Each rank's batches, and the full weights before and after training (gathered: a collective)."""

    def __init__(self, out: str):
        self.out = out

    def _weights(self, trainer, name):
        if getattr(trainer.strategy, "zero_stage_3", False):  # partitioned: gather the full parameters
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(trainer.lightning_module.parameters())):
                sd = {k: v.clone() for k, v in trainer.lightning_module.state_dict().items()}
        else:
            sd = trainer.strategy.lightning_module_state_dict()
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu().clone() for k, v in sd.items()}, os.path.join(self.out, name))

    def on_train_start(self, trainer, pl_module):
        os.makedirs(self.out, exist_ok=True)
        self._weights(trainer, "initial.pt")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        keep = {k: batch[k] for k in ("audio", "audio_len", "text")}
        torch.save(keep, os.path.join(self.out, f"rank{trainer.global_rank}_step{trainer.global_step}.pt"))

    def on_train_end(self, trainer, pl_module):
        self._weights(trainer, "final.pt")


NO_DROPOUT = [
    "audio_encoder.dropout=0.0",
    "audio_encoder.post_dropout=0.0",
    "+text_encoder.config.hidden_dropout_prob=0.0",
    "+text_encoder.config.attention_probs_dropout_prob=0.0",
]


def train_two_ranks(tmp_path, preset, precision, more=()):
    rec = str(tmp_path / "rec")
    extra = list(more)
    if preset == "fsdp" and precision == "64-true":  # Lightning refuses 64-true for FSDP2
        precision = "32-true"
        extra.append("+callbacks.float64._target_=tests.e2e.test_presets_train.Float64")
    p = train_py(
        tmp_path,
        [
            f"trainer={preset}",
            f"trainer.precision={precision}",
            *NO_DROPOUT,
            f"trainer.max_steps={STEPS}",
            # eps: Adam turns fp32 rounding of near-zero gradients into full-size steps (2 ranks vs 1: 9e-4
            # in fp32 with eps=1e-8, for DDP and DeepSpeed alike); a larger eps keeps the fp32 proof sharp
            "optim.eps=1e-4",
            "optim.clip_grad=0.05",
            "optim.warmup_steps=1",
            "optim.lr=3e-3",
            "test_after_fit=false",
            "+callbacks.freeze_bn._target_=tests.e2e.test_presets_train.FreezeBatchNorm",
            "+callbacks.record._target_=tests.e2e.test_presets_train.Record",
            f"+callbacks.record.out={rec}",
            *extra,
        ],
    )
    assert "shm_comm" not in p.stdout + p.stderr  # a one-minute C++ build training never uses
    (run_dir,) = [str(d) for d in (tmp_path / "runs").iterdir() if d.is_dir() and not d.name.endswith("multirun")]
    return rec, run_dir


def replay_one_process(rec, run_dir, dtype):
    """The same model and optimiser in one process, stepping on the concatenated rank batches."""
    from omegaconf import OmegaConf

    from clap_train.lit import ClapLit

    cfg = OmegaConf.load(os.path.join(run_dir, "config.yaml"))
    optim = OmegaConf.to_container(cfg.optim)
    optim["total_steps"] = optim.get("total_steps") or STEPS
    lit = ClapLit(OmegaConf.to_container(cfg.model), optim=optim, loss=OmegaConf.to_container(cfg.loss))
    init = torch.load(os.path.join(rec, "initial.pt"), weights_only=True)
    lit.load_state_dict(init)
    lit.to(dtype)

    def whole(step):
        parts = [torch.load(os.path.join(rec, f"rank{r}_step{step}.pt"), weights_only=True) for r in range(2)]
        # each rank pads its captions to its own longest: pad to the common length (masked positions
        # change nothing)
        n = max(p["text"]["input_ids"].shape[1] for p in parts)
        text = {
            k: torch.cat([torch.nn.functional.pad(p["text"][k], (0, n - p["text"][k].shape[1])) for p in parts])
            for k in parts[0]["text"]
        }
        return {
            "audio": pcm_to_float(torch.cat([p["audio"] for p in parts]), dtype),
            "audio_len": torch.cat([p["audio_len"] for p in parts]),
            "text": text,
        }

    batches = [whole(s) for s in range(STEPS)]
    trainer = bare_trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        num_sanity_val_steps=0,
        precision="64-true" if dtype == torch.float64 else "32-true",
        callbacks=[FreezeBatchNorm()],
    )
    trainer.fit(lit, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return {k: v.detach() for k, v in lit.state_dict().items()}, lit, float(trainer.callback_metrics["train/grad_norm"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset,precision,tol,accumulate",
    [
        ("ddp", "64-true", 1e-10, 1),
        ("fsdp", "64-true", 1e-10, 1),
        ("fsdp", "64-true", 1e-10, 2),  # contrastive accumulation under FSDP2: unsynced micro-batches, then one reduce
        ("deepspeed_stage_2", "32-true", 3e-5, 1),
        ("deepspeed_stage_3", "32-true", 3e-5, 1),
    ],
)
def test_preset_on_two_ranks_equals_one_process(tmp_path, preset, precision, tol, accumulate):
    rec, run_dir = train_two_ranks(tmp_path, preset, precision, [f"optim.accumulate={accumulate}"])
    dtype = torch.float64 if precision.startswith("64") else torch.float32
    want, lit, gnorm = replay_one_process(rec, run_dir, dtype)
    got = torch.load(os.path.join(rec, "final.pt"), weights_only=True)
    init = torch.load(os.path.join(rec, "initial.pt"), weights_only=True)
    params = {n for n, p in lit.named_parameters() if p.requires_grad}
    assert params <= got.keys() and len(params) > 20
    moved = max((got[k] - init[k]).abs().max().item() for k in params)
    rel = {
        k: (got[k].to(want[k].dtype) - want[k]).abs().max().item() / max(1.0, want[k].abs().max().item())
        for k in params
    }
    worst = max(rel, key=rel.get)
    print(
        f"{preset} 2 ranks vs 1 process after {STEPS} steps: max rel weight diff {rel[worst]:.1e} ({worst}); "
        f"weights moved up to {moved:.1e}"
    )
    assert moved > 1e-3 and rel[worst] < tol
    assert gnorm > 0.05  # clipping was active (clip_grad=0.05): the equality covers it


class FrontEndStaysFp32(L.Callback):
    """Under bf16 the waveform reaches the log-mel in fp32 (DeepSpeed would cast the batch), the mel leaves it
    in fp32 and `bn0` normalises in fp32: fp32 weights under autocast (DDP, FSDP2), or DeepSpeed's bf16
    weights upcast by strategies.fp32_batchnorm (DESIGN.md: the front end runs in fp32 with autocast off)."""

    def on_fit_start(self, trainer, pl_module):
        seen = self.seen = []
        pl_module.model.frontend.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bn0 = pl_module.model.audio_branch.bn0
        assert self.seen and all(d == (torch.float32, torch.float32) for d in self.seen), self.seen
        upcast = "fp32_batchnorm" in getattr(bn0.forward, "__qualname__", "")
        assert bn0.weight.dtype == torch.float32 or (upcast and bn0.weight.dtype == torch.bfloat16)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fsdp", "deepspeed_stage_2"])
def test_preset_checkpoints_resume_and_test_in_bf16(tmp_path, preset):
    import json

    from clap_train.checkpoints.load import load_model

    common = [
        f"trainer={preset}",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=2",
        "trainer.max_steps=6",
        "+callbacks.fp32._target_=tests.e2e.test_presets_train.FrontEndStaysFp32",
    ]
    train_py(tmp_path, [*common, "name=ref"])  # never interrupted; checkpoints after steps 2, 4, 6
    (ref_dir,) = [d for d in (tmp_path / "runs").iterdir() if d.name.startswith("ref")]
    ref = json.load(open(ref_dir / "results.json"))
    assert ref["global_step"] == 6 and "test/mean/zeroshot_top1" in ref["test"]
    ckpt = ref_dir / "checkpoints" / "step0000004.ckpt"
    model = load_model(str(ckpt))  # a full checkpoint: loads without any sharding
    assert sum(p.numel() for p in model.parameters()) > 1000
    p = train_py(tmp_path, [*common, "name=resumed", f"ckpt_path={ckpt}", "test_after_fit=false"])
    assert "resuming from" in p.stderr + p.stdout
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir() if d.name.startswith("resumed")]
    assert json.load(open(run_dir / "results.json"))["global_step"] == 6
    # exact: the same losses as the run never interrupted (weights, optimiser state, data position restored)
    got, want = _losses(run_dir), _losses(ref_dir)
    assert sorted(got) == [4, 5] and all(got[s] == pytest.approx(want[s], abs=1e-5) for s in got), (got, want)


def _losses(run_dir):
    import csv

    rows = csv.DictReader(open(os.path.join(run_dir, "csv", "metrics.csv")))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}
