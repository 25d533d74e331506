"""The sampling stage: one sample file per (sampling setting, guidance method, scale).

The method's registry row says which models it loads and how its guided eps-model is built (its
``builder``); the sampler is one of samplers.SAMPLERS, which all share one signature; the noise
is seeded here, per sample index, so the batch size never changes an image and every scale of a
sweep starts from the same noise.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .. import data, networks
from ..atomic import atomic_open
from ..guidance import Guided
from ..registry import parse_method
from ..runtime import autocast, pick_device
from ..samplers import SAMPLERS, respaced_timesteps
from ..schedules import NoiseSchedule
from ..seeding import PerSampleNoise

log = logging.getLogger("diffguide")


def sampler_options(sampling: dict) -> dict:
    """The sampler-specific keywords: DDIM's eta, or the ancestral step's variance."""
    return {"eta": sampling["eta"]} if sampling["sampler"] == "ddim" else {"variance": sampling["variance"]}


def guided_model(method: str, scale: float, models: dict, schedule: NoiseSchedule, *, clip_x0: bool,
                 options: dict) -> Guided:
    """The method's eps-model wrapper (and mean-shift hook) at ``scale``, built by its registry
    row's builder from ``models`` (role -> loaded network: eps_model, and classifier where the
    method needs one) and ``options`` (the guidance keys of the row)."""
    return parse_method(method).method.build()(models, scale, schedule, clip_x0=clip_x0, options=options)


def load_models(model_paths: dict[str, str], device) -> tuple[dict, dict]:
    """role -> loaded network, and the eps-model's architecture (for the image shape)."""
    models, arch = {}, None
    for role, path in model_paths.items():
        models[role], payload = networks.load_checkpoint(path, device)
        arch = payload["arch"] if role == "eps_model" else arch
    return models, arch


def sample(method: str, scale: float, *, model_paths: dict[str, str], sampling: dict, guidance: dict,
           diffusion: dict, dataset_name: str, seed: int, precision: str, device: str, output: str,
           threads: int = 1) -> None:
    """Sample sampling.num_samples images; sample i asks for class i mod K and its noise is
    seeded by (seed, i), so every scale of a sweep starts from the same noise."""
    torch.set_num_threads(threads)
    device = pick_device(device)
    schedule = NoiseSchedule.make(diffusion["schedule"], diffusion["timesteps"])
    models, arch = load_models(model_paths, device)
    guided = guided_model(method, scale, models, schedule, clip_x0=sampling["clip_x0"], options=guidance)
    timesteps = respaced_timesteps(schedule.timesteps, sampling["steps"], sampling["timestep_spacing"])
    shape = (arch["channels"], arch["image_size"], arch["image_size"])
    labels = np.arange(sampling["num_samples"]) % data.DATASETS[dataset_name].num_classes
    batches = []
    for start in range(0, sampling["num_samples"], sampling["batch_size"]):
        idx = list(range(start, min(start + sampling["batch_size"], sampling["num_samples"])))
        log.info("%s scale %g: samples %d-%d of %d", method, scale, idx[0], idx[-1], sampling["num_samples"])
        noise = PerSampleNoise(seed, idx)
        with autocast(device, precision):
            x = SAMPLERS[sampling["sampler"]](guided.model, noise.initial(shape, device=device), timesteps,
                                              schedule=schedule, labels=torch.from_numpy(labels[idx]), noise=noise,
                                              cond_fn=guided.cond_fn, **sampler_options(sampling))
        batches.append(data.images_to_uint8(x.float().cpu()))
    with atomic_open(output, checksum=True) as handle:  # read by later rules: written with its checksum
        np.savez_compressed(handle, images=np.concatenate(batches), labels=labels, method=method, scale=scale,
                            sampler=sampling["sampler"], steps=sampling["steps"],
                            timestep_spacing=sampling["timestep_spacing"])
