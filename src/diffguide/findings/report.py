"""`python -m diffguide.findings results/<run>/metrics.csv`: do the papers' findings hold here,
beyond the noise of a finite sample set?

Checks eight findings of Ho & Salimans 2022 (classifier-free guidance, scale w) and Dhariwal &
Nichol 2021 (classifier guidance, scale s; Table 4), and three of semantic diffusion guidance
(``findings.sdg``: sdg_text and sdg_image, scale gamma), on one run's metrics.csv and prints a
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
effect -+ 1.96 SE with SE from Shao & Wu's delete-d jackknife (``diffguide.evaluation.intervals``), and a
finding passes only when its interval excludes 0 in the claimed direction. Findings that need
two effects (4, 8) or two margins (2) pass only when each does: an intersection-union test,
whose level stays 5% without correction. Minima and maxima over scales are taken within each
replicate, so the choice of the best scale is part of the noise the interval covers.

FID, IS, precision and recall come from the evaluation classifier's features by default
(``--features inception`` reads the Inception columns instead); sample accuracy is always the
evaluation classifier's.

``--set testbed`` checks, instead of findings 1-11, the guidance testbed's (``findings.testbed``,
numbered 12 onwards: each successor method's headline claim against CFG on the same models, with
the calibrated best-against-best comparison beside it), with the same exit codes; methods the run
lacks are skipped. ``--set training_free`` checks findings 20 to 22 (``findings.training_free``):
training-free guidance, and the second-order rule of classifier guidance, against classifier
guidance at matched sample accuracy, on the run of config/training_free.yaml.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from diffguide.findings.framework import (REFERENCE_SIMILARITY, Columns, Finding, Runs, add_run_arguments,
                                          is_registered, read_run_or_explain, run_findings)
from diffguide.findings.papers import FINDINGS
from diffguide.findings.sdg import SDG_FINDINGS
from diffguide.findings.testbed import TESTBED_FINDINGS
from diffguide.findings.training_free import TRAINING_FREE_FINDINGS
from diffguide.registry import REGISTRY


def all_findings() -> dict[int, Callable]:
    """The report's findings in their printed order: the papers' 1-8, then semantic diffusion
    guidance's 9-11."""
    return FINDINGS | SDG_FINDINGS


def testbed_findings() -> dict[int, Callable]:
    """The guidance testbed's findings (``--set testbed``), numbered after all_findings()."""
    return TESTBED_FINDINGS


# --set: which findings a run is checked for, and the number of the first.
def training_free_findings() -> dict[int, Callable]:
    """Training-free guidance against classifier guidance at matched accuracy (``--set training_free``,
    issue 28), numbered after the testbed's."""
    return TRAINING_FREE_FINDINGS


FINDING_SETS = {"papers": all_findings, "testbed": testbed_findings, "training_free": training_free_findings}



def check(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str = "classifier",
          finding_set: str = "papers") -> list[Finding]:
    return run_findings(FINDING_SETS[finding_set](), Runs(metrics, replicates), Columns.of(features))


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



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffguide.findings", description=__doc__.split("\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--features", choices=("classifier", "inception"), default="classifier",
                        help="feature network of the FID, IS, precision and recall columns (default: the evaluation "
                             "classifier; accuracy is always the evaluation classifier's)")
    parser.add_argument("--set", dest="finding_set", choices=tuple(FINDING_SETS), default="papers",
                        help="which findings: the papers' 1-11 (default), the guidance testbed's, 12 onwards "
                             "(each successor method's claim against CFG; run on the testbed run's metrics.csv), or "
                             "training_free, 20-22 (training-free guidance and the second-order rule against "
                             "classifier guidance at matched accuracy; on the run of config/training_free.yaml)")
    args = parser.parse_args(argv)

    run = read_run_or_explain(args)
    if run is None:
        return 2
    df, replicates = run
    path = Path(args.metrics_csv)

    print(f"Sweeps in {path} (FID, IS, precision and recall from {args.features} features, accuracy from the "
          "evaluation classifier; 95% intervals in brackets):")
    print(sweep_table(df, args.features, saturation=args.finding_set == "testbed"))
    print()
    results = check(df, replicates, args.features, args.finding_set)
    for finding in results:
        verdict = "SKIP" if finding.skipped else "PASS" if finding.passed else "FAIL"
        print(f"{verdict}  {finding.number}. {finding.name}. Test: {finding.test}. {finding.figures}")
    judged = [f for f in results if not f.skipped]
    held = sum(f.passed for f in judged)
    skipped = len(results) - len(judged)
    print(f"\n{held}/{len(judged)} findings hold (each significant at 95%)"
          + (f"; {skipped} skipped: their methods were not run" if skipped else ""))
    return 0 if held == len(judged) else 1


