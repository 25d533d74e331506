"""Training-free guidance against classifier guidance (issue 28, item 4): two tables of one run
(config/training_free.yaml), as Markdown for the README and the report and as CSV.

1. **Sweeps**: every scale of cg, of each training-free method (DPS, FreeDoM, MPGD, UGD, TFG) and of
   cg's second-order rule (cg_laplace) with sample accuracy, FID, precision and recall, each with
   metrics.csv's 95% interval.
2. **At matched accuracy**: for each guided scale s_ref of cg, the accuracy cg reaches there is the
   target; each training-free method's scale, FID, precision and recall at that accuracy are read off
   its sweep by linear interpolation in accuracy (``diffguide.findings.training_free``), and its
   difference to cg at s_ref gets a paired half-sample 95% interval (the interpolation redone within
   each replicate). Where a method never reaches the target, the row says so with its best accuracy.

The findings (``python -m diffguide.findings --set training_free``) are printed under the tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffguide.base import integrity
from diffguide.base.atomic import atomic_open
from diffguide.findings.framework import Columns, MissingData, Runs
from diffguide.findings.report import with_interval
from diffguide.findings.training_free import (BASELINE, TRAINING_FREE_FINDINGS, compared_methods, matched, present,
                                              reference_scales)
from diffguide.reports.figures import plot_tradeoff
from diffguide.registry import method_symbol

MATCHED_COLUMNS = ("method", "reference_scale", "target_accuracy", "reached", "scale", "fid", "fid_minus_cg",
                   "fid_minus_cg_lo", "fid_minus_cg_hi", "precision_minus_cg", "precision_minus_cg_lo",
                   "precision_minus_cg_hi", "recall_minus_cg", "recall_minus_cg_lo", "recall_minus_cg_hi",
                   "best_accuracy")


def sweep_rows(metrics: pd.DataFrame, features: str = "classifier") -> pd.DataFrame:
    """Table 1: cg's, the training-free methods' and cg_laplace's rows, in registry order, by scale."""
    cols = Columns.of(features)
    order = [BASELINE, *compared_methods()]
    rows = metrics[metrics["method"].isin(order)].copy()
    rows = rows.assign(_order=rows["method"].map(order.index)).sort_values(["_order", "scale"])
    return pd.DataFrame({
        "method": rows["method"].to_numpy(),
        "scale": [f"{method_symbol(m)} = {s:g}" for m, s in zip(rows["method"], rows["scale"])],
        "accuracy": with_interval(rows, cols.accuracy, 3),
        f"FID ({features})": with_interval(rows, cols.fid, 2),
        "precision": with_interval(rows, cols.precision, 3),
        "recall": with_interval(rows, cols.recall, 3),
    })


def matched_rows(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str = "classifier") -> pd.DataFrame:
    """Table 2 (MATCHED_COLUMNS): one row per compared method (training-free, and cg_laplace) and
    reference scale of cg."""
    runs, cols = Runs(metrics, replicates), Columns.of(features)
    rows = []
    for s_ref in reference_scales(runs, cols):
        for method in present(runs, compared_methods()):
            row = {"method": method, "reference_scale": float(s_ref)}
            for name, column in (("fid", cols.fid), ("precision", cols.precision), ("recall", cols.recall)):
                result = matched(runs, cols, method, column, float(s_ref))
                row |= {"target_accuracy": result.target_accuracy, "reached": result.reached, "scale": result.scale}
                if name == "fid":
                    row["fid"] = result.value
                difference = result.difference
                row |= dict(zip((f"{name}_minus_cg", f"{name}_minus_cg_lo", f"{name}_minus_cg_hi"),
                                (difference.value, difference.lo, difference.hi) if difference else (np.nan,) * 3))
            row["best_accuracy"] = float(runs.sweep(method, cols.accuracy).values.max())
            rows.append(row)
    return pd.DataFrame(rows, columns=list(MATCHED_COLUMNS))


