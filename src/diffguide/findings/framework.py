"""The statistics every finding shares: a sweep of metrics.csv rows with its half-sample
replicates (`Runs`, `Sweep`), an effect with its paired 95% interval (`Effect`, `effect`, `slope`),
a finding's verdict (`Finding`), the formatting of effects, and reading a run's metrics.

The claim sets (`papers`, `sdg`, `testbed`) build on this module; `report` runs them.
How an interval is made: see `diffguide.findings.report`'s docstring.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from diffguide.base.integrity import CorruptArtifactError, read_csv
from diffguide.evaluation.intervals import Z95, jackknife_se
from diffguide.registry import method_symbol, parse_method

MIN_SCALES = 3
# D&N Table 4 guided the conditional model with s = 1 and s = 10; we call s <= 5 moderate, so
# findings 5 and 7 ask whether guidance helps before the scale is pushed to extremes.
MODERATE_SCALE = 5.0

ACCURACY = "accuracy_classifier"
# sdg_image's rows: mean cosine similarity of each sample to its reference image, in the evaluation
# classifier's features (whatever --features says, like accuracy); NaN in other methods' rows.
REFERENCE_SIMILARITY = "reference_similarity_classifier"
REPLICATES_NAME = "metrics_replicates.csv"


def is_registered(method: str) -> bool:
    try:
        parse_method(method)
    except ValueError:
        return False
    return True


def scales_key(method: str) -> str:
    """Where a method's scales come from in the config, for the missing-data messages."""
    return parse_method(method).method.scales_key if is_registered(method) else "guidance.methods"


@dataclass
class Finding:
    name: str
    passed: bool
    figures: str
    test: str = ""
    skipped: bool = False  # its optional methods were not run (sdg_*): reported, not counted
    # The Effect objects the verdict was judged on (filled by findings 1-8 and the slope findings 9
    # and 10; empty where data are missing), for tables that print them (diffguide.reports.replication_status).
    effects: tuple = ()
    # Its stable address (issue 26): the number its set declares for it, and its key, the check's
    # function name. Neither depends on where the check stands in its set.
    number: int = 0
    key: str = ""


@dataclass(frozen=True)
class Columns:
    """The metrics.csv columns a check reads, with the names it prints."""

    fid: str
    is_: str
    precision: str
    recall: str
    accuracy: str = ACCURACY

    @classmethod
    def of(cls, features: str) -> "Columns":
        return cls(fid=f"fid_{features}", is_=f"is_{features}", precision=f"precision_{features}",
                   recall=f"recall_{features}")

    def label(self, column: str) -> str:
        return {self.fid: "FID", self.is_: "IS", self.accuracy: "accuracy", self.precision: "precision",
                self.recall: "recall"}[column]


def format_value(value: float, label: str) -> str:
    return f"{value:.2f}" if label in ("FID", "IS") else f"{value:.3f}"


def signed(*values: float, label: str) -> list[str]:
    """Signed numbers of one effect (its value and interval ends) in one format: fixed decimals, or,
    when one of them would round to +-0.00(0) without being 0 (a slope per unit gamma, whose scales
    run to the hundreds; an interval end just past 0), three significant digits for all, so their
    signs and sizes stay readable."""
    digits = 2 if label in ("FID", "IS") else 3
    if any(v != 0 and abs(v) < 0.5 * 10 ** -digits for v in values):
        return [f"{v:+.2e}" for v in values]
    return [f"{v:+.{digits}f}" for v in values]


def format_scales(scales) -> str:
    return ", ".join(f"{s:g}" for s in scales)


def fill_hint(column: str) -> str:
    """What fills an empty metric column."""
    if column == "is_inception":
        return ("put NVlabs' inception-2015-12-05.pt (the logits head) at evaluation.inception_weights "
                "and rerun the evaluation")
    if column.endswith("_inception"):
        return "set evaluation.inception: true and rerun the evaluation"
    if column == "displacement":
        return ("sample with sampling.record_displacement: true (config/testbed.yaml sets it), which records it; "
                "those samples are then redrawn")
    if column.startswith("reference_similarity_"):
        return "rerun the evaluation of the sdg_image samples, which writes it"
    return "rerun the evaluation of those samples"


class MissingData(Exception):
    """A check cannot run: the message names what is missing and the config key that adds it."""


