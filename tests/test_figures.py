"""The lowest-FID gallery (which scale it picks and what it hands the grid plot) and the 95%
intervals the trade-off and metric-vs-scale figures draw."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from diffguide.base.integrity import record
from diffguide.pipeline.stages import figures as figure_stage
from diffguide.reports import figures, report_layout
from diffguide.reports.figures import lowest_fid_scale


def metrics_frame() -> pd.DataFrame:
    return pd.DataFrame({"method": ["cfg", "cfg", "cfg", "cg", "cg"], "scale": [0.0, 1.0, 4.0, 0.0, 5.0],
                         "fid_classifier": [18.0, 17.1, 21.0, 9.4, 8.3],
                         "fid_inception": [120.0, np.nan, 110.0, 100.0, 95.0]})


def test_lowest_fid_scale_picks_the_methods_own_minimum_and_skips_missing_values():
    assert lowest_fid_scale(metrics_frame(), "cfg") == (1.0, 17.1)
    assert lowest_fid_scale(metrics_frame(), "cg") == (5.0, 8.3)
    assert lowest_fid_scale(metrics_frame(), "cfg", "fid_inception") == (4.0, 110.0)


def test_lowest_fid_scale_names_the_method_when_it_has_no_fid():
    with pytest.raises(ValueError, match="fid_classifier values for method 'cond_cg'"):
        lowest_fid_scale(metrics_frame(), "cond_cg")


def write_samples(path, scale: float, value: int, per_class: int = 3) -> str:
    labels = np.arange(10 * per_class) % 10
    images = np.full((len(labels), 8, 8, 1), value, dtype=np.uint8)
    np.savez(path, images=images, labels=labels, scale=scale)
    return str(record(path))


@pytest.fixture
def gallery_inputs(tmp_path):
    csv = tmp_path / "metrics.csv"
    metrics_frame().to_csv(csv, index=False)
    record(csv)
    paths = [write_samples(tmp_path / "w0.npz", 0.0, 10), write_samples(tmp_path / "w1.npz", 1.0, 200),
             write_samples(tmp_path / "w4.npz", 4.0, 90)]
    return str(csv), paths


def test_gallery_shows_the_samples_of_the_lowest_fid_scale(gallery_inputs, tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(figure_stage, "plot_sample_grid", lambda images, labels, scales, names, path, title, per_class,
                        scale_label: drawn.update(images=images, scales=scales, title=title, per_class=per_class))
    figure_stage.best_scale_gallery(*gallery_inputs, "cfg", "fashion_mnist", str(tmp_path / "g.png"), per_class=2)
    assert drawn["scales"] == [1.0] and (drawn["images"][0] == 200).all()
    assert drawn["per_class"] == 2 and "w = 1" in drawn["title"] and "17.10" in drawn["title"]


def test_gallery_shows_every_sample_when_fewer_than_asked(gallery_inputs, tmp_path, caplog):
    out = tmp_path / "g.png"
    figure_stage.best_scale_gallery(*gallery_inputs, "cfg", "fashion_mnist", str(out), per_class=5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.with_suffix(".pdf").exists()
    assert "only 3 samples; showing 3" in caplog.text


def test_gallery_says_when_metrics_and_samples_disagree(gallery_inputs, tmp_path):
    csv, paths = gallery_inputs
    with pytest.raises(ValueError, match="lowest-FID scale 1 of 'cfg' has no samples"):
        figure_stage.best_scale_gallery(csv, [paths[0], paths[2]], "cfg", "fashion_mnist", str(tmp_path / "g.png"), 2)


# --- intervals drawn ------------------------------------------------------------------------------

def interval_frame() -> pd.DataFrame:
    """Two methods' sweeps; each interval is [value - 1 - i/10, value + 2 + i/10], asymmetric and
    different per row, so a bar or band from the wrong row or bound shows."""
    frame = pd.DataFrame({"method": ["cfg", "cfg", "cfg", "cg", "cg"], "scale": [0.0, 1.0, 4.0, 0.0, 5.0],
                          "sampler": "ddim", "steps": 25})
    for j, column in enumerate(figures.SCALE_PANELS):
        frame[column] = np.arange(5) * 2.0 + 10 * j
        frame[f"{column}_lo"] = frame[column] - 1 - np.arange(5) / 10
        frame[f"{column}_hi"] = frame[column] + 2 + np.arange(5) / 10
    return frame


@pytest.fixture
def captured(monkeypatch):
    """The figure a plot function saves, kept open for inspection."""
    kept = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, dpi=150: kept.update(fig=fig))
    return kept


def test_tradeoff_draws_each_points_intervals_as_error_bars(captured):
    frame = interval_frame()
    figures.plot_tradeoff(frame, "unused.png")
    ax = captured["fig"].axes[0]
    containers = {c.get_label(): c for c in ax.containers}
    assert set(containers) == {figures.method_label("cfg"), figures.method_label("cg")}
    _, _, (x_bars, y_bars) = containers[figures.method_label("cg")].lines
    cg = frame[frame.method == "cg"]
    np.testing.assert_allclose([s[:, 1] for s in y_bars.get_segments()], cg[["fid_classifier_lo", "fid_classifier_hi"]])
    np.testing.assert_allclose([s[:, 0] for s in x_bars.get_segments()], cg[["is_classifier_lo", "is_classifier_hi"]])


def test_metrics_vs_scale_draws_each_methods_interval_as_a_band(captured):
    frame = interval_frame()
    figures.plot_metrics_vs_scale(frame, "unused.png")
    axes = {ax.get_title(): ax for ax in captured["fig"].axes}
    bands = axes[figures.SCALE_PANELS["recall_classifier"]].collections
    assert len(bands) == 2  # one per method
    cfg = frame[frame.method == "cfg"]
    vertices = bands[0].get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(cfg["recall_classifier_lo"].min())
    assert vertices[:, 1].max() == pytest.approx(cfg["recall_classifier_hi"].max())


def test_figures_without_intervals_say_to_rerun_the_evaluation(tmp_path):
    frame = interval_frame().drop(columns=["fid_classifier_hi"])
    with pytest.raises(ValueError, match=r"fid_classifier_hi.*rerun the evaluation"):
        figures.plot_tradeoff(frame, tmp_path / "t.png")


# --- where each result sits in the HTML report ----------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_report_categories_come_in_the_papers_order_headline_first():
    """Snakemake's report sorts categories by name: the names' numbers give the papers' order."""
    assert sorted(report_layout.CATEGORIES) == list(report_layout.CATEGORIES)
    assert report_layout.CATEGORIES[0] == report_layout.HEADLINE
    headline = [name for name, entry in report_layout.ENTRIES.items() if entry["category"] == report_layout.HEADLINE]
    assert headline == ["fid_vs_is", "metrics_vs_scale"]