def _difference(row: pd.Series, name: str, digits: int) -> str:
    value, lo, hi = row[f"{name}_minus_cg"], row[f"{name}_minus_cg_lo"], row[f"{name}_minus_cg_hi"]
    return "" if pd.isna(value) else f"{value:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def matched_markdown(table: pd.DataFrame) -> str:
    header = ["cg's s (its accuracy)", "method", "its scale there", "FID there", "FID - cg's [95% CI]",
              "precision - cg's [95% CI]", "recall - cg's [95% CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        target = f"s = {r['reference_scale']:g} ({r['target_accuracy']:.3f})"
        if not r["reached"]:
            cells = [target, r["method"], f"never reaches it (best accuracy {r['best_accuracy']:.3f})", "", "", "",
                     ""]
        else:
            cells = [target, r["method"], f"{method_symbol(r['method'])} = {r['scale']:.3g}", f"{r['fid']:.2f}",
                     _difference(r, "fid", 2), _difference(r, "precision", 3), _difference(r, "recall", 3)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def findings_lines(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str) -> list[str]:
    runs, cols = Runs(metrics, replicates), Columns.of(features)
    lines = []
    for number, finding in sorted(TRAINING_FREE_FINDINGS.items()):
        result = finding(runs, cols)
        lines.append(f"- **{number}. {result.name}: {'holds' if result.passed else 'does not hold'}.** "
                     f"Test: {result.test}. {result.figures}")
    return lines


def to_markdown(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str = "classifier") -> str:
    sweeps = sweep_rows(metrics, features)
    try:
        matched_text = matched_markdown(matched_rows(metrics, replicates, features))
    except MissingData as missing:
        matched_text = f"No matched comparison: {missing}"
    counts = metrics.loc[metrics["method"].isin(sweeps["method"]), "num_samples"]
    samples = f"{int(counts.iloc[0])} samples per row, " if len(counts) and counts.nunique() == 1 else ""
    return "\n\n".join([
        f"Training-free guidance (DPS, FreeDoM, MPGD, UGD, TFG, guided by the clean guide classifier) and the "
        f"second-order rule of classifier guidance (cg_laplace) against classifier guidance by the noisy classifier "
        f"(cg), all on the same unconditional model with the same "
        f"labels and noises ({samples}FID, precision and recall on {features} features, accuracy on the "
        "evaluation classifier, which guides none of them). 95% intervals: paired half-samples (delete-d "
        "jackknife), Wilson for accuracy.",
        "**Sweeps at each method's own scales**",
        sweeps.to_markdown(index=False),
        "**At matched accuracy**: each method where its sweep reaches the accuracy cg reaches at s (linear "
        "interpolation in accuracy between the two scales that bracket it, redone within each half-sample "
        "replicate; differences paired with cg's row at s).",
        matched_text,
        "**Findings** (`python -m diffguide.findings --set training_free`):\n" +
        "\n".join(findings_lines(metrics, replicates, features)),
    ]) + "\n"


def write_training_free_table(metrics_csv: str | Path, replicates_csv: str | Path, md_path: str | Path,
                              csv_path: str | Path, features: str = "classifier") -> list[Path]:
    """Read a run's metrics.csv and its replicates (checksums verified), write the Markdown and the
    matched table's CSV."""
    metrics, replicates = integrity.read_csv(metrics_csv), integrity.read_csv(replicates_csv)
    for frame in (metrics, replicates):
        frame["method"] = frame["method"].astype(str)
        frame["scale"] = pd.to_numeric(frame["scale"], errors="coerce")
    text = to_markdown(metrics, replicates, features)
    try:
        csv = matched_rows(metrics, replicates, features).to_csv(index=False)
    except MissingData:
        csv = pd.DataFrame(columns=list(MATCHED_COLUMNS)).to_csv(index=False)
    written = []
    for path, content in ((md_path, text), (csv_path, csv)):
        with atomic_open(path) as handle:  # a killed job leaves no half-written table
            handle.write(content.encode("utf-8"))
        written.append(Path(path))
    return written


def plot_training_free_tradeoff(metrics_csv: str | Path, path: str | Path, features: str = "classifier") -> list[str]:
    """FID against sample accuracy, one curve per method (cg, the training-free methods, cg_laplace),
    each point a scale with its 95% intervals: the picture of the matched comparison, where a method
    to the lower right of cg's curve is better at the same accuracy. The curves without a scale 0
    start from cg's unguided point in the table's interpolation, not in this figure."""
    cols = Columns.of(features)
    metrics = integrity.read_csv(metrics_csv)
    metrics["method"] = metrics["method"].astype(str)
    shown = metrics[metrics["method"].isin([BASELINE, *compared_methods()])]
    return plot_tradeoff(shown, path, x=cols.accuracy, y=cols.fid)
