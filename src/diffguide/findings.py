"""`python -m diffguide.findings results/<run>/metrics.csv`: do the papers' findings hold here,
beyond the noise of a finite sample set?

Checks eight findings of Ho & Salimans 2022 (classifier-free guidance, scale w) and Dhariwal &
Nichol 2021 (classifier guidance, scale s; Table 4), and three of semantic diffusion guidance
(``findings_sdg``: sdg_text and sdg_image, scale gamma), on one run's metrics.csv and prints a
table of the sweeps it used, then one line per finding: PASS/FAIL, the statistical test, the
effect size with its 95% interval, and a summary. A finding whose data the run lacks (a method
not in guidance.methods, too few scales, an empty column) fails and says which config key or
rerun supplies them. Exit code 0 when every finding holds, 1 when one does not,
2 when metrics.csv or its replicates cannot be read.

Every effect is a function of several rows of metrics.csv (a slope over a sweep, a difference of
two rows, the margin of a minimum). Its interval comes from the same function applied to each of
the B half-sample replicates in metrics_replicates.csv (written beside metrics.csv by the
evaluation): every row's replicate b was computed on the same half of the sample indices, and
sample i has the same label and initial noise in every row, whatever the method or scale, so
the replicates are paired and the shared noise cancels in differences. The interval is
effect -+ 1.96 SE with SE from Shao & Wu's delete-d jackknife (``diffguide.intervals``), and a
finding passes only when its interval excludes 0 in the claimed direction. Findings that need
two effects (4, 8) or two margins (2) pass only when each does: an intersection-union test,
whose level stays 5% without correction. Minima and maxima over scales are taken within each
replicate, so the choice of the best scale is part of the noise the interval covers.

FID, IS, precision and recall come from the evaluation classifier's features by default
(``--features inception`` reads the Inception columns instead); sample accuracy is always the
evaluation classifier's.

``--set testbed`` checks, instead of findings 1-11, the guidance testbed's (``findings_testbed``,
numbered 12 onwards: each successor method's headline claim against CFG on the same models, with
the calibrated best-against-best comparison beside it), with the same exit codes; methods the run
lacks are skipped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .integrity import CorruptArtifactError, read_csv
from .intervals import Z95, jackknife_se
from .registry import REGISTRY, method_symbol, parse_method

# A slope through fewer than 3 scales is one difference; a "rise with the scale" needs a sweep.
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
    # and 10; empty where data are missing), for tables that print them (diffguide.replication_status).
    effects: tuple = ()


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


def _fmt(value: float, label: str) -> str:
    return f"{value:.2f}" if label in ("FID", "IS") else f"{value:.3f}"


def _signed(*values: float, label: str) -> list[str]:
    """Signed numbers of one effect (its value and interval ends) in one format: fixed decimals, or,
    when one of them would round to +-0.00(0) without being 0 (a slope per unit gamma, whose scales
    run to the hundreds; an interval end just past 0), three significant digits for all, so their
    signs and sizes stay readable."""
    digits = 2 if label in ("FID", "IS") else 3
    if any(v != 0 and abs(v) < 0.5 * 10 ** -digits for v in values):
        return [f"{v:+.2e}" for v in values]
    return [f"{v:+.{digits}f}" for v in values]


def _fmt_scales(scales) -> str:
    return ", ".join(f"{s:g}" for s in scales)


def _fill_hint(column: str) -> str:
    """What fills an empty metric column."""
    if column == "is_inception":
        return ("put NVlabs' inception-2015-12-05.pt (the logits head) at evaluation.inception_weights "
                "and rerun the evaluation")
    if column.endswith("_inception"):
        return "set evaluation.inception: true and rerun the evaluation"
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
            raise MissingData(f"metrics.csv has no {column} column: {_fill_hint(column)}")
        rows = df[df["method"] == method]
        if rows.empty:
            raise MissingData(f"no {method} rows in metrics.csv: add {method} to guidance.methods "
                              f"(and its scales to {key})")
        values = rows.groupby("scale")[column].first().sort_index()
        empty = values[values.isna()]
        values = values.dropna()
        if len(values) < min_scales:
            symbol = method_symbol(method)
            have = f"{symbol} = {_fmt_scales(values.index)}" if len(values) else "none"
            message = (f"{method} has {column} at {len(values)} scale(s) ({have}); "
                       f"this check needs at least {min_scales}")
            if len(empty):
                message += f": {column} is empty at {symbol} = {_fmt_scales(empty.index)}: {_fill_hint(column)}"
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
        value, lo, hi = _signed(self.value, self.lo, self.hi, label=self.label)
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


def _slope_effect(sweep: Sweep, label: str, direction: int = 1) -> Effect:
    symbol = method_symbol(sweep.method)
    return effect(f"slope of {label} per unit {symbol}", label, slope(sweep.scales), [sweep], direction)


def _trend(runs: Runs, name: str, method: str, column: str, label: str, direction: int = 1) -> Finding:
    """``column`` rises (direction +1) or falls (-1) with ``method``'s scale: its slope's interval
    excludes 0 on that side."""
    try:
        sweep = runs.sweep(method, column, MIN_SCALES)
    except MissingData as missing:
        return Finding(name, False, str(missing), SLOPE_TEST)
    result = _slope_effect(sweep, label, direction)
    symbol = method_symbol(method)
    figures = (f"{result.describe()}; {label} {_fmt(sweep.values[0], label)} -> "
               f"{_fmt(sweep.values[-1], label)} over {symbol} = {_fmt_scales(sweep.scales)}")
    return Finding(name, result.holds, figures, SLOPE_TEST, effects=(result,))


def is_rises_with_w(runs: Runs, cols: Columns) -> Finding:
    """Finding 1 (H&S Fig. 4 / Table 1): IS rises with w over the classifier-free sweep."""
    return _trend(runs, "IS rises with w (cfg)", "cfg", cols.is_, "IS")


def fid_minimum_interior(runs: Runs, cols: Columns) -> Finding:
    """Finding 2 (H&S Fig. 4): FID is lowest at an interior w and rises past it: the lowest
    interior FID lies below the FID at both ends of the sweep, each margin significant."""
    name = "FID is lowest at an interior w and rises past it (cfg)"
    test = "margins of the lowest interior FID below both ends, paired half-sample 95% intervals"
    try:
        fid = runs.sweep("cfg", cols.fid, MIN_SCALES)
    except MissingData as missing:
        return Finding(name, False, str(missing), test)
    first, last = fid.scales[0], fid.scales[-1]
    margins = [effect(f"FID(w = {w:g}) - min interior FID", "FID", lambda y, i=i: y[i] - y[1:-1].min(axis=0), [fid])
               for i, w in ((0, first), (-1, last))]
    best = fid.scales[1:-1][np.argmin(fid.values[1:-1])]
    overall = fid.scales[np.argmin(fid.values)]
    where = "interior" if first < overall < last else ("the smallest w" if overall == first else "the largest w")
    figures = f"lowest FID {fid.values.min():.2f} at w = {overall:g} ({where} of w = {_fmt_scales(fid.scales)}); "
    if overall != best:
        figures += f"lowest interior FID {fid.value(best):.2f} at w = {best:g}; "
    figures += "; ".join(m.describe() for m in margins)
    return Finding(name, all(m.holds for m in margins), figures, test, effects=tuple(margins))


def accuracy_rises_with_w(runs: Runs, cols: Columns) -> Finding:
    """Finding 3 (H&S's precision/diversity trade-off): sample accuracy rises with w."""
    return _trend(runs, "accuracy rises with w (cfg)", "cfg", cols.accuracy, "accuracy")


def cg_unconditional(runs: Runs, cols: Columns) -> Finding:
    """Finding 4 (D&N Table 4, Fig. 3): classifier guidance of the unconditional model raises
    accuracy with s, and the best FID at some s > 0 is below the unguided s = 0."""
    name = "cg on the unconditional model raises accuracy with s and improves FID (cg)"
    test = f"{SLOPE_TEST}; FID(s = 0) - lowest FID at s > 0, paired half-sample 95% interval"
    accuracy = _trend(runs, name, "cg", cols.accuracy, "accuracy")
    try:
        fid = runs.sweep("cg", cols.fid)
        _unguided_unconditional(runs, fid, "the unguided baseline")
        if not (fid.scales > 0).any():
            raise MissingData("no cg row at s > 0: add guided scales to guidance.cg_scales")
    except MissingData as missing:
        return Finding(name, False, f"{accuracy.figures}; {missing}", test, effects=accuracy.effects)
    fid = fid.at(np.argsort(fid.scales != 0, kind="stable"))  # s = 0 first
    gain = effect("FID(s = 0) - lowest FID at s > 0", "FID", lambda y: y[0] - y[1:].min(axis=0), [fid])
    best = fid.scales[1:][np.argmin(fid.values[1:])]
    figures = (f"{accuracy.figures}; lowest FID at s > 0 is {fid.values[1:].min():.2f} at s = {best:g} against "
               f"{fid.value(0.0):.2f} at s = 0: {gain.describe()}")
    return Finding(name, accuracy.passed and gain.holds, figures, test, effects=(*accuracy.effects, gain))


def _unguided_unconditional(runs: Runs, cg: Sweep, role: str) -> Sweep:
    """cg's s = 0 row of the sweep ``cg``; MissingData saying whether the row is absent (add 0 to
    the scales) or only its cell is empty (fill it)."""
    if 0.0 not in cg.scales:
        if ((runs.metrics["method"] == "cg") & (runs.metrics["scale"] == 0)).any():
            raise MissingData(f"{cg.column} is empty at cg s = 0 ({role}): {_fill_hint(cg.column)}")
        raise MissingData(f"no cg row at s = 0 ({role}): add 0 to guidance.cg_scales")
    return cg.at(cg.scales == 0)


def _moderate_cond_cg(runs: Runs, column: str) -> Sweep:
    guided = runs.sweep("cond_cg", column)
    moderate = guided.at((guided.scales > 0) & (guided.scales <= MODERATE_SCALE))
    if not len(moderate.scales):
        raise MissingData(f"no cond_cg row at 0 < s <= {MODERATE_SCALE:g} (have s = "
                          f"{_fmt_scales(guided.scales)}): add such a scale to guidance.cond_cg_scales")
    return moderate


def _unguided_conditional(runs: Runs, column: str) -> Sweep:
    base = runs.sweep("cfg", column)
    if 0.0 not in base.scales:
        raise MissingData("no cfg row at w = 0 (the unguided conditional model, cond_cg's s = 0 "
                          "baseline): add 0 to guidance.cfg_scales")
    return base.at(base.scales == 0)


def cg_conditional_moderate(runs: Runs, cols: Columns) -> Finding:
    """Finding 5 (D&N Table 4): classifier guidance at a moderate s raises the conditional
    model's accuracy over the unguided conditional model (cfg at w = 0)."""
    name = f"cg at a moderate s (0 < s <= {MODERATE_SCALE:g}) raises the conditional model's accuracy (cond_cg)"
    test = "highest moderate-s accuracy - unguided accuracy, paired half-sample 95% interval"
    try:
        base = _unguided_conditional(runs, cols.accuracy)
        moderate = _moderate_cond_cg(runs, cols.accuracy)
        gain = effect("best moderate-s accuracy - unguided", "accuracy",
                      lambda guided, unguided: guided.max(axis=0) - unguided[0], [moderate, base])
    except MissingData as missing:
        return Finding(name, False, str(missing), test)
    per_scale = ", ".join(f"{a:.3f} at s = {s:g}" for s, a in zip(moderate.scales, moderate.values))
    best = moderate.scales[np.argmax(moderate.values)]
    figures = f"accuracy {per_scale} vs {base.values[0]:.3f} unguided (cfg w = 0), best s = {best:g}: {gain.describe()}"
    return Finding(name, gain.holds, figures, test, effects=(gain,))


def conditional_beats_unconditional(runs: Runs, cols: Columns) -> Finding:
    """Finding 6 (D&N Table 4: 10.94 vs 26.21): unguided, the conditional model (cfg at w = 0)
    has a lower FID than the unconditional one (cg at s = 0)."""
    name = "unguided, the conditional model has a lower FID than the unconditional one (cfg w = 0 vs cg s = 0)"
    test = "FID(cg s = 0) - FID(cfg w = 0), paired half-sample 95% interval"
    try:
        conditional = _unguided_conditional(runs, cols.fid)
        unconditional = _unguided_unconditional(runs, runs.sweep("cg", cols.fid), "the unguided unconditional model")
        gap = effect("FID(unconditional) - FID(conditional)", "FID", lambda u, c: u[0] - c[0],
                     [unconditional, conditional])
    except MissingData as missing:
        return Finding(name, False, str(missing), test)
    figures = (f"FID {conditional.values[0]:.2f} conditional vs {unconditional.values[0]:.2f} unconditional: "
               f"{gap.describe()}")
    return Finding(name, gap.holds, figures, test, effects=(gap,))


def _table4_rows(runs: Runs, column: str) -> tuple[Sweep, list[Sweep]]:
    """D&N Table 4's rows of ours: the moderate cond_cg rows, and every other row (cg at every s,
    the unguided conditional model cfg w = 0, cond_cg beyond the moderate range)."""
    moderate = _moderate_cond_cg(runs, column)
    guided = runs.sweep("cond_cg", column)
    others = [runs.sweep("cg", column), _unguided_conditional(runs, column),
              guided.at(guided.scales > MODERATE_SCALE)]
    return moderate, [o for o in others if len(o.scales)]


def cond_cg_lowest_fid(runs: Runs, cols: Columns) -> Finding:
    """Finding 7 (D&N Table 4: 4.59 at s = 1): classifier guidance of the conditional model at a
    moderate s gives the lowest FID of all Table 4 rows."""
    name = f"cg of the conditional model at a moderate s (0 < s <= {MODERATE_SCALE:g}) has the lowest FID of Table 4"
    test = "lowest FID of the other Table 4 rows - lowest moderate cond_cg FID, paired half-sample 95% interval"

    def margin(best, *rest):
        return np.min([r.min(axis=0) for r in rest], axis=0) - best.min(axis=0)

    try:
        moderate, others = _table4_rows(runs, cols.fid)
        gap = effect("lowest other FID - lowest moderate cond_cg FID", "FID", margin, [moderate, *others])
    except MissingData as missing:
        return Finding(name, False, str(missing), test)
    best = moderate.scales[np.argmin(moderate.values)]
    runner_up = min(((o.values.min(), o.method, o.scales[np.argmin(o.values)]) for o in others))
    symbol = method_symbol(runner_up[1])
    figures = (f"lowest moderate cond_cg FID {moderate.values.min():.2f} at s = {best:g}; lowest other row "
               f"{runner_up[0]:.2f} ({runner_up[1]} {symbol} = {runner_up[2]:g}): {gap.describe()}")
    return Finding(name, gap.holds, figures, test, effects=(gap,))


def precision_up_recall_down(runs: Runs, cols: Columns) -> Finding:
    """Finding 8 (D&N Table 4: precision 0.61 -> 0.76, recall 0.63 -> 0.44 at s = 10): as s grows
    on the unconditional model, precision rises and recall falls."""
    name = "as s grows (cg), precision rises and recall falls"
    rises = _trend(runs, name, "cg", cols.precision, "precision")
    falls = _trend(runs, name, "cg", cols.recall, "recall", direction=-1)
    return Finding(name, rises.passed and falls.passed, f"{rises.figures}; {falls.figures}",
                   f"{SLOPE_TEST}, one for each", effects=(*rises.effects, *falls.effects))


# Findings 1-8, the papers' (H&S, D&N); findings_sdg.SDG_FINDINGS are 9-11.
FINDINGS = (is_rises_with_w, fid_minimum_interior, accuracy_rises_with_w, cg_unconditional,
            cg_conditional_moderate, conditional_beats_unconditional, cond_cg_lowest_fid, precision_up_recall_down)


def all_findings() -> tuple[Callable, ...]:
    """The report's findings in their printed order: this module's, then semantic diffusion
    guidance's (imported here because findings_sdg builds on this module)."""
    from .findings_sdg import SDG_FINDINGS

    return (*FINDINGS, *SDG_FINDINGS)


def testbed_findings() -> tuple[Callable, ...]:
    """The guidance testbed's findings (``--set testbed``), numbered after all_findings()."""
    from .findings_testbed import TESTBED_FINDINGS

    return TESTBED_FINDINGS


# --set: which findings a run is checked for, and the number of the first.
FINDING_SETS = {"papers": all_findings, "testbed": testbed_findings}


def first_number(finding_set: str) -> int:
    """The printed number of a set's first finding: the testbed's follow the papers' 1-11."""
    return 1 if finding_set == "papers" else len(all_findings()) + 1


def check(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str = "classifier",
          finding_set: str = "papers") -> list[Finding]:
    runs, cols = Runs(metrics, replicates), Columns.of(features)
    return [finding(runs, cols) for finding in FINDING_SETS[finding_set]()]


def with_interval(rows: pd.DataFrame, column: str, digits: int) -> list[str]:
    """``value [lo, hi]`` per row (the value alone where no interval exists), the format of every
    sweep table (also experiments/ablate.py's trial table)."""
    if column not in rows:
        return ["nan"] * len(rows)
    lo, hi = (rows.get(f"{column}_{b}", pd.Series(np.nan, index=rows.index)) for b in ("lo", "hi"))
    return [f"{v:.{digits}f}" if pd.isna(a) or pd.isna(b) else f"{v:.{digits}f} [{a:.{digits}f}, {b:.{digits}f}]"
            for v, a, b in zip(pd.to_numeric(rows[column], errors="coerce"), lo, hi)]


def sweep_table(df: pd.DataFrame, features: str = "classifier", saturation: bool = False) -> str:
    """The rows the checks read (and cfg_p<p> sweeps, marked informational): FID, IS, precision,
    recall and accuracy, each with its 95% interval, and sdg_image's similarity to its references
    where metrics.csv has that column; with ``saturation`` (the testbed's findings) the fraction of
    saturated pixels too, where metrics.csv has it."""
    cols = Columns.of(features)
    methods = df["method"].astype(str)
    extra = sorted(m for m in methods.unique() if m not in REGISTRY.methods and is_registered(m))
    order = {m: i for i, m in enumerate((*REGISTRY.methods, *extra))}
    rows = df[methods.isin(order)].copy()
    rows = rows.assign(_order=rows["method"].map(order)).sort_values(["_order", "scale"])
    table = pd.DataFrame({
        "method": [m + (" (info)" if m in extra else "") for m in rows["method"]],
        "scale": rows["scale"].map(lambda s: f"{s:g}"),
        f"FID ({features})": with_interval(rows, cols.fid, 2),
        f"IS ({features})": with_interval(rows, cols.is_, 2),
        "precision": with_interval(rows, cols.precision, 3),
        "recall": with_interval(rows, cols.recall, 3),
        "accuracy": with_interval(rows, cols.accuracy, 3),
    })
    if REFERENCE_SIMILARITY in df.columns:  # sdg_image's rows have it (older metrics.csv files lack it)
        table["reference similarity"] = with_interval(rows, REFERENCE_SIMILARITY, 3)
    if saturation and "saturation" in df.columns:
        table["saturation"] = with_interval(rows, "saturation", 3)
    return table.to_string(index=False)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffguide.findings", description=__doc__.split("\n")[0])
    parser.add_argument("metrics_csv", help="results/<run>/metrics.csv of a finished run")
    parser.add_argument("--replicates", help=f"the half-sample replicates (default: {REPLICATES_NAME} beside "
                                             "metrics_csv)")
    parser.add_argument("--features", choices=("classifier", "inception"), default="classifier",
                        help="feature network of the FID, IS, precision and recall columns (default: the evaluation "
                             "classifier; accuracy is always the evaluation classifier's)")
    parser.add_argument("--set", dest="finding_set", choices=tuple(FINDING_SETS), default="papers",
                        help="which findings: the papers' 1-11 (default), or the guidance testbed's, 12 onwards "
                             "(each successor method's claim against CFG; run on the testbed run's metrics.csv)")
    args = parser.parse_args(argv)

    path = Path(args.metrics_csv)
    try:
        df, replicates = read_run(path, replicates_path(path, args.replicates))
    except UnreadableRun as error:
        print(error, file=sys.stderr)
        return 2

    print(f"Sweeps in {path} (FID, IS, precision and recall from {args.features} features, accuracy from the "
          "evaluation classifier; 95% intervals in brackets):")
    print(sweep_table(df, args.features, saturation=args.finding_set == "testbed"))
    print()
    results = check(df, replicates, args.features, args.finding_set)
    for i, finding in enumerate(results, first_number(args.finding_set)):
        verdict = "SKIP" if finding.skipped else "PASS" if finding.passed else "FAIL"
        print(f"{verdict}  {i}. {finding.name}. Test: {finding.test}. {finding.figures}")
    judged = [f for f in results if not f.skipped]
    held = sum(f.passed for f in judged)
    skipped = len(results) - len(judged)
    print(f"\n{held}/{len(judged)} findings hold (each significant at 95%)"
          + (f"; {skipped} skipped: their methods were not run" if skipped else ""))
    return 0 if held == len(judged) else 1


if __name__ == "__main__":
    # Run the package's copy of this module, the one findings_sdg imports, so that both raise and
    # catch the same MissingData (under -m this file is also loaded as __main__, a second copy).
    from diffguide.findings import main as package_main

    sys.exit(package_main())
