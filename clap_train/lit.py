"""The LightningModule: manual optimisation, contrastive accumulation, schedule, validation metrics.

Manual optimisation because contrastive accumulation (negatives across micro-batches) must see every
micro-batch's features before any backward; Lightning's `accumulate_grad_batches` cannot do that.
One loader batch is one optimiser step: the per-rank batch is split into `optim.accumulate`
micro-batches inside `training_step`.
"""

from __future__ import annotations

import math
import os
import random
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F

from clap_train import watchdog
from clap_train.config import ConfigError, check_choice, check_number
from clap_train.distributed import gather_objects, world_info
from clap_train.eval.retrieval import retrieval_metrics
from clap_train.eval.zeroshot import labels_from_tags, zeroshot_metrics
from clap_train.flops import flop_counter
from clap_train.grads import average_replicated_, clip_, grad_norm
from clap_train.loss import ContrastiveLoss
from clap_train.model import CLAP, build_model
from clap_train.prompts import DEFAULT_TEMPLATES
from clap_train.secrets import redact

OPTIM_DEFAULTS = dict(
    lr=1e-3,
    weight_decay=0.1,
    betas=(0.9, 0.99),
    eps=1e-8,
    warmup_steps=30,
    schedule="cosine",
    min_lr_ratio=0.0,
    clip_grad=1.0,
    accumulate=1,
    fused="auto",
    max_nonfinite=20,
    total_steps=None,
)
SCHEDULES = ("cosine", "constant")


