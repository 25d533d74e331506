"""`python -m diffguide.findings results/<run>/metrics.csv`: do the papers' findings hold here?

Checks five findings of Ho & Salimans 2022 (classifier-free guidance, scale w) and Dhariwal &
Nichol 2021 (classifier guidance, scale s) on one run's metrics.csv and prints a table of the
sweeps it used, one PASS/FAIL line per finding with the numbers behind it, and a summary. Exit
code 0 when every finding holds, 1 when one does not, 2 when there is no metrics.csv to read.

FID and IS come from the evaluation classifier's features by default (``--features inception``
reads the Inception columns instead); sample accuracy is always the evaluation classifier's.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

from .naming import SCALE_SYMBOLS

# Spearman rho >= 0.9 over the 5- and 6-point sweeps of config/config.yaml allows at most one
# adjacent pair out of order (rho = 0.9 and 0.94; two such pairs give 0.8 and 0.89): "rises with
# the scale" tolerates one noisy step of 500-sample metrics, not more.
MIN_RHO = 0.9
# Spearman over fewer than 3 scales is +-1 by construction, so it says nothing.
MIN_SCALES = 3
# D&N Table 4 guided the conditional model with s = 1 and s = 10; we call s <= 5 moderate, so
# finding 5 asks whether guidance helps before the scale is pushed to extremes.
MODERATE_SCALE = 5.0

# Where each method's scales come from in the config, for the missing-data messages.
SCALE_KEYS = {"cfg": "guidance.cfg_scales", "cg": "guidance.cg_scales", "cond_cg": "guidance.cond_cg_scales"}
CHECKED_METHODS = ("cfg", "cg", "cond_cg")
ACCURACY = "accuracy_classifier"


@dataclass
class Finding:
    name: str
    passed: bool
    figures: str


@dataclass(frozen=True)
class Columns:
    """The metrics.csv columns a check reads, with the names it prints."""

    fid: str
    is_: str
    accuracy: str = ACCURACY

    @classmethod
    def of(cls, features: str) -> "Columns":
        return cls(fid=f"fid_{features}", is_=f"is_{features}")

    def label(self, column: str) -> str:
        return {self.fid: "FID", self.is_: "IS", self.accuracy: "accuracy"}[column]


def _fmt(value: float, label: str) -> str:
    return f"{value:.3f}" if label == "accuracy" else f"{value:.2f}"


def _fmt_scales(scales) -> str:
    return ", ".join(f"{s:g}" for s in scales)


def _fill_hint(column: str) -> str:
    """What fills an empty metric column."""
    if column == "is_inception":
        return ("put NVlabs' inception-2015-12-05.pt (the logits head) at evaluation.inception_weights "
                "and rerun the evaluation")
    if column.endswith("_inception"):
        return "set evaluation.inception: true and rerun the evaluation"
    return "rerun the evaluation of those samples"


class MissingData(Exception):
    """A check cannot run: the message names what is missing and the config key that adds it."""


def _sweep(df: pd.DataFrame, method: str, column: str, min_scales: int = 1) -> pd.Series:
    """``column`` of ``method``'s rows indexed by scale (sorted), NaN rows dropped."""
    key = SCALE_KEYS.get(method, "guidance.methods")
    if column not in df.columns:
        raise MissingData(f"metrics.csv has no {column} column: {_fill_hint(column)}")
    rows = df[df["method"] == method]
    if rows.empty:
        raise MissingData(f"no {method} rows in metrics.csv: add {method} to guidance.methods "
                          f"(and its scales to {key})")
    values = rows.groupby("scale")[column].mean().sort_index()
    empty = values[values.isna()]
    values = values.dropna()
    if len(values) < min_scales:
        symbol = SCALE_SYMBOLS.get(method, "scale")
        have = f"{symbol} = {_fmt_scales(values.index)}" if len(values) else "none"
        message = f"{method} has {column} at {len(values)} scale(s) ({have}); this check needs at least {min_scales}"
        if len(empty):
            message += f": {column} is empty at {symbol} = {_fmt_scales(empty.index)}: {_fill_hint(column)}"
        if len(values) + len(empty) < min_scales:
            message += f"{'; also' if len(empty) else ':'} add scales to {key}"
        raise MissingData(message)
    return values


def _rho(values: pd.Series) -> float:
    rho = spearmanr(values.index.to_numpy(), values.to_numpy()).statistic
    return float(rho)


