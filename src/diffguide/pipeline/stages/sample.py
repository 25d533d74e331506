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

from diffguide import data
from diffguide.base.atomic import atomic_open
from diffguide.base.runtime import autocast, pick_device
from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import SAMPLERS
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.displacement import ConditionalRows, DisplacementMeter, ReadConditional, meter_for
from diffguide.guidance.wrappers import Guided, build_classifier_free
from diffguide.models import kinds
from diffguide.registry import parse_method

log = logging.getLogger("diffguide")


def sampler_options(sampling: dict) -> dict:
    """The sampler-specific keywords: DDIM's eta, the ancestral step's variance; Heun takes none."""
    if sampling["sampler"] == "ddim":
        return {"eta": sampling["eta"]}
    return {"variance": sampling["variance"]} if sampling["sampler"] == "ddpm" else {}


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
        models[role], payload = kinds.load_checkpoint(path, device)
        arch = payload["arch"] if role == "eps_model" else arch
    return models, arch


def choose_references(labels: np.ndarray, per_class: int, num_classes: int, seed: int) -> np.ndarray:
    """Test-split indices of ``per_class`` reference images per class, a seeded choice, in slot
    order: slot j * K + c holds the j-th reference of class c, so slot i mod R (R = per_class * K)
    is of class i mod K, the class sample i asks for under every other method."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"guidance.sdg_references_per_class is {per_class}, but the test split has "
                             f"{len(members)} images of class {c}; lower it to at most {len(members)}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.stack(chosen, axis=1).reshape(-1)  # [per_class, K] -> slot j * K + c


def reference_slots(labels: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """The reference slot of each sample: the n-th sample of class c gets slot (n mod per_class) * K
    + c, a reference of its own class (choose_references' layout). With labels i mod K (every
    class in turn, as a sampling job asks) this is slot i mod R, R = per_class * K."""
    seen = np.zeros(num_classes, dtype=np.int64)
    slots = np.empty(len(labels), dtype=np.int64)
    for i, c in enumerate(labels):
        slots[i] = (seen[c] % per_class) * num_classes + c
        seen[c] += 1
    return slots


def sample_conditions(method: str, num_samples: int, num_classes: int, *, references_path: str | None,
                      per_class: int | None, seed: int,
                      labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """What each sample is guided towards: (labels, the sampler's y, what the sample file keeps).
    Sample i asks for class i mod K, or for ``labels[i]`` when given (diffguide sample's chosen
    classes). A method guided by reference images (registry condition "reference") gets y = the
    reference slot of a reference of that class instead (reference_slots), and the file keeps the
    references (test-split indices and pixels) and each sample's slot, for the evaluation and the
    figures."""
    labels = np.arange(num_samples) % num_classes if labels is None else np.asarray(labels, dtype=np.int64)
    if parse_method(method).method.condition != "reference":
        return labels, labels, {}
    test_set = data.load_prepared(references_path)
    chosen = choose_references(test_set.labels, per_class, num_classes, seed)
    slots = reference_slots(labels, per_class, num_classes)
    assert (test_set.labels[chosen[slots]] == labels).all()  # each slot holds a reference of its sample's class
    kept = {"reference_indices": chosen, "reference_images": test_set.images[chosen], "reference_slots": slots}
    return labels, slots, kept


def sample(method: str, scale: float, *, model_paths: dict[str, str], sampling: dict, guidance: dict,
           diffusion: dict, dataset_name: str, seed: int, precision: str, device: str, output: str,
           threads: int = 1) -> None:
    """Sample sampling.num_samples images; sample i asks for class i mod K (or a reference image of
    it: sample_conditions) and its noise is seeded by (seed, i), so every scale of a sweep starts
    from the same noise."""
    torch.set_num_threads(threads)
    device = pick_device(device)
    schedule = NoiseSchedule.make(diffusion["schedule"], diffusion["timesteps"])
    model_paths = dict(model_paths)
    references_path = model_paths.pop("references", None)
    labels, conditions, kept = sample_conditions(method, sampling["num_samples"], data.DATASETS[dataset_name].num_classes,
                                                 references_path=references_path, seed=seed,
                                                 per_class=guidance.get("sdg_references_per_class"))
    models, arch = load_models(model_paths, device)
    if kept and scale != 0:  # the references' pixels, for the builder's target embeddings E(x_ref)
        models["references"] = data.uint8_to_tensor(kept["reference_images"]).to(device)
    guided = guided_model(method, scale, models, schedule, clip_x0=sampling["clip_x0"], options=guidance)
    recorder = None
    if sampling.get("record_displacement"):
        guided, recorder = metered(guided, models, schedule, clip_x0=sampling["clip_x0"],
                                   what=f"{method} scale {scale:g}")
    shape = (arch["channels"], arch["image_size"], arch["image_size"])
    try:
        images, displacement = draw(guided, conditions, schedule=schedule, sampling=sampling, shape=shape,
                                    seed=seed, device=device, precision=precision, what=f"{method} scale {scale:g}",
                                    meter=recorder)
    finally:
        if recorder is not None:
            recorder.close()
    if recorder is not None:
        log.info("displacement: eps(x_t, y) read off the method's own forward at %d of %d model evaluations",
                 recorder.rows.read, recorder.rows.read + recorder.rows.evaluated)
        kept = kept | {"displacement": displacement}
    with atomic_open(output, checksum=True) as handle:  # read by later rules: written with its checksum
        np.savez_compressed(handle, images=images, labels=labels, method=method, scale=scale,
                            sampler=sampling["sampler"], steps=sampling["steps"],
                            timestep_spacing=sampling["timestep_spacing"], **kept)


def metered(guided: Guided, models: dict, schedule: NoiseSchedule, *, clip_x0: bool,
            what: str) -> tuple[Guided, DisplacementMeter]:
    """``guided`` with its guidance displacement recorded (diffguide.guidance.displacement): the
    distance of its eps to the eps_model's own given y, clipped as CFG's w = 0 is (the conditional
    model for every classifier-free method), read off the method's own forward where it holds it
    (ConditionalRows: no second forward). ``close`` the meter after sampling."""
    if guided.cond_fn is not None:
        raise ValueError(f"sampling.record_displacement: {what} shifts the ancestral mean through a cond_fn, which "
                         "the eps does not show; record the displacement of eps-guided methods only (set "
                         "sampling.record_displacement: false for this run, or guidance.cg_form: score)")
    rows = ConditionalRows(models["eps_model"])
    reference = build_classifier_free({"eps_model": ReadConditional(rows)}, 0.0, schedule, clip_x0=clip_x0,
                                      options={}).model
    recorder = meter_for(guided.model, reference, rows)  # CFG++'s own renoising direction passes through it
    return Guided(recorder, None), recorder


def draw(guided: Guided, conditions: np.ndarray, *, schedule: NoiseSchedule, sampling: dict, shape: tuple,
         seed: int, device, precision: str, what: str = "samples",
         meter: DisplacementMeter | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """len(conditions) images (uint8 NHWC) from the guided model, sample i conditioned on
    conditions[i] with its noise seeded by (seed, i), in batches of sampling.batch_size, and, where
    ``meter`` (inside ``guided``) records it, each sample's guidance displacement (else None). The one
    loop of the sampling job and of ``diffguide sample``, so both give the same images."""
    timesteps = respaced_timesteps(schedule.timesteps, sampling["steps"], sampling["timestep_spacing"])
    total, batches, displacements = len(conditions), [], []
    for start in range(0, total, sampling["batch_size"]):
        idx = list(range(start, min(start + sampling["batch_size"], total)))
        log.info("%s: samples %d-%d of %d", what, idx[0], idx[-1], total)
        noise = PerSampleNoise(seed, idx)
        if meter is not None:
            meter.reset()
        with autocast(device, precision):
            x = SAMPLERS[sampling["sampler"]](guided.model, noise.initial(shape, device=device), timesteps,
                                              schedule=schedule, labels=torch.from_numpy(conditions[idx]), noise=noise,
                                              cond_fn=guided.cond_fn, **sampler_options(sampling))
        batches.append(data.images_to_uint8(x.float().cpu()))
        if meter is not None:
            displacements.append(meter.per_sample().cpu().numpy())
    return np.concatenate(batches), (np.concatenate(displacements) if meter is not None else None)
