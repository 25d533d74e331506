"""The evaluation stage on a tiny random classifier: every metric gets its interval beside it, the
replicates file holds the halves, reruns are byte-identical, and gathering keeps the rows apart."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffguide.base.integrity import record
from diffguide.evaluation import metrics
from diffguide.evaluation.intervals import REPLICATES
from diffguide.models import kinds
from diffguide.pipeline.stages.evaluate import INCEPTION_COLUMNS, evaluate, gather_metrics

CLASSIFIER_METRICS = ["fid_classifier", "kid_classifier", "is_classifier", "accuracy_classifier",
                      "precision_classifier", "recall_classifier", "reference_similarity_classifier", "saturation",
                      "displacement"]
# reference_similarity: only for sample sets with references; displacement: only where sampling recorded it
GUIDED_METRICS = [m for m in CLASSIFIER_METRICS if m not in ("reference_similarity_classifier", "displacement")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    torch.manual_seed(0)
    arch = {"channels": 1, "widths": [4, 8], "num_classes": 10}
    classifier = kinds.build_network("eval_classifier", arch)
    kinds.save_checkpoint(root / "eval_classifier.pt", "eval_classifier", arch, classifier.eval())
    rng = np.random.default_rng(0)
    test_images = rng.integers(0, 256, size=(60, 8, 8, 1), dtype=np.uint8)
    features, _ = metrics.classifier_outputs(classifier, test_images, "cpu")
    mu, sigma = metrics.feature_statistics(features)
    np.savez(root / "reference.npz", features=features, mu=mu, sigma=sigma)
    record(root / "reference.npz")
    paths = {}
    for method, scale in [("cfg", 0.0), ("cfg", 1.0)]:
        images = rng.integers(0, 200, size=(30, 8, 8, 1), dtype=np.uint8)
        paths[scale] = root / f"{method}_{scale}.npz"
        np.savez(paths[scale], images=images, labels=np.arange(30) % 10, method=method, scale=scale,
                 sampler="ddim", steps=4, timestep_spacing="linspace")
        record(paths[scale])
    return root, paths


def run(root, samples, name):
    row, reps = root / f"{name}.csv", root / f"{name}.replicates.csv"
    evaluate(str(samples), str(root / "reference.npz"), str(root / "eval_classifier.pt"), str(row), "cpu",
             seed=3, replicates_output=str(reps))
    return row, reps


def test_each_metric_has_its_interval_beside_it(inputs):
    root, paths = inputs
    row_path, reps_path = run(root, paths[1.0], "w1")
    row = pd.read_csv(row_path).iloc[0]
    columns = list(row.index)
    for name in CLASSIFIER_METRICS:
        at = columns.index(name)
        assert columns[at + 1:at + 3] == [f"{name}_lo", f"{name}_hi"]
    for name in GUIDED_METRICS:
        assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"], name
        assert row[f"{name}_lo"] < row[f"{name}_hi"], name
    # no references, no displacement recorded, Inception off: empty
    for name in ("reference_similarity_classifier", "displacement", *INCEPTION_COLUMNS):
        assert np.isnan(row[[name, f"{name}_lo", f"{name}_hi"]].astype(float)).all()
    assert row["inception_weights"] == "off" and row["num_samples"] == 30
    reps = pd.read_csv(reps_path)
    assert list(reps["metric"]) == CLASSIFIER_METRICS + list(INCEPTION_COLUMNS)
    assert [f"r{b}" for b in range(REPLICATES)] == list(reps.columns[-REPLICATES:])
    assert (reps.loc[reps.metric == "fid_classifier", "estimate"] == row["fid_classifier"]).all()


def test_a_rerun_writes_byte_identical_files(inputs):
    root, paths = inputs
    first, second = run(root, paths[0.0], "a"), run(root, paths[0.0], "b")
    assert first[0].read_bytes() == second[0].read_bytes()
    assert first[1].read_bytes() == second[1].read_bytes()


def test_gather_keeps_the_primary_rows_and_their_replicates(inputs, tmp_path):
    root, paths = inputs
    rows, reps = zip(*(run(root, path, f"g{scale}") for scale, path in paths.items()))
    # a second sampling setting's row: the same sampler and steps, guided-diffusion's ddim4 spacing
    other = pd.read_csv(rows[0]).assign(timestep_spacing="leading")
    other.to_csv(tmp_path / "ddpm.csv", index=False)
    record(tmp_path / "ddpm.csv")
    pd.read_csv(reps[0]).assign(timestep_spacing="leading").to_csv(tmp_path / "ddpm.replicates.csv", index=False)
    record(tmp_path / "ddpm.replicates.csv")
    out = {name: tmp_path / f"{name}.csv" for name in ("primary", "by_sampler", "replicates")}
    gather_metrics([*map(str, rows), str(tmp_path / "ddpm.csv")], str(out["primary"]), str(out["by_sampler"]),
                   {"sampler": "ddim", "steps": 4, "timestep_spacing": "linspace"}, [*map(str, reps), str(tmp_path / "ddpm.replicates.csv")],
                   str(out["replicates"]))
    assert len(pd.read_csv(out["by_sampler"])) == 3
    primary, gathered = pd.read_csv(out["primary"]), pd.read_csv(out["replicates"])
    assert list(primary["scale"]) == [0.0, 1.0] and set(primary["timestep_spacing"]) == {"linspace"}
    assert set(gathered["timestep_spacing"]) == {"linspace"}
    assert len(gathered) == 2 * (len(CLASSIFIER_METRICS) + len(INCEPTION_COLUMNS))


def test_a_sample_set_with_references_gets_its_mean_similarity_to_them_with_an_interval(inputs, tmp_path):
    """sdg_image's samples: the mean cosine similarity, in the evaluation classifier's features, of
    sample i to reference_images[reference_slots[i]], and the half-sample interval of a mean."""
    root, paths = inputs
    base = dict(np.load(paths[1.0]))
    references = base["images"][:5]  # samples 0-4 are their own references: similarity 1 for them
    slots = np.arange(30) % 5
    with_refs = tmp_path / "refs.npz"
    np.savez(with_refs, **base, reference_images=references, reference_slots=slots, reference_indices=np.arange(5))
    record(with_refs)
    row = pd.read_csv(run(root, with_refs, "refs")[0]).iloc[0]
    classifier = kinds.load_checkpoint(root / "eval_classifier.pt")[0]
    features = metrics.classifier_outputs(classifier, base["images"], "cpu")[0]
    expected = metrics.cosine_to_reference(features, features[slots])
    assert np.allclose(expected[:5], 1.0)
    assert row["reference_similarity_classifier"] == pytest.approx(expected.mean(), abs=1e-6)
    se = expected.std(ddof=1) / np.sqrt(30)  # a mean's interval: +- 1.96 se, up to the halves' noise
    half_width = (row["reference_similarity_classifier_hi"] - row["reference_similarity_classifier_lo"]) / 2
    assert 0.7 * 1.96 * se < half_width < 1.3 * 1.96 * se


def test_a_recorded_displacement_becomes_its_mean_with_the_interval_of_a_mean(inputs, tmp_path):
    root, paths = inputs
    displacement = np.random.default_rng(1).gamma(2.0, 0.05, size=30)
    with_displacement = tmp_path / "displaced.npz"
    np.savez(with_displacement, **dict(np.load(paths[1.0])), displacement=displacement)
    record(with_displacement)
    row_path, reps_path = run(root, with_displacement, "displaced")
    row = pd.read_csv(row_path).iloc[0]
    assert row["displacement"] == pytest.approx(displacement.mean(), rel=1e-12)
    se = displacement.std(ddof=1) / np.sqrt(30)
    half_width = (row["displacement_hi"] - row["displacement_lo"]) / 2
    assert 0.7 * 1.96 * se < half_width < 1.3 * 1.96 * se
    reps = pd.read_csv(reps_path).set_index("metric")
    halves = reps.loc["displacement", [f"r{b}" for b in range(REPLICATES)]].to_numpy(dtype=float)
    assert np.allclose(halves.mean(), displacement.mean(), rtol=0.05)  # each replicate: the mean of a half
    assert row["fid_classifier"] == pd.read_csv(run(root, paths[1.0], "plain")[0]).iloc[0]["fid_classifier"]


def test_cosine_to_reference_pairs_row_i_with_row_i():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    assert metrics.cosine_to_reference(a, b) == pytest.approx([1.0, 0.0, -1.0])
