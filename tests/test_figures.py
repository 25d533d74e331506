"""The lowest-FID gallery: which scale it picks and what it hands the grid plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffguide import stages
from diffguide.figures import lowest_fid_scale


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
    return str(path)


@pytest.fixture
def gallery_inputs(tmp_path):
    csv = tmp_path / "metrics.csv"
    metrics_frame().to_csv(csv, index=False)
    paths = [write_samples(tmp_path / "w0.npz", 0.0, 10), write_samples(tmp_path / "w1.npz", 1.0, 200),
             write_samples(tmp_path / "w4.npz", 4.0, 90)]
    return str(csv), paths


def test_gallery_shows_the_samples_of_the_lowest_fid_scale(gallery_inputs, tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(stages, "sample_grid", lambda images, labels, scales, names, path, title, per_class,
                        scale_label: drawn.update(images=images, scales=scales, title=title, per_class=per_class))
    stages.best_scale_gallery(*gallery_inputs, "cfg", "fashion_mnist", str(tmp_path / "g.png"), per_class=2)
    assert drawn["scales"] == [1.0] and (drawn["images"][0] == 200).all()
    assert drawn["per_class"] == 2 and "w = 1" in drawn["title"] and "17.10" in drawn["title"]


def test_gallery_shows_every_sample_when_fewer_than_asked(gallery_inputs, tmp_path, caplog):
    out = tmp_path / "g.png"
    stages.best_scale_gallery(*gallery_inputs, "cfg", "fashion_mnist", str(out), per_class=5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.with_suffix(".pdf").exists()
    assert "only 3 samples; showing 3" in caplog.text


def test_gallery_says_when_metrics_and_samples_disagree(gallery_inputs, tmp_path):
    csv, paths = gallery_inputs
    with pytest.raises(ValueError, match="lowest-FID scale 1 of 'cfg' has no samples"):
        stages.best_scale_gallery(csv, [paths[0], paths[2]], "cfg", "fashion_mnist", str(tmp_path / "g.png"), 2)
