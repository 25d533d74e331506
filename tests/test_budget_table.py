"""benchmarks/budget_table.py: core-seconds per stage of a run's Snakemake benchmark files."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "budget_table.py"
spec = importlib.util.spec_from_file_location("budget_table", SCRIPT)
budget_table = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = budget_table  # dataclasses look their module up there
spec.loader.exec_module(budget_table)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def write(folder: Path, name: str, *seconds: float, threads: int | None = None) -> None:
    """A benchmark file as Snakemake writes it (one row per repeat); ``threads``: an extra column."""
    folder.mkdir(parents=True, exist_ok=True)
    header = HEADER + ("\tthreads" if threads is not None else "")
    rows = [f"{s}\t0:00:00\t1.0\t1.0\t1.0\t1.0\t0.0\t0.0\t50.0\t{s}" + (f"\t{threads}" if threads is not None else "")
            for s in seconds]
    (folder / f"{name}.tsv").write_text("\n".join([header, *rows]) + "\n")


def stage_table(text):
    """{stage: (jobs, core-seconds, share %)} of the printed stage table."""
    return {m[0]: (int(m[1]), float(m[2]), float(m[3]))
            for m in re.findall(r"^\| ([A-Za-z ]+?) \| (\d+) \| ([0-9.]+) \| ([0-9.]+)% \|$", text, flags=re.M)}


def test_stage_of_every_benchmark_name_the_workflow_writes():
    names = {"train_conditional": "training", "train_eval_classifier": "training",
             "sample_ddim25-leading_cfg_0.5": "sampling", "evaluate_ddim25-leading_cg_10": "evaluation",
             "inception_reference": "Inception reference", "prepare_data_train": "other", "train_": "other",
             "reference_statistics": "other"}
    assert {n: budget_table.stage_of(n) for n in names} == names


def test_stage_sums_and_shares_without_files():
    Job = budget_table.Job
    jobs = [Job("train_conditional", 600.0), Job("train_unconditional", 300.0, threads=2),
            Job("sample_ddim25-leading_cfg_1", 50.0), Job("evaluate_ddim25-leading_cfg_1", 30.0),
            Job("evaluate_ddim25-leading_cg_0", 20.0), Job("inception_reference", 100.0), Job("mystery_job", 100.0)]
    rows = budget_table.stage_rows(jobs)
    assert [r[0] for r in rows] == list(budget_table.STAGES)
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "training": (2, 1200.0), "sampling": (1, 50.0), "evaluation": (2, 50.0), "Inception reference": (1, 100.0),
        "other": (1, 100.0)}
    assert sum(r[3] for r in rows) == pytest.approx(1.0)
    assert rows[0][3] == pytest.approx(1200 / 1500)
    assert budget_table.utilisation(jobs, wall_seconds=1000, cores=2) == pytest.approx(0.75)
    assert budget_table.stage_rows([]) == [(s, 0, 0.0, 0.0) for s in budget_table.STAGES]


def test_table_from_files_reads_seconds_threads_and_unknown_names(tmp_path, capsys):
    bench = tmp_path / "benchmarks"
    write(bench, "train_conditional", 100.0)
    write(bench, "train_noisy_classifier", 40.0, 60.0)  # repeats: the mean, 50 s
    write(bench, "sample_ddim25-leading_cfg_0", 20.0, threads=4)  # 80 core-seconds
    write(bench, "evaluate_ddim25-leading_cfg_0", 10.0)
    write(bench, "inception_reference", 30.0)
    write(bench, "something_new", 10.0)
    assert budget_table.main([str(tmp_path), "--wall-seconds", "100"]) == 0
    out = capsys.readouterr().out
    stages = stage_table(out)
    assert {s: v[:2] for s, v in stages.items()} == {"training": (2, 150.0), "sampling": (1, 80.0),
                                                      "evaluation": (1, 10.0), "Inception reference": (1, 30.0),
                                                      "other": (1, 10.0)}
    assert sum(v[2] for v in stages.values()) == pytest.approx(100.0, abs=0.3)  # printed to 0.1%
    assert stages["training"][2] == 53.6  # 150 / 280
    assert "| something_new | other | 10.0 | 1 (assumed) | 10.0 |" in out
    assert "| sample_ddim25-leading_cfg_0 | sampling | 20.0 | 4 | 80.0 |" in out
    jobs = re.findall(r"^\| (\S+) \| [A-Za-z ]+ \| ([0-9.]+) \|", out, flags=re.M)
    assert [float(s) for _, s in jobs] == sorted((float(s) for _, s in jobs), reverse=True)
    assert jobs[0][0] == "train_conditional"
    assert "5 of 6 benchmark files have no threads column" in out
    cores = budget_table.os.cpu_count()
    assert f"/ (100 s wall x {cores} cores) = {280 / (100 * cores):.1%}" in out


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_no_benchmark_files_names_the_path_and_make_run(tmp_path, capsys, state):
    if state == "empty":
        (tmp_path / "benchmarks").mkdir()
    assert budget_table.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "benchmarks") in err and "run `make run` first" in err


def test_an_unreadable_benchmark_file_is_named(tmp_path, capsys):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "train_conditional.tsv").write_text("s\th:m:s\n")  # header, no row
    assert budget_table.main([str(tmp_path)]) == 2
    assert "train_conditional.tsv" in capsys.readouterr().err
