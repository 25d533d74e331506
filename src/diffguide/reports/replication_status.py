"""`python -m diffguide.reports.replication_status results/<run>/metrics.csv [--out PATH]`: findings 1-8
(Ho & Salimans 2022, Dhariwal & Nichol 2021) as one Markdown table, written by this script from
the run's numbers rather than typed by hand.

One row per finding: the claim with the paper's published numbers (from ``paper_results/``, the
same transcriptions the tables use), our effect(s) on the evaluation classifier's features as
``name = value [lo, hi]``, whether the finding holds there, and the same two columns on Inception
features where the run has them (an fid_inception column with values). Effects and verdicts are
``diffguide.findings.check``'s, so this table and `python -m diffguide.findings` cannot disagree.

metrics.csv and its replicates are read as `python -m diffguide.findings` reads them, with its
messages. Exit code 0 when all 8 findings hold on classifier features, 1 when one does not, 2 when
metrics.csv or its replicates cannot be read. Without ``--out`` the table goes to stdout; with
it, the file is replaced atomically.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from diffguide.base.atomic import atomic_open
from diffguide.findings import framework, papers, report
from diffguide.findings.framework import Finding, add_run_arguments, read_run_or_explain, signed
from diffguide.reports.tables import DN_FILE, HS_FILE, paper_table

PAPER_FINDINGS = len(papers.FINDINGS)  # 8: findings 1-8, the papers'
# H&S Table 1's column group the claims quote: p_uncond 0.1, the value H&S's Fig. 4 shows.
HS_P_UNCOND = 0.1
SHORT_NAMES = (
    "IS rises with w (cfg)",
    "FID is lowest at an interior w (cfg)",
    "accuracy rises with w (cfg)",
    "cg on the unconditional model: accuracy rises with s and FID improves",
    f"cg of the conditional model at a moderate s (<= {framework.MODERATE_SCALE:g}) raises accuracy",
    "unguided, the conditional model has the lower FID",
    f"cg of the conditional model at a moderate s (<= {framework.MODERATE_SCALE:g}) has Table 4's lowest FID",
    "as s grows (cg), precision rises and recall falls",
)
# How many effects each finding is judged on (2: the two margins; 4: accuracy slope and FID gain;
# 8: both slopes); fewer in Finding.effects means part of its data is missing.
EXPECTED_EFFECTS = (1, 2, 1, 2, 1, 1, 1, 2)
INCEPTION_FID = "fid_inception"


def _g(value) -> str:
    return f"{float(value):g}"


def paper_claims() -> list[str]:
    """Each of findings 1-8's claim with the published numbers it rests on, read from the CSVs."""
    hs_text = paper_table(HS_FILE, dtype=str)
    hs_num = hs_text.astype(float)
    keep = np.isclose(hs_num["p_uncond"], HS_P_UNCOND)
    hs_text, hs_num = hs_text[keep], hs_num[keep]
    order = np.argsort(hs_num["w"].to_numpy(), kind="stable")
    hs_text, hs_num = hs_text.iloc[order], hs_num.iloc[order]
    w = hs_num["w"].to_numpy()
    first, last = 0, len(w) - 1
    best = int(np.argmin(hs_num["fid"].to_numpy()))
    sweep = f"w = {_g(w[first])} .. {_g(w[last])}"
    hs = f"H&S Table 1 (p_uncond {HS_P_UNCOND:g})"
    is_rise = f"IS {hs_text['is'].iloc[first]} -> {hs_text['is'].iloc[last]} over {sweep}"

    dn_text = paper_table(DN_FILE, dtype=str)
    dn_num = dn_text.drop(columns="conditional").astype(float)
    conditional = dn_text["conditional"].str.strip().str.lower() == "true"
    scale = dn_num["scale"]

    def row(cond: bool, s: float) -> int:
        return int(np.flatnonzero((conditional == cond).to_numpy() & np.isclose(scale, s))[0])

    def text(i: int, column: str) -> str:
        return dn_text[column].iloc[i]

    unc = dn_num[~conditional].sort_values("scale")
    unc0, unc_top = row(False, unc["scale"].iloc[0]), row(False, unc["scale"].iloc[-1])
    guided_unc = unc[unc["scale"] > 0]
    unc_best = int(guided_unc["fid"].idxmin())
    unc_others = ", ".join(f"{text(i, 'fid')} at s = {_g(scale[i])}" for i in guided_unc.index if i != unc_best)
    cond0 = row(True, 0.0)
    moderate = dn_num[conditional.to_numpy() & (scale > 0).to_numpy() & (scale <= framework.MODERATE_SCALE).to_numpy()]
    cond_mod = int(moderate["fid"].idxmin())
    lowest = int(dn_num["fid"].idxmin())
    lowest_kind = "conditional" if conditional.iloc[lowest] else "unconditional"
    lowest_note = "lowest row" if lowest == cond_mod else f"lowest row is {lowest_kind} s = {_g(scale[lowest])}"
    dn = "D&N Table 4"
    return [
        f"{hs}: {is_rise}",
        f"{hs} / Fig. 4: FID lowest at w = {_g(w[best])} ({hs_text['fid'].iloc[best]}), against "
        f"{hs_text['fid'].iloc[first]} at w = {_g(w[first])} and {hs_text['fid'].iloc[last]} at w = {_g(w[last])}",
        f"H&S report no accuracy; fidelity rises with w ({hs}: {is_rise})",
        f"{dn}, unconditional: FID {text(unc0, 'fid')} at s = 0 -> {text(unc_best, 'fid')} at "
        f"s = {_g(scale[unc_best])}" + (f" ({unc_others})" if unc_others else "") + "; accuracy not tabulated",
        f"{dn}, conditional: accuracy not tabulated; precision {text(cond0, 'precision')} -> "
        f"{text(cond_mod, 'precision')}, IS {text(cond0, 'is')} -> {text(cond_mod, 'is')} at s = {_g(scale[cond_mod])}",
        f"{dn}: FID {text(cond0, 'fid')} conditional vs {text(unc0, 'fid')} unconditional",
        f"{dn}: FID {text(cond_mod, 'fid')} at s = {_g(scale[cond_mod])}, {lowest_note}",
        f"{dn}, unconditional: precision {text(unc0, 'precision')} -> {text(unc_top, 'precision')}, recall "
        f"{text(unc0, 'recall')} -> {text(unc_top, 'recall')} at s = {_g(scale[unc_top])}",
    ]


