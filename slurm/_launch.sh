# Shared by the sbatch templates: one srun task per device; ranks come from SLURM's environment.
# CLAP_PYTHON overrides the interpreter (default: the project's .venv).
launch() {
  local py=${CLAP_PYTHON:-.venv/bin/python}
  echo "clap_train: job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}," \
       "${SLURM_JOB_NUM_NODES} node(s) x ${SLURM_NTASKS_PER_NODE} task(s)"
  srun --kill-on-bad-exit=1 "$py" train.py trainer=ddp \
    trainer.devices="${SLURM_NTASKS_PER_NODE}" trainer.num_nodes="${SLURM_JOB_NUM_NODES}" "$@"
}
