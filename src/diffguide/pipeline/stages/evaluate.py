"""The evaluation stage: the reference features of the real test split (once per run), one
metrics row, with a 95% interval per metric, for one sample set, and the gathering of the rows
into results/<run>/metrics.csv.

Each metric column ``m`` of metrics.csv has ``m_lo`` and ``m_hi`` beside it (see
``diffguide.evaluation.intervals`` for the half-sample scheme and config/README.md for what the interval
covers). The half-sample replicates themselves go to a second file per row, gathered into
``metrics_replicates.csv``: the findings compare rows through them, paired by sample index.
Every random draw (the KID subsets, the halves) comes from a generator seeded with the config
seed and the sample count, so two runs of one config write byte-identical files.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from diffguide import data
from diffguide.base import integrity
from diffguide.base.atomic import atomic_open
from diffguide.base.runtime import pick_device
from diffguide.evaluation import metrics
from diffguide.evaluation.intervals import Estimate, replicate_rows, row_columns
from diffguide.models import kinds

log = logging.getLogger("diffguide")

ORDER = ["sampler", "steps", "timestep_spacing", "method", "scale"]  # of the gathered rows
INCEPTION_METRICS = ("fid", "sfid", "kid", "is", "precision", "recall")
INCEPTION_COLUMNS = tuple(f"{m}_inception" for m in INCEPTION_METRICS)


def _write_csv(path: str, frame: pd.DataFrame) -> None:
    with atomic_open(path, checksum=True) as handle:
        handle.write(frame.to_csv(index=False).encode())


def _write_npz(path, **arrays) -> None:
    """Features: read by later rules, so written with their checksum."""
    with atomic_open(path, checksum=True) as handle:
        np.savez_compressed(handle, **arrays)


def reference_statistics(eval_classifier_path: str, test_path: str, output: str, device_name: str = "auto",
                         batch_size: int = 500) -> None:
    """Evaluation-classifier features of the real test split, computed once for every evaluation
    (rows in a seeded random order, so any prefix is an unbiased subset)."""
    device = pick_device(device_name)
    classifier, _ = kinds.load_checkpoint(eval_classifier_path, device)
    test_set = data.load_prepared(test_path)
    order = np.random.default_rng(0).permutation(len(test_set.labels))
    features, _ = metrics.classifier_outputs(classifier, test_set.images[order], device, batch_size)
    mu, sigma = metrics.feature_statistics(features)
    _write_npz(output, features=features, mu=mu, sigma=sigma)


def inception_reference(test_path: str, output: str, num_images: int, weights: str | None,
                        device_name: str = "auto", batch_size: int = 100) -> None:
    """Inception pool3 and sFID spatial features of a seeded random subset of the test split."""
    from diffguide.evaluation.inception import load_inception

    device = pick_device(device_name)
    inception = load_inception(weights, device=device)
    test_set = data.load_prepared(test_path)
    subset = np.random.default_rng(0).permutation(len(test_set.labels))[:num_images]
    out = inception.extract(test_set.images[subset], batch_size, spatial=True)
    _write_npz(output, features=out["features"], spatial=out["spatial"], weights=inception.name)
    log.info("Inception reference: %d test images through %s", len(subset), inception.name)


def classifier_estimates(samples, reference, classifier, device, batch_size: int, seed: int) -> dict[str, Estimate]:
    """FID, KID, IS, sample accuracy, precision and recall on the evaluation classifier, the
    saturation of the pixels (metrics.saturated_fraction), the similarity of each sample to
    its reference image (similarity guidance by image; empty for sample sets without references),
    and the mean guidance displacement (empty unless the samples recorded it).
    For those, accuracy is the rate at which the sample's class is its reference's (the label of
    sample i is its reference's class)."""
    features, logits = metrics.classifier_outputs(classifier, samples["images"], device, batch_size)
    by_features = metrics.feature_estimates(features, reference["features"], reference["mu"], reference["sigma"], seed)
    by_logits = metrics.logit_estimates(logits, samples["labels"], seed)
    by_features["reference_similarity"] = reference_similarity(samples, features, classifier, device, batch_size, seed)
    order = ("fid", "kid", "is", "accuracy", "precision", "recall", "reference_similarity")
    estimates = {f"{name}_classifier": (by_features | by_logits)[name] for name in order}
    # Pixels at the clip bounds and the guidance displacement: no network measures them, so they have
    # no feature suffix. The displacement exists where the sampling job recorded it
    # (sampling.record_displacement), else the column stays empty.
    n = len(samples["labels"])
    displacement = (metrics.displacement_estimate(samples["displacement"], seed) if "displacement" in samples
                    else Estimate.missing(n))
    return estimates | {"saturation": metrics.saturation_estimate(samples["images"], seed), "displacement": displacement}


def reference_similarity(samples, features, classifier, device, batch_size: int, seed: int) -> Estimate:
    """Mean cosine similarity, in the evaluation classifier's features, of each sample to the
    reference image it was guided towards (the sample file's reference_images[reference_slots])."""
    if "reference_images" not in samples:
        return Estimate.missing(len(features))
    reference_features, _ = metrics.classifier_outputs(classifier, samples["reference_images"], device, batch_size)
    return metrics.reference_similarity_estimate(features, reference_features[samples["reference_slots"]], seed)


def inception_estimates(samples, reference, num_samples: int, weights: str | None, device, seed: int,
                        batch_size: int = 100) -> tuple[dict[str, Estimate], str]:
    """Inception metrics of the first ``num_samples`` samples (class-balanced: sample i asks for
    class i mod K), and the weights' name. IS needs NVlabs' logits head; without it the column
    and its interval stay empty."""
    from diffguide.evaluation.inception import load_inception

    inception = load_inception(weights, device=device)
    if inception.name != str(reference["weights"]):
        raise ValueError(f"Inception weights changed ({reference['weights']} -> {inception.name}); "
                         "delete results/<run>/reference/ and rerun")
    out = inception.extract(samples["images"][:num_samples], batch_size, spatial=True, logits=inception.has_logits)
    ref, ref_spatial = reference["features"], reference["spatial"]
    n = len(out["features"])
    estimates = metrics.feature_estimates(out["features"], ref, *metrics.feature_statistics(ref), seed)
    estimates["sfid"] = metrics.fid_estimate(out["spatial"], *metrics.feature_statistics(ref_spatial), seed)
    if inception.has_logits:
        estimates["is"] = metrics.logit_estimates(out["logits"], None, seed)["is"]
    else:
        log.info("is_inception left empty: %s has no logits head (put NVlabs' inception-2015-12-05.pt "
                 "at evaluation.inception_weights for Inception IS)", inception.name)
        estimates["is"] = Estimate.missing(n)
    return {f"{name}_inception": estimates[name] for name in INCEPTION_METRICS}, inception.name


def evaluate(samples_path: str, reference_path: str, eval_classifier_path: str, output: str,
             device_name: str = "auto", batch_size: int = 500, inception_reference_path: str | None = None,
             inception_samples: int = 0, inception_weights: str | None = None, seed: int = 0,
             replicates_output: str | None = None) -> None:
    """One row of metrics (each with ``_lo`` / ``_hi``) for one (method, scale) sample set, and
    its half-sample replicates into ``replicates_output``. Column names say which network
    produced each number; Inception columns are empty when the config turns Inception off."""
    device = pick_device(device_name)
    classifier, _ = kinds.load_checkpoint(eval_classifier_path, device)
    samples = integrity.load_npz(samples_path)
    keys = {"method": str(samples["method"]), "scale": float(samples["scale"]), "sampler": str(samples["sampler"]),
            "steps": int(samples["steps"]), "timestep_spacing": str(samples["timestep_spacing"])}
    estimates = classifier_estimates(samples, integrity.load_npz(reference_path), classifier, device, batch_size, seed)
    weights = "off"
    if inception_reference_path:
        inception, weights = inception_estimates(samples, integrity.load_npz(inception_reference_path), inception_samples,
                                                 inception_weights, device, seed)
        estimates |= inception
    else:
        estimates |= {column: Estimate.missing(len(samples["labels"])) for column in INCEPTION_COLUMNS}
    row = keys | {"num_samples": len(samples["labels"])} | row_columns(estimates) | {"inception_weights": weights}
    _write_csv(output, pd.DataFrame([row]))
    if replicates_output:
        _write_csv(replicates_output, pd.DataFrame([keys | r for r in replicate_rows(estimates)]))
    log.info("%s", json.dumps(row))


def _is_setting(frame: pd.DataFrame, setting: dict) -> pd.Series:
    """Rows of one sampling setting: every key of ``setting`` (sampler, steps, timestep_spacing) equal."""
    return np.logical_and.reduce([frame[key] == value for key, value in setting.items()])


def gather_metrics(rows: list[str], primary_output: str, by_sampler_output: str, primary: dict,
                   replicate_files: list[str] = (), replicates_output: str | None = None) -> pd.DataFrame:
    """Every row into ``by_sampler_output``; the rows of the ``primary`` sampling setting
    ({sampler, steps, timestep_spacing}), which the figures, tables and findings read, into
    ``primary_output``, and their half-sample replicates into ``replicates_output``."""
    frame = pd.concat([integrity.read_csv(p) for p in rows]).sort_values(ORDER)
    is_primary = _is_setting(frame, primary)
    _write_csv(by_sampler_output, frame)
    _write_csv(primary_output, frame[is_primary])
    if replicates_output:
        reps = pd.concat([integrity.read_csv(p) for p in replicate_files])
        reps = reps[_is_setting(reps, primary)]
        _write_csv(replicates_output, reps.sort_values(ORDER, kind="stable"))
    return frame