def effect_cell(finding: Finding, expected: int) -> str:
    """``name = value [lo, hi]`` of each effect, in findings' signed format; what is missing where
    the finding could not be measured (wholly or in part)."""
    parts = []
    for e in finding.effects:
        value, lo, hi = signed(e.value, e.lo, e.hi, label=e.label)
        parts.append(f"{e.name} = {value} [{lo}, {hi}]")
    if not finding.effects:
        parts.append(f"not measured: {finding.figures}")
    elif len(finding.effects) < expected:
        parts.append("the rest not measured (`python -m diffguide.findings` says what is missing)")
    return "; ".join(parts).replace("|", "\\|")


def verdict(finding: Finding) -> str:
    """The holds cell: "not measured" when the run lacks every row the finding needs, so a missing
    measurement is not read as a failed one (it still does not count as holding)."""
    if not finding.effects:
        return "not measured"
    return "yes" if finding.passed else "no"


def tally(results: list[Finding], where: str) -> str:
    """``held/8 hold on <where>``, with how many of the rest could not be measured."""
    unmeasured = sum(not f.effects for f in results)
    text = f"{sum(f.passed for f in results)}/{PAPER_FINDINGS} hold on {where}"
    return text + (f" ({unmeasured} not measured)" if unmeasured else "")


def has_inception(metrics: pd.DataFrame) -> bool:
    return INCEPTION_FID in metrics.columns and bool(pd.to_numeric(metrics[INCEPTION_FID], errors="coerce")
                                                     .notna().any())


