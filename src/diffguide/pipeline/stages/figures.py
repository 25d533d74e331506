"""The figure stage: one function per figure rule, reading metrics.csv, the sample files or the
training logs and drawing with diffguide.reports.figures (PNG and PDF)."""

from __future__ import annotations

import logging

import numpy as np

from diffguide import data
from diffguide.base import integrity
from diffguide.registry import parse_method
from diffguide.reports.figures import (lowest_fid_scale, plot_metrics_vs_scale, plot_reference_grid, plot_sample_grid,
                                       plot_tradeoff, plot_training_curves, scale_prefix)

log = logging.getLogger("diffguide")


def tradeoff_figure(metrics_csv: str, output: str) -> None:
    """FID against IS of every method through its scales (H&S Figure 4 / D&N Figure 5 style)."""
    plot_tradeoff(integrity.read_csv(metrics_csv), output)


def metrics_vs_scale_figure(metrics_csv: str, output: str) -> None:
    plot_metrics_vs_scale(integrity.read_csv(metrics_csv), output)


def training_curves(csv_logs: dict[str, str], output: str) -> None:
    plot_training_curves(csv_logs, output)


def sample_grid(sample_paths: list[str], method: str, dataset_name: str, output: str, per_class: int) -> None:
    """Rows = classes, columns = the method's scales, the same initial noise in every column."""
    sets = [integrity.load_npz(p) for p in sample_paths]
    scales = [float(s["scale"]) for s in sets]
    order = np.argsort(scales)
    plot_sample_grid([sets[i]["images"] for i in order], sets[0]["labels"], [scales[i] for i in order],
                     list(data.DATASETS[dataset_name].class_names), output, parse_method(method).title, per_class,
                     scale_label=scale_prefix(method))


def reference_grid(sample_paths: list[str], method: str, dataset_name: str, output: str, per_reference: int) -> None:
    """Rows = one reference image of each class, then its samples across the method's scales."""
    sets = sorted((integrity.load_npz(p) for p in sample_paths), key=lambda s: float(s["scale"]))
    if "reference_images" not in sets[0]:
        raise ValueError(f"{sample_paths[0]} has no reference images: {method!r} is not guided by reference images")
    class_names = data.DATASETS[dataset_name].class_names
    num_classes = len(class_names)
    slots = sets[0]["reference_slots"]
    row_slots = list(range(min(num_classes, len(sets[0]["reference_indices"]))))  # slot c: class c's first reference
    names = [f"{class_names[c]}\n(test #{sets[0]['reference_indices'][c]})" for c in row_slots]
    parsed = parse_method(method)
    plot_reference_grid(sets[0]["reference_images"], [s["images"] for s in sets], slots, [float(s["scale"]) for s in sets],
                        row_slots, names, output, parsed.title, per_reference, scale_label=scale_prefix(method))


def best_scale_gallery(metrics_csv: str, sample_paths: list[str], method: str, dataset_name: str, output: str,
                       per_class: int, features: str = "classifier") -> None:
    """``per_class`` samples of every class at the scale where ``method``'s FID (on ``features``)
    is lowest: enough samples to judge whether the classes are recognisable there, where the
    fixed-noise grid shows only a few per scale."""
    scale, fid = lowest_fid_scale(integrity.read_csv(metrics_csv), method, f"fid_{features}")
    by_scale = {float(s["scale"]): s for s in map(integrity.load_npz, sample_paths)}
    if scale not in by_scale:
        raise ValueError(f"metrics.csv's lowest-FID scale {scale:g} of {method!r} has no samples among "
                         f"{sorted(by_scale)}; rerun snakemake so the metrics and samples agree")
    samples = by_scale[scale]
    class_names = list(data.DATASETS[dataset_name].class_names)
    fewest = int(np.bincount(samples["labels"], minlength=len(class_names)).min())
    if fewest == 0:
        raise ValueError(f"{by_scale[scale]} lacks a class; set sampling.num_samples >= {len(class_names)}")
    if fewest < per_class:
        log.warning("figures.gallery_per_class is %d but some class has only %d samples; showing %d",
                    per_class, fewest, fewest)
        per_class = fewest
    parsed = parse_method(method)
    symbol = parsed.method.symbol
    title = (f"{parsed.label.removesuffix(f' ({symbol})')} at its lowest FID ({fid:.2f}, {features} "
             f"features), {symbol} = {scale:g}: the first {per_class} samples of each class")
    plot_sample_grid([samples["images"]], samples["labels"], [scale], class_names, output, title, per_class,
                     scale_label=scale_prefix(method))
