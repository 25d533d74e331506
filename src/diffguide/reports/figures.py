"""Figures: the FID-vs-IS trade-off (H&S Figure 4 / D&N Figure 5 style), each metric against the
guidance scale, fixed-noise sample grids across guidance scales (rows = classes, columns =
scales; H&S Figures 1 and 3 style) and training curves. Every figure is written as PNG and PDF.
Every label can be read: point labels are placed so that none overlaps another (label_points),
every grid column is headed by its own scale, and a symlog axis says so in its label."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from diffguide.evaluation.intervals import BOUNDS, bound_column  # noqa: E402
from diffguide.registry import method_label, method_symbol, parse_network  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 150) -> None:
    """``path`` (PNG) and the same name with .pdf: a raster for the README and the report, a
    vector copy for a paper."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    fig.savefig(Path(path).with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)


def interval_columns(rows: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """The ``_lo`` and ``_hi`` columns of ``column``'s 95% interval in metrics.csv."""
    lo, hi = (bound_column(rows.columns, column, bound) for bound in BOUNDS)
    return rows[lo].astype(float), rows[hi].astype(float)


def interval_errors(rows: pd.DataFrame, column: str) -> np.ndarray:
    """[2, N] distances from each value down to its interval's low end and up to its high end,
    the form of matplotlib's ``xerr`` / ``yerr``."""
    lo, hi = interval_columns(rows, column)
    value = rows[column].astype(float)
    return np.stack([(value - lo).to_numpy(), (hi - value).to_numpy()])


def _palette(labels) -> dict:
    labels = list(dict.fromkeys(labels))
    return dict(zip(labels, sns.color_palette(n_colors=len(labels))))


# How a scale's symbol prints in a point label or a column header: "w=2", "s=10", "γ=30".
SYMBOL_GLYPHS = {"gamma": "\u03b3"}


def scale_prefix(method: str) -> str:
    """What a sample grid's column header puts before the scale: "w=", "s=", "γ="."""
    symbol = method_symbol(method)
    return f"{SYMBOL_GLYPHS.get(symbol, symbol)}="


def scale_text(method: str, scale: float) -> str:
    """A point's label, its method's symbol and scale: "w=2"."""
    return f"{scale_prefix(method)}{scale:g}"


def _rects_hit_circles(rects: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """[R] how many of the circles (centres [C, 2], one radius) each rect [R, 4] (x0, y0, x1, y1) touches."""
    if len(centres) == 0:
        return np.zeros(len(rects))
    dx = np.maximum(np.maximum(rects[:, None, 0] - centres[None, :, 0], 0), centres[None, :, 0] - rects[:, None, 2])
    dy = np.maximum(np.maximum(rects[:, None, 1] - centres[None, :, 1], 0), centres[None, :, 1] - rects[:, None, 3])
    return (dx ** 2 + dy ** 2 < radius ** 2).sum(axis=1)


def _rects_overlap(rects: np.ndarray, placed: list[np.ndarray], pad: float) -> np.ndarray:
    """[R] whether each rect overlaps (or comes within ``pad`` px of) any rect placed before."""
    if not placed:
        return np.zeros(len(rects), dtype=bool)
    other = np.array(placed)
    return ((rects[:, None, 0] < other[None, :, 2] + pad) & (other[None, :, 0] < rects[:, None, 2] + pad)
            & (rects[:, None, 1] < other[None, :, 3] + pad) & (other[None, :, 1] < rects[:, None, 3] + pad)).any(axis=1)


def label_points(ax, points: np.ndarray, texts: list[str], colors: list, priority: np.ndarray | None = None,
                 lines: list[np.ndarray] = (), fontsize: float = 8, marker_size: float = 6) -> list:
    """Label each point (data coordinates [N, 2]) with its text so that no two labels overlap and
    none covers a marker: a greedy search, in the spirit of adjustText, over offsets in 16
    directions at growing distances, each label inside the axes. A candidate that touches a label
    already placed is ruled out; among the rest the one covering the fewest markers, then the
    fewest points of ``lines`` (data coordinates, e.g. the curves and error bars), then the nearest,
    wins. Labels set away from their point get a thin leader line in its colour. ``priority``:
    higher labels are placed first (e.g. a curve's ends and its best point). The axes must have
    their final size (call after tight_layout): offsets are in points, the data in pixels."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72  # pixels per point
    anchors = ax.transData.transform(np.asarray(points, dtype=float))
    box = ax.get_window_extent(renderer)
    samples = [np.zeros((0, 2))]
    for line in lines:  # sample each segment every 2 px
        xy = ax.transData.transform(np.asarray(line, dtype=float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        for a, b in zip(xy[:-1], xy[1:]):
            steps = max(2, int(np.hypot(*(b - a)) / 2))
            samples.append(a + np.linspace(0, 1, steps)[:, None] * (b - a))
    samples = np.concatenate(samples)
    angles = np.deg2rad(np.arange(45, 405, 22.5))  # up-right first, then round the compass
    radii = np.array([5, 9, 14, 20, 28, 38, 50, 65, 85, 110])
    offsets = np.array([(r * np.cos(a), r * np.sin(a), r, a) for r in radii for a in angles])
    cos, sin = np.cos(offsets[:, 3]), np.sin(offsets[:, 3])
    ha = np.where(cos > 0.38, "left", np.where(cos < -0.38, "right", "center"))
    va = np.where(sin > 0.38, "bottom", np.where(sin < -0.38, "top", "center"))
    fx = np.select([ha == "left", ha == "center"], [0.0, 0.5], 1.0)
    fy = np.select([va == "bottom", va == "center"], [0.0, 0.5], 1.0)
    order = np.argsort(-np.asarray(priority if priority is not None else np.zeros(len(texts))), kind="stable")
    placed, annotations = [], [None] * len(texts)
    for i in order:
        probe = ax.text(0, 0, texts[i], fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        width, height = extent.width, extent.height
        probe.remove()
        x = anchors[i, 0] + offsets[:, 0] * px - fx * width
        y = anchors[i, 1] + offsets[:, 1] * px - fy * height
        rects = np.stack([x, y, x + width, y + height], axis=1)
        inside = (rects[:, 0] >= box.x0) & (rects[:, 2] <= box.x1) & (rects[:, 1] >= box.y0) & (rects[:, 3] <= box.y1)
        free = ~_rects_overlap(rects, placed, pad=1.5 * px)
        cost = (1e6 * ~(inside & free) + 1e3 * _rects_hit_circles(rects, anchors, marker_size / 2 * px + 1)
                + _rects_hit_circles(rects, samples, 1.0) + offsets[:, 2])
        best = int(np.argmin(cost))
        dx, dy, r, _ = offsets[best]
        leader = dict(arrowstyle="-", color=colors[i], lw=0.6, alpha=0.8, shrinkA=1, shrinkB=marker_size / 2 + 1)
        annotations[i] = ax.annotate(texts[i], points[i], xytext=(dx, dy), textcoords="offset points", ha=ha[best],
                                     va=va[best], fontsize=fontsize, color=colors[i],
                                     arrowprops=leader if r > radii[1] else None)
        placed.append(rects[best])
    return annotations


# The x axes a trade-off figure can have, with their labels.
TRADEOFF_AXES = {"is_classifier": "IS on the evaluation classifier (higher: more class-distinct)",
                 "accuracy_classifier": "sample accuracy (the evaluation classifier's; higher: more on-class)"}


def plot_tradeoff(metrics: pd.DataFrame, path: str | Path, x: str = "is_classifier",
                  y: str = "fid_classifier") -> list[str]:
    """One curve per guidance method through its scales, each point drawn with its 95% intervals
    in both metrics (error bars) and labelled with its scale ("w=2") in its curve's colour, the
    labels placed so that none overlaps another (label_points). ``x`` is one of TRADEOFF_AXES.
    Returns the curves' legend labels, in drawing order."""
    frame = metrics.sort_values(["method", "scale"]).assign(guidance=lambda d: d["method"].map(method_label))
    sns.set_theme(style="whitegrid")
    palette = _palette(frame["guidance"])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    points, texts, colors, priority, lines = [], [], [], [], []
    for label, rows in frame.groupby("guidance", sort=False):
        xerr, yerr = interval_errors(rows, x), interval_errors(rows, y)
        ax.errorbar(rows[x], rows[y], xerr=xerr, yerr=yerr, marker="o", color=palette[label], label=label,
                    capsize=2, elinewidth=0.8)
        xy = rows[[x, y]].to_numpy(dtype=float)
        lines.append(xy)
        lines += [np.array([[u - lo, v], [u + hi, v]]) for (u, v), lo, hi in zip(xy, *xerr)]  # the error bars
        lines += [np.array([[u, v - lo], [u, v + hi]]) for (u, v), lo, hi in zip(xy, *yerr)]
        points += list(xy)
        texts += [scale_text(m, s) for m, s in zip(rows["method"], rows["scale"])]
        colors += [palette[label]] * len(rows)
        key = np.zeros(len(rows))  # the curve's ends and its lowest FID are labelled first
        key[[0, -1]] = 1
        if np.isfinite(xy[:, 1]).any():
            key[np.nanargmin(xy[:, 1])] = 2
        priority += list(key)
    ax.set_xlabel(TRADEOFF_AXES[x])
    ax.set_ylabel("FID on evaluation-classifier features (lower: better)")
    ax.set_title("Guidance trade-off: each point is one guidance scale (bars: 95% intervals)", fontsize=10)
    ax.margins(0.08)
    ax.legend(title=None, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    fig.tight_layout()
    label_points(ax, np.array(points), texts, colors, np.array(priority), lines)
    save_figure(fig, path)
    return list(frame["guidance"].unique())


# Columns of metrics.csv plotted against the scale, with the direction that is better.
SCALE_PANELS = {"fid_classifier": "FID (lower better)", "is_classifier": "IS (higher better)",
                "precision_classifier": "precision (fidelity)", "recall_classifier": "recall (diversity)",
                "accuracy_classifier": "sample accuracy"}
# Drawn where a run has it: only sample sets guided towards reference images (sdg_image) have it.
OPTIONAL_PANELS = {"reference_similarity_classifier": "similarity to the reference (sdg_image)"}


def with_conditional_baseline(metrics: pd.DataFrame) -> pd.DataFrame:
    """cond_cg's s = 0 is the unguided conditional model, i.e. cfg's w = 0 row (the sweep does not
    sample it twice): copy that row in so the cond_cg curve starts from its baseline."""
    has_own_baseline = ((metrics["method"] == "cond_cg") & (metrics["scale"] == 0)).any()
    if "cond_cg" not in set(metrics["method"]) or has_own_baseline:
        return metrics
    baseline = metrics[(metrics["method"] == "cfg") & (metrics["scale"] == 0)].assign(method="cond_cg")
    return pd.concat([metrics, baseline], ignore_index=True)


def _long_with_intervals(frame: pd.DataFrame, panels: dict[str, str], keys: list[str]) -> pd.DataFrame:
    """One row per (point, metric): value, lo, hi and the panel's title as ``metric``."""
    parts = []
    for column, title in panels.items():
        lo, hi = interval_columns(frame, column)
        parts.append(frame[keys].assign(metric=title, value=frame[column], lo=lo, hi=hi))
    return pd.concat(parts, ignore_index=True)


# The scale axis of plot_metrics_vs_scale, which says that it is not linear (the caption says how).
SYMLOG_SCALE_LABEL = "scale w, s or \u03b3 (symlog)"


def symlog_ticks(largest: float) -> list[float]:
    """Tick values of a symlog scale axis (linear in [0, 1], logarithmic beyond) up to ``largest``:
    0, 0.5, 1, then 2, 5, 10, 20 below 50, else the powers of ten only, so that on a panel a few
    inches wide no two tick labels run into each other ("20", "50" and "100" did)."""
    decades = int(np.ceil(np.log10(largest))) if largest > 1 else 0
    beyond = [2, 5, 10, 20] if largest < 50 else [10 ** k for k in range(1, decades + 1)]
    return [v for v in [0, 0.5, 1, *beyond] if v <= largest]


def plot_metrics_vs_scale(metrics: pd.DataFrame, path: str | Path, panels: dict[str, str] = SCALE_PANELS) -> None:
    """One panel per metric against the guidance scale, one line per method, its 95% interval a
    band. With several sampling settings (sampling.sweep) the line style tells them apart. The
    scale axis is symlog, and its label says so: linear in [0, 1], where w and small s live,
    logarithmic beyond."""
    frame = with_conditional_baseline(metrics)
    frame = frame.assign(guidance=frame["method"].map(method_label))
    panels = panels | {column: title for column, title in OPTIONAL_PANELS.items()
                       if column in frame and frame[column].notna().any()}
    if {"sampler", "steps"} <= set(frame.columns):
        frame["sampling"] = frame["sampler"] + " " + frame["steps"].astype(str) + " steps"
        if "timestep_spacing" in frame.columns:
            frame["sampling"] += ", " + frame["timestep_spacing"].astype(str)
    many_samplings = "sampling" in frame and frame["sampling"].nunique() > 1
    long = _long_with_intervals(frame, panels, [c for c in ("guidance", "scale", "sampling") if c in frame])
    sns.set_theme(style="whitegrid")
    palette = _palette(long["guidance"])
    grid = sns.relplot(data=long, x="scale", y="value", hue="guidance", col="metric", col_wrap=3, palette=palette,
                       style="sampling" if many_samplings else None, kind="line", marker="o", errorbar=None,
                       facet_kws={"sharey": False}, height=2.8, aspect=1.2)
    bands = ["metric", "guidance"] + (["sampling"] if many_samplings else [])
    for (title, label, *_), rows in long.sort_values("scale").groupby(bands, sort=False):
        grid.axes_dict[title].fill_between(rows["scale"], rows["lo"], rows["hi"], color=palette[label], alpha=0.15,
                                           linewidth=0)
    ticks = symlog_ticks(frame["scale"].max())
    for ax in grid.axes.flat:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_xlim(left=0)
    grid.set_titles("{col_name}")
    grid.set_axis_labels(SYMLOG_SCALE_LABEL, "")
    grid.figure.suptitle("Evaluation-classifier metrics against the guidance scale (bands: 95% intervals)", y=1.02)
    save_figure(grid.figure, path)


def lowest_fid_scale(metrics: pd.DataFrame, method: str, fid_column: str = "fid_classifier") -> tuple[float, float]:
    """The scale of ``method``'s sweep with the lowest FID, and that FID: the point of the
    trade-off curve at which H&S (Figure 4) and D&N (Table 4) show their best samples."""
    rows = metrics[metrics.method == method].dropna(subset=[fid_column])
    if rows.empty:
        raise ValueError(f"metrics.csv has no {fid_column} values for method {method!r}")
    best = rows.loc[rows[fid_column].idxmin()]
    return float(best.scale), float(best[fid_column])


def _draw_image(ax, image: np.ndarray) -> None:
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([]), ax.set_yticks([])


def plot_sample_grid(images_by_scale: list[np.ndarray], labels: np.ndarray, scales: list[float],
                     class_names: list[str], path: str | Path, title: str, per_class: int = 1,
                     scale_label: str = "") -> None:
    """Rows are classes; for each scale, ``per_class`` columns of the first samples of that class.
    Sample i has the same initial noise at every scale, so a row shows one noise across scales.
    Every column is headed by its own scale, ``scale_label`` + the scale (e.g. "w=1"), centred on
    it: with several samples per scale each of them says which scale it is."""
    num_classes = len(class_names)
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    columns = [(scale, images, k) for scale, images in zip(scales, images_by_scale) for k in range(per_class)]
    fig, axes = plt.subplots(num_classes, len(columns), squeeze=False,
                             figsize=(0.9 * len(columns) + 1.2, 0.9 * num_classes + 0.6))
    for col, (scale, images, k) in enumerate(columns):
        for row in range(num_classes):
            _draw_image(axes[row, col], images[picks[row][k]])
        axes[0, col].set_title(f"{scale_label}{scale:g}", fontsize=8)
    for row in range(num_classes):
        axes[row, 0].set_ylabel(class_names[row], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_reference_grid(references: np.ndarray, images_by_scale: list[np.ndarray], slots: np.ndarray,
                        scales: list[float], row_slots: list[int], row_names: list[str], path: str | Path, title: str,
                        per_reference: int = 1, scale_label: str = "") -> None:
    """SDG's layout (Liu et al. 2021, Figure 1): each row one reference image, then, for each
    scale, the first ``per_reference`` samples guided towards it (the same noise in every column).
    The first column is headed "reference", every other column by its own scale."""
    picks = [np.flatnonzero(slots == slot)[:per_reference] for slot in row_slots]
    headers = ["reference"] + [f"{scale_label}{scale:g}" for scale in scales for _ in range(per_reference)]
    fig, axes = plt.subplots(len(row_slots), len(headers), squeeze=False,
                             figsize=(0.9 * len(headers) + 1.2, 0.9 * len(row_slots) + 0.6))
    for row, slot in enumerate(row_slots):
        cells = [references[slot]] + [images[picks[row][k]] for images in images_by_scale for k in range(per_reference)]
        for col, image in enumerate(cells):
            _draw_image(axes[row, col], image)
        axes[row, 0].set_ylabel(row_names[row], fontsize=7, rotation=0, ha="right", va="center")
        axes[row, 0].spines[:].set_color("tab:red")  # the reference framed in red: it is not a sample
    for col, header in enumerate(headers):
        axes[0, col].set_title(header, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def read_training_log(csv_path: str | Path) -> pd.DataFrame:
    """A training job's CSV log (step, loss, ...), or a ValueError naming it and the way back."""
    try:
        log = pd.read_csv(csv_path)
    except (FileNotFoundError, pd.errors.EmptyDataError) as err:
        model = Path(csv_path).parent.parent / "models" / f"{Path(csv_path).stem.removeprefix('train_')}.pt"
        raise ValueError(f"training log {csv_path} is missing or empty ({type(err).__name__}) although its model "
                         "is finished; retrain to rewrite both: snakemake --cores all --configfile <the config file of "
                         f"this run> --forcerun {model}") from err
    if log.empty or "loss" not in log:
        raise ValueError(f"training log {csv_path} has no loss rows; it is not a finished training job's log")
    return log


def plot_training_curves(csv_paths: dict[str, str | Path], path: str | Path) -> None:
    """One panel per network: training loss against step, from the CSV logs of the training loop.
    The eps-models' MSE falls over orders of magnitude and is plotted on a log axis; the
    classifiers' cross-entropy on a linear one. A glance shows a run that has not converged."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(csv_paths), squeeze=False, figsize=(3.6 * len(csv_paths), 3.2))
    for ax, (name, csv_path) in zip(axes[0], csv_paths.items()):
        log = read_training_log(csv_path)
        sns.lineplot(data=log, x="step", y="loss", ax=ax, marker="." if len(log) < 30 else None)
        diffusion = parse_network(name).network.loss == "diffusion"  # conditional_p<p> too
        if diffusion and (log["loss"] > 0).all():
            ax.set_yscale("log")
        ax.set_title(name.replace("_", " "))
        ax.set_ylabel("MSE of eps" if diffusion else "cross-entropy")
    fig.suptitle("Training loss (the logged minibatch losses)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
