"""What the figures show, read back from the written PNG (PIL) or the figure before it is saved,
not only that a file with PNG magic bytes exists."""

from __future__ import annotations

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffguide.reports import figures

GRAYS = (40, 120, 200)  # the value of every pixel of class 0, 1, 2's samples at the first scale


def grid_png(tmp_path, name="grid.png"):
    """A 3-class grid at two scales, one sample per class: class c is a flat image of GRAYS[c] at
    the first scale and of 255 - GRAYS[c] at the second; returned as an RGB array."""
    labels = np.array([2, 0, 1, 0, 1, 2])  # the first sample of each class is what a row shows
    first = np.stack([np.full((16, 16, 1), GRAYS[c], dtype=np.uint8) for c in labels])
    second = 255 - first
    path = tmp_path / name
    figures.plot_sample_grid([first, second], labels, [0.0, 3.0], ["zero", "one", "two"], path, "t", per_class=1,
                             scale_label="w = ")
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB")).astype(int)


def pixels_of(rgb, value, tolerance=2):
    """Row and column coordinates of the gray pixels of ``value``."""
    gray = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    return np.nonzero(gray & (np.abs(rgb[..., 0] - value) <= tolerance))


def test_sample_grid_draws_each_sample_at_its_gray_level_in_its_class_row_and_scale_column(tmp_path):
    rgb = grid_png(tmp_path)
    height, width, _ = rgb.shape
    assert 150 < height < 600 and 150 < width < 600  # about (2 * 0.9 + 1.2) x (3 * 0.9 + 0.6) in at 120 dpi
    centres = {}
    for value in GRAYS + tuple(255 - g for g in GRAYS):
        rows, cols = pixels_of(rgb, value)
        assert len(rows) > 1000, value  # a whole cell of that gray: drawn on the 0..255 scale, not renormalised
        centres[value] = rows.mean(), cols.mean()
    # Rows are classes 0, 1, 2 from the top; the second scale is the right-hand column.
    assert centres[GRAYS[0]][0] < centres[GRAYS[1]][0] < centres[GRAYS[2]][0]
    for g in GRAYS:
        assert centres[g][1] < width / 2 < centres[255 - g][1]
        assert centres[g][0] == pytest.approx(centres[255 - g][0], abs=2)  # the same row at both scales


def test_sample_grid_png_depends_on_the_samples(tmp_path):
    first = grid_png(tmp_path, "a.png")
    again = grid_png(tmp_path, "b.png")
    np.testing.assert_array_equal(first, again)  # deterministic
    labels = np.arange(3)
    images = np.zeros((3, 16, 16, 1), dtype=np.uint8)
    figures.plot_sample_grid([images], labels, [0.0], ["zero", "one", "two"], tmp_path / "black.png", "t")
    with Image.open(tmp_path / "black.png") as image:
        black = np.asarray(image.convert("RGB")).astype(int)
    assert len(pixels_of(black, 0)[0]) > 3000 and len(pixels_of(black, GRAYS[1])[0]) < 100  # text edges only


def write_log(path, losses):
    steps = np.arange(len(losses)) * 10
    path.write_text("step,loss,lr,images_per_s\n" + "".join(f"{s},{l},1e-3,100\n" for s, l in zip(steps, losses)))
    return path


def test_training_curves_plot_each_logs_losses_on_its_own_axis(tmp_path, monkeypatch):
    kept = {}
    save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, dpi=150: kept.update(fig=fig) or save(fig, path, dpi))
    diffusion = [1.0, 0.1, 0.01, 0.001]
    classifier = [2.3, 1.5, 0.9, 0.7, 0.6]
    paths = {"unconditional": write_log(tmp_path / "train_unconditional.csv", diffusion),
             "eval_classifier": write_log(tmp_path / "train_eval_classifier.csv", classifier)}
    figures.plot_training_curves(paths, tmp_path / "curves.png")
    uncond, clf = kept["fig"].axes
    np.testing.assert_allclose(uncond.get_lines()[0].get_xydata(), np.c_[np.arange(4) * 10, diffusion])
    np.testing.assert_allclose(clf.get_lines()[0].get_xydata(), np.c_[np.arange(5) * 10, classifier])
    assert (uncond.get_yscale(), clf.get_yscale()) == ("log", "linear")
    assert (uncond.get_ylabel(), clf.get_ylabel()) == ("MSE of eps", "cross-entropy")
    assert (uncond.get_title(), clf.get_title()) == ("unconditional", "eval classifier")
    with Image.open(tmp_path / "curves.png") as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    height, width, _ = rgb.shape
    assert 250 < height < 500 and 600 < width < 1000  # 7.2 x 3.2 in at 120 dpi, cropped to its contents
    assert rgb.std() > 10  # not a blank canvas


