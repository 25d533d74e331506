"""Findings 12 onwards of ``python -m diffguide.findings --set testbed``: the guidance testbed
(issue 16), each successor of classifier-free guidance against CFG on the same trained models.

**Each claim is judged at matched strength** (issue 29; diffguide.findings.testbed_matched): the
method where it reaches CFG's sample accuracy, and separately CFG's mean guidance displacement, at
w = 1 and at w = 4; its claim's parts must hold at all four. The paper's own test at nominal scale,
described next, is printed beside it (``TestbedFinding.nominal``) with the calibrated best-vs-best
comparison: a method that wins at the same w only by guiding less wins there and not here.

At nominal scale, each method's paper's headline claim, restated for this setting, is tested with the paired
half-sample 95% intervals of ``diffguide.findings`` (every row of a run shares its samples'
labels, initial noise and half-sample indices, so differences of rows are paired). Every
comparison is against cfg's rows of the same run. A claim "lowers FID" or "reduces saturation"
holds when its difference's interval lies wholly below 0; a claim "without raising FID" or
"without the loss of recall" holds when the difference is not significantly on the wrong side
(the interval's lower end below 0, or its upper end above 0, respectively). Claims with two
parts hold only when both do (an intersection-union test, level 5% without correction).

12. cfg_interval (Kynkaanniemi et al. 2024, arXiv 2404.07724): guidance only in a noise interval
    lowers FID at the same guidance weight: at the largest w both cfg and cfg_interval ran,
    FID(cfg_interval) - FID(cfg) < 0.
13. cfg_schedule (Wang et al. 2024, arXiv 2404.13040): a guidance-weight schedule (they favour
    one that rises as sampling proceeds, guidance.weight_schedule: linear_up) lowers FID at the
    same mean w: the same test.
14. autoguidance (Karras et al. 2024, arXiv 2406.02507): guiding by a weaker version of the model
    lowers FID without the loss of variety that CFG causes: best FID(autoguidance) - best
    FID(cfg) < 0, AND recall at autoguidance's best scale minus recall at cfg's best scale not
    significantly below 0 (its interval's upper end > 0).
15. cfgpp (Chung et al. 2024, arXiv 2406.08070): CFG++ reaches a better FID than CFG: best
    FID(cfgpp) - best FID(cfg) < 0 (its scale lambda is not CFG's w, so only the best points
    compare).
16. apg (Sadat et al. 2024, arXiv 2410.02416) and 17. cfg_rescale (Lin et al. 2023, arXiv
    2305.08891, sec. 3.4): the method reduces the oversaturation of strong guidance without
    costing FID: at the largest w both ran, saturation(method) - saturation(cfg) < 0 (saturation:
    the mean fraction of a sample's pixels at 0 or 255, metrics.saturated_fraction), AND
    FID(method) - FID(cfg) not significantly above 0 (its interval's lower end < 0).
18. dynamic_threshold (Saharia et al. 2022, Imagen sec. 2.3): dynamic thresholding beats static
    clipping at large w: at the largest w both ran, FID(dynamic_threshold) - FID(cfg) < 0 (cfg
    clips x0 statically, clip_x0).
19. cfg_zero_star (Fan et al. 2025, arXiv 2503.18886): the optimised scale s* and the zeroed first
    steps lower FID at the same w: the same test as 12.
23. tcfg (Kwon et al. 2025, arXiv 2503.18137, CVPR 2025): damping the unconditional prediction's
    tangential component lowers FID: the same test as 12 (20-22 are the training-free set's).
24. fdg (Sadat et al. 2025, arXiv 2506.19713): frequency-decoupled guidance improves FID and recall
    over CFG: the same test as 14.

The calibrated comparison. A method can win at a fixed w only because it guides less (the
interval, a schedule, rescaling and APG all weaken CFG at the same nominal w), so beside each
claim every finding prints the comparison that calibrates the scales: best FID(method) - best
FID(cfg), each at its own best scale (the lowest FID of its sweep), with the paired interval, and
says win (interval below 0), loss (above 0) or not distinguishable. The minima are taken within
each half-sample replicate (as finding 2's), so the choice of the best scale is part of the noise
the interval covers. A method's best is over its guided rows (scale > 0; its scale-0 row, where a
sweep has one, is an unguided model); cfg's best is over all its rows, w = 0 included: the
conditional model is what guidance has to beat. The comparison is reported, not counted: a
finding passes or fails by its paper's claim alone (for 14 and 15 the claim is this comparison).

Every method here is optional: one without rows in metrics.csv is skipped (SKIP, "... was not
run", not counted in the exit code), as findings.sdg's are. A run without cfg's rows, or where a
method and cfg share no guided w, fails the finding and says which config key adds the rows.
FID and recall come from ``--features`` (the testbed evaluates classifier features only);
saturation has no feature network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from diffguide.findings.framework import (Columns, Effect, Finding, MissingData, Runs, Sweep, effect, format_scales,
                                          format_value, scales_key, signed)
from diffguide.findings.sdg import NotRun
from diffguide.findings.testbed_matched import judge, reference_rows_present
from diffguide.registry import REGISTRY, Claim, method_symbol

BASELINE = "cfg"
SATURATION = "saturation"


def claims() -> dict[str, Claim]:
    """method -> its paper's claim as findings 12 onwards test it, from each method's declaration
    (diffguide.guidance.methods.<unit>; the testbed table prints it beside the results)."""
    return {name: method.claim for name, method in REGISTRY.methods.items() if method.claim is not None}


@dataclass
class TestbedFinding(Finding):
    """A testbed finding; ``missing``: it could not be tested (data absent), as opposed to tested and not holding."""

    __test__ = False  # not a pytest class
    missing: bool = False
    nominal: bool | None = None  # the paper's own test at nominal scale (None: not tested)


def verdict(finding: Finding) -> str:
    """The claim's status at matched strength in words, for the testbed table."""
    if finding.skipped:
        return "not run"
    if getattr(finding, "missing", False):
        return "not tested (data missing)"
    return "holds" if finding.passed else "does not hold"


