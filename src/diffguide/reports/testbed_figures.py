"""The guidance testbed's figures (issue 16, deliverable 3), from the testbed run's metrics.csv.

- ``plot_testbed_tradeoff``: FID against sample accuracy and against IS, two panels sharing the FID
  axis, one curve per method through its scales (cfg's from its own rows), every point with its
  95% intervals in both metrics as error bars and labelled with its scale ("w=2", "λ=0.6"), each
  method's lowest-FID point starred (over its guided rows, scale > 0; cfg's over all its rows, as
  ``findings.testbed.guided_rows`` chooses, the point the testbed table reports).
- ``plot_testbed_saturation``: the fraction of saturated pixels (metrics.saturated_fraction: a
  sample's pixels at 0 or 255, averaged over the samples) against the scale, with its 95%
  interval, one curve per method, and a dashed line at the test split's own saturation (real
  images have some: Fashion-MNIST's black background). Methods whose scale is another symbol
  (CFG++'s lambda in [0, 1]) get their own panel, its axis labelled with that symbol.

Intervals are metrics.csv's ``_lo`` / ``_hi`` columns: paired half-samples (delete-d jackknife) for
FID, IS and saturation, Wilson score intervals for sample accuracy.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from diffguide.base import integrity  # noqa: E402
from diffguide.findings.testbed import SATURATION, compared_methods, guided_rows  # noqa: E402
from diffguide.registry import method_label, method_symbol  # noqa: E402
from diffguide.reports.figures import SYMBOL_GLYPHS, interval_errors, label_points, save_figure  # noqa: E402

GLYPHS = {**SYMBOL_GLYPHS, "lambda": "\u03bb"}
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h")
FEATURE_NAMES = {"classifier": "evaluation-classifier features", "inception": "Inception features"}


def glyph(method: str) -> str:
    """The printed symbol of a method's scale: w, s, λ, γ."""
    symbol = method_symbol(method)
    return GLYPHS.get(symbol, symbol)


def point_text(method: str, scale: float) -> str:
    return f"{glyph(method)}={scale:g}"


