"""Findings 9-11 of ``python -m diffguide.findings``: semantic diffusion guidance (SDG).

sdg_text guides the unconditional model, as cg does, by the similarity of a noise-aware image
encoder's embedding with the class name's embedding, at scale gamma; sdg_image by the similarity
to a reference image's embedding (each sample's reference is a test image, and the sample's
label is the reference's class). Their rows in metrics.csv are the other methods' (scale =
gamma); sdg_image's rows also carry reference_similarity_classifier, each sample's cosine
similarity to its reference in the evaluation classifier's features, averaged, and their
accuracy is the rate at which a sample's class is its reference's.

9. sdg_text's sample accuracy rises with gamma, and 10. sdg_image's similarity to the reference
rises with gamma: least-squares slopes over the sweep, as findings 1, 3 and 8, each passing when
its 95% interval lies above 0.

11. sdg_text against classifier guidance at matched accuracy is a measured result, not a claim:
it passes whenever it can be measured and states the FID difference whichever way it falls. The
pair compared is, of every sdg_text gamma > 0 and every cg s > 0 (both guided: at 0 both are the
same unguided unconditional model), the pair whose sample accuracies are closest; ties go to the
smaller gamma, then the smaller s. Its effect is FID(sdg_text at gamma) - FID(cg at s) with the
paired half-sample 95% interval, and the accuracy gap of the same pair is printed beside it,
with its interval, so a reader sees how well the pair is matched. The pair is chosen once, from
the point estimates, and the interval is that of the chosen pair (the choice is not
re-made in each replicate: nearest-accuracy matching, unlike a minimum, has no value to take
within a replicate). Nearest pair rather than interpolation along cg's sweep: interpolating needs
accuracy monotone in s, which a small run's noisy sweep need not be.

A run whose guidance.methods lacks sdg_text or sdg_image gets these findings skipped (SKIP, not
counted in the exit code) with "... was not run", naming guidance.methods and the method's scales
key: similarity guidance is optional (the default run leaves it to `make run-sdg`), unlike the
papers' cond_cg, whose absence fails findings 5 and 7. A missing cg fails finding 11 as usual.
"""

from __future__ import annotations

import numpy as np

from diffguide.findings.framework import (REFERENCE_SIMILARITY, SLOPE_TEST, Columns, Finding, MissingData, Runs, Sweep,
                                          effect, fill_hint, format_scales, format_value, scales_key, signed, trend)
from diffguide.registry import method_symbol


class NotRun(MissingData):
    """An optional method (sdg_*) has no rows: its findings are skipped, not failed."""


OPTIONAL = ("sdg_text", "sdg_image")


def _ran(runs: Runs, method: str) -> None:
    """MissingData (NotRun for the optional methods) unless metrics.csv has rows of ``method``."""
    if not (runs.metrics["method"] == method).any():
        error = NotRun if method in OPTIONAL else MissingData
        raise error(f"{method} was not run (no {method} rows in metrics.csv): add {method} to "
                    f"guidance.methods and its scales to {scales_key(method)}")


def _sdg_trend(runs: Runs, name: str, method: str, column: str, label: str) -> Finding:
    try:
        _ran(runs, method)
    except NotRun as missing:
        return Finding(name, False, str(missing), SLOPE_TEST, skipped=True)
    return trend(runs, name, method, column, label)


def sdg_text_accuracy_rises(runs: Runs, cols: Columns) -> Finding:
    """Finding 9: sample accuracy rises with sdg_text's gamma."""
    return _sdg_trend(runs, f"accuracy rises with {method_symbol('sdg_text')} (sdg_text)", "sdg_text",
                      cols.accuracy, "accuracy")


def sdg_image_similarity_rises(runs: Runs, cols: Columns) -> Finding:
    """Finding 10: the samples' similarity to their reference images rises with sdg_image's gamma
    (always in the evaluation classifier's features, like accuracy)."""
    return _sdg_trend(runs, f"similarity to the reference image rises with {method_symbol('sdg_image')} (sdg_image)",
                      "sdg_image", REFERENCE_SIMILARITY, "reference similarity")