def nominal_verdict(finding: Finding) -> str:
    """The paper's own test at nominal scale, in words."""
    if finding.skipped:
        return "not run"
    nominal = getattr(finding, "nominal", None)
    return "not tested" if nominal is None else "holds" if nominal else "does not hold"


def _ran(runs: Runs, method: str) -> None:
    """NotRun unless metrics.csv has rows of ``method`` (every testbed method is optional)."""
    if not (runs.metrics["method"] == method).any():
        raise NotRun(f"{method} was not run (no {method} rows in metrics.csv): add {method} to guidance.methods "
                     f"and its scales to {scales_key(method)} (config/testbed.yaml runs every testbed method)")


def candidates(sweep: Sweep) -> Sweep:
    """The rows among which a sweep's best scale is chosen: cfg's all (w = 0, the conditional model,
    included), another method's guided rows (scale > 0)."""
    if sweep.method == BASELINE:
        return sweep
    guided = sweep.at(sweep.scales > 0)
    if not len(guided.scales):
        symbol = method_symbol(sweep.method)
        raise MissingData(f"no {sweep.method} row at {symbol} > 0 with {sweep.column}: add guided scales to "
                          f"{scales_key(sweep.method)}")
    return guided


def aligned(runs: Runs, method: str, columns: tuple[str, ...]) -> list[Sweep]:
    """``method``'s candidate rows of each column, restricted to the scales where every column has a value."""
    sweeps = [candidates(runs.sweep(method, column)) for column in columns]
    common = set(sweeps[0].scales).intersection(*(s.scales for s in sweeps[1:]))
    if not common:
        raise MissingData(f"{method} has no scale with all of {', '.join(columns)}: rerun the evaluation of its "
                          "samples")
    return [s.at(np.isin(s.scales, sorted(common))) for s in sweeps]


def best_index(values: np.ndarray) -> np.ndarray:
    """Index of the lowest value along the first (scale) axis: an int for [k], [B] for replicates [k, B]."""
    return np.argmin(values, axis=0)


