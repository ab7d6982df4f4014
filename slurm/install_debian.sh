#!/bin/bash
# Debian's SLURM and munge, for the local test cluster (slurm/local_cluster.sh). Needs root; idempotent.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v munged >/dev/null; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