@dataclass(frozen=True)
class Sweep:
    """One metric over one method's scales: values [k] and paired half-sample replicates [k, B]."""

    method: str
    column: str
    scales: np.ndarray
    values: np.ndarray
    replicates: np.ndarray
    num_samples: int

    def at(self, mask) -> "Sweep":
        mask = np.asarray(mask)
        return Sweep(self.method, self.column, self.scales[mask], self.values[mask], self.replicates[mask],
                     self.num_samples)

    def value(self, scale: float) -> float:
        return float(self.values[list(self.scales).index(scale)])


class Runs:
    """metrics.csv's rows and their half-sample replicates, looked up by (method, column)."""

    def __init__(self, metrics: pd.DataFrame, replicates: pd.DataFrame):
        self.metrics = metrics
        columns = [c for c in replicates.columns if c.startswith("r") and c[1:].isdigit()]
        self.replicates = {(m, float(s), c): (int(n), row) for m, s, c, n, row in zip(
            replicates["method"].astype(str), replicates["scale"], replicates["metric"], replicates["num_samples"],
            replicates[columns].to_numpy(float))}

    def sweep(self, method: str, column: str, min_scales: int = 1) -> Sweep:
        """``column`` of ``method``'s rows by scale (sorted), NaN rows dropped, with replicates."""
        key = scales_key(method)
        df = self.metrics
        if column not in df.columns:
            raise MissingData(f"metrics.csv has no {column} column: {fill_hint(column)}")
        rows = df[df["method"] == method]
        if rows.empty:
            raise MissingData(f"no {method} rows in metrics.csv: add {method} to guidance.methods "
                              f"(and its scales to {key})")
        values = rows.groupby("scale")[column].first().sort_index()
        empty = values[values.isna()]
        values = values.dropna()
        if len(values) < min_scales:
            symbol = method_symbol(method)
            have = f"{symbol} = {format_scales(values.index)}" if len(values) else "none"
            message = (f"{method} has {column} at {len(values)} scale(s) ({have}); "
                       f"this check needs at least {min_scales}")
            if len(empty):
                message += f": {column} is empty at {symbol} = {format_scales(empty.index)}: {fill_hint(column)}"
            if len(values) + len(empty) < min_scales:
                message += f"{'; also' if len(empty) else ':'} add scales to {key}"
            raise MissingData(message)
        found = [self.replicates.get((method, float(s), column)) for s in values.index]
        if any(f is None for f in found):
            raise MissingData(f"{REPLICATES_NAME} lacks the half-sample replicates of {column} for {method}: "
                              "rerun the evaluation (snakemake reruns it)")
        counts = {n for n, _ in found}
        if len(counts) > 1:
            raise MissingData(f"{method}'s rows of {column} have different sample counts {sorted(counts)}, so "
                              "their halves are not paired; evaluate every row with one sampling.num_samples")
        return Sweep(method, column, values.index.to_numpy(float), values.to_numpy(float),
                     np.stack([r for _, r in found]), counts.pop())


@dataclass(frozen=True)
class Effect:
    """A statistic of several rows with its 95% paired half-sample interval. It holds when the
    interval lies wholly on the claimed side of 0 (``direction`` +1: above, -1: below)."""

    name: str
    value: float
    lo: float
    hi: float
    label: str
    direction: int = 1

    @property
    def holds(self) -> bool:
        return bool(self.lo > 0) if self.direction > 0 else bool(self.hi < 0)

    def describe(self) -> str:
        side = "> 0" if self.direction > 0 else "< 0"
        verdict = ("significant" if self.holds else
                   "interval includes 0: not significant" if self.lo <= 0 <= self.hi else "wrong sign")
        value, lo, hi = signed(self.value, self.lo, self.hi, label=self.label)
        return f"{self.name} = {value}, 95% CI [{lo}, {hi}] (needs {side}; {verdict})"


def effect(name: str, label: str, statistic: Callable, sweeps: list[Sweep], direction: int = 1) -> Effect:
    """``statistic`` of the sweeps' values and, row-wise paired, of their replicates. It maps
    arrays whose first axis is the scale (values [k], replicates [k, B]) to a scalar or [B]."""
    counts = {s.num_samples for s in sweeps}
    if len(counts) > 1:
        each = ", ".join(dict.fromkeys(f"{s.method} {s.num_samples}" for s in sweeps))
        raise MissingData(f"the rows compared have different sample counts ({each}), so their halves are not "
                          "paired and they cannot be compared; evaluate every row with one sampling.num_samples")
    value = float(statistic(*[s.values for s in sweeps]))
    se = float(jackknife_se(statistic(*[s.replicates for s in sweeps]), counts.pop()))
    return Effect(name, value, value - Z95 * se, value + Z95 * se, label, direction)


