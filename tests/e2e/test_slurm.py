"""A real SLURM cluster on this machine (slurm/local_cluster.sh): `sbatch slurm/train.sbatch` with 2 tasks
(DDP over gloo on CPU), the preemption signal mid-run (our handler checkpoints and requeues), then a
scheduler-side `scontrol requeue` (the job is killed and resumes from its last periodic checkpoint); the
job must finish with every step trained and logged exactly once."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import lightning as L
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import SMALL_DATA

STEPS = 18  # 3 epochs x 6 steps


class Pace(L.Callback):
    """Slows each step down so that the test's signals land mid-run."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


def _need(what: str):
    if os.environ.get("CLAP_REQUIRE_SLURM"):
        pytest.fail(f"CLAP_REQUIRE_SLURM is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not shutil.which("slurmctld") or not shutil.which("munged"):
        _need("slurm-wlm/munge are not installed (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        _need("starting slurmctld/slurmd by hand needs root")
    d = str(tmp_path_factory.mktemp("slurm"))
    script = os.path.join(REPO, "slurm", "local_cluster.sh")
    subprocess.run([script, "start", d], check=True, timeout=120)
    env = dict(
        os.environ,
        SLURM_CONF=os.path.join(d, "slurm.conf"),
        CLAP_PYTHON=sys.executable,
        HF_HUB_OFFLINE="1",
        WANDB_MODE="offline",
    )
    try:
        yield env
    finally:
        subprocess.run([script, "stop", d], timeout=60)


def job_info(env, job: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def wait_for(what: str, cond, timeout: float, env, job: str, log: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(1)
    subprocess.run(["scancel", job], env=env, timeout=30)
    tail = open(log).read()[-4000:] if os.path.exists(log) else "(no log)"
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; job {job_info(env, job)}\n{tail}")


def release(env, job: str) -> None:
    """SLURM makes a requeued job eligible only 120 s after it left the node (Reason=BeginTime); once it
    is pending, make it eligible now so the test does not sit out that back-off."""
    t0 = time.time()
    while time.time() - t0 < 90 and job_info(env, job).get("JobState") != "PENDING":
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, timeout=30)


def logged_steps(run_dir: str) -> list[int]:
    path = os.path.join(run_dir, "csv", "metrics.csv")
    if not os.path.exists(path):
        return []
    return [int(r["step"]) for r in csv.DictReader(open(path)) if r.get("train/loss")]


@pytest.mark.slow
def test_sbatch_preempt_requeue_resume_finishes(cluster, tmp_path, data_root):
    env = cluster
    overrides = [
        "debug=fast",
        f"paths.root={tmp_path}",
        f"synthetic.root={data_root}",
        *SMALL_DATA,
        "name=slurm",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "data.steps_per_epoch=6",
        "trainer.max_epochs=3",
        "callbacks.last_checkpoint.every_n_train_steps=4",
        "callbacks.progress=null",
        "callbacks.keep_last_checkpoints.keep_last=100",
        "+callbacks.pace._target_=tests.e2e.test_slurm.Pace",
        "+callbacks.pace.seconds=1.0",
    ]
    log = str(tmp_path / "slurm.out")
    t0 = time.time()
    job = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--ntasks-per-node=2",
            "--gpus-per-node=0",
            "--cpus-per-task=1",
            "--time=20",
            f"--output={log}",
            os.path.join(REPO, "slurm", "train.sbatch"),
            *overrides,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()

    def run_dir():  # runs/slurm-<hash of the overrides>: the same for every start of the job
        found = [d for d in (tmp_path / "runs").glob("slurm*")] if (tmp_path / "runs").exists() else []
        return str(found[0]) if found else str(tmp_path / "none")

    wait_for("the first steps", lambda: len(logged_steps(run_dir())) >= 1 or None, 240, env, job, log)
    # 1) the preemption signal, as `#SBATCH --signal=USR1@...` sends it to every task
    time.sleep(2)
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True, timeout=30)
    t_signal = time.time()
    wait_for("the requeue by our handler", lambda: int(job_info(env, job).get("Restarts", 0)) >= 1, 180, env, job, log)
    release(env, job)
    wait_for(
        "training to resume",
        lambda: "resuming from" in open(log).read() and job_info(env, job).get("JobState") == "RUNNING",
        300,
        env,
        job,
        log,
    )
    t_resumed = time.time()
    first_ckpt = re.search(r"checkpoint (\S+step(\d+)\.ckpt) written at step (\d+)", open(log).read())
    assert first_ckpt, open(log).read()[-3000:]
    # 2) the scheduler requeues the running job itself (preemption by another job): no warning signal
    wait_for(
        "more steps",
        lambda: max(logged_steps(run_dir()), default=0) >= int(first_ckpt.group(3)) + 5 or None,
        300,
        env,
        job,
        log,
    )
    subprocess.run(["scontrol", "requeue", job], env=env, check=True, timeout=30)
    wait_for("the second restart", lambda: int(job_info(env, job).get("Restarts", 0)) >= 2, 180, env, job, log)
    release(env, job)
    wait_for(
        "the job to finish",
        lambda: job_info(env, job).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"),
        600,
        env,
        job,
        log,
    )
    info = job_info(env, job)
    text = open(log).read()
    assert info["JobState"] == "COMPLETED", text[-4000:]
    res = json.load(open(os.path.join(run_dir(), "results.json")))
    assert res["global_step"] == STEPS and "test/mean/zeroshot_top1" in res["test"]
    steps = logged_steps(run_dir())
    assert sorted(steps) == list(range(STEPS)), steps  # every step logged exactly once across 3 starts
    assert "requeued SLURM job" in text
    assert [int(n) for n in re.findall(r"clap_train: job \S+ \(restart (\d+)\)", text)] == [0, 1, 2]
    resumed = re.findall(r"resuming from (\S+)", text)
    # 2 ranks x 2 starts; the first from the preemption checkpoint (or last.ckpt, written at the same step
    # when the periodic checkpoint falls on it)
    assert len(resumed) == 4 and resumed[0].endswith((first_ckpt.group(1).split("/")[-1], "last.ckpt"))
    print(f"signal -> resumed training: {t_resumed - t_signal:.0f} s; whole test {time.time() - t0:.0f} s")


@pytest.mark.slow
def test_sweep_jobs_go_to_slurm_through_hydra_launcher(cluster, tmp_path, data_root):
    """`python train.py -m ... hydra/launcher=slurm`: one SLURM job per sweep point, each its own run dir."""
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=slurm",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        "debug=fast",
        f"paths.root={tmp_path}",
        f"synthetic.root={data_root}",
        *SMALL_DATA,
        "optim.lr=1e-3,2e-3",
    ]
    res = subprocess.run(cmd, env=cluster, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "runs").glob("default-*") if (p / "results.json").exists())
    assert len(runs) == 2
    lrs = set()
    for r in runs:
        assert json.load(open(r / "results.json"))["global_step"] == 4
        lrs |= {float(line.split(":")[1]) for line in open(r / "config.yaml") if line.startswith("  lr:")}
    assert lrs == {1e-3, 2e-3}
    assert list((tmp_path / "runs" / "default-multirun" / ".submitit").glob("*_0"))  # ran as SLURM jobs
