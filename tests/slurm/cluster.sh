#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for `make test-slurm` (tests/test_slurm.py): Debian's
# slurm-wlm (slurmctld + slurmd) and munge. Two partitions share the node: `cpu` (the default) and
# `gpu`, whose two GPUs are GRES with plain files for devices, so GPU jobs are scheduled,
# allocated and recorded as on a real cluster while their work runs on the CPU (the smoke config
# sets device: cpu).
#
# State and logs live in STATE_DIR, but slurm.conf and gres.conf must be at the default /etc/slurm:
# the SLURM plugin's job step drops SLURM_CONF from the environment of the srun it starts inside
# each job. So the script refuses to overwrite a slurm.conf it did not write, and `stop` removes
# the two files again.
#
#   tests/slurm/cluster.sh start STATE_DIR   install if missing (root + apt), write the config,
#                                            start munged, slurmctld and slurmd, wait for the node
#   tests/slurm/cluster.sh stop STATE_DIR    stop slurmd and slurmctld (munged stays: the host's)
#
# The test reads the cluster's own records: `scontrol show job` (what each job asked for and got)
# and STATE_DIR/jobcomp.txt (one line per finished job, with its state and exit code).
set -euo pipefail

command=${1:?usage: cluster.sh start|stop STATE_DIR}
state=$(realpath -m "${2:?usage: cluster.sh start|stop STATE_DIR}")
conf_dir=/etc/slurm
marker="# written by diffguide's tests/slurm/cluster.sh"

install_if_missing() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "cluster.sh: slurm-wlm and munge are not installed; install them (Debian/Ubuntu:" \
            "apt-get install slurm-wlm munge) or run as root with apt" >&2
        exit 2
    fi
    echo "cluster.sh: installing Debian packages slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # What slurmd itself finds, less 1 GiB for the daemons: a node that reports less memory
    # than slurm.conf declares is drained.
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem - 1024))
    rm -rf "$state/ctld" "$state/spool" "$state/jobcomp.txt"
    mkdir -p "$state/ctld" "$state/spool" "$conf_dir"
    if [ -f "$conf_dir/slurm.conf" ] && ! grep -qF "$marker" "$conf_dir/slurm.conf"; then
        echo "cluster.sh: $conf_dir/slurm.conf exists and is not the test cluster's; not touching" \
            "a real cluster's configuration" >&2
        exit 1
    fi
    cat >"$conf_dir/slurm.conf" <<CONF
$marker
ClusterName=diffguide-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
# No cgroups in a container: track processes by their parent, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# No slurmdbd (and so no sacct): finished jobs are written one line each to a text file, and
# slurmctld keeps them for an hour, so that squeue (the status command the test uses) still sees
# them and `scontrol show job` gives each one's request: partition, GPUs, CPUs, memory, time.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.txt
MinJobAge=3600
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
    # Two GPUs whose "device files" are plain files: slurmd drops a GPU without a File, and
    # these are allocated (CUDA_VISIBLE_DEVICES is set) and recorded, never opened.
    touch "$state/gpu0" "$state/gpu1"
    printf '%s\nName=gpu File=%s\n' "$marker" "$state/gpu[0-1]" >"$conf_dir/gres.conf"
}

start_munge() {
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge
        [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
        runuser -u munge -- /usr/sbin/munged
    fi
}

wait_for_node() {
    for _ in $(seq 60); do
        for daemon in slurmctld slurmd; do
            if ! pgrep -x $daemon >/dev/null; then
                echo "cluster.sh: $daemon stopped; its log: $state/$daemon.log" >&2
                tail -3 "$state/$daemon.log" >&2
                exit 1
            fi
        done
        if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
            return
        fi
        sleep 1
    done
    echo "cluster.sh: the node did not come up; see $state/slurmctld.log and $state/slurmd.log" >&2
    sinfo -N -l >&2 || true
    exit 1
}

case $command in
start)
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        echo "cluster.sh: a slurmctld or slurmd is already running (pgrep -a slurm); stop it first" >&2
        exit 1
    fi
    install_if_missing
    write_config
    start_munge
    slurmctld -c  # a fresh cluster: no jobs or node states of an earlier start
    slurmd
    wait_for_node
    echo "cluster.sh: one-node cluster up (sinfo, squeue, scontrol show job; logs in $state)"
    ;;
stop)
    # munged is left running: it is the host's, and other clients may use it.
    for daemon in slurmd slurmctld; do
        pid=$(cat "$state/$daemon.pid" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    for file in slurm.conf gres.conf; do
        if grep -qF "$marker" "$conf_dir/$file" 2>/dev/null; then rm "$conf_dir/$file"; fi
    done
    ;;
*)
    echo "usage: cluster.sh start|stop STATE_DIR" >&2
    exit 2
    ;;
esac