def check_optim(o: dict) -> dict:
    """Every optim value's type and range, at start-up (before the model is built)."""
    check_number("optim.lr", o["lr"], float, 0, low_open=True)
    check_number("optim.weight_decay", o["weight_decay"], float, 0)
    betas = o["betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise ConfigError(f"optim.betas={betas!r}: must be two numbers in [0, 1), e.g. [0.9, 0.99]")
    for i, b in enumerate(betas):
        check_number(f"optim.betas[{i}]", b, float, 0, 0.999999)
    check_number("optim.eps", o["eps"], float, 0, low_open=True)
    check_number("optim.warmup_steps", o["warmup_steps"], int, 0)
    check_choice("optim.schedule", o["schedule"], SCHEDULES)
    check_number("optim.min_lr_ratio", o["min_lr_ratio"], float, 0, 1)
    check_number("optim.clip_grad", o["clip_grad"], float, 0)
    check_number("optim.accumulate", o["accumulate"], int, 1)
    check_choice("optim.fused", o["fused"], ("auto", True, False))
    check_number("optim.max_nonfinite", o["max_nonfinite"], int, 0)
    check_number("optim.total_steps", o["total_steps"], int, 1, none_ok=True)
    return o


class ClapLit(L.LightningModule):
    def __init__(
        self,
        model_cfg: dict,
        optim: dict | None = None,
        loss: dict | None = None,
        eval: dict | None = None,
        text_assets: dict | None = None,
        compile: dict | None = None,
        collective_timeout_s: float = 1200.0,
    ):
        super().__init__()
        self.automatic_optimization = False
        unknown = set(optim or {}) - set(OPTIM_DEFAULTS)
        if unknown:
            raise ConfigError(f"optim: unknown key(s) {sorted(unknown)}; valid keys: {sorted(OPTIM_DEFAULTS)}")
        self.optim_cfg = check_optim({**OPTIM_DEFAULTS, **(optim or {})})
        self.eval_cfg = dict(eval or {})
        # plain containers only: our checkpoints load with torch.load(weights_only=True)
        # secrets masked: hyperparameters go into checkpoints and to every logger
        self.save_hyperparameters(
            redact({"model_cfg": model_cfg, "optim": self.optim_cfg, "loss": dict(loss or {}), "eval": self.eval_cfg})
        )
        self.model: CLAP = build_model(model_cfg, text_assets)
        compile_towers(self.model, compile or {})
        self.loss_fn = ContrastiveLoss(**(loss or {}))
        self.collective_timeout_s = float(collective_timeout_s)
        self.nonfinite_in_a_row = 0
        self.flops_per_step: float | None = None
        # callbacks that must decide together at a step (preemption stop, time-based checkpoint) register a
        # vote here; on several ranks the votes ride in the step's finite-check all-reduce (any rank's yes
        # wins) and the answers are left in `agreed` for the step's end
        self.step_votes: dict = {}
        self.agreed: dict = {}
        self._eval_store: dict[str, dict] = {}
        self.last_eval: dict[str, dict[str, float]] = {}
        # the last evaluation's embeddings per stage and source (what the pictures are drawn from)
        self.eval_arrays: dict[str, dict[str, dict]] = {}

    # --- sharding -------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Under `trainer=fsdp` (a ModelParallelStrategy) shard the model with FSDP2 before the optimiser
        is built; called again before `trainer.test`, when it is already sharded."""
        from torch.distributed.fsdp import FSDPModule

        mesh = getattr(self, "_device_mesh", None)
        if mesh is None or any(isinstance(m, FSDPModule) for m in self.model.modules()):
            return
        from clap_train.strategies import shard_model

        shard_model(self.model, mesh["data_parallel"], getattr(self.trainer.strategy, "reshard_after_forward", True))

    def _sharded(self) -> bool:
        return getattr(self, "_device_mesh", None) is not None

    # --- optimiser -----------------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optim_cfg
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            # biases, norms and the temperature are not decayed (LAION/open_clip rule)
            (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
        fused = o["fused"]
        if fused == "auto":  # torch's fused kernel: on this CPU 5.6x faster than foreach (scripts/bench.py)
            fused = self.device.type in ("cuda", "cpu")
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o["lr"],
            betas=tuple(o["betas"]),
            eps=o["eps"],
            fused=bool(fused) or None,
        )
        # The schedule length comes from the config (run.py), not `trainer.estimated_stepping_batches`:
        # that would build the train loader before a resumed loader state is restored.
        total = int(o["total_steps"] or 1)
        warm, floor = int(o["warmup_steps"]), float(o["min_lr_ratio"])

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if o["schedule"] == "constant":
                return 1.0
            progress = min(1.0, (step - warm) / max(1, total - warm))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- where each rank is, for the collective watchdog ----------------------------------------------
    def setup(self, stage: str) -> None:
        if watchdog.start(self.collective_timeout_s) is not None:
            watchdog.watch_strategy(self.trainer.strategy)
        ds = self._deepspeed_config()
        if ds is not None:  # read by the strategy when it builds the engine, after this hook
            # DeepSpeed clips inside its step (p.grad is empty under ZeRO), with the same global norm as ours
            ds["gradient_clipping"] = float(self.optim_cfg["clip_grad"] or 0.0)
            if str(self.trainer.precision).startswith("bf16"):
                # skip non-finite steps in bf16 too (DeepSpeed checks fp16 and fp32 only by default)
                ds.setdefault("bf16", {"enabled": True})["check_grad_overflow"] = True
            # Lightning would read `train_dataloader.batch_sampler.batch_size`; our loader batches itself
            per_rank = getattr(getattr(self.trainer, "datamodule", None), "per_rank_batch", None)
            ds.setdefault("train_micro_batch_size_per_gpu", per_rank(self.trainer.world_size) if per_rank else 1)

    def _deepspeed_config(self) -> dict | None:
        cfg = getattr(getattr(getattr(self, "_trainer", None), "strategy", None), "config", None)
        return cfg if isinstance(cfg, dict) and "zero_optimization" in cfg else None

    def teardown(self, stage: str) -> None:
        watchdog.mark(f"end of {stage}")

    def on_validation_start(self):
        watchdog.mark(f"validation at step {self.global_step}")
        self._full_weights_for_eval(True)

    def on_validation_end(self):
        self._full_weights_for_eval(False)

    def on_test_start(self):
        watchdog.mark("test")
        self._full_weights_for_eval(True)

    def on_test_end(self):
        self._full_weights_for_eval(False)

    def _full_weights_for_eval(self, on: bool) -> None:
        """Under FSDP2 every forward is a collective, but eval sets split unevenly across ranks: evaluation
        runs on gathered full weights (no gradients or optimiser state alongside), so no eval forward
        communicates, then the weights are sharded again."""
        if not self._sharded():
            return
        from torch.distributed.fsdp import FSDPModule

        keep = getattr(self.trainer.strategy, "reshard_after_forward", True)
        for m in self.model.modules():
            if isinstance(m, FSDPModule):
                m.set_reshard_after_forward(keep if not on else False, recurse=False)
                m.unshard() if on else m.reshard()

    # --- training ------------------------------------------------------------------------------------
    def _split(self, batch: dict, k: int) -> list[dict]:
        n = batch["audio"].shape[0]
        if n % k:
            raise ValueError(f"per-rank batch {n} is not divisible by optim.accumulate={k}")
        m = n // k

        def cut(x, i):
            if isinstance(x, dict):
                return {kk: cut(v, i) for kk, v in x.items()}
            return x[i * m : (i + 1) * m]

        return [cut({kk: batch[kk] for kk in ("audio", "audio_len", "text")}, i) for i in range(k)]

    def _loss_and_backward(self, batch: dict) -> torch.Tensor:
        k = int(self.optim_cfg["accumulate"])
        if k == 1:
            a, t, s = self.model(batch)
            loss = self.loss_fn(a, t, s)
            self.manual_backward(loss)
            return loss.detach()
        return self._accumulated_backward(self._split(batch, k))

    def _accumulated_backward(self, micro: list[dict]) -> torch.Tensor:
        """GradCache: features of all micro-batches without graphs, one loss over all of them, then each
        micro-batch re-forwarded with the same RNG state and back-propagated with its feature gradients.
        BatchNorm buffers are restored after the no-grad pass so running statistics advance once."""
        rng, feats = [], []
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        with torch.no_grad():
            for mb in micro:
                rng.append(_rng_state())
                a, t, _ = self.model(mb)
                feats.append((a, t))
        for n, b in self.model.named_buffers():
            b.copy_(buffers[n])
        A = torch.cat([f[0] for f in feats]).requires_grad_(True)
        T = torch.cat([f[1] for f in feats]).requires_grad_(True)
        loss = self.loss_fn(A, T, self.model.logit_scale())
        with self._no_grad_sync():
            self.manual_backward(loss)  # gives A.grad, T.grad and the temperature's gradient
        ga, gt = A.grad.split([f[0].shape[0] for f in feats]), T.grad.split([f[1].shape[0] for f in feats])
        for i, mb in enumerate(micro):
            _set_rng_state(rng[i])
            a, t, s = self.model(mb)
            last = i == len(micro) - 1
            # Under DDP only the last backward syncs (the others accumulate locally, `no_sync`); it must
            # reach every trained parameter, the temperature included (a zero term), or DDP would wait.
            with nullcontext() if last else self._no_grad_sync():
                self.manual_backward((a * ga[i]).sum() + (t * gt[i]).sum() + (s * 0.0 if last else 0.0))
        return loss.detach()

    def _no_grad_sync(self):
        if self._sharded():
            return _fsdp_no_sync(self.model)
        # DDP's; one device (SingleDeviceStrategy) has no gradient sync to hold back
        block = getattr(getattr(getattr(self, "_trainer", None), "strategy", None), "block_backward_sync", None)
        return block() if block is not None else nullcontext()

    def training_step(self, batch: dict, batch_idx: int):
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad(set_to_none=True)
        count = self.flops_per_step is None
        ctx = flop_counter() if count else nullcontext()
        with (
            ctx as fc,
            watchdog.watch(f"step {self.global_step}'s forward and backward (feature gathers, gradient reduction)"),
        ):
            loss = self._loss_and_backward(batch)
        if count:
            self.flops_per_step = float(fc.get_total_flops()) if fc is not None else 0.0
        if self._deepspeed_config() is not None:
            ok, gnorm = self._deepspeed_step(opt, sched)
        else:
            ok, gnorm = self._step(opt, sched, loss)
        if ok:
            self.nonfinite_in_a_row = 0
        else:
            self.nonfinite_in_a_row += 1
            self.log("train/skipped_nonfinite", float(self.nonfinite_in_a_row))
            if self.nonfinite_in_a_row >= self.optim_cfg["max_nonfinite"]:
                # the skipped steps changed nothing: the weights now are the last good state
                path = os.path.join(self.trainer.default_root_dir, "checkpoints", "nonfinite-stop.ckpt")
                self.trainer.save_checkpoint(path)
                raise RuntimeError(
                    f"{self.nonfinite_in_a_row} optimiser steps in a row had a non-finite loss or "
                    f"gradient; stopping. The last good state is in {path} "
                    "(lower optim.lr, or check the data)"
                )
        bs = batch["audio"].shape[0]
        # not prog_bar: Lightning converts progress-bar values to numbers after every batch (a host sync each
        # step); callbacks.ProgressBar reads `last_loss` only when it redraws
        self.last_loss = loss
        self.log("train/loss", loss, batch_size=bs)
        self.log("train/grad_norm", gnorm, batch_size=bs)
        self.log("train/lr", sched.get_last_lr()[0], batch_size=bs)
        self.log("train/logit_scale", self.model.logit_scale().detach(), batch_size=bs)
        return loss

    def _step(self, opt, sched, loss: torch.Tensor) -> tuple[bool, torch.Tensor]:
        """DDP, FSDP2 and one device: one gradient norm (logged, checked, clipped by), a finite check agreed
        by all ranks, then the optimiser and schedule step, or a skip."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self._sharded():
            average_replicated_(params, self.trainer.world_size)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:  # 16-mixed: the norm and clipping see true gradients
            scaler.unscale_(opt.optimizer)
        gnorm = grad_norm(params).to(loss.device)
        ok = torch.isfinite(loss) & torch.isfinite(gnorm)
        # decided on all ranks together, or DDP would hang with some ranks stepping and others not; the
        # preemption flag rides along, so the step reads the device once (the only host sync of a step)
        if self.trainer.world_size > 1:
            names = sorted(self.step_votes)
            flags = torch.stack(
                [(~ok).float()]
                + [loss.new_full((), float(bool(self.step_votes[n]())), dtype=torch.float32) for n in names]
            )
            with watchdog.watch(f"the all-ranks finite check of step {self.global_step} (with {', '.join(names)})"):
                bad, *agreed = self.trainer.strategy.reduce(flags, reduce_op="max").tolist()
            ok, self.agreed = not bad, {n: bool(a) for n, a in zip(names, agreed)}
        else:
            ok = bool(ok)
        if not ok:
            opt.zero_grad(set_to_none=True)
            return False, gnorm
        if self.optim_cfg["clip_grad"]:
            # our own clipping over the norm above: Lightning's refuses FSDP and fused optimisers under mixed
            # precision, and would compute the norm a second time
            clip_(params, float(self.optim_cfg["clip_grad"]), gnorm)
        opt.step()
        sched.step()
        return True, gnorm

    def _deepspeed_step(self, opt, sched) -> tuple[bool, torch.Tensor]:
        """DeepSpeed holds the (partitioned) gradients itself, so its engine step computes the global norm,
        clips by it (`gradient_clipping`, set from optim.clip_grad) and skips the update when the norm is not
        finite (the same on every rank). The schedule is ours to step (Lightning detaches it from the
        engine), only when the engine updated."""
        with watchdog.watch(f"step {self.global_step}'s DeepSpeed update (gradient norm, partition gathers)"):
            opt.step()
        norm = self.trainer.strategy.deepspeed_engine.get_global_grad_norm()
        norm = torch.as_tensor(float("nan") if norm is None else norm, dtype=torch.float32).reshape(())
        ok = bool(torch.isfinite(norm))
        if ok:
            sched.step()
        return ok, norm

    # --- evaluation ----------------------------------------------------------------------------------
    def _eval_step(self, batch: dict) -> None:
        a = F.normalize(self.model.audio_features(batch["audio"], batch["audio_len"]), dim=-1).float().cpu()
        t = F.normalize(self.model.text_features(batch["text"]), dim=-1).float().cpu()
        src = batch["source"][0]
        st = self._eval_store.setdefault(
            src, {"keys": [], "audio": [], "text": [], "owner": [], "tags": [], "captions": []}
        )
        offset = len(st["keys"])
        st["keys"] += batch["key"]
        st["tags"] += batch["tags"]
        st["captions"] += batch["captions"]
        st["audio"].append(a)
        st["text"].append(t)
        st["owner"].append(batch["caption_owner"].cpu() + offset)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def class_embeddings(self, classes: list[str]) -> torch.Tensor:
        """Prompt-ensemble text embedding per class (templates averaged, then re-normalised)."""
        return self.model.class_embeddings(classes, self.eval_cfg.get("templates") or DEFAULT_TEMPLATES).float().cpu()

    def _eval_epoch_end(self, stage: str) -> None:
        store, self._eval_store = self._eval_store, {}
        dm = getattr(self.trainer, "datamodule", None)
        classes_by_source = getattr(dm, "zeroshot", {}) or {}
        # every source the loaders had, not only those this rank saw batches of: the gather below is a
        # collective, and a rank whose share of a small eval set is empty must still take part
        sources = set(store) | set((getattr(dm, "eval_sources", {}) or {}).get(stage, []))
        results: dict[str, dict[str, float]] = {}
        prompts: dict[tuple, torch.Tensor] = {}  # sources sharing a class list encode its prompts once
        arrays = self.eval_arrays[stage] = {}
        for src in sorted(sources):
            keys, audio, text, owner, tags, captions = _gather_dedup(
                store.get(src), self.model.embed_dim, f"the {stage} outputs of {src}"
            )
            if not keys:
                continue
            m = retrieval_metrics(audio, text, owner)
            classes = classes_by_source.get(src)
            arrays[src] = {"keys": keys, "audio": audio, "text": text, "owner": owner, "captions": captions}
            if classes:
                if tuple(classes) not in prompts:
                    prompts[tuple(classes)] = self.class_embeddings(classes)
                labels = labels_from_tags(tags, classes)
                m.update(zeroshot_metrics(audio, prompts[tuple(classes)], labels))
                arrays[src].update(classes=list(classes), prototypes=prompts[tuple(classes)], labels=labels)
            m["n_clips"], m["n_captions"] = float(len(keys)), float(len(owner))
            results[src] = m
        if results:
            shared = set.intersection(*(set(m) for m in results.values()))
            results["mean"] = {k: sum(r[k] for r in results.values()) / len(results) for k in shared}
        for src, m in results.items():
            for k, v in m.items():
                self.log(f"{stage}/{src}/{k}", v, add_dataloader_idx=False, sync_dist=False, rank_zero_only=False)
        self.last_eval[stage] = {f"{stage}/{s}/{k}": v for s, m in results.items() for k, v in m.items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # 0-d temperatures in files, 1-element parameters under DeepSpeed (strategies.one_element_scalars)
        own = {k: p.shape for k, p in self.named_parameters()}
        fit = {
            k: v.reshape(own[k]) if k in own and v.shape != own[k] and v.numel() == 1 == own[k].numel() else v
            for k, v in state_dict.items()
        }
        return super().load_state_dict(fit, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the tokenizer and text config travel with the weights: load_model needs no files or network
        checkpoint["text_assets"] = self.model.text_branch.assets()
        checkpoint["nonfinite_in_a_row"] = self.nonfinite_in_a_row
        checkpoint["metrics"] = {k: dict(v) for k, v in self.last_eval.items()}  # per source and mean
        # RNG states as tensors and tuples of ints: weights_only-safe. Dropout and SpecAugment replay
        # exactly after a resume (the data pipeline seeds itself from positions, not from these).
        # Every rank's: dropout draws as many numbers as its tensors have elements, and text batches are
        # padded per rank, so the ranks' generators drift apart and each needs its own back.
        ranks = gather_objects({**_rng_state(), "python": random.getstate()}, "the RNG states")
        checkpoint["rng"], checkpoint["rng_per_rank"] = ranks[0], ranks

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite_in_a_row = int(checkpoint.get("nonfinite_in_a_row", 0))
        per_rank = checkpoint.get("rng_per_rank") or []
        rank, world = world_info()
        self._pending_rng = per_rank[rank] if len(per_rank) == world else checkpoint.get("rng")

    def on_train_batch_start(self, batch, batch_idx):
        watchdog.mark(f"training step {self.global_step}")
        # restored at the first step, after everything else that runs at start-up has drawn numbers
        rng = getattr(self, "_pending_rng", None)
        if rng is not None:
            _set_rng_state(rng)
            random.setstate(rng["python"])
            self._pending_rng = None


COMPILE_KEYS = {"enabled", "backend", "mode", "dynamic", "fullgraph", "text_pad_multiple"}


def compile_towers(model: CLAP, cfg: dict) -> None:
    """`torch.compile` the two towers in place (`nn.Module.compile`: parameter names and checkpoints are
    unchanged). The log-mel front end stays eager (fp32 STFT)."""
    bad = set(cfg) - COMPILE_KEYS
    if bad:
        raise ConfigError(f"compile: unknown key(s) {sorted(bad)}; valid keys: {sorted(COMPILE_KEYS)}")
    multiple = cfg.get("text_pad_multiple", 16)
    if multiple is not None and (isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1):
        raise ConfigError(
            f"compile.text_pad_multiple={multiple!r}: must be a whole number >= 1, or null to "
            "pad captions to each batch's longest"
        )
    if not cfg.get("enabled"):
        return
    kw = {k: cfg[k] for k in ("backend", "mode", "dynamic", "fullgraph") if cfg.get(k) is not None}
    model.tokenizer.pad_multiple = multiple  # caption lengths in a few buckets: few recompiles
    model.audio_branch.compile(**kw)
    model.text_branch.compile(**kw)


class _fsdp_no_sync:
    """FSDP2's `no_sync`: micro-batches before the last accumulate unreduced gradients."""

    def __init__(self, model):
        from torch.distributed.fsdp import FSDPModule

        self.units = [m for m in model.modules() if isinstance(m, FSDPModule)]

    def __enter__(self):
        for m in self.units:
            m.set_requires_gradient_sync(False, recurse=False)

    def __exit__(self, *exc):
        for m in self.units:
            m.set_requires_gradient_sync(True, recurse=False)
        return False


def _gather_dedup(st: dict | None, dim: int, what: str):
    """Concatenate this rank's eval outputs (None: it had no batches), gather every rank's, keep each
    sample key once."""
    if st:
        local = (
            st["keys"],
            torch.cat(st["audio"]),
            torch.cat(st["text"]),
            torch.cat(st["owner"]),
            st["tags"],
            st["captions"],
        )
    else:
        local = ([], torch.zeros(0, dim), torch.zeros(0, dim), torch.zeros(0, dtype=torch.long), [], [])
    parts = gather_objects(local, what)
    keys, A, T, O, tags, caps, seen = [], [], [], [], [], [], set()
    for k_list, a, t, o, tg, cp in parts:
        for i, k in enumerate(k_list):
            if k in seen:
                continue
            seen.add(k)
            new = len(keys)
            keys.append(k)
            tags.append(tg[i])
            A.append(a[i])
            sel = (o == i).nonzero().flatten()
            T.append(t[sel])
            caps += [cp[j] for j in sel.tolist()]
            O.append(torch.full((len(sel),), new, dtype=torch.long))
    if not keys:
        return [], None, None, None, [], []
    return keys, torch.stack(A), torch.cat(T), torch.cat(O), tags, caps


def _rng_state() -> dict:
    st = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"])
