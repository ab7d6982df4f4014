"""Logger factories for config groups. wandb goes offline by itself when there is no API key."""

from __future__ import annotations

import csv
import hashlib
import os

from clap_train.atomic import atomic_path


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    try:
        with open(netrc) as f:
            return "api.wandb.ai" in f.read()
    except OSError:
        return False


def run_id(name: str, run_dir: str) -> str:
    """Deterministic: a requeued job logs into the same wandb run."""
    return hashlib.sha1(f"{name}:{os.path.abspath(run_dir)}".encode()).hexdigest()[:12]


def wandb_logger(project: str, name: str, save_dir: str, offline: bool | None = None, **kw):
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not _wandb_has_key()
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(
        project=project, name=name, save_dir=save_dir, offline=offline, id=run_id(name, save_dir), resume="allow", **kw
    )


def csv_logger(save_dir: str, name: str = "csv", flush_logs_every_n_steps: int = 1):
    """Lightning's CSVLogger, except that a resumed run appends to metrics.csv instead of deleting it.
    Rows are written as they are logged (appending a line is cheap), so a killed run loses none."""
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class AppendingWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            if os.path.isfile(self.metrics_file_path):  # keep its rows; continue with its columns
                with open(self.metrics_file_path, newline="") as f:
                    header = next(csv.reader(f), [])
                self.metrics_keys = sorted(set(header))

    class ResumableCSVLogger(CSVLogger):
        @property
        def experiment(self):
            if self._experiment is None:
                os.makedirs(self.root_dir, exist_ok=True)
                self._experiment = AppendingWriter(log_dir=self.log_dir)
            return self._experiment

    return ResumableCSVLogger(
        save_dir=save_dir, name=name, version="", flush_logs_every_n_steps=flush_logs_every_n_steps
    )


def drop_rows_from_step(metrics_csv: str, step: int, pending: dict | None = None) -> int:
    """Before a resume from `step`: rows logged at or after it by the interrupted run are logged again;
    `pending` (the checkpoint's own step row, see callbacks.FlushLogsWithCheckpoints) is added if missing."""
    if not os.path.isfile(metrics_csv):
        return 0
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    keep = [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
    dropped = len(rows) - len(keep)
    changed = dropped > 0
    if pending and not any(
        r.get("step")
        and int(float(r["step"])) == pending["step"]
        and any(r.get(k) not in (None, "") for k in pending if k != "step")
        for r in keep
    ):
        fields += [k for k in pending if k not in fields]
        keep.append({k: v for k, v in pending.items()})
        keep.sort(key=lambda r: int(float(r["step"])) if r.get("step") not in (None, "") else -1)
        changed = True
    if changed:
        with atomic_path(metrics_csv) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)
    return dropped
