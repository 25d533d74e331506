"""The smoke run on a real SLURM cluster (issue 15; `make test-slurm`, about 12.5 minutes on a 2-core
machine): tests/slurm/cluster.sh starts a one-node cluster (slurmctld, slurmd, munge) with a CPU
and a GPU partition, the smoke config runs through `--profile workflow/profiles/slurm` with real
sbatch submissions, and the cluster's own records (`scontrol show job`) must show each job in the
partition, with the GPUs, CPUs, memory and time limit its rule asks for. The same config run
locally must give the same results, byte for byte. The GPUs are GRES without devices: scheduled
and recorded like real ones while the work runs on the CPU (the smoke config says device: cpu).
"""
from __future__ import annotations

import filecmp
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from workflow_copies import REPO, SMOKE, copy_workflow, snakemake

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
# What the cluster run's jobs ask for: within the one 2-CPU node, one of its two GPUs for a rule
# that uses one, and both CPUs for training and sampling (threads), so that cpus-per-task shows.
RESOURCES = {"gpu": 1, "threads": 2, "train_mem_mb": 2000, "train_runtime": 20, "sample_mem_mb": 1500,
             "sample_runtime": 15, "light_mem_mb": 1000, "light_runtime": 10}
GPU_RULES = {"train_network": "train", "sample": "sample", "evaluate": "light", "inception_reference": "light"}
CPU_RULES = {"reference_statistics": "light"}
LOCAL_RULES = {"prepare_data", "record_config", "gather_metrics", "tradeoff_figure", "metrics_vs_scale_figure", "sample_grid",
               "best_scale_gallery", "training_curves", "tables", "mixture_figure", "sharpening_figure"}
# What differs between two runs by design: logs and timings (dates, durations, paths); and the
# PDFs, whose metadata carries the creation date (their PNG twins are compared).
NOT_COMPARED = ("logs", "benchmarks")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster, up for the module's tests (its clients find it in /etc/slurm: no environment)."""
    state = tmp_path_factory.mktemp("slurm_state")
    started = subprocess.run([str(CLUSTER), "start", str(state)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"the test cluster did not start:\n{started.stdout}\n{started.stderr}")
    yield
    subprocess.run([str(CLUSTER), "stop", str(state)], check=True)


def run_config(workdir: Path) -> list[str]:
    (workdir / "slurm_test.yaml").write_text(yaml.safe_dump({"resources": RESOURCES}))
    return ["--configfile", SMOKE, "slurm_test.yaml"]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("local"))
    snakemake(workdir, *run_config(workdir))
    return workdir


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The smoke run submitted to the cluster, and the cluster's record of every job it ran."""
    workdir = copy_workflow(tmp_path_factory.mktemp("cluster"))
    # squeue, not sacct: the test cluster has no accounting database (slurmdbd). --verbose logs
    # each sbatch call (kept in snakemake.out, and by make test-slurm in results/slurm_test_record.txt).
    result = snakemake(workdir, "--profile", "workflow/profiles/slurm", "--slurm-status-command", "squeue",
                       "--verbose", *run_config(workdir))
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True,
                           check=True).stdout
    (workdir / "scontrol_show_job.txt").write_text(shown)
    return workdir, [job_record(line) for line in shown.splitlines() if line.strip()]


def job_record(line: str) -> dict:
    """One line of `scontrol show job --oneliner` as {field: value}, with the rule's name from the
    comment the SLURM plugin gives each job (rule_<name> or rule_<name>_wildcards_<...>)."""
    record = dict(re.findall(r"(\S+?)=(\S*)", line))
    record["rule"] = re.match(r"rule_(\w+?)(?:_wildcards_|$)", record["Comment"]).group(1)
    return record


def minutes(time_limit: str) -> int:
    """SLURM's [D-]HH:MM:SS as minutes."""
    days, _, clock = time_limit.rpartition("-")
    hours, mins, _ = (int(part) for part in clock.split(":"))
    return int(days or 0) * 24 * 60 + hours * 60 + mins


def test_every_cluster_job_completed_and_the_tiny_jobs_ran_locally(cluster_run):
    _, records = cluster_run
    assert records, "the cluster recorded no job"
    assert all(r["JobState"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in records), records
    submitted = {r["rule"] for r in records}
    assert submitted == set(GPU_RULES) | set(CPU_RULES), submitted
    assert not submitted & LOCAL_RULES


@pytest.mark.parametrize("rule, kind", [*GPU_RULES.items(), *CPU_RULES.items()])
def test_each_job_was_given_the_partition_gpus_cpus_memory_and_time_of_its_rule(cluster_run, rule, kind):
    _, records = cluster_run
    jobs = [r for r in records if r["rule"] == rule]
    assert jobs, f"no {rule} job was submitted"
    uses_gpu = rule in GPU_RULES
    for record in jobs:
        assert record["Partition"] == ("gpu" if uses_gpu else "cpu"), record
        assert record.get("TresPerJob") == ("gres:gpu:1" if uses_gpu else None), record
        threads = RESOURCES["threads"] if rule in ("train_network", "sample") else 1
        assert record["NumCPUs"] == str(threads), record
        assert record["MinMemoryNode"] == f"{RESOURCES[f'{kind}_mem_mb']}M", record
        assert minutes(record["TimeLimit"]) == RESOURCES[f"{kind}_runtime"], record
        assert record["NumNodes"] == "1", record


def compared_files(results: Path) -> list[Path]:
    return sorted(
        path.relative_to(results) for path in results.rglob("*")
        if path.is_file() and not path.relative_to(results).parts[0] in NOT_COMPARED and path.suffix != ".pdf"
    )


def test_the_cluster_run_equals_a_local_run_byte_for_byte(cluster_run, local_run):
    cluster_dir, _ = cluster_run
    local_results, cluster_results = local_run / "results" / "smoke", cluster_dir / "results" / "smoke"
    files = compared_files(local_results)
    assert files == compared_files(cluster_results)
    assert any(f.parts[0] == "models" for f in files) and any(f.suffix == ".npz" for f in files)
    differing = [str(f) for f in files if not filecmp.cmp(local_results / f, cluster_results / f, shallow=False)]
    assert not differing, f"the cluster run differs from the local run in {differing}"


def test_each_sbatch_call_is_logged_and_kept_for_the_record(cluster_run):
    """Snakemake's log has one sbatch line per recorded job; `make test-slurm` keeps both (the
    lines and the cluster's records) in $DIFFGUIDE_SLURM_RECORD when it is set."""
    workdir, records = cluster_run
    calls = re.findall(r"sbatch call: (.*)", (workdir / "snakemake.out").read_text())
    assert len(calls) == len(records)
    assert all(re.search(rf"--comment '?rule_{r['rule']}", " ".join(calls)) for r in records)
    if os.environ.get("DIFFGUIDE_SLURM_RECORD"):
        record = "\n".join(calls) + "\n\n" + (workdir / "scontrol_show_job.txt").read_text()
        Path(os.environ["DIFFGUIDE_SLURM_RECORD"]).write_text(record)
