"""The reliability suite (`make test-reliability`, run by CI after `make test`): issue 12's
scenarios replayed on the real Snakefile with a reduced smoke config, each ending either in a
stop before any job with a clear line, or in a complete run equal, artifact for artifact, to an
uninterrupted one.

- every bad config of tests/test_config_checks.py, run through Snakemake: it stops at parse time,
  one line naming the key, nothing created under results/;
- a prepared data file truncated after a complete run (mtime changed, or kept), or a finished
  sample file gone: the run stops before any job with every finished artifact untouched, and the
  command it prints ends in a complete run equal to the uninterrupted one;
- kill -9 during training (after a checkpoint), during sampling and during evaluation, each
  followed by a rerun: the final artifacts equal the uninterrupted run's byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_config_checks import BAD, changed
from workflow_copies import copy_workflow

from diffguide.base import integrity

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN = "reliability"
CONFIG = "config/reliability.yaml"


def reliability_config() -> dict:
    """The smoke config, smaller: no Inception, no p_uncond sweep; the unconditional model trains
    long enough (checkpoints every 20 of 200 steps) for a kill to land between checkpoints."""
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    cfg["run"] = RUN
    cfg["evaluation"] = {"inception": False}
    cfg["guidance"] |= {"methods": ["cfg", "cg"]}
    cfg["training"]["conditional"]["p_uncond_sweep"] = []
    cfg["training"]["unconditional"] |= {"steps": 200, "checkpoint_every": 20}
    return cfg


def make_workdir(dest: Path, cfg: dict | None = None) -> Path:
    copy_workflow(dest)
    (dest / CONFIG).write_text(yaml.safe_dump(cfg or reliability_config()))
    return dest


def environment() -> dict[str, str]:
    """This environment with the venv's bin first: the commands diffguide prints say `snakemake`."""
    return os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}"}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["snakemake", "--cores", "2", "--configfile", CONFIG, *args], cwd=workdir,
                            capture_output=True, text=True, env=environment())
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def artifact_digests(workdir: Path) -> dict[str, str]:
    """Relative path -> sha256 of every artifact a rule reads, and of the tables."""
    root = workdir / "results" / RUN
    files = integrity.run_artifacts(root) + sorted((root / "tables").glob("*.md"))
    return {str(p.relative_to(root)): integrity.file_sha256(p) for p in files}