def _rises(df: pd.DataFrame, name: str, method: str, column: str, label: str) -> Finding:
    """Spearman rho(column, scale) >= MIN_RHO over ``method``'s sweep."""
    try:
        values = _sweep(df, method, column, MIN_SCALES)
    except MissingData as missing:
        return Finding(name, False, str(missing))
    rho = _rho(values)
    symbol = SCALE_SYMBOLS[method]
    passed = not math.isnan(rho) and rho >= MIN_RHO - 1e-9  # rho = 0.9 may come out as 0.8999...9
    shown = "nan (constant values)" if math.isnan(rho) else f"{rho:.2f}"
    figures = (f"Spearman rho({label}, {symbol}) = {shown} (need >= {MIN_RHO:g}) over {symbol} = "
               f"{_fmt_scales(values.index)} ({label} {_fmt(values.iloc[0], label)} -> {_fmt(values.iloc[-1], label)})")
    return Finding(name, passed, figures)


def is_rises_with_w(df: pd.DataFrame, cols: Columns) -> Finding:
    """Finding 1 (H&S Fig. 4 / Table 1): IS rises with w over the classifier-free sweep."""
    return _rises(df, "IS rises with w (cfg)", "cfg", cols.is_, "IS")


def fid_minimum_interior(df: pd.DataFrame, cols: Columns) -> Finding:
    """Finding 2 (H&S Fig. 4): FID is lowest at an interior w and rises past it."""
    name = "FID is lowest at an interior w and rises past it (cfg)"
    try:
        fid = _sweep(df, "cfg", cols.fid, MIN_SCALES)
    except MissingData as missing:
        return Finding(name, False, str(missing))
    best_w = fid.idxmin()
    interior = fid.index[0] < best_w < fid.index[-1]
    rises = fid.iloc[-1] > fid.min()
    where = "interior" if interior else ("the smallest w" if best_w == fid.index[0] else "the largest w")
    figures = (f"min FID {fid.min():.2f} at w = {best_w:g} ({where} of w = {_fmt_scales(fid.index)}); "
               f"FID {fid.iloc[0]:.2f} at w = {fid.index[0]:g}, {fid.iloc[-1]:.2f} at w = {fid.index[-1]:g}"
               f"{' > min' if rises else ' (not above the minimum)'}")
    return Finding(name, bool(interior and rises), figures)


def accuracy_rises_with_w(df: pd.DataFrame, cols: Columns) -> Finding:
    """Finding 3 (H&S's precision/diversity trade-off): sample accuracy rises with w."""
    return _rises(df, "accuracy rises with w (cfg)", "cfg", cols.accuracy, "accuracy")


def cg_unconditional(df: pd.DataFrame, cols: Columns) -> Finding:
    """Finding 4 (D&N Table 4, Fig. 3): classifier guidance of the unconditional model raises
    accuracy with s and improves FID at some s > 0 over the unguided s = 0."""
    name = "cg on the unconditional model raises accuracy with s and improves FID (cg)"
    accuracy = _rises(df, name, "cg", cols.accuracy, "accuracy")
    try:
        fid = _sweep(df, "cg", cols.fid)
        if 0.0 not in fid.index:
            if ((df["method"] == "cg") & (df["scale"] == 0)).any():
                raise MissingData(f"{cols.fid} is empty at cg s = 0 (the unguided baseline): {_fill_hint(cols.fid)}")
            raise MissingData("no cg row at s = 0 (the unguided baseline): add 0 to guidance.cg_scales")
        guided = fid[fid.index > 0]
        if guided.empty:
            raise MissingData("no cg row at s > 0: add guided scales to guidance.cg_scales")
    except MissingData as missing:
        return Finding(name, False, f"{accuracy.figures}; {missing}")
    best_s = guided.idxmin()
    improves = guided.min() < fid.loc[0.0]
    figures = (f"{accuracy.figures}; best FID at s > 0 is {guided.min():.2f} at s = {best_s:g} "
               f"{'<' if improves else '>='} FID {fid.loc[0.0]:.2f} at s = 0"
               f"{'' if improves else ' (no s > 0 improves FID)'}")
    return Finding(name, bool(accuracy.passed and improves), figures)