# --- labels that can be read: no collisions, one header per column, the axis says symlog ----------

def kept_figure(monkeypatch):
    """The figure a plot function saves, drawn and kept open for inspection."""
    kept = {}

    def keep(fig, path, dpi=150):
        fig.canvas.draw()
        kept["fig"] = fig

    monkeypatch.setattr(figures, "save_figure", keep)
    return kept


def extents(texts):
    """Each text's box in pixels: the text's own, without an annotation's leader line."""
    renderer = texts[0].figure.canvas.get_renderer()
    return [matplotlib.text.Text.get_window_extent(text, renderer) for text in texts]


def overlapping_pairs(texts) -> list[tuple[str, str]]:
    boxes = extents(texts)
    return [(texts[i].get_text(), texts[j].get_text()) for i in range(len(texts)) for j in range(i + 1, len(texts))
            if boxes[i].overlaps(boxes[j])]


def tradeoff_frame(rows) -> pd.DataFrame:
    """metrics.csv rows (method, scale, IS, FID) with +-0.1 intervals in both metrics."""
    frame = pd.DataFrame(rows, columns=["method", "scale", "is_classifier", "fid_classifier"])
    for column in ("is_classifier", "fid_classifier"):
        frame[f"{column}_lo"], frame[f"{column}_hi"] = frame[column] - 0.1, frame[column] + 0.1
    return frame


# The case that printed "20": cfg's w = 2 and cg's s = 0 a hair apart, both labelled up and right.
COLLIDING = [("cfg", 0.0, 5.0, 20.0), ("cfg", 1.0, 7.0, 12.0), ("cfg", 2.0, 8.0, 10.0), ("cfg", 4.0, 9.0, 14.0),
             ("cg", 0.0, 8.02, 10.05), ("cg", 1.0, 8.5, 9.0), ("cg", 10.0, 9.5, 11.0)]


@pytest.mark.parametrize("rows", [COLLIDING, [(m, s, 6 + 0.02 * i + 0.01 * j, 10 + 0.03 * i)  # everything in a clump
                                              for j, m in enumerate(("cfg", "cg", "cond_cg", "sdg_text"))
                                              for i, s in enumerate((0, 1, 3, 10, 30))]],
                         ids=["w=2 on s=0", "four curves in a clump"])
def test_tradeoff_point_labels_name_their_scale_and_never_overlap(monkeypatch, rows):
    kept = kept_figure(monkeypatch)
    figures.plot_tradeoff(tradeoff_frame(rows), "unused.png")
    ax = kept["fig"].axes[0]
    labels = [text for text in ax.texts if "=" in text.get_text()]
    symbols = {"cfg": "w", "cg": "s", "cond_cg": "s", "sdg_text": "\u03b3"}
    assert sorted(text.get_text() for text in labels) == sorted(f"{symbols[m]}={s:g}" for m, s, *_ in rows)
    assert overlapping_pairs(labels) == []
    axes_box = ax.get_window_extent()
    for box in extents(labels):  # inside the axes, where the legend (below them) is not
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1


def test_tradeoff_labels_would_have_collided_without_placement(monkeypatch):
    """The test above can fail: the same labels at one fixed offset (the old drawing) overlap."""
    kept = kept_figure(monkeypatch)
    monkeypatch.setattr(figures, "label_points", lambda ax, points, texts, *args: [
        ax.annotate(t, p, textcoords="offset points", xytext=(4, 4), fontsize=8) for p, t in zip(points, texts)])
    figures.plot_tradeoff(tradeoff_frame(COLLIDING), "unused.png")
    assert ("w=2", "s=0") in overlapping_pairs(kept["fig"].axes[0].texts)


