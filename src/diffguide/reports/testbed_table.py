"""The guidance testbed's table (issue 16, deliverable 3): each method at its best scale, beside its
paper's claim and whether the claim holds here.

One row per method, cfg first, then the testbed's methods in registry order (those the run has):

- best scale: the lowest FID of the method's guided rows (scale > 0; cfg's of all its rows, w = 0
  included), as ``findings.testbed.guided_rows`` chooses;
- FID, sample accuracy and saturation (the fraction of pixels at 0 or 255) at that scale, each with
  metrics.csv's 95% interval;
- FID - cfg's best: best FID(method) - best FID(cfg), each at its own best scale, with the paired
  half-sample 95% interval whose minima are taken within each replicate
  (``findings.testbed.calibrated``), and its outcome: win (interval below 0), loss (above 0) or not
  distinguishable: a method wins only against CFG at its own best scale;
- the paper's claim, restated for this setting (``findings.testbed.CLAIMS``), and its verdict from
  ``python -m diffguide.findings --set testbed`` (the finding's number in brackets).

Written as Markdown (for the README and the report) and CSV (numbers, for anyone's own analysis).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffguide.base import integrity
from diffguide.base.atomic import atomic_open
from diffguide.findings.framework import Columns, MissingData, Runs
from diffguide.findings.testbed import (BASELINE, CLAIMS, TESTBED_FINDINGS, calibrated, compared_methods, guided_rows,
                                        verdict)
from diffguide.registry import method_label, method_symbol

BASELINE_CLAIM = ("Ho & Salimans 2022", "(baseline) each method is compared with CFG at CFG's own best w")
CSV_COLUMNS = ("method", "label", "symbol", "best_scale", "fid", "fid_lo", "fid_hi", "accuracy", "accuracy_lo",
               "accuracy_hi", "saturation", "saturation_lo", "saturation_hi", "fid_minus_cfg_best",
               "fid_minus_cfg_best_lo", "fid_minus_cfg_best_hi", "versus_cfg", "paper", "claim", "verdict", "finding")


def _bounds(row: pd.Series, column: str) -> tuple[float, float, float]:
    """(value, lo, hi) of ``column`` in a metrics.csv row; NaN where a column is absent."""
    return tuple(float(row[c]) if c in row.index and pd.notna(row[c]) else np.nan
                 for c in (column, f"{column}_lo", f"{column}_hi"))


def testbed_rows(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str = "classifier") -> pd.DataFrame:
    """The table's rows (CSV_COLUMNS), one per compared method with an FID."""
    runs, cols = Runs(metrics, replicates), Columns.of(features)
    numbers = {f.__name__: number for number, f in TESTBED_FINDINGS.items()}
    found = {f.__name__: f(runs, cols) for f in TESTBED_FINDINGS.values()}
    rows = []
    for method in compared_methods(metrics["method"].astype(str)):
        own = guided_rows(metrics[metrics["method"] == method], method).dropna(subset=[cols.fid])
        if own.empty:
            continue
        best = own.loc[own[cols.fid].astype(float).idxmin()]
        row = {"method": method, "label": method_label(method), "symbol": method_symbol(method),
               "best_scale": float(best["scale"])}
        for name, column in (("fid", cols.fid), ("accuracy", cols.accuracy), ("saturation", "saturation")):
            row |= dict(zip((name, f"{name}_lo", f"{name}_hi"), _bounds(best, column)))
        difference, outcome = (np.nan, np.nan, np.nan), ""
        if method != BASELINE:
            try:
                result = calibrated(runs, cols, method)
                difference, outcome = (result.difference.value, result.difference.lo, result.difference.hi), \
                    result.outcome
            except MissingData as missing:
                outcome = f"not comparable: {missing}"
        row |= dict(zip(("fid_minus_cfg_best", "fid_minus_cfg_best_lo", "fid_minus_cfg_best_hi"), difference))
        row["versus_cfg"] = outcome
        if method == BASELINE:
            paper, claim, status, number = *BASELINE_CLAIM, "", np.nan
        elif method in CLAIMS:
            paper, claim, status, number = CLAIMS[method].paper, CLAIMS[method].claim, verdict(found[method]), \
                numbers[method]
        else:
            paper, claim, status, number = "", "no claim tested here", "", np.nan
        rows.append(row | {"paper": paper, "claim": claim, "verdict": status, "finding": number})
    if not rows:
        raise ValueError(f"metrics.csv has no {cols.fid} values of cfg or the testbed's methods")
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def _cell(value: float, lo: float, hi: float, digits: int, signed: bool = False) -> str:
    if pd.isna(value):
        return "n/a"
    sign = "+" if signed else ""
    text = f"{value:{sign}.{digits}f}"
    return text if pd.isna(lo) or pd.isna(hi) else f"{text} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def to_markdown(table: pd.DataFrame, num_samples: int | None = None, features: str = "classifier") -> str:
    """The table as Markdown, with a header saying what each column is."""
    header = ["method", "best scale", "FID [95% CI]", "accuracy [95% CI]", "saturation [95% CI]",
              "FID - cfg's best [95% CI]", "vs cfg", "paper's claim", "claim here"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        claim = f"{r['paper']}: {r['claim']}" if r["paper"] else r["claim"]
        status = r["verdict"] + (f" (finding {int(r['finding'])})" if pd.notna(r["finding"]) else "")
        cells = [r["method"], f"{r['symbol']} = {r['best_scale']:g}",
                 _cell(r["fid"], r["fid_lo"], r["fid_hi"], 2),
                 _cell(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"], 3),
                 _cell(r["saturation"], r["saturation_lo"], r["saturation_hi"], 3),
                 "" if r["method"] == BASELINE else _cell(r["fid_minus_cfg_best"], r["fid_minus_cfg_best_lo"],
                                                          r["fid_minus_cfg_best_hi"], 2, signed=True),
                 r["versus_cfg"], claim, status]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    samples = f" {num_samples} samples per row;" if num_samples else ""
    intro = (f"Guidance testbed: each method at its best scale (lowest FID; FID on {features} features, sample "
             f"accuracy on the evaluation classifier).{samples} 95% intervals: paired half-samples (delete-d "
             "jackknife), Wilson for accuracy. FID - cfg's best compares each method's best with CFG's best "
             "(w = 0 included), minima within each half-sample replicate: a method wins only against CFG at its "
             "own best scale. The claims are tested by `python -m diffguide.findings --set testbed` (make findings).")
    return intro + "\n\n" + "\n".join(lines) + "\n"


def write_testbed_table(metrics_csv: str | Path, replicates_csv: str | Path, md_path: str | Path,
                        csv_path: str | Path, features: str = "classifier") -> list[Path]:
    """Read a run's metrics.csv and its replicates (checksums verified), write the Markdown and CSV."""
    metrics, replicates = integrity.read_csv(metrics_csv), integrity.read_csv(replicates_csv)
    for frame in (metrics, replicates):
        frame["method"] = frame["method"].astype(str)
        frame["scale"] = pd.to_numeric(frame["scale"], errors="coerce")
    table = testbed_rows(metrics, replicates, features)
    counts = metrics.loc[metrics["method"].isin(table["method"]), "num_samples"] if "num_samples" in metrics else []
    num_samples = int(counts.iloc[0]) if len(counts) and pd.Series(counts).nunique() == 1 else None
    written = []
    for path, text in ((md_path, to_markdown(table, num_samples, features)), (csv_path, table.to_csv(index=False))):
        with atomic_open(path) as handle:  # a killed job leaves no half-written table
            handle.write(text.encode("utf-8"))
        written.append(Path(path))
    return written
