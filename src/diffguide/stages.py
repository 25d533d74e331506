"""The pipeline's stages as plain functions of paths and config dicts.

Each Snakemake script in workflow/scripts/ is a thin call into one of these, so every stage can
be run and tested without Snakemake. ``cfg`` is the validated config (see
workflow/schemas/config.schema.yaml, which documents every key).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import data, distributed, integrity, metrics, networks
from .atomic import atomic_open
from .evaluation import INCEPTION_COLUMNS, evaluate, gather_metrics  # noqa: F401 (the evaluation stage's home)
from .figures import lowest_fid_scale, method_label, plot_tradeoff, sample_grid
from .guidance import ClassifierFreeGuidance, ClipDenoised, Guided, classifier_guided
from .naming import SCALE_SYMBOLS, base_method, is_conditional
from .runtime import autocast, pick_device, resolve_precision, seed_everything
from .samplers import SAMPLERS, respaced_timesteps
from .schedules import NoiseSchedule
from .seeding import PerSampleNoise
from .losses import clean_classifier_loss, diffusion_loss, noisy_classifier_loss
from .metrics import accuracy_by_t
from .training import TrainSettings, train

log = logging.getLogger("diffguide")

GUIDANCE_METHODS = ("cfg", "cg", "cond_cg")


def _atomic_npz(path, **arrays) -> None:
    """Samples and features: read by later rules, so written with their checksum."""
    with atomic_open(path, checksum=True) as handle:
        np.savez_compressed(handle, **arrays)


def _atomic_text(path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text.encode())


def prepare(cfg: dict, split: str, output: str) -> None:
    d = cfg["dataset"]
    prepared = data.prepare_dataset(d["name"], split, d["image_size"], fit=d["fit"], source_dir=d["source_dir"],
                                    cache_dir=str(Path(output).parent / "download"), download=d["download"])
    data.save_prepared(prepared, output)
    log.info("prepared %s/%s: %d images %s from %s", d["name"], split, len(prepared.labels),
             prepared.images.shape[1:], prepared.source)


def _architecture(cfg: dict, network: str, info: data.DatasetInfo) -> tuple[str, dict]:
    """Map a network name of the config to (kind, arch) for networks.build_network."""
    size, channels = cfg["dataset"]["image_size"], info.channels
    n = cfg["networks"]
    if network == "unconditional" or is_conditional(network):
        arch = dict(image_size=size, channels=channels, **n["unet"],
                    num_classes=info.num_classes if is_conditional(network) else None)
        return "eps_unet", arch
    if network == "noisy_classifier":
        return "noisy_classifier", dict(image_size=size, channels=channels, num_classes=info.num_classes,
                                        **n["noisy_classifier"])
    if network == "eval_classifier":
        return "eval_classifier", dict(channels=channels, num_classes=info.num_classes, **n["eval_classifier"])
    raise ValueError(f"unknown network {network!r}")


def _loss(cfg: dict, network: str, schedule: NoiseSchedule):
    if network == "unconditional" or is_conditional(network):
        t = cfg["training"][network]
        return diffusion_loss(schedule, p_uncond=t.get("p_uncond"), min_snr_gamma=t.get("min_snr_gamma"))
    if network == "noisy_classifier":
        t = cfg["training"]["noisy_classifier"]
        return noisy_classifier_loss(schedule, random_flip=t.get("random_flip", False),
                                     random_crop=t.get("random_crop", 0))
    return clean_classifier_loss()


def train_network(cfg: dict, network: str, train_path: str, test_path: str, output: str, csv_log: str,
                  threads: int = 1, checkpoint: str | None = None) -> None:
    """Train one of: unconditional, conditional, noisy_classifier, eval_classifier.

    ``checkpoint`` is a path beside, not among, the rule's outputs (Snakemake deletes the outputs
    of a failed job, and must not here): a killed job that Snakemake reruns resumes from it when
    it was written with the same settings. It is deleted once the model is written."""
    torch.set_num_threads(threads)
    seed_everything(cfg["seed"])
    device = distributed.init(pick_device(cfg["device"]))  # under torchrun: join the ranks (else as is)
    train_set = data.load_prepared(train_path)
    info = data.DATASETS[train_set.dataset]
    kind, arch = _architecture(cfg, network, info)
    model = networks.build_network(kind, arch)
    log.info("%s: %s with %d parameters on %s, process %d of %d", network, kind, networks.count_parameters(model),
             device, distributed.rank() + 1, distributed.world_size())
    t = dict(cfg["training"][network])
    p_uncond = t.pop("p_uncond", None)
    # loss options, as p_uncond: they shape the loss, not the loop
    augment = {key: t.pop(key) for key in ("random_flip", "random_crop", "min_snr_gamma") if key in t}
    settings = TrainSettings(precision=resolve_precision(cfg["precision"], device), **t)
    log.info("%s: precision %s (config: %s)", network, settings.precision, cfg["precision"])
    schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
    images, labels = train_set.to_tensor()
    context = {"network": network, "kind": kind, "arch": arch, "p_uncond": p_uncond, **augment,
               **{key: cfg[key] for key in ("seed", "dataset", "diffusion")}}
    kept = train(model, _loss(cfg, network, schedule), images, labels, settings, device=device, name=network,
                 csv_path=csv_log, logger=log, checkpoint_path=checkpoint, context=context)
    if distributed.is_main():  # under torchrun the other ranks wait for rank 0 to write the model
        extra = {"parameters": networks.count_parameters(kept), "steps": settings.steps,
                 "processes": distributed.world_size()}
        extra |= _test_accuracy(cfg, network, kept, test_path, schedule, device, csv_log)
        networks.save_checkpoint(output, kind, arch, kept, extra)
        if checkpoint:
            Path(checkpoint).unlink(missing_ok=True)
    distributed.teardown()


def _test_accuracy(cfg: dict, network: str, kept, test_path: str, schedule: NoiseSchedule, device,
                   csv_log: str) -> dict:
    """The classifiers' test accuracy for the model's ``extra``: on clean images for the evaluation
    classifier; per quarter of [0, T) for the noisy one, also written beside its training CSV as
    <network>_accuracy_by_t.csv (band, t_min, t_max, accuracy, images)."""
    if network == "eval_classifier":
        accuracy = clean_accuracy(kept, test_path, device)
        log.info("eval_classifier test accuracy %.4f", accuracy)
        return {"test_accuracy": accuracy}
    if network != "noisy_classifier":
        return {}
    images, labels = data.load_prepared(test_path).to_tensor()
    per_band = min(2000, len(labels))  # test images per band: a standard error under 1.2 points, in seconds
    by_t = accuracy_by_t(kept, images, labels, schedule, device, per_band=per_band, seed=cfg["seed"],
                         precision=cfg["precision"])
    rows = [{"band": band, "t_min": int(band.split("-")[0]), "t_max": int(band.split("-")[1]), "accuracy": acc,
             "images": per_band} for band, acc in by_t.items()]
    _atomic_text(Path(csv_log).with_name(f"{network}_accuracy_by_t.csv"), pd.DataFrame(rows).to_csv(index=False))
    log.info("noisy_classifier test accuracy by t: %s", json.dumps(by_t))
    return {"test_accuracy_by_t": by_t}


def clean_accuracy(classifier, test_path: str, device) -> float:
    test_set = data.load_prepared(test_path)
    _, logits = metrics.classifier_outputs(classifier, test_set.images, device)
    return metrics.sample_accuracy(logits, test_set.labels)


def sampling_timesteps(cfg: dict, schedule: NoiseSchedule) -> list[int]:
    s = cfg["sampling"]
    return respaced_timesteps(schedule.timesteps, s["steps"], s["timestep_spacing"])


def guided_model(cfg: dict, method: str, scale: float, model_paths: dict, device):
    """The guidance.Guided pair (eps-model, mean-shift hook) a sampling job uses, with the noise
    schedule and the eps-model's architecture:
    - cfg: classifier-free guidance of the conditional model at w = scale (H&S eq. 6), its guided
      x0 clipped (sampling.clip_x0);
    - cg: classifier guidance of the unconditional model at s = scale;
    - cond_cg: classifier guidance at s = scale of the conditional model, itself guided at
      w = guidance.cond_cg_w (D&N Table 4's conditional rows when w = 0).
    Classifier guidance clips where guidance.cg_clip_order says (guided-diffusion's order by
    default; see diffguide.guidance). Scale 0 of cg / cond_cg is the unguided model; it needs no
    classifier."""
    method = base_method(method)
    if method not in GUIDANCE_METHODS:
        raise ValueError(f"unknown guidance method {method!r}; choose one of {GUIDANCE_METHODS}")
    schedule = NoiseSchedule.make(cfg["diffusion"]["schedule"], cfg["diffusion"]["timesteps"])
    model, payload = networks.load_checkpoint(model_paths["unconditional" if method == "cg" else "conditional"], device)
    s, g = cfg["sampling"], cfg["guidance"]
    if method == "cfg":
        guided = ClassifierFreeGuidance(model, w=scale)
        return Guided(ClipDenoised(guided, schedule) if s["clip_x0"] else guided), schedule, payload["arch"]
    if method == "cond_cg":
        model = ClassifierFreeGuidance(model, w=g["cond_cg_w"])
    classifier = networks.load_checkpoint(model_paths["noisy_classifier"], device)[0] if scale != 0 else None
    if g["cg_form"] == "mean" and s["sampler"] != "ddpm":
        raise ValueError("guidance.cg_form: mean is the mean shift of ancestral steps; set sampling.sampler: ddpm")
    guided = classifier_guided(model, classifier, scale, schedule, form=g["cg_form"], clip_x0=s["clip_x0"],
                               clip_order=g["cg_clip_order"], condition_model=method == "cond_cg")
    return guided, schedule, payload["arch"]


def generate(cfg: dict, method: str, scale: float, model_paths: dict, output: str, threads: int = 1) -> None:
    """Sample cfg.sampling.num_samples images; sample i asks for class i mod K and its noise is
    seeded by (seed, i), so every scale of a sweep starts from the same noise."""
    torch.set_num_threads(threads)
    device = pick_device(cfg["device"])
    guided, schedule, arch = guided_model(cfg, method, scale, model_paths, device)
    s = cfg["sampling"]
    timesteps = sampling_timesteps(cfg, schedule)
    options = {"eta": s["eta"]} if s["sampler"] == "ddim" else {"variance": s["variance"]}
    shape = (arch["channels"], arch["image_size"], arch["image_size"])
    num_classes = data.DATASETS[cfg["dataset"]["name"]].num_classes
    labels = np.arange(s["num_samples"]) % num_classes
    batches = []
    for start in range(0, s["num_samples"], s["batch_size"]):
        idx = list(range(start, min(start + s["batch_size"], s["num_samples"])))
        log.info("%s scale %g: samples %d-%d of %d", method, scale, idx[0], idx[-1], s["num_samples"])
        noise = PerSampleNoise(cfg["seed"], idx)
        with autocast(device, cfg["precision"]):
            x = SAMPLERS[s["sampler"]](guided.model, noise.initial(shape, device=device), timesteps, schedule=schedule,
                                       labels=torch.from_numpy(labels[idx]), noise=noise, cond_fn=guided.cond_fn,
                                       **options)
        batches.append(data.images_to_uint8(x.float().cpu()))
    _atomic_npz(output, images=np.concatenate(batches), labels=labels, method=method, scale=scale,
                sampler=s["sampler"], steps=s["steps"], timestep_spacing=s["timestep_spacing"])


def reference_statistics(eval_classifier_path: str, test_path: str, output: str, device_name: str = "auto",
                         batch_size: int = 500) -> None:
    """Evaluation-classifier features of the real test split, computed once for every evaluation
    (rows in a seeded random order, so any prefix is an unbiased subset)."""
    device = pick_device(device_name)
    classifier, _ = networks.load_checkpoint(eval_classifier_path, device)
    test_set = data.load_prepared(test_path)
    order = np.random.default_rng(0).permutation(len(test_set.labels))
    features, _ = metrics.classifier_outputs(classifier, test_set.images[order], device, batch_size)
    mu, sigma = metrics.feature_statistics(features)
    _atomic_npz(output, features=features, mu=mu, sigma=sigma)


def inception_reference(test_path: str, output: str, num_images: int, weights: str | None,
                        device_name: str = "auto", batch_size: int = 100) -> None:
    """Inception pool3 and sFID spatial features of a seeded random subset of the test split."""
    from .inception import load_inception

    device = pick_device(device_name)
    inception = load_inception(weights, device=device)
    test_set = data.load_prepared(test_path)
    subset = np.random.default_rng(0).permutation(len(test_set.labels))[:num_images]
    out = inception.extract(test_set.images[subset], batch_size, spatial=True)
    _atomic_npz(output, features=out["features"], spatial=out["spatial"], weights=inception.name)
    log.info("Inception reference: %d test images through %s", len(subset), inception.name)


def figures(metrics_csv: str, tradeoff_png: str) -> None:
    plot_tradeoff(integrity.read_csv(metrics_csv), tradeoff_png)


def grid(sample_paths: list[str], method: str, dataset_name: str, output: str, per_class: int) -> None:
    sets = [integrity.load_npz(p) for p in sample_paths]
    scales = [float(s["scale"]) for s in sets]
    order = np.argsort(scales)
    title = {"cfg": "classifier-free guidance of the conditional model, columns: w",
             "cg": "classifier guidance of the unconditional model, columns: s",
             "cond_cg": "classifier guidance of the conditional model, columns: s"}[base_method(method)]
    if method != base_method(method):
        title += f" (p_uncond = {method.removeprefix('cfg_p')})"
    sample_grid([sets[i]["images"] for i in order], sets[0]["labels"], [scales[i] for i in order],
                list(data.DATASETS[dataset_name].class_names), output, title, per_class)


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
    symbol = SCALE_SYMBOLS[base_method(method)]
    title = (f"{method_label(method).removesuffix(f' ({symbol})')} at its lowest FID ({fid:.2f}, {features} "
             f"features), {symbol} = {scale:g}: the first {per_class} samples of each class")
    sample_grid([samples["images"]], samples["labels"], [scale], class_names, output, title, per_class,
                scale_label=f"{symbol} = ")
