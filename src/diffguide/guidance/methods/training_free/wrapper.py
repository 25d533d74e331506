"""The builders of the training-free methods (DPS, FreeDoM, MPGD, UGD, TFG): each is TFG's unified
step (diffguide.guidance.training_free, docs/equations.md section 11) at its paper's setting, from the
unconditional eps-model and the clean guide classifier. Where our step differs from a method's own
code on purpose, the difference is written at its builder.

What every one of them shares, against each paper's own code:
- with sampling.clip_x0 (the pipeline's default) x0_hat is clamped to [-1, 1] before the guide reads
  it and before the step, as TFG's code does for TFG (its baselines' codes give the guide the
  unclamped x0_hat); the guided x_0 is not clamped again;
- no Gaussian smoothing of the guide (TFG's gamma = 0; see TrainingFreeSettings).
"""

from __future__ import annotations

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.training_free import (FREEDOM_RECURRENCES, TFG_INNER_STEPS, TFG_MU_RATIO,
                                                      TFG_RECURRENCES, TFG_SCHEDULE, UGD_BACKWARD_STEPS,
                                                      UGD_RECURRENCES)
from diffguide.guidance.training_free import TrainingFreeGuidance, TrainingFreeSettings
from diffguide.guidance.wrappers import ClipDenoised, Guided


def training_free(models: dict, settings: TrainingFreeSettings, schedule: NoiseSchedule, *, clip_x0: bool,
                  name: str) -> Guided:
    """TFG's step with ``settings`` on models['eps_model'] guided by models['clean_classifier']; with
    no guidance at all (scale 0, where the classifier is not loaded) the unguided model, clipped like
    every other method's when clip_x0."""
    model = models.get("eps_model")
    if model is None:
        raise ValueError(f"{name}: models['eps_model'] is missing; it guides the unconditional eps-model")
    if settings.rho == 0 and settings.mu == 0:
        return Guided(ClipDenoised(model, schedule) if clip_x0 else model)
    classifier = models.get("clean_classifier")
    if classifier is None:
        raise ValueError(f"{name}: models['clean_classifier'] is missing; training-free guidance needs the clean "
                         "guide classifier (the network guide_classifier), not the noisy one")
    return Guided(TrainingFreeGuidance(model, classifier, settings, schedule, clip_x0))


def build_dps(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """dps: x_{t'} = step(x_t) + zeta grad_{x_t} log f(y | x0_hat(x_t)), zeta = scale (Chung et al.
    2023, Alg. 1). TFG's code divides DPS's gradient by |log f| per sample (its analogue of DPS's
    zeta' / ||y - A(x0_hat)||); we keep Algorithm 1's constant zeta, so zeta is one number for all."""
    settings = TrainingFreeSettings(rho=scale, rho_schedule="sqrt_alpha")
    return training_free(models, settings, schedule, clip_x0=clip_x0, name="dps")


def build_freedom(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """freedom: DPS's step at rho = scale, each step tried guidance.freedom_recurrences times with time
    travel (Yu et al. 2023, sec. 3.3). Yu et al. time-travel only within a middle range of steps; we do
    at every step (so does TFG's code)."""
    settings = TrainingFreeSettings(rho=scale, rho_schedule="sqrt_alpha",
                                    recurrences=FREEDOM_RECURRENCES.value_in(options))
    return training_free(models, settings, schedule, clip_x0=clip_x0, name="freedom")


def build_mpgd(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """mpgd: x0_hat + c grad_{x_0} log f(y | x0_hat), c = scale, then the unguided step from it (He et
    al. 2024, Alg. 1; TFG's mpgd.py)."""
    settings = TrainingFreeSettings(mu=scale, inner_steps=1)
    return training_free(models, settings, schedule, clip_x0=clip_x0, name="mpgd")


def build_ugd(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """ugd: forward guidance eps - s sqrt(1 - abar_t) grad_{x_t} log f(y | x0_hat) (Bansal et al. 2023,
    eq. 6: rho_t = s (1 - abar_t)), backward guidance of m = guidance.ugd_backward_steps steps of s in
    x_0 (their eq. 9, solved by gradient ascent as TFG's ugd.py does), k = guidance.ugd_recurrences
    tries per step; the guided eps is the step's eps in both of its terms (``direction="guided"``)."""
    settings = TrainingFreeSettings(rho=scale, rho_schedule="one_minus_abar", mu=scale,
                                    inner_steps=UGD_BACKWARD_STEPS.value_in(options),
                                    recurrences=UGD_RECURRENCES.value_in(options), direction="guided")
    return training_free(models, settings, schedule, clip_x0=clip_x0, name="ugd")


def build_tfg(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """tfg: TFG (Ye et al. 2024, Alg. 1) at rho = scale, mu = guidance.tfg_mu_ratio rho, N_iter =
    guidance.tfg_inner_steps, N_recur = guidance.tfg_recurrences, both weights on guidance.tfg_schedule."""
    schedule_kind = TFG_SCHEDULE.value_in(options)
    settings = TrainingFreeSettings(rho=scale, mu=TFG_MU_RATIO.value_in(options) * scale,
                                    inner_steps=TFG_INNER_STEPS.value_in(options),
                                    recurrences=TFG_RECURRENCES.value_in(options),
                                    rho_schedule=schedule_kind, mu_schedule=schedule_kind)
    return training_free(models, settings, schedule, clip_x0=clip_x0, name="tfg")

