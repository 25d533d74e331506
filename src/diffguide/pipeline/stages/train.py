"""The training stage: one network of the registry, trained with its loss and written with its
architecture and, for the classifiers, its test accuracy.

The eps-models learn eps with labels dropped at p_uncond (H&S Algorithm 1; the unconditional one
never sees a label), the noisy classifier learns p_phi(y | x_t, t) on q_sample(x_0, t) (D&N section
4), the evaluation classifier learns clean labels. For semantic diffusion guidance (SDG, Liu et
al., arXiv 2112.05744) the clip learns a joint clean-image / class-name embedding, and the noisy
image encoder starts from its image encoder and learns to embed x_t (diffguide.models.encoders). Which of
them a name is, and so its kind, architecture block, loss and the network it starts from, comes
from diffguide.registry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import torch

from diffguide import __version__, data
from diffguide.base import integrity
from diffguide.base.atomic import atomic_open
from diffguide.base.runtime import pick_device, resolve_precision, seed_everything
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.evaluation import metrics
from diffguide.models import encoders, kinds
from diffguide.registry import Network, parse_network, training_block
from diffguide.training import distributed
from diffguide.training.loop import TrainSettings, train
from diffguide.training.losses import (clean_classifier_loss, clip_contrastive_loss, diffusion_loss,
                                       noisy_classifier_loss, noisy_embedding_loss)
from diffguide.training.settings import RUN_ONLY_TRAINING_KEYS

log = logging.getLogger("diffguide")

# Loss options: they shape the loss, not the loop, so they are not TrainSettings.
LOSS_OPTIONS = ("p_uncond", "random_flip", "random_crop", "min_snr_gamma", "recipe")


def config_sections(cfg: dict, network: str) -> dict:
    """The keyword arguments of ``train_network`` that a (validated or rule-reduced) config holds,
    for the training script and diffguide.cli.train alike."""
    row = parse_network(network).network
    return {"arch": cfg["networks"][row.arch_key], "training": training_block(cfg["training"], network),
            "dataset": cfg["dataset"],
            "diffusion": cfg["diffusion"], "seed": cfg["seed"], "precision": cfg["precision"], "device": cfg["device"]}


def architecture(row: Network, arch: dict, image_size: int, info: data.DatasetInfo) -> dict:
    """kinds.build_network's arguments: the config's block for the network, with the data's
    shape and, for the networks that take labels, the number of classes. The clip gets its class
    names, prompt template and vocabulary instead, so its checkpoint rebuilds its tokenizer by
    itself; the noisy image encoder the image part of the clip's block."""
    if row.kind == "eval_classifier":  # any image size: it pools globally
        return dict(channels=info.channels, num_classes=info.num_classes, **arch)
    if row.kind == "clip":
        return dict(image_size=image_size, channels=info.channels, **arch, class_names=list(info.class_names),
                    template=encoders.PROMPT_TEMPLATE, vocabulary=encoders.build_vocabulary(info.class_names))
    if row.kind == "noisy_image_encoder":
        return encoders.image_arch(dict(image_size=image_size, channels=info.channels, **arch))
    return dict(image_size=image_size, channels=info.channels, **arch,
                num_classes=info.num_classes if row.takes_labels else None)


def loss_function(row: Network, options: dict, schedule: NoiseSchedule, target=None):
    """The registry row's loss with the block's loss options (diffguide.training.losses). ``target``: the
    trained network the row starts from (the noisy image encoder's frozen clip)."""
    if row.loss == "diffusion":
        return diffusion_loss(schedule, p_uncond=options.get("p_uncond"), min_snr_gamma=options.get("min_snr_gamma"))
    if row.loss == "noisy_classifier":
        return noisy_classifier_loss(schedule, random_flip=options.get("random_flip", False),
                                     random_crop=options.get("random_crop", 0))
    if row.loss == "clip_contrastive":
        return clip_contrastive_loss()
    if row.loss == "noisy_embedding":
        if target is None:
            raise ValueError(f"{row.name}: the noisy embedding loss needs the trained clip it matches (init_path)")
        return noisy_embedding_loss(schedule, target, recipe=options.get("recipe", "clean_image"))
    return clean_classifier_loss()


