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
- the paper's claim, restated for this setting (``findings.testbed.CLAIMS``), and its verdicts from
  ``python -m diffguide.findings --set testbed`` (the finding's number in brackets): at matched
  strength, which judges it, and at nominal scale, the paper's own test.

Below it, **the matched-strength table** (``matched_rows``; diffguide.findings.testbed_matched): each
method where it reaches CFG's sample accuracy, and separately CFG's mean guidance displacement, at
each reference w, with its scale there and its FID, precision, recall and saturation minus CFG's at
that w, each with its paired half-sample 95% interval; a target the method's sweep never reaches says
so with its best level.

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
                                        nominal_verdict, verdict)
from diffguide.findings.testbed_matched import REFERENCE_WS, compare, matchings
from diffguide.registry import method_label, method_symbol

BASELINE_CLAIM = ("Ho & Salimans 2022", "(baseline) each method is compared with CFG at CFG's own best w")
CSV_COLUMNS = ("method", "label", "symbol", "best_scale", "fid", "fid_lo", "fid_hi", "accuracy", "accuracy_lo",
               "accuracy_hi", "saturation", "saturation_lo", "saturation_hi", "fid_minus_cfg_best",
               "fid_minus_cfg_best_lo", "fid_minus_cfg_best_hi", "versus_cfg", "paper", "claim", "verdict",
               "nominal_verdict", "finding")
MATCHED_KEYS = ("fid", "precision", "recall", "saturation")
MATCHED_COLUMNS = ("method", "matched_by", "reference_w", "target", "reached", "scale", "fid",
                   *(f"{key}_minus_cfg{end}" for key in MATCHED_KEYS for end in ("", "_lo", "_hi")), "best_level")


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
            paper, claim, status, nominal, number = *BASELINE_CLAIM, "", "", np.nan
        elif method in CLAIMS:
            paper, claim, number = CLAIMS[method].paper, CLAIMS[method].claim, numbers[method]
            status, nominal = verdict(found[method]), nominal_verdict(found[method])
        else:
            paper, claim, status, nominal, number = "", "no claim tested here", "", "", np.nan
        rows.append(row | {"paper": paper, "claim": claim, "verdict": status, "nominal_verdict": nominal,
                           "finding": number})
    if not rows:
        raise ValueError(f"metrics.csv has no {cols.fid} values of cfg or the testbed's methods")
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def matched_rows(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str = "classifier") -> pd.DataFrame:
    """The matched-strength table (MATCHED_COLUMNS): one row per compared method, matching and
    reference w; a method whose rows cannot be matched (a column absent) is left out."""
    runs, cols = Runs(metrics, replicates), Columns.of(features)
    rows = []
    for method in compared_methods(metrics["method"].astype(str)):
        if method == BASELINE:
            continue
        for matching in matchings(cols, method):
            for w_ref in REFERENCE_WS:
                try:
                    comparison = compare(runs, cols, method, matching, w_ref)
                    best = float(runs.sweep(method, matching.by).values.max())
                except MissingData:
                    continue
                first = comparison.first
                row = {"method": method, "matched_by": matching.by_label, "reference_w": w_ref, "target": first.target,
                       "reached": first.reached, "scale": first.scale, "fid": first.value, "best_level": best}
                for key, result in comparison.results.items():
                    d = result.difference
                    row |= dict(zip((f"{key}_minus_cfg", f"{key}_minus_cfg_lo", f"{key}_minus_cfg_hi"),
                                    (d.value, d.lo, d.hi) if d else (np.nan,) * 3))
                rows.append(row)
    return pd.DataFrame(rows, columns=list(MATCHED_COLUMNS))