def _guided(runs: Runs, method: str, cols: Columns) -> tuple[Sweep, Sweep]:
    """Accuracy and FID of ``method``'s guided rows (scale > 0) that have both, by scale."""
    _ran(runs, method)
    symbol = method_symbol(method)
    accuracy, fid = runs.sweep(method, cols.accuracy), runs.sweep(method, cols.fid)
    rows = runs.metrics[runs.metrics["method"] == method]
    guided = sorted(set(rows["scale"][rows["scale"] > 0]))
    if not guided:
        raise MissingData(f"no {method} row at {symbol} > 0: add guided scales to {scales_key(method)}")
    both = [s for s in guided if s in accuracy.scales and s in fid.scales]
    for sweep in (accuracy, fid):
        empty = [s for s in guided if s not in sweep.scales]
        if not both and empty:
            raise MissingData(f"{sweep.column} is empty at {method} {symbol} = {format_scales(empty)}: "
                              f"{fill_hint(sweep.column)}")
    return accuracy.at(np.isin(accuracy.scales, both)), fid.at(np.isin(fid.scales, both))


MATCHED_TEST = ("FID(sdg_text) - FID(cg) at the guided pair (gamma > 0, s > 0) of closest accuracy, paired "
                "half-sample 95% interval; a measured result, reported whichever way it falls")


def sdg_text_vs_cg_at_matched_accuracy(runs: Runs, cols: Columns) -> Finding:
    """Finding 11: sdg_text's FID against classifier guidance's at matched sample accuracy (the
    module docstring says how the pair is matched). Passes whenever it can be measured."""
    name = "sdg_text vs classifier guidance: FID at matched accuracy (sdg_text, cg)"
    try:
        sdg_accuracy, sdg_fid = _guided(runs, "sdg_text", cols)
        cg_accuracy, cg_fid = _guided(runs, "cg", cols)
        gaps = np.abs(sdg_accuracy.values[:, None] - cg_accuracy.values[None, :])
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)  # row-major: ties to the smaller gamma, then s
        fid = effect("FID difference", "FID", lambda a, b: a[0] - b[0], [sdg_fid.at([i]), cg_fid.at([j])])
        accuracy = effect("accuracy gap", "accuracy", lambda a, b: a[0] - b[0],
                          [sdg_accuracy.at([i]), cg_accuracy.at([j])])
    except MissingData as missing:
        return Finding(name, False, str(missing), MATCHED_TEST, skipped=isinstance(missing, NotRun))
    gamma, s = sdg_fid.scales[i], cg_fid.scales[j]
    verdict = "lower than" if fid.hi < 0 else "higher than" if fid.lo > 0 else "not distinguishable from"
    text, symbol = method_symbol("sdg_text"), method_symbol("cg")
    fid_text = signed(fid.value, fid.lo, fid.hi, label="FID")
    gap = signed(accuracy.value, accuracy.lo, accuracy.hi, label="accuracy")
    figures = (f"sdg_text's FID is {verdict} cg's at matched accuracy ({sdg_fid.values[i]:.2f} at {text} = {gamma:g} "
               f"vs {cg_fid.values[j]:.2f} at {symbol} = {s:g}, difference {fid_text[0]}, 95% CI "
               f"[{fid_text[1]}, {fid_text[2]}]); accuracy "
               f"{format_value(sdg_accuracy.values[i], 'accuracy')} vs "
               f"{format_value(cg_accuracy.values[j], 'accuracy')} (gap "
               f"{gap[0]}, 95% CI [{gap[1]}, {gap[2]}]), the closest in accuracy of {text} = "
               f"{format_scales(sdg_fid.scales)} and {symbol} = {format_scales(cg_fid.scales)}")
    return Finding(name, True, figures, MATCHED_TEST)


# By their stable numbers, after the papers' 1-8.
SDG_FINDINGS = {9: sdg_text_accuracy_rises, 10: sdg_image_similarity_rises, 11: sdg_text_vs_cg_at_matched_accuracy}