def load_init(row: Network, init_path: str | None, device):
    """The trained network ``row`` starts from (its registry ``init_from``): (model, arch, identity),
    identity = {network, sha256 of its file}, or None for a row that starts from scratch."""
    start = row.init_from
    if start is None:
        return None
    if init_path is None:
        raise ValueError(f"{row.name} starts from the trained {start} network: pass its model file as init_path")
    model, payload = kinds.load_checkpoint(init_path, device)  # verified against its .sha256
    if payload["kind"] != parse_network(start).network.kind:
        raise ValueError(f"{row.name} starts from {start}, but {init_path} holds a {payload['kind']!r} network")
    return model, payload["arch"], {"network": start, "sha256": integrity.file_sha256(init_path)}


def initial_model(row: Network, arch: dict, init) -> tuple:
    """(model, arch) to train: built from ``arch``, or for a row with an init, the noisy image
    encoder copied from the clip's image encoder with the clip's image arch (so the two match)."""
    if init is None:
        return kinds.build_network(row.kind, arch), arch
    if row.kind != "noisy_image_encoder":
        raise ValueError(f"{row.name}: no way to start a {row.kind!r} network from {init[2]['network']}")
    return encoders.noisy_encoder_from(init[0], init[1])


def train_network(network: str, *, arch: dict, training: dict, dataset: dict, diffusion: dict, seed: int,
                  precision: str, device: str, train_path: str, test_path: str, output: str, csv_log: str,
                  threads: int = 1, checkpoint: str | None = None, init_path: str | None = None) -> None:
    """Train one network of the registry (unconditional, conditional, conditional_p<p>,
    noisy_classifier, eval_classifier, clip, noisy_image_encoder) with the config sections it reads.

    ``init_path``: the model file of the network the row starts from (``init_from``: the clip for
    the noisy image encoder); its identity (file sha256) enters the checkpoint's context, so a
    resumed run never mixes two clips, and the model's ``extra["init"]``.

    ``checkpoint`` is a path beside, not among, the rule's outputs (Snakemake deletes the outputs
    of a failed job, and must not here): a killed job that Snakemake reruns resumes from it when
    it was written with the same settings. It is deleted once the model is written."""
    torch.set_num_threads(threads)
    seed_everything(seed)
    device = distributed.init(pick_device(device))  # under torchrun: join the ranks (else as is)
    train_set = data.load_prepared(train_path)
    info = data.DATASETS[train_set.dataset]
    row = parse_network(network).network
    init = load_init(row, init_path, device)
    arch_config = arch  # the config's block, for the metadata; ``arch`` becomes the built network's
    model, arch = initial_model(row, architecture(row, arch, dataset["image_size"], info), init)
    log.info("%s: %s with %d parameters on %s, process %d of %d", network, row.kind,
             kinds.count_parameters(model), device, distributed.rank() + 1, distributed.world_size())
    loop = dict(training)
    options = {key: loop.pop(key) for key in LOSS_OPTIONS if key in loop}
    half = loop.pop("train_half", None)
    settings = TrainSettings(precision=resolve_precision(precision, device), **loop)
    log.info("%s: precision %s (config: %s)", network, settings.precision, precision)
    schedule = NoiseSchedule.make(diffusion["schedule"], diffusion["timesteps"])
    images, labels = training_images(train_set, half, seed, network)
    context = {"network": network, "kind": row.kind, "arch": arch, "p_uncond": None, **options,
               "seed": seed, "dataset": dataset, "diffusion": diffusion} | ({"init": init[2]} if init else {})
    context |= {"train_half": half} if half is not None else {}  # a resume never mixes halves
    target = init[0] if init else None
    kept = train(model, loss_function(row, options, schedule, target), images, labels, settings, device=device,
                 name=network, csv_path=csv_log, logger=log, checkpoint_path=checkpoint, context=context)
    if distributed.is_main():  # under torchrun the other ranks wait for rank 0 to write the model
        extra = {"parameters": kinds.count_parameters(kept), "steps": settings.steps,
                 "processes": distributed.world_size()} | ({"init": init[2]} if init else {})
        extra |= test_accuracy(row, kept, test_path, schedule, device, csv_log, seed, precision, target)
        metadata = model_metadata(network, arch_config=arch_config, training=training, dataset=dataset,
                                  diffusion=diffusion, seed=seed, precision=precision, trained_in=settings.precision)
        kinds.save_checkpoint(output, row.kind, arch, kept, extra, metadata)
        if checkpoint:
            Path(checkpoint).unlink(missing_ok=True)
    distributed.teardown()


