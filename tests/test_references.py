"""Similarity guidance by reference image (sdg_image): which test images a sampling job guides
towards, what the sample file keeps of them, and the figure that shows them (SDG Figure 1 layout)."""

import numpy as np
import pytest

from diffguide import data
from diffguide.base.integrity import record
from diffguide.pipeline.stages.figures import reference_grid
from diffguide.pipeline.stages.sample import choose_references, sample_conditions
from diffguide.reports import figures


def test_references_are_a_seeded_class_balanced_choice_in_slot_order():
    labels = np.repeat(np.arange(3), 6)  # 6 test images per class
    chosen = choose_references(labels, per_class=2, num_classes=3, seed=0)
    assert list(labels[chosen]) == [0, 1, 2, 0, 1, 2]  # slot j * K + c is of class c
    assert len(set(chosen)) == 6
    assert np.array_equal(chosen, choose_references(labels, 2, 3, seed=0))
    assert not np.array_equal(chosen, choose_references(labels, 2, 3, seed=1))


def test_too_few_test_images_of_a_class_names_the_key_and_the_most_it_can_be():
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"sdg_references_per_class is 2, but the test split has 1 images of "
                                         r"class 1; lower it to at most 1"):
        choose_references(labels, per_class=2, num_classes=2, seed=0)


@pytest.fixture
def test_split(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 4)
    images = rng.integers(0, 256, size=(40, 8, 8, 1), dtype=np.uint8)
    split = data.PreparedData(images, labels, "digits", "test", "test", data.DATASETS["digits"].class_names)
    path = tmp_path / "test.npz"
    data.save_prepared(split, path)
    return path, split


def test_a_reference_guided_method_gets_slots_as_y_and_keeps_its_references(test_split):
    path, split = test_split
    labels, y, kept = sample_conditions("sdg_image", 25, 10, references_path=str(path), per_class=2, seed=0)
    assert np.array_equal(labels, np.arange(25) % 10)  # the same classes as every other method's samples
    assert np.array_equal(y, np.arange(25) % 20)  # the sampler's y: the reference slot
    assert np.array_equal(kept["reference_slots"], y)
    assert np.array_equal(split.labels[kept["reference_indices"]][y], labels)  # the reference is of the class
    assert np.array_equal(kept["reference_images"], split.images[kept["reference_indices"]])


def test_a_class_guided_method_gets_its_labels_as_y_and_keeps_nothing(test_split):
    labels, y, kept = sample_conditions("sdg_text", 25, 10, references_path=None, per_class=None, seed=0)
    assert np.array_equal(labels, y) and np.array_equal(labels, np.arange(25) % 10) and kept == {}


def test_the_reference_grid_puts_each_reference_before_its_samples(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    references = rng.integers(0, 256, size=(20, 8, 8, 1), dtype=np.uint8)
    slots = np.arange(30) % 20
    paths = []
    for scale in (10.0, 0.0):  # out of order: the figure sorts the scales
        images = rng.integers(0, 256, size=(30, 8, 8, 1), dtype=np.uint8)
        path = tmp_path / f"scale_{scale:g}.npz"
        np.savez(path, images=images, labels=slots % 10, scale=scale, reference_images=references,
                 reference_slots=slots, reference_indices=np.arange(100, 120))
        record(path)
        paths.append(path)
    drawn = {}
    monkeypatch.setattr("diffguide.pipeline.stages.figures.plot_reference_grid", lambda *args, **kw: drawn.update(args=args))
    reference_grid([str(p) for p in paths], "sdg_image", "digits", str(tmp_path / "grid.png"), per_reference=1)
    refs, by_scale, got_slots, scales, row_slots, names = drawn["args"][:6]
    assert scales == [0.0, 10.0] and row_slots == list(range(10)) and np.array_equal(got_slots, slots)
    assert names[3] == "3\n(test #103)"
    figures.plot_reference_grid(refs, by_scale, got_slots, scales, row_slots, names, tmp_path / "real.png", "t")
    assert (tmp_path / "real.png").stat().st_size > 0 and (tmp_path / "real.pdf").exists()


def test_the_reference_grid_refuses_samples_without_references(tmp_path):
    path = tmp_path / "scale_0.npz"
    np.savez(path, images=np.zeros((10, 8, 8, 1), np.uint8), labels=np.arange(10), scale=0.0)
    record(path)
    with pytest.raises(ValueError, match="has no reference images: 'sdg_text' is not guided by reference images"):
        reference_grid([str(path)], "sdg_text", "digits", str(tmp_path / "grid.png"), 1)
