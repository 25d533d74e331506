"""Figures: the FID-vs-IS trade-off (H&S Figure 4 / D&N Figure 5 style), each metric against the
guidance scale, fixed-noise sample grids across guidance scales (rows = classes, columns =
scales; H&S Figures 1 and 3 style) and training curves. Every figure is written as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .intervals import BOUNDS, bound_column  # noqa: E402
from .registry import method_label, parse_network  # noqa: E402

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


def plot_tradeoff(metrics: pd.DataFrame, path: str | Path, x: str = "is_classifier",
                  y: str = "fid_classifier") -> None:
    """One curve per guidance method through its scales, each point labelled with its scale and
    drawn with its 95% intervals in both metrics (error bars)."""
    frame = metrics.sort_values(["method", "scale"]).assign(guidance=lambda d: d["method"].map(method_label))
    sns.set_theme(style="whitegrid")
    palette = _palette(frame["guidance"])
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, rows in frame.groupby("guidance", sort=False):
        ax.errorbar(rows[x], rows[y], xerr=interval_errors(rows, x), yerr=interval_errors(rows, y), marker="o",
                    color=palette[label], label=label, capsize=2, elinewidth=0.8)
    for row in frame.itertuples():
        ax.annotate(f"{row.scale:g}", (getattr(row, x), getattr(row, y)), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("IS on the evaluation classifier (higher: more class-distinct)")
    ax.set_ylabel("FID on evaluation-classifier features (lower: better)")
    ax.set_title("Guidance trade-off: each point is one guidance scale (bars: 95% intervals)")
    ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


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


def plot_metrics_vs_scale(metrics: pd.DataFrame, path: str | Path, panels: dict[str, str] = SCALE_PANELS) -> None:
    """One panel per metric against the guidance scale, one line per method, its 95% interval a
    band. With several sampling settings (sampling.sweep) the line style tells them apart. The
    scale axis is symlog: linear in [0, 1], where w and small s live, logarithmic beyond."""
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
    ticks = [v for v in (0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if v <= frame["scale"].max()]
    for ax in grid.axes.flat:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_xlim(left=0)
    grid.set_titles("{col_name}")
    grid.set_axis_labels("guidance scale (w, s or gamma)", "")
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


def plot_sample_grid(images_by_scale: list[np.ndarray], labels: np.ndarray, scales: list[float],
                class_names: list[str], path: str | Path, title: str, per_class: int = 1,
                scale_label: str = "") -> None:
    """Rows are classes; for each scale, ``per_class`` columns of the first samples of that class.
    Sample i has the same initial noise at every scale, so a row shows one noise across scales.
    Each scale's first column is headed ``scale_label`` + the scale (e.g. "w = 1")."""
    num_classes = len(class_names)
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    fig, axes = plt.subplots(num_classes, len(scales) * per_class, squeeze=False,
                             figsize=(0.9 * len(scales) * per_class + 1.2, 0.9 * num_classes + 0.6))
    for col, (scale, images) in enumerate((s, im) for s, im in zip(scales, images_by_scale) for _ in range(per_class)):
        for row in range(num_classes):
            ax = axes[row, col]
            image = images[picks[row][col % per_class]]
            ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0 and col % per_class == 0:
                ax.set_title(f"{scale_label}{scale:g}", fontsize=9, loc="left" if per_class > 4 else "center")
            if col == 0:
                ax.set_ylabel(class_names[row], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_reference_grid(references: np.ndarray, images_by_scale: list[np.ndarray], slots: np.ndarray,
                        scales: list[float], row_slots: list[int], row_names: list[str], path: str | Path, title: str,
                        per_reference: int = 1, scale_label: str = "") -> None:
    """SDG's layout (Liu et al. 2021, Figure 1): each row one reference image, then, for each
    scale, the first ``per_reference`` samples guided towards it (the same noise in every column)."""
    picks = [np.flatnonzero(slots == slot)[:per_reference] for slot in row_slots]
    columns = 1 + len(scales) * per_reference
    fig, axes = plt.subplots(len(row_slots), columns, squeeze=False,
                             figsize=(0.9 * columns + 1.2, 0.9 * len(row_slots) + 0.6))
    for row, slot in enumerate(row_slots):
        cells = [references[slot]] + [images[picks[row][k]] for images in images_by_scale for k in range(per_reference)]
        for col, image in enumerate(cells):
            ax = axes[row, col]
            ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
        axes[row, 0].set_ylabel(row_names[row], fontsize=7, rotation=0, ha="right", va="center")
    axes[0, 0].set_title("reference", fontsize=9)
    for k, scale in enumerate(scales):
        axes[0, 1 + k * per_reference].set_title(f"{scale_label}{scale:g}", fontsize=9)
    for row in range(len(row_slots)):  # the reference framed in red: it is not a sample
        axes[row, 0].spines[:].set_color("tab:red")
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