def training_images(train_set: data.PreparedData, half: int | None, seed: int,
                    network: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The train split as tensors, or one class-balanced half of it (``train_half``: the guide on
    one half and the evaluation classifier on the other, so the evaluator never saw the guide's
    images; data.class_balanced_half)."""
    if half is None:
        return train_set.to_tensor()
    keep = data.class_balanced_half(train_set.labels, half, seed)
    log.info("%s: trains on half %d of the train split (%d of %d images)", network, half, len(keep),
             len(train_set.labels))
    # Select in uint8 before converting: the float32 copy of the whole split is never made.
    return dataclasses.replace(train_set, images=train_set.images[keep], labels=train_set.labels[keep]).to_tensor()


def model_metadata(network: str, *, arch_config: dict, training: dict, dataset: dict, diffusion: dict, seed: int,
                   precision: str, trained_in: str) -> dict:
    """What a model file says about how it was made, so that a sampler can be rebuilt from the file
    alone (``diffguide sample --checkpoint``): the data set with its shape and class names, the
    diffusion process (schedule, T; every eps-model of diffguide predicts eps), the precision, and
    the config subset the training rule passed (common.smk's training_config: seed, precision,
    dataset, diffusion, the network's architecture and training blocks, run-only keys left out),
    with the diffguide version that wrote it. Plain types only: torch.load(weights_only=True)."""
    info = data.DATASETS[dataset["name"]]
    row = parse_network(network).network
    block = {key: value for key, value in training.items() if key not in RUN_ONLY_TRAINING_KEYS}
    return {
        "diffguide_version": __version__,
        "network": network, "kind": row.kind, "arch_key": row.arch_key,
        "dataset": {**dataset, "channels": info.channels, "num_classes": info.num_classes,
                    "class_names": list(info.class_names)},
        "diffusion": {**diffusion, "parameterisation": "eps"},
        "precision": {"config": precision, "trained_in": trained_in},
        "seed": seed,
        "config": {"seed": seed, "precision": precision, "dataset": dict(dataset), "diffusion": dict(diffusion),
                   "networks": {row.arch_key: dict(arch_config)}, "training": {network: block}},
    }


def test_accuracy(row: Network, kept, test_path: str, schedule: NoiseSchedule, device, csv_log: str, seed: int,
                  precision: str, target=None) -> dict:
    """The test accuracy for the model's ``extra``: on clean images for the evaluation classifier,
    zero-shot (argmax_c cos(E(x), T(prompt_c))) for the clip; per quarter of [0, T) for the noisy
    classifier and, as retrieval of the class prompts of ``target`` (the clip) by
    cos(E~(x_t, t), T(prompt_c)), for the noisy image encoder: also written beside the training
    CSV as <network>_accuracy_by_t.csv (band, t_min, t_max, accuracy, images)."""
    if row.loss == "clean_classifier":
        accuracy = clean_accuracy(kept, test_path, device)
    elif row.loss == "clip_contrastive":
        accuracy = encoders.zero_shot_accuracy(kept, *data.load_prepared(test_path).to_tensor(), device)
    elif row.loss == "noisy_classifier":
        return accuracy_by_t(row, kept, test_path, schedule, device, csv_log, seed, precision)
    elif row.loss == "noisy_embedding":
        scorer = encoders.CosineToTargets(kept, target.encode_class_names())
        return accuracy_by_t(row, scorer, test_path, schedule, device, csv_log, seed, precision)
    else:
        return {}
    log.info("%s test accuracy %.4f", row.name, accuracy)
    return {"test_accuracy": accuracy}


def accuracy_by_t(row: Network, classifier, test_path: str, schedule: NoiseSchedule, device, csv_log: str,
                  seed: int, precision: str) -> dict:
    """metrics.accuracy_by_t of a (x_t, t) -> logits module on the test split, logged and written as
    <network>_accuracy_by_t.csv beside the training CSV."""
    images, labels = data.load_prepared(test_path).to_tensor()
    per_band = min(2000, len(labels))  # test images per band: a standard error under 1.2 points, in seconds
    by_t = metrics.accuracy_by_t(classifier, images, labels, schedule, device, per_band=per_band, seed=seed,
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