def matched_markdown(table: pd.DataFrame) -> str:
    """The matched-strength table as Markdown."""
    header = ["method", "matched by", "cfg's w (its level)", "the method's scale there", "FID there",
              "FID - cfg's [95% CI]", "precision - cfg's", "recall - cfg's", "saturation - cfg's"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        target = f"w = {r['reference_w']:g} ({r['target']:.3g})"
        if not r["reached"]:
            cells = [r["method"], r["matched_by"], target,
                     f"never reached (its highest {r['matched_by']}: {r['best_level']:.3g})", "", "", "", "", ""]
        else:
            symbol = method_symbol(r["method"])
            cells = [r["method"], r["matched_by"], target, f"{symbol} = {r['scale']:.3g}", f"{r['fid']:.2f}",
                     *(_cell(r[f"{key}_minus_cfg"], r[f"{key}_minus_cfg_lo"], r[f"{key}_minus_cfg_hi"],
                             2 if key == "fid" else 3, signed=True) for key in MATCHED_KEYS)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(value: float, lo: float, hi: float, digits: int, signed: bool = False) -> str:
    if pd.isna(value):
        return "n/a"
    sign = "+" if signed else ""
    text = f"{value:{sign}.{digits}f}"
    return text if pd.isna(lo) or pd.isna(hi) else f"{text} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


def to_markdown(table: pd.DataFrame, num_samples: int | None = None, features: str = "classifier") -> str:
    """The table as Markdown, with a header saying what each column is."""
    header = ["method", "best scale", "FID [95% CI]", "accuracy [95% CI]", "saturation [95% CI]",
              "FID - cfg's best [95% CI]", "vs cfg", "paper's claim", "claim at matched strength",
              "at nominal scale"]
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
                 r["versus_cfg"], claim, status, r["nominal_verdict"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    samples = f" {num_samples} samples per row;" if num_samples else ""
    intro = (f"Guidance testbed: each method at its best scale (lowest FID; FID on {features} features, sample "
             f"accuracy on the evaluation classifier).{samples} 95% intervals: paired half-samples (delete-d "
             "jackknife), Wilson for accuracy. FID - cfg's best compares each method's best with CFG's best "
             "(w = 0 included), minima within each half-sample replicate: a method wins only against CFG at its "
             "own best scale. The claims are tested by `python -m diffguide.findings --set testbed` (make findings), "
             "judged at matched strength (the table below: the method matched to cfg at w = "
             f"{' and '.join(f'{w:g}' for w in REFERENCE_WS)} by sample accuracy and by guidance displacement, each "
             "part's paired interval at all four), the paper's own test at nominal scale beside it.")
    return intro + "\n\n" + "\n".join(lines) + "\n"


def write_testbed_table(metrics_csv: str | Path, replicates_csv: str | Path, md_path: str | Path,
                        csv_path: str | Path, matched_csv_path: str | Path, features: str = "classifier") -> list[Path]:
    """Read a run's metrics.csv and its replicates (checksums verified), write the Markdown (both
    tables) and a CSV of each."""
    metrics, replicates = integrity.read_csv(metrics_csv), integrity.read_csv(replicates_csv)
    for frame in (metrics, replicates):
        frame["method"] = frame["method"].astype(str)
        frame["scale"] = pd.to_numeric(frame["scale"], errors="coerce")
    table = testbed_rows(metrics, replicates, features)
    matched = matched_rows(metrics, replicates, features)
    counts = metrics.loc[metrics["method"].isin(table["method"]), "num_samples"] if "num_samples" in metrics else []
    num_samples = int(counts.iloc[0]) if len(counts) and pd.Series(counts).nunique() == 1 else None
    markdown = to_markdown(table, num_samples, features) + (
        "\n**At matched strength** (each method where its sweep reaches cfg's level at w, by linear interpolation "
        "between the two scales that bracket it, redone within each half-sample replicate; differences paired "
        "with cfg's row at w):\n\n" + (matched_markdown(matched) if len(matched) else
                                       "No method could be matched: metrics.csv lacks accuracy or displacement "
                                       "(sampling.record_displacement: true records it).") + "\n")
    written = []
    for path, text in ((md_path, markdown), (csv_path, table.to_csv(index=False)),
                       (matched_csv_path, matched.to_csv(index=False))):
        with atomic_open(path) as handle:  # a killed job leaves no half-written table
            handle.write(text.encode("utf-8"))
        written.append(Path(path))
    return written