def every_file(workdir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under results/<run>/: a stop must change none of them."""
    root = workdir / "results" / RUN
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def assert_complete_and_equal(workdir: Path, reference: dict[str, str]) -> None:
    assert artifact_digests(workdir) == reference
    assert integrity.check_run(workdir / "results" / RUN) == []
    assert not list((workdir / "results" / RUN).rglob(".*.tmp")), "a temp file was left behind"
    dry = snakemake(workdir, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    workdir = make_workdir(tmp_path_factory.mktemp("uninterrupted"))
    snakemake(workdir)
    digests = artifact_digests(workdir)
    assert any(name.startswith("models/") for name in digests) and "metrics.csv" in digests
    return workdir, digests


def clone_run(source: Path, dest: Path) -> Path:
    """A copy of a finished workdir with its mtimes and Snakemake's metadata."""
    shutil.copytree(source, dest, symlinks=True, copy_function=shutil.copy2)
    return dest


@pytest.mark.parametrize("key,value,named,rule", [case for case in BAD if case[2]])
def test_a_bad_config_stops_snakemake_before_any_job(tmp_path, key, value, named, rule):
    cfg = changed(key, value) | ({} if key == "run" else {"run": "probe"})
    workdir = make_workdir(tmp_path, cfg)
    result = snakemake(workdir, check=False)
    assert result.returncode != 0
    assert f"diffguide: invalid config:\n  {named}: " in result.stderr, result.stderr[-2000:]
    assert rule in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "results").exists() and not (workdir.parent / "results").exists()


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["mtime_changed", "mtime_kept"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_a_truncated_data_file_stops_before_any_job_and_its_fix_ends_in_an_equal_run(
        uninterrupted, tmp_path, split, keep_mtime):
    source, reference = uninterrupted
    workdir = clone_run(source, tmp_path / "run")
    damaged = workdir / "results" / RUN / "data" / f"{split}.npz"
    mtime = damaged.stat().st_mtime_ns
    with open(damaged, "r+b") as handle:
        handle.truncate(damaged.stat().st_size // 2)
    if keep_mtime:
        os.utime(damaged, ns=(mtime, mtime))
    before = every_file(workdir)

    stop = snakemake(workdir, check=False)
    assert stop.returncode != 0
    relative = f"results/{RUN}/data/{split}.npz"
    assert f"  {relative} does not match its checksum" in stop.stderr, stop.stderr[-2000:]
    assert every_file(workdir) == before, "the stop changed a file"
    if (split == "train") == keep_mtime:  # the fix is one command for both: replay it for two of the four
        return
    command = re.search(r"^  (snakemake .*)$", stop.stderr, flags=re.MULTILINE).group(1)
    assert command == f"snakemake --cores all --configfile {CONFIG} --forcerun {relative}"
    replay(workdir, command)
    assert_complete_and_equal(workdir, reference)


def replay(workdir: Path, command: str) -> None:
    fix = subprocess.run(["bash", "-c", command], cwd=workdir, env=environment(), capture_output=True, text=True)
    assert fix.returncode == 0, fix.stderr[-3000:]


def test_a_finished_sample_that_went_missing_stops_the_run_and_its_fix_ends_in_an_equal_run(uninterrupted, tmp_path):
    """Snakemake itself would call this run complete (it does not remake a missing intermediate
    file whose consumers exist), although the metrics may come from a version of the samples
    that is gone: e.g. a rerun killed after Snakemake deleted the old samples."""
    source, reference = uninterrupted
    workdir = clone_run(source, tmp_path / "run")
    relative = f"results/{RUN}/samples/ddim4-leading/cfg/scale_1.npz"
    (workdir / relative).unlink()
    stop = snakemake(workdir, check=False)
    assert stop.returncode != 0
    assert f"  {relative} is missing, though it was finished once" in stop.stderr, stop.stderr[-2000:]
    command = re.search(r"^  (snakemake .*)$", stop.stderr, flags=re.MULTILINE).group(1)
    assert command == f"snakemake --cores all --configfile {CONFIG} --forcerun {relative}"
    replay(workdir, command)
    assert_complete_and_equal(workdir, reference)


def advised_rerun(workdir: Path) -> list[str]:
    """The command a user is told to run after a kill: plain Snakemake, after `--unlock` when the
    killed run left its lock, or the command diffguide prints when the kill left a finished
    artifact missing while something made from it exists (a dry run shows which)."""
    command = ["snakemake", "--cores", "2", "--configfile", CONFIG]
    if any((workdir / ".snakemake" / "locks").glob("*")):  # a real run would stop with "cannot be locked"
        snakemake(workdir, "--unlock")
    probe = snakemake(workdir, "-n", check=False)
    printed = re.search(r"^  snakemake --cores all --configfile \S+ (--forcerun .*)$", probe.stderr, flags=re.MULTILINE)
    assert probe.returncode == 0 or printed, probe.stderr[-3000:]
    return command + (printed.group(1).split() if printed else [])


def start(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(advised_rerun(workdir), cwd=workdir, env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(process: subprocess.Popen, ready, timeout: float = 600) -> None:
    """SIGKILL Snakemake and every job it started as soon as ``ready()`` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "the run ended before the moment to kill it"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def rerun(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(advised_rerun(workdir), cwd=workdir, env=environment(), capture_output=True, text=True)


def resumed_training(root: Path) -> bool:
    log = root / "logs/train_unconditional.log"
    return log.exists() and "resuming unconditional from step" in log.read_text()


def test_kill_9_in_training_sampling_and_evaluation_each_resumes_to_an_equal_run(uninterrupted, tmp_path):
    """Four plain runs of one workdir: killed in training after a checkpoint; killed in sampling
    once that rerun has resumed the training; killed in evaluation; then to the end."""
    _, reference = uninterrupted
    workdir = make_workdir(tmp_path)
    root = workdir / "results" / RUN
    checkpoint = root / "checkpoints" / "unconditional.ckpt"
    kill_when(start(workdir), lambda: checkpoint.exists())
    assert not (root / "models/unconditional.pt").exists(), "killed too late to test a resume"
    kill_when(start(workdir), lambda: resumed_training(root) and any(root.glob("logs/sample_*.log")))
    kill_when(start(workdir), lambda: any(root.glob("logs/evaluate_*.log")))
    final = rerun(workdir)
    assert final.returncode == 0, final.stderr[-3000:]
    assert_complete_and_equal(workdir, reference)
