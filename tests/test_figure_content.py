"""What the figures show, read back from the written PNG (PIL) or the figure before it is saved,
not only that a file with PNG magic bytes exists."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffguide import figures

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