def slope(scales: np.ndarray) -> Callable:
    """Least-squares slope of a metric on the scale: sum_i c_i y_i, c = (s - mean s) / sum (s - mean s)^2,
    linear in the metric, so its replicates are the replicates' slopes."""
    centred = scales - scales.mean()
    weights = centred / (centred ** 2).sum()
    return lambda y: np.tensordot(weights, y, axes=(0, 0))


SLOPE_TEST = "least-squares slope on the scale, paired half-sample 95% interval"


def slope_effect(sweep: Sweep, label: str, direction: int = 1) -> Effect:
    symbol = method_symbol(sweep.method)
    return effect(f"slope of {label} per unit {symbol}", label, slope(sweep.scales), [sweep], direction)


def trend(runs: Runs, name: str, method: str, column: str, label: str, direction: int = 1) -> Finding:
    """``column`` rises (direction +1) or falls (-1) with ``method``'s scale: its slope's interval
    excludes 0 on that side."""
    try:
        sweep = runs.sweep(method, column, MIN_SCALES)
    except MissingData as missing:
        return Finding(name, False, str(missing), SLOPE_TEST)
    result = slope_effect(sweep, label, direction)
    symbol = method_symbol(method)
    figures = (f"{result.describe()}; {label} {format_value(sweep.values[0], label)} -> "
               f"{format_value(sweep.values[-1], label)} over {symbol} = {format_scales(sweep.scales)}")
    return Finding(name, result.holds, figures, SLOPE_TEST, effects=(result,))




def _read(path: Path, what: str, required: set[str]) -> pd.DataFrame:
    """A CSV with ``required`` columns; OSError or ValueError (pandas' EmptyDataError is one) with
    what to do otherwise. The file must match its checksum (CorruptArtifactError otherwise)."""
    df = read_csv(path)
    missing = required - set(df.columns)
    if missing:
        raise ValueError(f"no {', '.join(sorted(missing))} column in the {what}")
    df["method"] = df["method"].astype(str)
    df["scale"] = pd.to_numeric(df["scale"], errors="coerce")
    return df


class UnreadableRun(Exception):
    """metrics.csv or its replicates cannot be read; the message says why and what to run (exit code 2)."""


def read_run(path: Path, reps_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """metrics.csv and its half-sample replicates, each checked against its checksum; UnreadableRun
    with the message to print otherwise."""
    try:
        df = _read(path, "metrics", {"method", "scale"})
    except CorruptArtifactError as error:
        raise UnreadableRun(str(error)) from error
    except (OSError, ValueError, pd.errors.ParserError) as error:  # FileNotFoundError is an OSError
        raise UnreadableRun(f"cannot read {path} ({error}): run `make run` first to produce it") from error
    try:
        replicates = _read(reps_path, "replicates", {"method", "scale", "metric", "num_samples"})
    except CorruptArtifactError as error:
        raise UnreadableRun(str(error)) from error
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UnreadableRun(f"cannot read {reps_path} ({error}): the findings judge effects with the half-sample "
                            "replicates that the evaluation writes beside metrics.csv; rerun `make run` (it reruns "
                            "the evaluation)") from error
    return df, replicates


def replicates_path(metrics_csv: Path, replicates: str | None = None) -> Path:
    """``replicates`` where given, else metrics_replicates.csv beside ``metrics_csv``."""
    return Path(replicates) if replicates else Path(metrics_csv).with_name(REPLICATES_NAME)


def add_run_arguments(parser) -> None:
    """The arguments every command that reads a finished run takes: its metrics.csv and, optionally,
    where its half-sample replicates are."""
    parser.add_argument("metrics_csv", help="results/<run>/metrics.csv of a finished run")
    parser.add_argument("--replicates", help=f"the half-sample replicates (default: {REPLICATES_NAME} beside "
                                             "metrics_csv)")


def read_run_or_explain(args) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The run ``add_run_arguments`` named; None, with the reason and the fix on stderr, when it
    cannot be read (the caller exits 2)."""
    path = Path(args.metrics_csv)
    try:
        return read_run(path, replicates_path(path, args.replicates))
    except UnreadableRun as error:
        print(error, file=sys.stderr)
        return None


def run_findings(findings: dict[int, Callable], runs: Runs, cols: Columns) -> list[Finding]:
    """Each check of ``findings`` (stable number -> check) on the run, in number order, each result
    carrying its number and its key. A set declares its numbers, so adding a finding never
    renumbers another (the tests, the README and the status table address findings by them)."""
    return [dataclasses.replace(check(runs, cols), number=number, key=check.__name__)
            for number, check in sorted(findings.items())]