def cg_conditional_moderate(df: pd.DataFrame, cols: Columns) -> Finding:
    """Finding 5 (D&N Table 4): classifier guidance at a moderate s raises the conditional
    model's accuracy over the unguided conditional model (cfg at w = 0)."""
    name = f"cg at a moderate s (0 < s <= {MODERATE_SCALE:g}) raises the conditional model's accuracy (cond_cg)"
    try:
        base = _sweep(df, "cfg", cols.accuracy)
        if 0.0 not in base.index:
            raise MissingData("no cfg row at w = 0 (the unguided conditional model, cond_cg's s = 0 "
                              "baseline): add 0 to guidance.cfg_scales")
        guided = _sweep(df, "cond_cg", cols.accuracy)
        moderate = guided[(guided.index > 0) & (guided.index <= MODERATE_SCALE)]
        if moderate.empty:
            raise MissingData(f"no cond_cg row at 0 < s <= {MODERATE_SCALE:g} (have s = "
                              f"{_fmt_scales(guided.index)}): add such a scale to guidance.cond_cg_scales")
    except MissingData as missing:
        return Finding(name, False, str(missing))
    baseline = float(base.loc[0.0])
    best_s = moderate.idxmax()
    passed = moderate.max() > baseline
    per_scale = ", ".join(f"{a:.3f} at s = {s:g}" for s, a in moderate.items())
    figures = (f"accuracy {per_scale} vs {baseline:.3f} unguided (cfg w = 0); best s = {best_s:g} "
               f"({moderate.max() - baseline:+.3f})")
    return Finding(name, bool(passed), figures)


FINDINGS = (is_rises_with_w, fid_minimum_interior, accuracy_rises_with_w, cg_unconditional,
            cg_conditional_moderate)


def check(df: pd.DataFrame, features: str = "classifier") -> list[Finding]:
    cols = Columns.of(features)
    return [finding(df, cols) for finding in FINDINGS]


def sweep_table(df: pd.DataFrame, features: str = "classifier") -> str:
    """The rows the checks read (and cfg_p<p> sweeps, marked informational), FID/IS/accuracy."""
    cols = Columns.of(features)
    methods = df["method"].astype(str)
    extra = sorted(m for m in methods.unique() if m.startswith("cfg_p"))
    order = {m: i for i, m in enumerate((*CHECKED_METHODS, *extra))}
    rows = df[methods.isin(order)].copy()
    rows = rows.assign(_order=rows["method"].map(order)).sort_values(["_order", "scale"])
    def values(column):
        return pd.to_numeric(rows[column], errors="coerce").astype(float) if column in rows else float("nan")

    table = pd.DataFrame({
        "method": [m + (" (info)" if m in extra else "") for m in rows["method"]],
        "scale": rows["scale"].map(lambda s: f"{s:g}"),
        f"FID ({features})": values(cols.fid),
        f"IS ({features})": values(cols.is_),
        "accuracy": values(cols.accuracy),
    })
    return table.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffguide.findings", description=__doc__.split("\n")[0])
    parser.add_argument("metrics_csv", help="results/<run>/metrics.csv of a finished run")
    parser.add_argument("--features", choices=("classifier", "inception"), default="classifier",
                        help="feature network of the FID and IS columns (default: the evaluation classifier; "
                             "accuracy is always the evaluation classifier's)")
    args = parser.parse_args(argv)

    path = Path(args.metrics_csv)
    try:
        df = pd.read_csv(path)
        missing = {"method", "scale"} - set(df.columns)
        if missing:
            raise ValueError(f"no {', '.join(sorted(missing))} column")
    except (OSError, ValueError, pd.errors.ParserError) as error:
        # FileNotFoundError is an OSError; pandas' EmptyDataError is a ValueError.
        print(f"cannot read {path} ({error}): run `make run` first to produce it", file=sys.stderr)
        return 2
    df["method"] = df["method"].astype(str)
    df["scale"] = pd.to_numeric(df["scale"], errors="coerce")

    print(f"Sweeps in {path} (FID and IS from {args.features} features, accuracy from the evaluation classifier):")
    print(sweep_table(df, args.features))
    print()
    results = check(df, args.features)
    for i, finding in enumerate(results, 1):
        print(f"{'PASS' if finding.passed else 'FAIL'}  {i}. {finding.name}: {finding.figures}")
    held = sum(f.passed for f in results)
    print(f"\n{held}/{len(results)} findings hold")
    return 0 if held == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