def styles(methods: list[str]) -> dict[str, tuple]:
    """method -> (colour, marker), the same in both figures."""
    colours = sns.color_palette("tab10" if len(methods) <= 10 else "husl", n_colors=len(methods))
    return {m: (colours[i], MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


def _require(metrics: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics.csv has no {', '.join(missing)} column: it predates "
                         f"{'the saturation measure' if SATURATION in missing else 'these metrics'}; rerun the "
                         "evaluation (snakemake reruns it)")


def _method_rows(metrics: pd.DataFrame, columns: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(method, its rows sorted by scale with every column present) for each compared method."""
    out = []
    for method in compared_methods(metrics["method"].astype(str)):
        rows = metrics[metrics["method"] == method].dropna(subset=columns).sort_values("scale")
        if len(rows):
            out.append((method, rows))
    if not out:
        raise ValueError(f"metrics.csv has no rows of cfg or the testbed's methods with {', '.join(columns)}")
    return out


def best_row(rows: pd.DataFrame, method: str, fid: str) -> pd.Series | None:
    """The lowest-FID row among the method's guided rows (cfg's all), None without one."""
    guided = guided_rows(rows, method)
    return None if guided.empty else guided.loc[guided[fid].astype(float).idxmin()]


def plot_testbed_tradeoff(metrics: pd.DataFrame, path: str | Path, features: str = "classifier") -> None:
    """FID (y, both panels) against sample accuracy (left) and IS (right), module docstring."""
    fid, is_, accuracy = f"fid_{features}", f"is_{features}", "accuracy_classifier"
    _require(metrics, [fid, is_, accuracy])
    per_method = _method_rows(metrics, [fid, is_, accuracy])
    style = styles([m for m, _ in per_method])
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    where = FEATURE_NAMES.get(features, f"{features} features")
    labels = {accuracy: "sample accuracy (evaluation classifier; higher: more on-class)",
              is_: f"IS on {where} (higher: more class-distinct)"}
    for ax, x in zip(axes, (accuracy, is_)):
        for method, rows in per_method:
            colour, marker = style[method]
            ax.errorbar(rows[x], rows[fid], xerr=interval_errors(rows, x), yerr=interval_errors(rows, fid),
                        marker=marker, color=colour, label=method_label(method), capsize=2, elinewidth=0.8,
                        markersize=5)
            best = best_row(rows, method, fid)
            if best is not None:
                ax.scatter([best[x]], [best[fid]], marker="*", s=260, color=colour, edgecolor="black",
                           linewidth=0.7, zorder=5)
        ax.set_xlabel(labels[x])
        ax.margins(0.08)
    axes[0].set_ylabel(f"FID on {where} (lower: better)")
    handles, names = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], marker="*", linestyle="", markersize=13, color="grey", markeredgecolor="black"))
    names.append("lowest FID of the method (its best scale)")
    fig.suptitle("Guidance testbed: FID against sample accuracy and IS, one curve per method, each point one scale "
                 "(bars: 95% intervals)", fontsize=10)
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    for ax, x in zip(axes, (accuracy, is_)):
        points, texts, colours, priority, lines = [], [], [], [], []
        for method, rows in per_method:
            xy = rows[[x, fid]].to_numpy(float)
            points += list(xy)
            lines.append(xy)
            texts += [point_text(method, s) for s in rows["scale"]]
            colours += [style[method][0]] * len(rows)
            priority += [2.0 if s == rows["scale"].iloc[np.argmin(xy[:, 1])] else 1.0 for s in rows["scale"]]
        label_points(ax, np.array(points), texts, colours, np.array(priority), lines, fontsize=7)
    save_figure(fig, path)


def _symbol_groups(methods: list[str]) -> list[tuple[str, list[str]]]:
    """(symbol, its methods), the symbol of most methods first (cfg's w), then by first appearance."""
    groups: dict[str, list[str]] = {}
    for method in methods:
        groups.setdefault(method_symbol(method), []).append(method)
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def scale_axis_label(symbol: str, methods: list[str], main: bool) -> str:
    """The scale axis's label: its symbol, and for a panel other than the main one the methods it holds."""
    text = f"guidance scale {GLYPHS.get(symbol, symbol)}"
    return text if main else f"{text} ({', '.join(methods)})"


def plot_testbed_saturation(metrics: pd.DataFrame, path: str | Path, reference: float,
                            reference_name: str = "test split") -> None:
    """Saturation against the scale, one curve per method, one panel per scale symbol, the
    reference's (the test split's) saturation dashed (module docstring)."""
    _require(metrics, [SATURATION])
    per_method = _method_rows(metrics, [SATURATION])
    style = styles([m for m, _ in per_method])
    rows_of = dict(per_method)
    groups = _symbol_groups([m for m, _ in per_method])
    sns.set_theme(style="whitegrid")
    widths = [3.0] + [1.2] * (len(groups) - 1)  # the main symbol's panel (w: most methods) widest
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 + 2.4 * (len(groups) - 1), 4.6), sharey=True,
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    for i, (ax, (symbol, methods)) in enumerate(zip(axes[0], groups)):
        for method in methods:
            rows = rows_of[method]
            colour, marker = style[method]
            ax.errorbar(rows["scale"], rows[SATURATION], yerr=interval_errors(rows, SATURATION), marker=marker,
                        color=colour, label=method_label(method), capsize=2, elinewidth=0.8, markersize=5)
        ax.axhline(reference, color="black", linestyle="--", linewidth=1.0,
                   label=f"{reference_name} ({reference:.3f})")
        ax.set_xlabel(scale_axis_label(symbol, methods, main=i == 0))
        ax.margins(x=0.08)
    axes[0, 0].set_ylabel("saturated pixels (fraction at 0 or 255, mean per sample)")
    handles, names = [], []
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.suptitle("Guidance testbed: oversaturation against the scale (bars: 95% intervals; dashed: "
                 f"the {reference_name}'s level)", fontsize=10)
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def split_saturation(prepared_path: str | Path) -> float:
    """Mean saturated fraction of a prepared split's images (data.load_prepared, metrics.saturated_fraction)."""
    from diffguide.data import load_prepared
    from diffguide.evaluation.metrics import saturated_fraction

    return float(saturated_fraction(load_prepared(prepared_path).images).mean())


def draw_testbed_figures(metrics_csv: str | Path, test_split: str | Path, tradeoff_png: str | Path,
                         saturation_png: str | Path, features: str = "classifier") -> float:
    """Both figures from a run's metrics.csv and its prepared test split; returns the split's saturation."""
    metrics = integrity.read_csv(metrics_csv)
    metrics["method"] = metrics["method"].astype(str)
    reference = split_saturation(test_split)
    plot_testbed_tradeoff(metrics, tradeoff_png, features)
    plot_testbed_saturation(metrics, saturation_png, reference)
    return reference