def paper_findings(metrics: pd.DataFrame, replicates: pd.DataFrame, features: str) -> list[Finding]:
    """report.check's verdicts on findings 1-8 (the semantic-guidance ones that follow are not here)."""
    return [f for f in report.check(metrics, replicates, features) if f.number in papers.FINDINGS]


def _interval_note(replicates: pd.DataFrame) -> str:
    count = sum(1 for c in replicates.columns if c.startswith("r") and c[1:].isdigit())
    sizes = []
    for family, shown in (("classifier", "classifier"), ("inception", "Inception")):
        rows = replicates[replicates["metric"].astype(str).str.endswith(f"_{family}")]
        counts = sorted({int(n) for n in pd.to_numeric(rows["num_samples"], errors="coerce").dropna()})
        if counts:
            sizes.append(f"{' or '.join(map(str, counts))} ({shown} features)")
    samples = f" of n = {', '.join(sizes)} samples per row" if sizes else ""
    return (f"Intervals: 95%, effect -+ 1.96 SE, the SE from Shao & Wu's delete-d jackknife over B = {count} "
            f"paired half-sample replicates{samples} (metrics_replicates.csv: each replicate is the same half of "
            "the sample indices in every row, so shared noise cancels); a finding holds when each of its "
            "intervals lies wholly on the claimed side of 0.")


def status_table(metrics: pd.DataFrame, replicates: pd.DataFrame, source: str = "metrics.csv") -> tuple[str, int]:
    """The Markdown document and the number of findings 1-8 that hold on classifier features."""
    claims = paper_claims()
    classifier = paper_findings(metrics, replicates, "classifier")
    inception = paper_findings(metrics, replicates, "inception") if has_inception(metrics) else None
    lines = [
        f"# Replication status of findings 1-8 on {source}",
        "",
        "| # | finding | paper's claim (published numbers) | our effect, classifier features | holds | "
        "our effect, Inception features | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, (name, claim, ours) in enumerate(zip(SHORT_NAMES, claims, classifier)):
        expected = EXPECTED_EFFECTS[i]
        if inception is None:
            inc_effect, inc_holds = "not evaluated", "–"
        else:
            inc_effect = effect_cell(inception[i], expected)
            inc_holds = verdict(inception[i])
        lines.append(f"| {ours.number} | {name} | {claim} | {effect_cell(ours, expected)} | "
                     f"{verdict(ours)} | {inc_effect} | {inc_holds} |")
    held = sum(f.passed for f in classifier)
    if inception is None:
        count = (f"{tally(classifier, 'classifier features')}; Inception features not evaluated "
                 f"(metrics.csv has no {INCEPTION_FID} values)")
    else:
        count = f"{tally(classifier, 'classifier features')}, {tally(inception, 'Inception features')}"
    caveat = ("The papers' numbers are ImageNet at 50k samples on Inception-V3 features; ours are not "
              "comparable in size, only in direction.")
    if inception is not None:
        caveat = ("Accuracy is always the evaluation classifier's, so findings 3 and 5 and finding 4's accuracy "
                  "slope read the same numbers under both feature sets. " + caveat)
    lines += ["", _interval_note(replicates), caveat, "", count]
    return "\n".join(lines) + "\n", held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffguide.reports.replication_status",
                                     description=__doc__.split("\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--out", help="write the Markdown here, atomically (default: print it)")
    args = parser.parse_args(argv)

    run = read_run_or_explain(args)
    if run is None:
        return 2
    text, held = status_table(*run, args.metrics_csv)
    if args.out:
        with atomic_open(args.out) as handle:
            handle.write(text.encode("utf-8"))
        print(f"wrote {args.out}: {held}/{PAPER_FINDINGS} findings hold on classifier features")
    else:
        print(text, end="")
    return 0 if held == PAPER_FINDINGS else 1


if __name__ == "__main__":
    sys.exit(main())
