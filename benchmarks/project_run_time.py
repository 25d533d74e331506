"""Project a full run's time from a short run of the same networks (issue 15: config/gpu.yaml).

    .venv/bin/python benchmarks/project_run_time.py results/gpu_check \\
        --short config/gpu.yaml config/gpu_check.yaml --full config/gpu.yaml

Each job of the short run has a Snakemake benchmark file (results/<run>/benchmarks/*.tsv, its
wall seconds). A job's time is taken to grow linearly with its work, and the full run's job is
the short one's scaled by the ratio of the work the two configs ask for:
- training a network: steps x batch size (images seen);
- sampling one (method, scale): samples x sampling steps (network evaluations per image);
- evaluating one sample set: Inception samples; the test split's Inception features: reference
  images.
The fixed part of each job (imports, loading, warm-up) is scaled too, so short jobs over-project;
the short config should make each job long enough that its fixed part (seconds) is small.
Both configs must sweep the same methods and scales, so each full job has its short twin. The
total is the sum over jobs: the run's time when its jobs run one after another on one GPU.
"""

from __future__ import annotations

import argparse
import csv
import re
from dataclasses import dataclass
from pathlib import Path

from diffguide.pipeline.check_config import merged, read_config


@dataclass(frozen=True)
class Job:
    name: str
    seconds: float
    factor: float

    @property
    def projected(self) -> float:
        return self.seconds * self.factor


def merged_config(paths: list[str]) -> dict:
    """Config files merged as Snakemake merges --configfile (check_config's own reader and merge)."""
    return merged([read_config(Path(path)) for path in paths])


def work_ratio(kind: str, detail: str, short: dict, full: dict) -> float:
    """How many times more work the full config gives one job of this kind than the short one."""
    if kind == "train":
        images = [cfg["training"][detail]["steps"] * cfg["training"][detail]["batch_size"] for cfg in (full, short)]
    elif kind == "sample":
        images = [cfg["sampling"]["num_samples"] * cfg["sampling"]["steps"] for cfg in (full, short)]
    elif kind == "evaluate":
        images = [cfg["evaluation"]["inception_samples"] for cfg in (full, short)]
    elif kind == "inception_reference":
        images = [cfg["evaluation"]["inception_reference"] for cfg in (full, short)]
    else:
        raise ValueError(f"no work measure for jobs of kind {kind!r}")
    return images[0] / images[1]


def wall_seconds(tsv: Path) -> float:
    """The `s` column of a Snakemake benchmark file (the mean over its repeats)."""
    rows = list(csv.DictReader(tsv.read_text().splitlines(), delimiter="\t"))
    return sum(float(row["s"]) for row in rows) / len(rows)


def job_kind(tsv: Path) -> tuple[str, str]:
    """train_<network>.tsv -> (train, <network>); sample_..., evaluate_..., inception_reference."""
    match = re.match(r"(train|sample|evaluate|inception_reference)_?(.*)", tsv.stem)
    if not match:
        raise ValueError(f"{tsv}: not a benchmark of a training, sampling or evaluation job")
    return match.group(1), match.group(2)


def project(results: Path, short: dict, full: dict) -> list[Job]:
    tsvs = sorted((results / "benchmarks").glob("*.tsv"))
    if not tsvs:
        raise SystemExit(f"{results}/benchmarks holds no benchmark file: run the short config first")
    jobs = []
    for tsv in tsvs:
        kind, detail = job_kind(tsv)
        jobs.append(Job(tsv.stem, wall_seconds(tsv), work_ratio(kind, detail, short, full)))
    return jobs


def report(jobs: list[Job]) -> str:
    lines = ["| job | short run (s) | work x | projected (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {j.name} | {j.seconds:.1f} | {j.factor:g} | {j.projected:.0f} |" for j in jobs]
    total_short, total = sum(j.seconds for j in jobs), sum(j.projected for j in jobs)
    lines.append(f"| **all {len(jobs)} jobs, one after another** | {total_short:.0f} | | "
                 f"**{total:.0f} ({total / 3600:.2f} h)** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the short run's results/<run> directory")
    parser.add_argument("--short", nargs="+", required=True, help="the short run's config files, in order")
    parser.add_argument("--full", nargs="+", required=True, help="the full run's config files, in order")
    args = parser.parse_args()
    print(report(project(args.results, merged_config(args.short), merged_config(args.full))))


if __name__ == "__main__":
    main()