@pytest.mark.parametrize("method, category", [
    ("cfg", report_layout.CLASSIFIER_FREE), ("cfg_p0.5", report_layout.CLASSIFIER_FREE),
    ("cg", report_layout.CLASSIFIER), ("cond_cg", report_layout.CLASSIFIER),
    ("sdg_text", report_layout.SIMILARITY), ("sdg_image", report_layout.SIMILARITY)])
def test_a_methods_figures_go_to_its_papers_category_and_its_own_subcategory(method, category):
    wildcards = SimpleNamespace(method=method)
    for name in ("grid", "best_samples", "references"):
        entry = report_layout.report_entry(name)
        assert entry["category"](wildcards) == category
        assert entry["subcategory"](wildcards) == f"Samples of {method}"
    # "Samples of ..." sorts before the paper's table in the same category
    tables = [entry["subcategory"] for entry in report_layout.ENTRIES.values()
              if entry["category"] == category and entry["subcategory"]]
    assert all(f"Samples of {method}" < table for table in tables)


def test_every_report_entry_has_a_caption_and_is_flagged_by_a_rule():
    """Each entry's caption exists, and the rules flag every entry (metrics.csv and the tables'
    Markdown and LaTeX included) and no name that is not one."""
    rules = "".join(path.read_text() for path in (REPO / "workflow/rules").glob("*.smk"))
    flagged = set(re.findall(r'figure_outputs\("[^"]+", "([^"]+)"\)', rules))
    flagged |= set(re.findall(r'report_entry\("([^"{]+)"\)', rules))
    flagged |= {f"{name}_{ext}" for name in ("hs_table1", "dn_table4") for ext in ("md", "tex", "html")
                if 'report_entry(f"{name}_{ext}")' in rules}
    assert flagged == set(report_layout.ENTRIES)
    for name in report_layout.ENTRIES:
        entry = report_layout.report_entry(name)
        assert (REPO / "workflow/rules" / entry["caption"]).resolve().is_file(), entry["caption"]
        assert set(entry) == {"caption", "category", "subcategory", "labels"}
    labels = [next(iter(e["labels"].values())) for e in report_layout.ENTRIES.values()
              if e["category"] == report_layout.FILES]
    assert labels == sorted(labels) and labels[0].startswith("1. metrics.csv")
