"""The testbed's comparison at matched strength (issue 29, item 4): each method against CFG where both
guide equally strongly, not at the same nominal w.

Most successors of CFG guide less than CFG at the same w (the interval, a schedule, rescaling,
projection, damping), so "lower FID at the same w" can be won by guiding less (Xie et al. 2026,
"Guidance Matters", ICLR 2026: most newer methods stop beating CFG once every method is calibrated to
the same effective strength). Here every method is matched to CFG twice, separately:

- **by accuracy**: where its sample accuracy (the evaluation classifier's) reaches CFG's at w_ref;
- **by displacement**: where its mean guidance displacement, RMS(eps_guided - eps(x_t, y)) over the
  chain (diffguide.guidance.displacement; sampling.record_displacement), reaches CFG's at w_ref,

at each reference strength w_ref in REFERENCE_WS (CFG's moderate w = 1 and strong w = 4). The
method's FID, precision, recall and saturation there are read off its sweep by linear interpolation
between the two scales that bracket the target, redone within each paired half-sample replicate
(diffguide.findings.matching), and differenced with CFG's row at w_ref: paired 95% intervals.

A method whose scale 0 samples exactly CFG's w = 0 (registry scale_zero "eps_model" on CFG's network,
held by tests/test_wiring.py) starts its sweep from CFG's w = 0 row, and its variant on the model
trained at p_uncond = p from cfg_p<p>'s (``zero_row``); CFG++ (lambda = 0 is the unconditional
model) and dynamic thresholding (it thresholds at every w) must bracket the targets with their own
scales.

A claim is judged here (``judge``): its FID part (FID lower, or for the saturation claims FID not
significantly higher) and its other part (recall not significantly lower; saturation lower) must hold
at every reference under both matchings, four comparisons; a target the method never reaches counts
against the claim, with the shortfall of its best level printed. CFG++ is matched by accuracy only
(NO_DISPLACEMENT: its guidance acts through its renoising direction, which the displacement does not
see).
"""

from __future__ import annotations

from dataclasses import dataclass

from diffguide.findings.framework import Columns, Effect, MissingData, Runs, signed
from diffguide.findings.matching import Matched, Matching, by_accuracy, matched
from diffguide.registry import REGISTRY, method_symbol, parse_method, variant_name

BASELINE = "cfg"
REFERENCE_WS = (1.0, 4.0)  # CFG's moderate and strong w: both must be in guidance.cfg_scales
DISPLACEMENT = "displacement"
SATURATION = "saturation"


def zero_row(method: str) -> str | None:
    """The row whose scale 0 samples exactly what ``method``'s scale 0 does (module docstring): cfg's
    w = 0 for a method whose scale 0 is CFG's network as it is, cfg_p<p>'s for its variant on the
    model trained at p_uncond = p (icg_p0 from cfg_p0); None where its scale 0 is something else
    (CFG++'s unconditional model, dynamic thresholding's thresholded one)."""
    parsed, cfg = parse_method(method), REGISTRY.methods[BASELINE]
    if parsed.method.scale_zero != "eps_model" or parsed.method.eps_model != cfg.eps_model:
        return None
    return variant_name(BASELINE, parsed.p_uncond)


# Methods whose guidance the eps displacement does not measure, and why: they are matched by accuracy only.
NO_DISPLACEMENT = {
    "cfgpp": "CFG++ guides through its renoising direction eps(x, null), not through the eps whose x0 it keeps "
             "(that eps moves towards the conditional one as lambda grows: its displacement falls to 0 at lambda = 1)",
}


def matchings(cols: Columns, method: str | None = None) -> tuple[Matching, ...]:
    """CFG matched by sample accuracy, and by mean guidance displacement (the latter not for a method
    in NO_DISPLACEMENT)."""
    by_accuracy_of_cfg = by_accuracy(BASELINE, cols, zero_row)
    if method is not None and parse_method(method).method.name in NO_DISPLACEMENT:
        return (by_accuracy_of_cfg,)
    return by_accuracy_of_cfg, Matching(BASELINE, DISPLACEMENT, "displacement", zero_row)