def at_best(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at the scale where ``key`` is lowest, per replicate for [k, B] arrays."""
    index = np.expand_dims(best_index(key), 0)
    return np.take_along_axis(values, index, axis=0)[0]


@dataclass(frozen=True)
class Calibrated:
    """best FID(method) - best FID(cfg), each at its own best scale, with its paired interval."""

    method: str
    scale: float
    fid: float
    cfg_scale: float
    cfg_fid: float
    difference: Effect

    @property
    def outcome(self) -> str:
        if self.difference.hi < 0:
            return "win"
        return "loss" if self.difference.lo > 0 else "not distinguishable"

    def describe(self) -> str:
        value, lo, hi = signed(self.difference.value, self.difference.lo, self.difference.hi, label="FID")
        symbol = method_symbol(self.method)
        return (f"calibrated against cfg at its own best scale: best FID {self.fid:.2f} at {symbol} = {self.scale:g} "
                f"vs cfg's best {self.cfg_fid:.2f} at w = {self.cfg_scale:g}, difference {value}, 95% CI "
                f"[{lo}, {hi}]: {self.outcome}")


def calibrated(runs: Runs, cols: Columns, method: str) -> Calibrated:
    """The calibrated comparison (module docstring): minima within each half-sample replicate."""
    _ran(runs, method)
    fid, base = candidates(runs.sweep(method, cols.fid)), runs.sweep(BASELINE, cols.fid)
    difference = effect(f"best FID({method}) - best FID(cfg)", "FID", lambda m, c: m.min(axis=0) - c.min(axis=0),
                        [fid, base], direction=-1)
    return Calibrated(method, float(fid.scales[best_index(fid.values)]), float(fid.values.min()),
                      float(base.scales[best_index(base.values)]), float(base.values.min()), difference)


def largest_common_w(method: Sweep, base: Sweep) -> float:
    """The largest guided w at which both sweeps have a value; MissingData naming the keys otherwise."""
    common = sorted(set(method.scales[method.scales > 0]) & set(base.scales))
    if not common:
        symbol = method_symbol(method.method)
        raise MissingData(f"{method.method} ({symbol} = {format_scales(method.scales)}) and cfg (w = "
                          f"{format_scales(base.scales)}) share no guided w with {method.column}: add one of "
                          f"{method.method}'s scales to guidance.cfg_scales (or the reverse, "
                          f"{scales_key(method.method)})")
    return common[-1]


def same_w(runs: Runs, method: str, column: str, label: str) -> tuple[float, Effect]:
    """``label``(method) - ``label``(cfg) at the largest guided w both ran, claimed < 0."""
    sweep, base = runs.sweep(method, column), runs.sweep(BASELINE, column)
    w = largest_common_w(sweep, base)
    return w, effect(f"{label}({method}) - {label}(cfg) at w = {w:g}", label, lambda m, c: m[0] - c[0],
                     [sweep.at(sweep.scales == w), base.at(base.scales == w)], direction=-1)


def not_significantly(result: Effect, side: int) -> tuple[bool, str]:
    """A non-inferiority part of a claim: ``result`` not significantly above 0 (side +1: its
    interval's lower end < 0) or below 0 (side -1: its upper end > 0)."""
    holds = bool(result.lo < 0) if side > 0 else bool(result.hi > 0)
    value, lo, hi = signed(result.value, result.lo, result.hi, label=result.label)
    need = "lower end < 0: not significantly above 0" if side > 0 else "upper end > 0: not significantly below 0"
    state = "holds" if holds else f"significantly {'above' if side > 0 else 'below'} 0"
    return holds, f"{result.name} = {value}, 95% CI [{lo}, {hi}] (needs its {need}; {state})"


def _finding(method: str, test: str, body: Callable[[Runs, Columns], tuple[bool, str]],
             claim_is_calibrated: bool = False) -> Callable:
    """A finding function of (runs, cols): SKIP when ``method`` was not run, FAIL with the message
    when data are missing, else the claim's verdict with the calibrated comparison beside it (its
    outcome alone where the claim's FID part is that comparison, ``claim_is_calibrated``)."""
    claim = REGISTRY.methods[method].claim
    name = f"{claim.claim} ({method} vs cfg; {claim.paper})"

    def check(runs: Runs, cols: Columns) -> Finding:
        try:
            _ran(runs, method)
            reference_rows_present(runs)
            passed, matched_figures = judge(runs, cols, method, claim.test)
        except NotRun as missing:
            return TestbedFinding(name, False, str(missing), test, skipped=True)
        except MissingData as missing:
            return TestbedFinding(name, False, f"at matched strength: {missing}", test, missing=True)
        nominal = None
        try:
            nominal, figures = body(runs, cols)
            figures = f"at nominal scale ({'holds' if nominal else 'does not hold'}): {figures}"
        except MissingData as missing:
            figures = f"at nominal scale: not tested, {missing}"
        try:
            result = calibrated(runs, cols, method)
            figures += (f"; calibrated comparison (the FID part above): {result.outcome}" if claim_is_calibrated
                        else f"; {result.describe()}")
        except MissingData as missing:
            figures += f"; calibrated comparison not possible: {missing}"
        return TestbedFinding(name, passed, f"at matched strength: {matched_figures} | {figures}",
                              f"{MATCHED_TEST} | {test}", nominal=nominal)

    check.__name__ = method
    check.__doc__ = f"{method}: {claim.claim} ({claim.paper}); the module docstring gives the test."
    return check


MATCHED_TEST = ("the claim at matched strength, where each part is judged: the method matched to cfg at w = 1 and "
                "4 by sample accuracy and, separately, by mean guidance displacement (linear interpolation over its "
                "sweep within each half-sample replicate), each part's paired 95% interval at all four; beside it, "
                "the paper's own test at nominal scale")

SAME_W_TEST = ("FID(method) - FID(cfg) at the largest guided w both ran, paired half-sample 95% interval; "
               "beside it best vs best")


def _lower_fid_at_same_w(method: str) -> Callable:
    def body(runs: Runs, cols: Columns) -> tuple[bool, str]:
        w, result = same_w(runs, method, cols.fid, "FID")
        fid, base = runs.sweep(method, cols.fid).value(w), runs.sweep(BASELINE, cols.fid).value(w)
        return result.holds, f"FID {fid:.2f} vs cfg's {base:.2f} at w = {w:g}: {result.describe()}"

    return _finding(method, SAME_W_TEST, body)


BEST_TEST = ("best FID(method) - best FID(cfg), each at its own lowest-FID scale, minima within each half-sample "
             "replicate, paired 95% interval")


def _lower_best_fid(method: str) -> Callable:
    def body(runs: Runs, cols: Columns) -> tuple[bool, str]:
        result = calibrated(runs, cols, method)
        symbol = method_symbol(method)
        return result.difference.holds, (f"best FID {result.fid:.2f} at {symbol} = {result.scale:g} vs cfg's "
                                         f"{result.cfg_fid:.2f} at w = {result.cfg_scale:g}: "
                                         f"{result.difference.describe()}")

    return _finding(method, BEST_TEST, body, claim_is_calibrated=True)


def _lower_best_fid_keeping_recall(method: str) -> Callable:
    def body(runs: Runs, cols: Columns) -> tuple[bool, str]:
        fid_m, recall_m = aligned(runs, method, (cols.fid, cols.recall))
        fid_c, recall_c = aligned(runs, BASELINE, (cols.fid, cols.recall))
        fid = effect(f"best FID({method}) - best FID(cfg)", "FID", lambda m, c: m.min(axis=0) - c.min(axis=0),
                     [fid_m, fid_c], direction=-1)
        recall = effect(f"recall at {method}'s best - recall at cfg's best", "recall",
                        lambda fm, rm, fc, rc: at_best(fm, rm) - at_best(fc, rc), [fid_m, recall_m, fid_c, recall_c])
        recall_holds, recall_text = not_significantly(recall, side=-1)
        i, j = best_index(fid_m.values), best_index(fid_c.values)
        symbol = method_symbol(method)
        figures = (f"best FID {fid_m.values[i]:.2f} at {symbol} = {fid_m.scales[i]:g} vs cfg's {fid_c.values[j]:.2f} "
                   f"at w = {fid_c.scales[j]:g}: {fid.describe()}; recall there "
                   f"{format_value(recall_m.values[i], 'recall')} vs "
                   f"{format_value(recall_c.values[j], 'recall')}: {recall_text}")
        return fid.holds and recall_holds, figures

    return _finding(method, f"{BEST_TEST}; recall at each best scale, the same way", body, claim_is_calibrated=True)


def _less_saturation(method: str) -> Callable:
    def body(runs: Runs, cols: Columns) -> tuple[bool, str]:
        saturation, fid_sweep = runs.sweep(method, SATURATION), runs.sweep(method, cols.fid)
        base_saturation, base_fid = runs.sweep(BASELINE, SATURATION), runs.sweep(BASELINE, cols.fid)
        both = fid_sweep.at(np.isin(fid_sweep.scales, saturation.scales))
        w = largest_common_w(both, base_fid.at(np.isin(base_fid.scales, base_saturation.scales)))
        less = effect(f"saturation({method}) - saturation(cfg) at w = {w:g}", "saturation", lambda m, c: m[0] - c[0],
                      [saturation.at(saturation.scales == w), base_saturation.at(base_saturation.scales == w)],
                      direction=-1)
        fid = effect(f"FID({method}) - FID(cfg) at w = {w:g}", "FID", lambda m, c: m[0] - c[0],
                     [fid_sweep.at(fid_sweep.scales == w), base_fid.at(base_fid.scales == w)])
        fid_holds, fid_text = not_significantly(fid, side=+1)
        figures = (f"saturation {format_value(saturation.value(w), 'saturation')} vs cfg's "
                   f"{format_value(base_saturation.value(w), 'saturation')} at w = {w:g}: {less.describe()}; FID "
                   f"{fid_sweep.value(w):.2f} vs {base_fid.value(w):.2f}: {fid_text}")
        return less.holds and fid_holds, figures

    return _finding(method, "saturation(method) - saturation(cfg) and FID(method) - FID(cfg) at the largest guided w "
                            "both ran, paired half-sample 95% intervals; beside them best vs best", body)


# How a claim is tested, by the name its declaration gives (diffguide.registry.CLAIM_TESTS).
CLAIM_TESTS = {"lower_fid_at_same_w": _lower_fid_at_same_w, "lower_best_fid": _lower_best_fid,
               "lower_best_fid_keeping_recall": _lower_best_fid_keeping_recall, "less_saturation": _less_saturation}


def findings_of(claimed: dict[str, Claim]) -> dict[int, Callable]:
    """number -> finding function, one per declared claim under the number its declaration gives
    (12 onwards, after the papers' findings 1-11; numbers are declared, so none is renumbered)."""
    return {claim.finding: CLAIM_TESTS[claim.test](method) for method, claim in claimed.items()}


CLAIMS = claims()
TESTBED_FINDINGS = findings_of(CLAIMS)


def check(runs: Runs, cols: Columns) -> dict[str, Finding]:
    """method -> its finding, in TESTBED_FINDINGS' order."""
    return {finding.__name__: finding(runs, cols) for _, finding in sorted(TESTBED_FINDINGS.items())}


def compared_methods(methods) -> list[str]:
    """The methods the testbed's figures and table compare, of those in ``methods``: cfg, then the
    testbed's (registry.TESTBED_METHODS) in registry order, each followed by its variants on the
    models trained at other p_uncond (cfg_p0, icg_p0: training.conditional.p_uncond_sweep), by p."""
    from diffguide.registry import TESTBED_METHODS, parse_method

    present = set(methods)
    variants = {}
    for name in present:
        try:
            parsed = parse_method(name)
        except ValueError:
            continue
        if parsed.p_uncond is not None:
            variants.setdefault(parsed.method.name, []).append((parsed.p_uncond, name))
    ordered = []
    for method in (BASELINE, *TESTBED_METHODS):
        ordered += [method] if method in present else []
        ordered += [name for _, name in sorted(variants.get(method, []))]
    return ordered


def guided_rows(rows, method: str):
    """The rows of ``method`` (a metrics.csv DataFrame's) among which its best scale is chosen, as
    ``candidates`` chooses: all of cfg's, another method's at scale > 0."""
    return rows if method == BASELINE else rows[rows["scale"] > 0]
