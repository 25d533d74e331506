"""Where a run's compute went: core-seconds per stage, from Snakemake's job benchmark files.

    .venv/bin/python benchmarks/budget_table.py results/<run> [--wall-seconds N]

Snakemake writes results/<run>/benchmarks/<job>.tsv for every job whose rule has a `benchmark:`
directive (workflow/rules/*.smk): train_<network> (training), sample_<sampling>_<method>_<scale>
(sampling), evaluate_<sampling>_<method>_<scale> (evaluation) and inception_reference (the test
split's Inception features). Its `s` column is the job's wall seconds (the mean where a rule
repeats its benchmark). A job's core-seconds are its seconds x its threads: the `threads` column
where the file has one; Snakemake's files have none, so each job counts as 1 thread and the output
says so (evaluation and Inception-reference jobs ask for 1; training and sampling jobs ask for
resources.threads, 1 unless the config raises it). Jobs without a benchmark directive (data
preparation, reference statistics, figures, tables) are not counted.

Prints a Markdown table per stage (jobs, core-seconds, share of the total), then one per job,
longest first. With --wall-seconds (the run's elapsed time), a line with the cores' utilisation:
total core-seconds / (wall seconds x os.cpu_count()).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

STAGES = ("training", "sampling", "evaluation", "Inception reference", "other")
PREFIXES = (("train_", "training"), ("sample_", "sampling"), ("evaluate_", "evaluation"))


class BudgetError(Exception):
    """The benchmark files cannot be read: the message names the path and what to run."""


@dataclass(frozen=True)
class Job:
    name: str
    seconds: float
    threads: int = 1
    threads_known: bool = True  # False: the file had no threads column, 1 assumed

    @property
    def core_seconds(self) -> float:
        return self.seconds * self.threads

    @property
    def stage(self) -> str:
        return stage_of(self.name)


def stage_of(name: str) -> str:
    """The stage of a benchmark file's job (its name without .tsv); "other" for names no rule writes."""
    if name == "inception_reference":
        return "Inception reference"
    for prefix, stage in PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return stage
    return "other"


def stage_rows(jobs: list[Job]) -> list[tuple[str, int, float, float]]:
    """(stage, jobs, core-seconds, share of all core-seconds) for every stage, in STAGES' order."""
    total = sum(j.core_seconds for j in jobs)
    rows = []
    for stage in STAGES:
        members = [j for j in jobs if j.stage == stage]
        seconds = sum(j.core_seconds for j in members)
        rows.append((stage, len(members), seconds, seconds / total if total > 0 else 0.0))
    return rows


def utilisation(jobs: list[Job], wall_seconds: float, cores: int) -> float:
    """All jobs' core-seconds over the wall time's core-seconds."""
    return sum(j.core_seconds for j in jobs) / (wall_seconds * cores)


def report(jobs: list[Job], wall_seconds: float | None = None, cores: int | None = None) -> str:
    total = sum(j.core_seconds for j in jobs)
    lines = ["| stage | jobs | core-seconds | share |", "|---|---:|---:|---:|"]
    lines += [f"| {stage} | {count} | {seconds:.1f} | {share:.1%} |"
              for stage, count, seconds, share in stage_rows(jobs)]
    lines.append(f"| **total** | **{len(jobs)}** | **{total:.1f}** ({total / 3600:.2f} core-hours) | **100.0%** |")
    lines += ["", "| job | stage | seconds | threads | core-seconds |", "|---|---|---:|---:|---:|"]
    for j in sorted(jobs, key=lambda j: (-j.seconds, j.name)):
        threads = f"{j.threads}" if j.threads_known else f"{j.threads} (assumed)"
        lines.append(f"| {j.name} | {j.stage} | {j.seconds:.1f} | {threads} | {j.core_seconds:.1f} |")
    assumed = [j for j in jobs if not j.threads_known]
    if assumed:
        lines += ["", f"{len(assumed)} of {len(jobs)} benchmark files have no threads column: each of those jobs is "
                      "counted as 1 thread (evaluation and Inception-reference rules ask for 1; training and sampling "
                      "rules for resources.threads, 1 unless the config raises it)."]
    if wall_seconds is not None:
        cores = cores or os.cpu_count() or 1
        lines += ["", f"Utilisation: {total:.1f} core-seconds / ({wall_seconds:g} s wall x {cores} cores) = "
                      f"{utilisation(jobs, wall_seconds, cores):.1%}"]
    return "\n".join(lines)


def read_job(tsv: Path) -> Job:
    """One benchmark file: the mean of its `s` column, and its threads (1, assumed, without a column)."""
    try:
        rows = list(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))
        seconds = [float(row["s"]) for row in rows]
        threads = {int(float(row["threads"])) for row in rows if row.get("threads") not in (None, "")}
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise BudgetError(f"cannot read benchmark file {tsv} ({type(error).__name__}: {error})") from error
    if not seconds:
        raise BudgetError(f"benchmark file {tsv} has no row of seconds")
    if len(threads) > 1:
        raise BudgetError(f"benchmark file {tsv} has rows of different thread counts {sorted(threads)}")
    known = bool(threads)
    return Job(tsv.stem, sum(seconds) / len(seconds), threads.pop() if known else 1, known)


def read_jobs(run: Path) -> list[Job]:
    folder = Path(run) / "benchmarks"
    tsvs = sorted(folder.glob("*.tsv")) if folder.is_dir() else []
    if not tsvs:
        state = "holds no benchmark file (*.tsv)" if folder.is_dir() else "does not exist"
        raise BudgetError(f"{folder} {state}: run `make run` first (Snakemake writes one file there per training, "
                          "sampling and evaluation job)")
    return [read_job(tsv) for tsv in tsvs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run's results/<run> directory")
    parser.add_argument("--wall-seconds", type=float, help="the run's elapsed wall time, for the cores' utilisation")
    args = parser.parse_args(argv)
    if args.wall_seconds is not None and args.wall_seconds <= 0:
        parser.error("--wall-seconds must be positive")
    try:
        jobs = read_jobs(args.run)
    except BudgetError as error:
        print(error, file=sys.stderr)
        return 2
    print(report(jobs, args.wall_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
