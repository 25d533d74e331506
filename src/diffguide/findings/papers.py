"""Findings 1-8: the claims of Ho & Salimans 2022 (classifier-free guidance, scale w) and
Dhariwal & Nichol 2021 (classifier guidance, scale s; Table 4), each a function of a run's
sweeps that returns a `Finding` with its effect and 95% interval."""
from __future__ import annotations

import numpy as np

from diffguide.findings.framework import (MIN_SCALES, MODERATE_SCALE, SLOPE_TEST, Columns, Finding, MissingData, Runs,
                                          Sweep, effect, fill_hint, format_scales, trend)
from diffguide.registry import method_symbol


def is_rises_with_w(runs: Runs, cols: Columns) -> Finding:
    """Finding 1 (H&S Fig. 4 / Table 1): IS rises with w over the classifier-free sweep."""
    return trend(runs, "IS rises with w (cfg)", "cfg", cols.is_, "IS")


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
    figures = f"lowest FID {fid.values.min():.2f} at w = {overall:g} ({where} of w = {format_scales(fid.scales)}); "
    if overall != best:
        figures += f"lowest interior FID {fid.value(best):.2f} at w = {best:g}; "
    figures += "; ".join(m.describe() for m in margins)
    return Finding(name, all(m.holds for m in margins), figures, test, effects=tuple(margins))


def accuracy_rises_with_w(runs: Runs, cols: Columns) -> Finding:
    """Finding 3 (H&S's precision/diversity trade-off): sample accuracy rises with w."""
    return trend(runs, "accuracy rises with w (cfg)", "cfg", cols.accuracy, "accuracy")


def cg_unconditional(runs: Runs, cols: Columns) -> Finding:
    """Finding 4 (D&N Table 4, Fig. 3): classifier guidance of the unconditional model raises
    accuracy with s, and the best FID at some s > 0 is below the unguided s = 0."""
    name = "cg on the unconditional model raises accuracy with s and improves FID (cg)"
    test = f"{SLOPE_TEST}; FID(s = 0) - lowest FID at s > 0, paired half-sample 95% interval"
    accuracy = trend(runs, name, "cg", cols.accuracy, "accuracy")
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
            raise MissingData(f"{cg.column} is empty at cg s = 0 ({role}): {fill_hint(cg.column)}")
        raise MissingData(f"no cg row at s = 0 ({role}): add 0 to guidance.cg_scales")
    return cg.at(cg.scales == 0)


def _moderate_cond_cg(runs: Runs, column: str) -> Sweep:
    guided = runs.sweep("cond_cg", column)
    moderate = guided.at((guided.scales > 0) & (guided.scales <= MODERATE_SCALE))
    if not len(moderate.scales):
        raise MissingData(f"no cond_cg row at 0 < s <= {MODERATE_SCALE:g} (have s = "
                          f"{format_scales(guided.scales)}): add such a scale to guidance.cond_cg_scales")
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
    rises = trend(runs, name, "cg", cols.precision, "precision")
    falls = trend(runs, name, "cg", cols.recall, "recall", direction=-1)
    return Finding(name, rises.passed and falls.passed, f"{rises.figures}; {falls.figures}",
                   f"{SLOPE_TEST}, one for each", effects=(*rises.effects, *falls.effects))


# Findings 1-8, the papers' (H&S, D&N), by their stable numbers; findings.sdg.SDG_FINDINGS are 9-11.
FINDINGS = {1: is_rises_with_w, 2: fid_minimum_interior, 3: accuracy_rises_with_w, 4: cg_unconditional,
            5: cg_conditional_moderate, 6: conditional_beats_unconditional, 7: cond_cg_lowest_fid,
            8: precision_up_recall_down}