# What a claim's parts compare at matched strength, by its test (diffguide.registry.CLAIM_TESTS):
# (column key, kind) with kind "lower" (the interval below 0), "not_higher" (its lower end below 0:
# not significantly higher) or "not_lower" (its upper end above 0).
PARTS = {
    "lower_fid_at_same_w": (("fid", "lower"),),
    "lower_best_fid": (("fid", "lower"),),
    "lower_best_fid_keeping_recall": (("fid", "lower"), ("recall", "not_lower")),
    "less_saturation": ((SATURATION, "lower"), ("fid", "not_higher")),
}


def column_of(cols: Columns, key: str) -> str:
    return getattr(cols, key) if key in ("fid", "precision", "recall", "accuracy") else key


def part_holds(result: Effect, kind: str) -> bool:
    if kind == "lower":
        return bool(result.hi < 0)
    return bool(result.lo < 0) if kind == "not_higher" else bool(result.hi > 0)


NEEDS = {"lower": "< 0", "not_higher": "lower end < 0", "not_lower": "upper end > 0"}


def describe_part(result: Effect, kind: str) -> str:
    value, lo, hi = signed(result.value, result.lo, result.hi, label=result.label)
    state = "holds" if part_holds(result, kind) else "does not hold"
    return f"{result.label} {value} [{lo}, {hi}] (needs {NEEDS[kind]}: {state})"


@dataclass(frozen=True)
class Comparison:
    """One method at one matching and reference: the Matched result of each column compared."""

    matching: Matching
    reference_w: float
    results: dict  # column key -> Matched

    @property
    def first(self) -> Matched:
        return next(iter(self.results.values()))


def compare(runs: Runs, cols: Columns, method: str, matching: Matching, reference_w: float,
            keys=("fid", "precision", "recall", SATURATION)) -> Comparison:
    """``method`` matched to CFG at ``reference_w`` by ``matching``: each column in ``keys`` there,
    with its paired difference to CFG's (direction -1: the method's claims are that it is lower)."""
    results = {key: matched(runs, matching, method, column_of(cols, key), reference_w, direction=-1,
                            label=cols.label(column_of(cols, key)) if key != SATURATION else SATURATION)
               for key in keys}
    return Comparison(matching, reference_w, results)


def where(comparison: Comparison) -> str:
    return f"at cfg's {comparison.matching.by_label} {comparison.first.target:.3g} (w = {comparison.reference_w:g})"


def judge(runs: Runs, cols: Columns, method: str, test: str) -> tuple[bool, str]:
    """The claim of kind ``test`` at matched strength (module docstring): whether every part holds at
    every reference under both matchings, and the figures. MissingData where a matching column or
    CFG's reference row is absent."""
    parts = PARTS[test]
    holds, lines = True, []
    symbol = method_symbol(method)
    for matching in matchings(cols, method):
        for w_ref in REFERENCE_WS:
            comparison = compare(runs, cols, method, matching, w_ref, keys=tuple(key for key, _ in parts))
            first = comparison.first
            if not first.reached:
                holds = False
                lines.append(f"{where(comparison)}: never reached ({first.shortfall.describe()})")
                continue
            texts = []
            for key, kind in parts:
                result = comparison.results[key].difference
                holds &= part_holds(result, kind)
                texts.append(describe_part(result, kind))
            lines.append(f"{where(comparison)}, {symbol} = {first.scale:.3g}: " + ", ".join(texts))
    name = parse_method(method).method.name
    if name in NO_DISPLACEMENT:
        lines.append(f"not matched by displacement: {NO_DISPLACEMENT[name]}")
    return holds, "; ".join(lines)


def reference_rows_present(runs: Runs) -> None:
    """MissingData naming guidance.cfg_scales unless CFG ran every reference w."""
    scales = set(runs.metrics.loc[runs.metrics["method"] == BASELINE, "scale"].astype(float))
    absent = [w for w in REFERENCE_WS if w not in scales]
    if absent:
        raise MissingData(f"the matched comparison needs cfg at w = {', '.join(f'{w:g}' for w in absent)}: add "
                          f"{'them' if len(absent) > 1 else 'it'} to guidance.cfg_scales")
