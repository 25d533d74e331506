"""benchmarks/project_run_time.py: a short run's job times scaled by the work the full config asks for."""
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "project_run_time.py"
spec = importlib.util.spec_from_file_location("project_run_time", SCRIPT)
project_run_time = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = project_run_time  # dataclasses look their module up there
spec.loader.exec_module(project_run_time)


def write_benchmark(path: Path, seconds: list[float]) -> None:
    rows = ["s\th:m:s\tmax_rss"] + [f"{s}\t0:00:00\t100" for s in seconds]
    path.write_text("\n".join(rows) + "\n")


def config(steps, batch, samples, sampling_steps, inception, reference):
    return {"training": {"unconditional": {"steps": steps, "batch_size": batch}},
            "sampling": {"num_samples": samples, "steps": sampling_steps},
            "evaluation": {"inception_samples": inception, "inception_reference": reference}}


def test_each_job_is_scaled_by_its_own_work_ratio(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    write_benchmark(bench / "train_unconditional.tsv", [10.0, 14.0])  # mean of repeats: 12 s
    write_benchmark(bench / "sample_ddim25-leading_cfg_2.tsv", [3.0])
    write_benchmark(bench / "evaluate_ddim25-leading_cfg_2.tsv", [2.0])
    write_benchmark(bench / "inception_reference.tsv", [5.0])
    short = config(steps=100, batch=64, samples=500, sampling_steps=25, inception=500, reference=1000)
    full = config(steps=4000, batch=128, samples=10000, sampling_steps=50, inception=10000, reference=10000)
    jobs = {job.name: job for job in project_run_time.project(tmp_path, short, full)}
    assert jobs["train_unconditional"].projected == pytest.approx(12.0 * 80)
    assert jobs["sample_ddim25-leading_cfg_2"].projected == pytest.approx(3.0 * 40)
    assert jobs["evaluate_ddim25-leading_cfg_2"].projected == pytest.approx(2.0 * 20)
    assert jobs["inception_reference"].projected == pytest.approx(5.0 * 10)
    assert "**1170 (0.33 h)**" in project_run_time.report(list(jobs.values()))


def test_config_files_merge_key_by_key_as_snakemake_merges_them(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"run": "a", "training": {"unconditional": {"steps": 9, "batch_size": 4}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"run": "b", "training": {"unconditional": {"steps": 2}}}))
    merged = project_run_time.merged_config([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert merged == {"run": "b", "training": {"unconditional": {"steps": 2, "batch_size": 4}}}


def test_a_run_without_benchmarks_says_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="run the short config first"):
        project_run_time.project(tmp_path, {}, {})


def test_the_shipped_short_config_keeps_the_full_runs_networks_methods_and_scales():
    """The projection assumes each full job has a short twin on the same network."""
    repo = SCRIPT.parents[1]
    full = project_run_time.merged_config([str(repo / "config/gpu.yaml")])
    short = project_run_time.merged_config([str(repo / "config/gpu.yaml"), str(repo / "config/gpu_check.yaml")])
    for key in ("networks", "guidance", "dataset", "diffusion"):
        assert short[key] == full[key], key
