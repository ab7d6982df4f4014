#!/bin/bash
# A one-node SLURM cluster on this machine, started by hand (no systemd): munged, slurmctld, slurmd.
# For CI and for trying the sbatch templates locally. Needs root and Debian's slurm-wlm + munge.
#   slurm/local_cluster.sh start [DIR]   # writes DIR/slurm.conf, starts the daemons, waits for the node
#   slurm/local_cluster.sh stop  [DIR]
#   export SLURM_CONF=DIR/slurm.conf     # then sbatch / squeue / scontrol talk to it
set -euo pipefail
cmd=${1:?start|stop}
DIR=${2:-${CLAP_SLURM_DIR:-/tmp/clap_slurm}}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
CPUS=$(nproc)

kill_steps() {  # job-step daemons outlive slurmd; a stale one reports to the next cluster and cancels its jobs
  pkill -9 -f '^slurmstepd' 2>/dev/null || true
  pkill -9 -f 'spool/job[0-9]+/slurm_script' 2>/dev/null || true
}

start() {
  kill_steps
  mkdir -p "$DIR"/{state,spool,log} /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    if id munge >/dev/null 2>&1; then su -s /bin/sh munge -c munged; else munged --force; fi
  fi
  cat > "$CONF" <<CONF
ClusterName=clapci
FirstJobId=$(( $(date +%s) % 1000000 + 1000 ))
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${CLAP_SLURMCTLD_PORT:-6817}
SlurmdPort=${CLAP_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=20
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  export SLURM_CONF=$CONF
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then echo "slurm up: SLURM_CONF=$CONF"; return 0; fi
    sleep 1
  done
  echo "slurm did not come up; logs in $DIR/log" >&2
  tail -20 "$DIR"/log/*.log >&2 || true
  return 1
}

stop() {
  export SLURM_CONF=$CONF
  squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
  sleep 1
  scontrol shutdown >/dev/null 2>&1 || true
  for f in "$DIR"/slurmd.pid "$DIR"/slurmctld.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 1
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  kill_steps
  pkill -x munged 2>/dev/null || true
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
