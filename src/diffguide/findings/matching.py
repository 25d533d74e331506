"""Comparing guidance methods at matched strength, not at nominal scale (issue 28's training-free
comparison, issue 29's testbed). A method's scale means something of its own (D&N's s, DPS's zeta, an
interval's w, APG's w...), so a method is compared with a baseline where both guide equally strongly:
the baseline's value of a *matching* column (sample accuracy, or the guidance displacement) at one of
its scales s_ref is the target, and the method's values are read off its own sweep where its matching
column reaches that target, by linear interpolation between the two scales that bracket it. The
interpolation is redone within each paired half-sample replicate, target included, so the interval of
a difference covers the noise of both the target and the crossing. Xie et al. 2026 ("Guidance Matters",
ICLR 2026) compare guidance methods at matched strength the same way.

A sweep's first point may be borrowed: where a method's scale 0 samples exactly what another row's
scale 0 samples (the same unguided model, noise and clipping: the baseline's, or for a method on a
model trained at another p_uncond, cfg_p<p>'s; ``Matching.zero_from``), that row at 0 starts the
method's sweep when it has none of its own, so a target below its smallest scale is still bracketed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from diffguide.findings.framework import Columns, Effect, MissingData, Runs, Sweep, effect, scales_key
from diffguide.registry import method_symbol


def line(a0: float, a1: float, v0: float, v1: float, target: float) -> float:
    """The value at ``target`` on the line through (a0, v0) and (a1, v1); their mean where a0 = a1."""
    if a1 == a0:
        return float((v0 + v1) / 2)
    return float(v0 + (v1 - v0) * (target - a0) / (a1 - a0))


def crossing(levels: np.ndarray, values: np.ndarray, target: float) -> tuple[float, bool]:
    """``values`` where ``levels`` (a sweep's matching column, in scale order) first reaches
    ``target``, linearly interpolated between the scale that reaches it and the one before;
    (value, bracketed). A target outside the sweep's range is extrapolated from the end segment
    nearest it (bracketed False), so a replicate whose target falls just past the sweep still gives
    a number; a comparison is made only where the point estimate is bracketed."""
    above = np.flatnonzero(levels >= target)
    if len(levels) < 2:
        return float(values[0]), bool(levels[0] == target)
    if len(above) and above[0] > 0:
        i = above[0]
        return line(levels[i - 1], levels[i], values[i - 1], values[i], target), True
    if len(above) and levels[0] == target:  # reached exactly at the sweep's first scale
        return float(values[0]), True
    lo = 0 if len(above) else len(levels) - 2  # below the first scale's level, or never reached
    return line(levels[lo], levels[lo + 1], values[lo], values[lo + 1], target), False


def at_level(levels: np.ndarray, values: np.ndarray, target) -> np.ndarray | float:
    """``values`` at matching level ``target`` (``crossing``), for a sweep ([k] arrays, a scalar
    target) or its replicates ([k, B] arrays, a target per replicate [B])."""
    if levels.ndim == 1:
        return crossing(levels, values, float(np.asarray(target).reshape(-1)[0]))[0]
    targets = np.broadcast_to(np.asarray(target, dtype=float), (levels.shape[1],))
    return np.array([crossing(levels[:, b], values[:, b], targets[b])[0] for b in range(levels.shape[1])])


def aligned(first: Sweep, second: Sweep) -> tuple[Sweep, Sweep]:
    """The two sweeps restricted to the scales both have."""
    common = np.intersect1d(first.scales, second.scales)
    return first.at(np.isin(first.scales, common)), second.at(np.isin(second.scales, common))


def with_zero_of(runs: Runs, method: str, column: str, source: str) -> Sweep:
    """``method``'s sweep of ``column`` with ``source``'s scale-0 row first where it has no scale 0
    of its own (module docstring: only for a method whose scale 0 samples what the source's does)."""
    sweep = runs.sweep(method, column)
    if 0 in sweep.scales or method == source:
        return sweep
    base = runs.sweep(source, column)
    if 0 not in base.scales:
        raise MissingData(f"no unguided row: add 0 to {scales_key(source)} (every sweep starts from it)")
    zero = base.at(base.scales == 0)
    return Sweep(method, column, np.concatenate([zero.scales, sweep.scales]),
                 np.concatenate([zero.values, sweep.values]), np.concatenate([zero.replicates, sweep.replicates]),
                 sweep.num_samples)


@dataclass(frozen=True)
class Matching:
    """How methods are matched: against ``baseline``'s rows, by the column ``by`` (its label
    ``by_label`` in sentences), a method's sweep starting from the scale-0 row of ``zero_from(method)``
    where that names one (None: the sweep stands on its own scales)."""

    baseline: str
    by: str
    by_label: str
    zero_from: Callable[[str], str | None] = lambda method: None

    def sweep(self, runs: Runs, method: str, column: str) -> Sweep:
        source = self.zero_from(method)
        if source is not None:
            return with_zero_of(runs, method, column, source)
        return runs.sweep(method, column)

    def at(self, reference_scale: float) -> str:
        """'cfg at w = 2': the baseline's reference row in words."""
        return f"{self.baseline} at {method_symbol(self.baseline)} = {reference_scale:g}"


@dataclass(frozen=True)
class Matched:
    """One method where it matches the baseline at s_ref: its scale and ``column`` there
    (interpolated), the baseline's ``column`` at s_ref, and their paired difference (None where the
    method never reaches the target: then its shortfall, max level - target)."""

    method: str
    reference_scale: float
    target: float
    reached: bool
    scale: float
    value: float
    reference_value: float
    difference: Effect | None
    shortfall: Effect | None

    @property
    def target_accuracy(self) -> float:  # the name issue 28's readers use
        return self.target


def matched(runs: Runs, matching: Matching, method: str, column: str, reference_scale: float,
            direction: int = 1, label: str | None = None) -> Matched:
    """``method``'s ``column`` where its matching level reaches the baseline's at s = reference_scale,
    paired with the baseline's (module docstring); where it never reaches it, the shortfall of its
    highest level instead. ``direction``: the sign the difference must have for the claim tested
    (+1: the baseline's value is the lower, as for FID when the baseline is claimed better; -1 where
    the method is claimed better)."""
    levels, values = aligned(matching.sweep(runs, method, matching.by), matching.sweep(runs, method, column))
    base_levels, base_values = runs.sweep(matching.baseline, matching.by), runs.sweep(matching.baseline, column)
    ref_level = base_levels.at(base_levels.scales == reference_scale)
    ref_value = base_values.at(base_values.scales == reference_scale)
    if not len(ref_level.scales) or not len(ref_value.scales):
        raise MissingData(f"{matching.baseline} has no row at {method_symbol(matching.baseline)} = "
                          f"{reference_scale:g} with {matching.by} and {column}: add it to "
                          f"{scales_key(matching.baseline)}")
    target = float(ref_level.values[0])
    value, reached = crossing(levels.values, values.values, target)
    scale, _ = crossing(levels.values, levels.scales, target)
    label, reference = label or column, matching.at(reference_scale)
    if reached:
        difference = effect(f"{label}({method} at {matching.baseline}'s {matching.by_label} at "
                            f"{method_symbol(matching.baseline)} = {reference_scale:g}) - {label}({reference})", label,
                            lambda lm, vm, lb, vb: at_level(lm, vm, lb[0]) - vb[0],
                            [levels, values, ref_level, ref_value], direction=direction)
        return Matched(method, reference_scale, target, True, scale, value, float(ref_value.values[0]), difference,
                       None)
    shortfall = effect(f"max {matching.by_label}({method}, {method_symbol(method)} <= {levels.scales.max():g}) - "
                       f"{matching.by_label}({reference})", matching.by_label,
                       lambda lm, lb: lm.max(axis=0) - lb[0], [levels, ref_level],
                       direction=-1)
    return Matched(method, reference_scale, target, False, np.nan, np.nan, float(ref_value.values[0]), None, shortfall)


def by_accuracy(baseline: str, cols: Columns, zero_from: Callable[[str], str | None] | None = None) -> Matching:
    """Matching by sample accuracy (the evaluation classifier's); every sweep starts from the
    baseline's scale 0 unless ``zero_from`` says otherwise."""
    return Matching(baseline, cols.accuracy, "accuracy", zero_from or (lambda method: baseline))
