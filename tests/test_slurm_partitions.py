"""The SLURM profile's partitions.yaml, read by the plugin's own partition chooser: a job asking
for GPUs goes to the GPU partition and every other job to the CPU one (issue 15). The real
submissions, recorded by a running cluster, are tests/test_slurm.py (make test-slurm)."""
from pathlib import Path
from types import SimpleNamespace

import pytest

partitions = pytest.importorskip("snakemake_executor_plugin_slurm.partitions")

PARTITIONS = Path(__file__).parent.parent / "workflow" / "profiles" / "slurm" / "partitions.yaml"


class Resources(dict):
    """The part of a Snakemake job's resources the chooser reads (attribute and .get access)."""

    __getattr__ = dict.get


def job(**resources):
    return SimpleNamespace(resources=Resources(resources), threads=resources.get("threads", 1), name="rule")


def chosen(**resources) -> str:
    logger = SimpleNamespace(info=print, debug=print, warning=print)
    return partitions.get_best_partition(partitions.read_partition_file(PARTITIONS), job(**resources), logger)


@pytest.mark.parametrize("gpu", [1, 2, 8])
def test_a_job_asking_for_gpus_goes_to_the_gpu_partition(gpu):
    assert chosen(gpu=gpu, mem_mb=8000, runtime=120, threads=4) == "gpu"


@pytest.mark.parametrize("resources", [{}, {"gpu": 0}, {"gpu": 0, "mem_mb": 4000, "runtime": 30, "threads": 8}])
def test_a_job_without_gpus_goes_to_the_cpu_partition(resources):
    assert chosen(**resources) == "cpu"


def test_a_job_asking_for_more_gpus_than_a_node_has_fits_no_partition():
    assert chosen(gpu=9) is None