def column_headers(fig):
    """(the image axes' column centres in pixels, the texts above the top row but the suptitle)."""
    renderer = fig.canvas.get_renderer()
    image_axes = [ax for ax in fig.axes if ax.images]
    centres = sorted({round((b.x0 + b.x1) / 2, 1) for b in (ax.get_window_extent(renderer) for ax in image_axes)})
    top = max(ax.get_window_extent(renderer).y1 for ax in image_axes)
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()
             and t is not fig._suptitle and t.get_window_extent(renderer).y0 >= top - 1]
    return centres, sorted(texts, key=lambda t: t.get_window_extent(renderer).x0)


def assert_one_header_per_column(fig, expected: list[str]):
    centres, headers = column_headers(fig)
    assert len(headers) == len(centres) == len(expected), [h.get_text() for h in headers]
    assert [h.get_text() for h in headers] == expected
    for centre, box in zip(centres, extents(headers)):
        assert (box.x0 + box.x1) / 2 == pytest.approx(centre, abs=1.5)  # centred on its own column
    assert overlapping_pairs(headers) == []


def samples(num_classes=3, per_class=2, value=100):
    labels = np.arange(num_classes * per_class) % num_classes
    return np.full((len(labels), 8, 8, 1), value, dtype=np.uint8), labels


def test_sample_grid_heads_every_column_with_its_own_scale(monkeypatch):
    """Two samples per scale: each of the two columns of a scale is headed by it (the grid used
    to head only the first of each pair)."""
    kept = kept_figure(monkeypatch)
    images, labels = samples(per_class=2)
    scales = [0.0, 30.0, 1000.0]
    figures.plot_sample_grid([images] * 3, labels, scales, ["a", "b", "c"], "unused.png", "t", per_class=2,
                             scale_label="\u03b3=")
    assert_one_header_per_column(kept["fig"], [f"\u03b3={s:g}" for s in scales for _ in range(2)])


def test_gallery_heads_each_of_its_columns(monkeypatch):
    kept = kept_figure(monkeypatch)
    images, labels = samples(per_class=10)
    figures.plot_sample_grid([images], labels, [3.0], ["a", "b", "c"], "unused.png", "t", per_class=10,
                             scale_label="s=")
    assert_one_header_per_column(kept["fig"], ["s=3"] * 10)


def test_reference_grid_heads_the_reference_column_and_every_scale_column(monkeypatch):
    kept = kept_figure(monkeypatch)
    images, _ = samples(num_classes=2, per_class=2)
    slots = np.arange(4) % 2
    figures.plot_reference_grid(images[:2], [images, images], slots, [0.0, 100.0], [0, 1], ["zero", "one"],
                                "unused.png", "t", per_reference=2, scale_label="\u03b3=")
    assert_one_header_per_column(kept["fig"], ["reference", "\u03b3=0", "\u03b3=0", "\u03b3=100", "\u03b3=100"])


def test_scale_prefix_and_point_labels_use_each_methods_symbol():
    assert [figures.scale_prefix(m) for m in ("cfg", "cfg_p0.5", "cg", "sdg_image")] == ["w=", "w=", "s=", "\u03b3="]
    assert figures.scale_text("cond_cg", 10.0) == "s=10"


@pytest.mark.parametrize("largest", [3.0, 30.0, *(pytest.param(v, marks=pytest.mark.slow) for v in (10.0, 100.0, 1000.0))])
def test_metrics_vs_scale_says_its_axis_is_symlog_and_its_ticks_do_not_collide(monkeypatch, largest):
    kept = kept_figure(monkeypatch)
    scales = [v for v in (0.0, 0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0) if v <= largest]
    frame = pd.DataFrame({"method": "cfg", "scale": scales})
    for j, column in enumerate(figures.SCALE_PANELS):
        frame[column] = np.arange(len(scales)) + j
        frame[f"{column}_lo"], frame[f"{column}_hi"] = frame[column] - 1, frame[column] + 1
    figures.plot_metrics_vs_scale(frame, "unused.png")
    axes = [ax for ax in kept["fig"].axes if ax.get_title()]
    assert {ax.get_xscale() for ax in axes} == {"symlog"}
    labelled = [ax for ax in axes if ax.get_xlabel()]
    assert labelled and all("symlog" in ax.get_xlabel() for ax in labelled)
    assert overlapping_pairs([ax.xaxis.label for ax in labelled]) == []
    for ax in labelled:  # the panels above share their x axis and print no tick labels
        ticks = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        assert [t.get_text() for t in ticks] == [f"{v:g}" for v in figures.symlog_ticks(largest)]
        assert overlapping_pairs(ticks) == [], [t.get_text() for t in ticks]
