"""What a run prints: each line once, nothing that does not apply to this design."""

import logging
import warnings

# Warnings that do not apply here: our IterableDataset gives every worker its own slot and length; with
# manual optimisation the checkpoint is taken after the step on purpose; frozen stages stay in eval on
# purpose; SLURM jobs are launched by our sbatch templates (the `srun` hint is for interactive shells).
IGNORED_WARNINGS = (
    ".*`IterableDataset` has `__len__` defined.*",
    ".*ModelCheckpoint with manual optimization.*",
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*module\\(s\\) in eval mode at the start of training.*",
    ".*The `srun` command is available on your system but is not used.*",
)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")  # Lightning's product tips


def quiet_console() -> None:
    """Lightning's own console handlers go (Hydra's root handler prints and files their lines once, in one
    format), its product tips and the warnings above are dropped. Idempotent."""
    for msg in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=msg)
    for name in LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler:
                lg.removeHandler(h)
        lg.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in rank_zero.filters):
        rank_zero.addFilter(_NoTips())
