"""The testbed's figures: what each panel draws (curves, best points, intervals, the test split's
saturation, the scale symbols on the axes), the files written, and where the report puts them."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from testbed_metrics import frame, sweeps, write_run

from diffguide import data
from diffguide.registry import method_label
from diffguide.reports import report_layout, testbed_figures


@pytest.fixture
def captured(monkeypatch):
    """The figures the plot functions would save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(testbed_figures, "save_figure", lambda fig, path: figures.append(fig))
    yield figures
    for fig in figures:
        plt.close(fig)


def curves(ax):
    """label -> (x, y) of each drawn curve (an error-bar curve's label is its container's)."""
    drawn = {c.get_label(): (np.asarray(c.lines[0].get_xdata(), float), np.asarray(c.lines[0].get_ydata(), float))
             for c in ax.containers}
    return drawn | {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.get_lines()
                    if not line.get_label().startswith("_")}


def test_tradeoff_draws_each_method_against_accuracy_and_is_and_stars_its_lowest_fid(captured):
    df = frame(sweeps())
    testbed_figures.plot_testbed_tradeoff(df, "unused.png")
    (fig,) = captured
    axes = fig.axes[:2]
    assert "sample accuracy" in axes[0].get_xlabel() and "IS" in axes[1].get_xlabel()
    assert "FID" in axes[0].get_ylabel()
    for ax, x in zip(axes, ("accuracy_classifier", "is_classifier")):
        drawn = curves(ax)
        assert set(drawn) == {method_label(m) for m in sweeps()}
        cfg = df[df["method"] == "cfg"]
        np.testing.assert_allclose(drawn[method_label("cfg")][0], cfg[x])
        np.testing.assert_allclose(drawn[method_label("cfg")][1], cfg["fid_classifier"])
        stars = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
        expected = [df[(df["method"] == m) & (df["scale"] == s)][[x, "fid_classifier"]].to_numpy()[0]
                    for m, s in (("cfg", 1), ("cfgpp", 0.2), ("autoguidance", 1), ("apg", 2))]
        assert len(stars) == len(sweeps())
        for point in expected:
            assert np.isclose(stars, point).all(axis=1).any(), point
        texts = {t.get_text() for t in ax.texts}
        assert {"w=0", "w=4", "\u03bb=0.2", "\u03bb=0.6"} <= texts  # each point labelled with its scale
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[-1].startswith("lowest FID") and method_label("cfg") in legend


def test_saturation_has_one_panel_per_scale_symbol_and_the_test_split_dashed(captured):
    df = frame(sweeps())
    testbed_figures.plot_testbed_saturation(df, "unused.png", reference=0.42)
    (fig,) = captured
    w_axis, lambda_axis = fig.axes[:2]
    assert w_axis.get_xlabel() == "guidance scale w"
    assert lambda_axis.get_xlabel() == "guidance scale \u03bb (cfgpp)"
    assert set(curves(lambda_axis)) == {method_label("cfgpp"), "test split (0.420)"}
    drawn = curves(w_axis)
    assert method_label("cfgpp") not in drawn and method_label("apg") in drawn
    np.testing.assert_allclose(drawn[method_label("apg")][1], [0.11, 0.15])
    for ax in (w_axis, lambda_axis):
        dashed = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
        assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), 0.42)


def test_a_metrics_csv_without_saturation_says_to_rerun_the_evaluation(captured):
    df = frame(sweeps()).drop(columns=["saturation"])
    with pytest.raises(ValueError, match="no saturation column.*rerun the evaluation"):
        testbed_figures.plot_testbed_saturation(df, "unused.png", reference=0.1)


def test_both_figures_are_written_from_the_run_and_the_test_split(tmp_path, monkeypatch):
    save = testbed_figures.save_figure  # figures.save_figure, at a low resolution to keep the test fast
    monkeypatch.setattr(testbed_figures, "save_figure", lambda fig, path: save(fig, path, dpi=40))
    metrics, _ = write_run(tmp_path)
    images = np.full((10, 8, 8, 1), 128, dtype=np.uint8)
    images[:, :2] = 0  # 16 of 64 pixels at 0
    images[:5, 7] = 255  # and 8 more in half the images
    split = data.PreparedData(images=images, labels=np.arange(10, dtype=np.int64), dataset="digits", split="test",
                              source="unit test", class_names=data.DATASETS["digits"].class_names)
    data.save_prepared(split, tmp_path / "test.npz")
    assert testbed_figures.split_saturation(tmp_path / "test.npz") == pytest.approx((24 / 64 + 16 / 64) / 2)
    outputs = tmp_path / "tradeoff.png", tmp_path / "saturation.png"
    testbed_figures.draw_testbed_figures(metrics, tmp_path / "test.npz", *outputs)
    for png in outputs:
        assert png.stat().st_size > 1000 and png.with_suffix(".pdf").is_file()


@pytest.mark.parametrize("method", report_layout.TESTBED_METHODS)
def test_the_testbed_methods_go_to_the_testbed_category_after_its_comparison(method):
    entry = report_layout.report_entry("grid")
    assert entry["category"](SimpleNamespace(method=method)) == report_layout.TESTBED
    subcategories = {e["subcategory"] for e in report_layout.ENTRIES.values() if e["category"] == report_layout.TESTBED}
    assert "Comparison with CFG" in subcategories  # the comparison first, the samples last
    assert min(subcategories) == "Comparison with CFG" and all(c < f"Samples of {method}" for c in subcategories)


def test_the_founding_methods_keep_their_categories():
    for method, category in (("cfg", report_layout.CLASSIFIER_FREE), ("cg", report_layout.CLASSIFIER),
                             ("cond_cg", report_layout.CLASSIFIER), ("sdg_text", report_layout.SIMILARITY)):
        assert report_layout.method_category(method) == category
    assert set(report_layout.TESTBED_METHODS) <= set(testbed_figures.compared_methods(report_layout.TESTBED_METHODS))
