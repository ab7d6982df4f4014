"""The benchmark suite during training: zero-shot and retrieval curves in the logger (`bench/<set>/<metric>`)."""

from __future__ import annotations

import lightning as L

from clap_train.benchmark.readers import BenchData, read
from clap_train.benchmark.suite import evaluate, load_protocols, subset
from clap_train.config import ConfigError

LOGGED = (
    "zeroshot_top1",
    "zeroshot_top5",
    "mean_fold_top1",
    "t2a_R@1",
    "t2a_R@10",
    "a2t_R@1",
    "a2t_R@10",
    "t2a_mAP@10",
)


class Benchmark(L.Callback):
    """After every `every_n_epochs` validation, rank 0 runs the configured subset of the suite (each data set
    capped at `max_items` clips, a fixed every-k-th subset) and every rank logs the broadcast results."""

    def __init__(
        self,
        suite: list[str],
        data_root: str,
        every_n_epochs: int = 1,
        max_items: int | None = 400,
        batch_size: int = 16,
    ):
        protocols = load_protocols()
        bad = [n for n in suite if n not in protocols]
        if bad:
            raise ConfigError(f"benchmark.suite: unknown {bad}; valid: {', '.join(protocols)}")
        if not data_root:
            raise ConfigError("benchmark.suite is set but benchmark.data_root is not")
        self.protocols = {n: protocols[n] for n in suite}
        self.data: dict[str, BenchData] = {}
        for n in suite:
            d = read(n, data_root, protocols[n].get("split"))
            if d is None:
                raise ConfigError(f"benchmark.suite: {protocols[n]['title']} not found under {data_root}")
            self.data[n] = subset(d, max_items)
        self.every, self.batch_size = max(1, int(every_n_epochs)), batch_size
        self.last: dict[str, float] = {}

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.current_epoch % self.every:
            return
        metrics = {}
        if trainer.is_global_zero:
            for n, d in self.data.items():
                m = evaluate(pl_module.model, d, self.protocols[n], self.batch_size)["metrics"]
                metrics.update({f"bench/{n}/{k}": float(v) for k, v in m.items() if k in LOGGED})
        metrics = trainer.strategy.broadcast(metrics, src=0)
        for k, v in metrics.items():
            pl_module.log(k, v, sync_dist=False, add_dataloader_idx=False)
        self.last = metrics
