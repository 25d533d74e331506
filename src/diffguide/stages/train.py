"""The training stage: one network of the registry, trained with its loss and written with its
architecture and, for the classifiers, its test accuracy.

The eps-models learn eps with labels dropped at p_uncond (H&S Algorithm 1; the unconditional one
never sees a label), the noisy classifier learns p_phi(y | x_t, t) on q_sample(x_0, t) (D&N section
4), the evaluation classifier learns clean labels. Which of them a name is, and so its kind,
architecture block and loss, comes from diffguide.registry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from .. import data, distributed, metrics, networks
from ..atomic import atomic_open
from ..losses import clean_classifier_loss, diffusion_loss, noisy_classifier_loss
from ..registry import Network, parse_network, training_block
from ..runtime import pick_device, resolve_precision, seed_everything
from ..schedules import NoiseSchedule
from ..training import TrainSettings, train

log = logging.getLogger("diffguide")

# Loss options: they shape the loss, not the loop, so they are not TrainSettings.
LOSS_OPTIONS = ("p_uncond", "random_flip", "random_crop", "min_snr_gamma")


def config_sections(cfg: dict, network: str) -> dict:
    """The keyword arguments of ``train_network`` that a (validated or rule-reduced) config holds,
    for the training script and diffguide.train_cli alike."""
    row = parse_network(network).network
    return {"arch": cfg["networks"][row.arch_key], "training": training_block(cfg["training"], network),
            "dataset": cfg["dataset"],
            "diffusion": cfg["diffusion"], "seed": cfg["seed"], "precision": cfg["precision"], "device": cfg["device"]}


def architecture(row: Network, arch: dict, image_size: int, info: data.DatasetInfo) -> dict:
    """networks.build_network's arguments: the config's block for the network, with the data's
    shape and, for the networks that take labels, the number of classes."""
    if row.kind == "eval_classifier":  # any image size: it pools globally
        return dict(channels=info.channels, num_classes=info.num_classes, **arch)
    return dict(image_size=image_size, channels=info.channels, **arch,
                num_classes=info.num_classes if row.takes_labels else None)


def loss_function(row: Network, options: dict, schedule: NoiseSchedule):
    """The registry row's loss with the block's loss options (diffguide.losses)."""
    if row.loss == "diffusion":
        return diffusion_loss(schedule, p_uncond=options.get("p_uncond"), min_snr_gamma=options.get("min_snr_gamma"))
    if row.loss == "noisy_classifier":
        return noisy_classifier_loss(schedule, random_flip=options.get("random_flip", False),
                                     random_crop=options.get("random_crop", 0))
    return clean_classifier_loss()


def train_network(network: str, *, arch: dict, training: dict, dataset: dict, diffusion: dict, seed: int,
                  precision: str, device: str, train_path: str, test_path: str, output: str, csv_log: str,
                  threads: int = 1, checkpoint: str | None = None) -> None:
    """Train one network of the registry (unconditional, conditional, conditional_p<p>,
    noisy_classifier, eval_classifier) with the config sections it reads.

    ``checkpoint`` is a path beside, not among, the rule's outputs (Snakemake deletes the outputs
    of a failed job, and must not here): a killed job that Snakemake reruns resumes from it when
    it was written with the same settings. It is deleted once the model is written."""
    torch.set_num_threads(threads)
    seed_everything(seed)
    device = distributed.init(pick_device(device))  # under torchrun: join the ranks (else as is)
    train_set = data.load_prepared(train_path)
    info = data.DATASETS[train_set.dataset]
    row = parse_network(network).network
    arch = architecture(row, arch, dataset["image_size"], info)
    model = networks.build_network(row.kind, arch)
    log.info("%s: %s with %d parameters on %s, process %d of %d", network, row.kind,
             networks.count_parameters(model), device, distributed.rank() + 1, distributed.world_size())
    loop = dict(training)
    options = {key: loop.pop(key) for key in LOSS_OPTIONS if key in loop}
    settings = TrainSettings(precision=resolve_precision(precision, device), **loop)
    log.info("%s: precision %s (config: %s)", network, settings.precision, precision)
    schedule = NoiseSchedule.make(diffusion["schedule"], diffusion["timesteps"])
    images, labels = train_set.to_tensor()
    context = {"network": network, "kind": row.kind, "arch": arch, "p_uncond": None, **options,
               "seed": seed, "dataset": dataset, "diffusion": diffusion}
    kept = train(model, loss_function(row, options, schedule), images, labels, settings, device=device, name=network,
                 csv_path=csv_log, logger=log, checkpoint_path=checkpoint, context=context)
    if distributed.is_main():  # under torchrun the other ranks wait for rank 0 to write the model
        extra = {"parameters": networks.count_parameters(kept), "steps": settings.steps,
                 "processes": distributed.world_size()}
        extra |= test_accuracy(row, kept, test_path, schedule, device, csv_log, seed, precision)
        networks.save_checkpoint(output, row.kind, arch, kept, extra)
        if checkpoint:
            Path(checkpoint).unlink(missing_ok=True)
    distributed.teardown()


def test_accuracy(row: Network, kept, test_path: str, schedule: NoiseSchedule, device, csv_log: str, seed: int,
                  precision: str) -> dict:
    """The classifiers' test accuracy for the model's ``extra``: on clean images for the evaluation
    classifier; per quarter of [0, T) for the noisy one, also written beside its training CSV as
    <network>_accuracy_by_t.csv (band, t_min, t_max, accuracy, images)."""
    if row.loss == "clean_classifier":
        accuracy = clean_accuracy(kept, test_path, device)
        log.info("%s test accuracy %.4f", row.name, accuracy)
        return {"test_accuracy": accuracy}
    if row.loss != "noisy_classifier":
        return {}
    images, labels = data.load_prepared(test_path).to_tensor()
    per_band = min(2000, len(labels))  # test images per band: a standard error under 1.2 points, in seconds
    by_t = metrics.accuracy_by_t(kept, images, labels, schedule, device, per_band=per_band, seed=seed,
                                 precision=precision)
    rows = [{"band": band, "t_min": int(band.split("-")[0]), "t_max": int(band.split("-")[1]), "accuracy": acc,
             "images": per_band} for band, acc in by_t.items()]
    with atomic_open(Path(csv_log).with_name(f"{row.name}_accuracy_by_t.csv")) as handle:
        handle.write(pd.DataFrame(rows).to_csv(index=False).encode())
    log.info("%s test accuracy by t: %s", row.name, json.dumps(by_t))
    return {"test_accuracy_by_t": by_t}


def clean_accuracy(classifier, test_path: str, device) -> float:
    test_set = data.load_prepared(test_path)
    _, logits = metrics.classifier_outputs(classifier, test_set.images, device)
    return metrics.sample_accuracy(logits, test_set.labels)
