"""What every training-free guidance method shares: TFG's unified step (Ye et al. 2024, "TFG: Unified
Training-Free Guidance for Diffusion Models", Alg. 1), in the form our samplers take.

Training-free guidance has no noisy classifier. It guides with a classifier f(y | x_0) of clean
images, applied to the model's own estimate x0_hat(x_t) = E[x_0 | x_t] (Tweedie). In effect it
approximates p(y | x_t) = E[f(y | x_0) | x_t] by f(y | x0_hat(x_t)); docs/approximations.md measures
that approximation on the exact mixtures. One step t -> t' (alpha_t = abar_t / abar_{t'}):

    log f~(x_0) = log (1/K) sum_k f(y | x_0 + gamma_t e_k),   e_k ~ N(0, I)   (smoothing; K = 1, gamma = 0: log f)
    Delta_t = rho_t grad_{x_t} log f~(x0_hat(x_t))                         ("mean guidance", through the eps-model)
    x_0^(0) = x0_hat,  x_0^(i+1) = x_0^(i) + mu_t grad_{x_0} log f~(x_0^(i)),  i < N_iter   ("variance guidance")
    Delta_0 = x_0^(N_iter) - x0_hat
    x_{t'} = step(x_t; x0_hat, eps) + Delta_t / sqrt(alpha_t) + sqrt(abar_{t'}) Delta_0      (TFG's code, methods/tfg.py)

with step(x_t; x_0, eps) = sqrt(abar_{t'}) x_0 + sqrt(1 - abar_{t'} - sigma_t^2) eps + sigma_t z, DDIM
eq. 12. Because sqrt(abar_{t'}) / sqrt(alpha_t) = sqrt(abar_t), the two shifts are one change of x_0
with the direction eps kept:

    x_{t'} = step(x_t; x0_hat + Delta_0 + Delta_t / sqrt(abar_t), eps),

which needs nothing of t' and is what `guided_eps_and_direction` returns: the eps whose x0
prediction is the guided x_0, and the unguided eps as the renoising direction (the samplers'
``eps_and_direction`` contract, as CFG++ uses it). TFG repeats the whole step N_recur times, renoising
x_{t'} back to t in between, x_t = sqrt(alpha_t) x_{t'} + sqrt(1 - alpha_t) z ("time travel"): the
samplers do that for a model that asks (``recurrences``, diffguide.diffusion.chain), with
``schedules.Step.renoise``.

The weights follow TFG's schedules over the S steps of a chain (`schedule_weights`): "increase" is
alpha_t, "decrease" 1 - alpha_t, "constant" 1, each scaled to mean 1 over the chain, so rho and mu are
the chain's mean weights; gamma's "decrease" is gamma sqrt(1 - abar_t), unnormalised.
docs/readings/tfg_reference_code.md has the reference code's lines for each formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from diffguide.guidance.parts import FollowsSteps, StepTracker

SCHEDULES = ("increase", "decrease", "constant")  # TFG's, each normalised to mean 1 over the chain
# The special cases' own step sizes written as TFG weights, not normalised: DPS's and FreeDoM's
# x_{t'} += zeta grad is rho_t = zeta sqrt(alpha_t) (the shift is Delta_t / sqrt(alpha_t)); UGD's
# eps - s sqrt(1 - abar_t) grad moves x_0 by s (1 - abar_t) / sqrt(abar_t) grad: rho_t = s (1 - abar_t).
PAPER_SCHEDULES = ("sqrt_alpha", "one_minus_abar")
DIRECTIONS = ("unguided", "guided")

LogProb = Callable[[torch.Tensor], torch.Tensor]  # x_0 [B, ...] -> log f(y | x_0) [B], labels bound


def schedule_weights(kind: str, abar: torch.Tensor, abar_next: torch.Tensor) -> torch.Tensor:
    """The weight per step of a chain for its abar_t and abar_{t'} [S]: TFG's alpha_t ("increase"),
    1 - alpha_t ("decrease") or 1 ("constant"), each scaled to mean 1 over the steps; or a special
    case's own step size, unscaled: sqrt(alpha_t) ("sqrt_alpha") or 1 - abar_t ("one_minus_abar")."""
    if kind not in SCHEDULES + PAPER_SCHEDULES:
        raise ValueError(f"unknown training-free schedule {kind!r}; choose one of {SCHEDULES + PAPER_SCHEDULES}")
    alpha = abar / abar_next
    if kind in PAPER_SCHEDULES:
        return alpha.sqrt() if kind == "sqrt_alpha" else 1 - abar
    shape = {"increase": alpha, "decrease": 1 - alpha, "constant": torch.ones_like(alpha)}[kind]
    return shape * len(shape) / shape.sum()


def smoothing_std(kind: str, gamma: float, abar: torch.Tensor) -> torch.Tensor:
    """gamma_t: gamma sqrt(1 - abar_t) ("decrease") or gamma ("constant"); not normalised."""
    if kind not in ("decrease", "constant"):
        raise ValueError(f"unknown smoothing schedule {kind!r}; choose 'decrease' or 'constant'")
    return gamma * (1 - abar).sqrt() if kind == "decrease" else torch.full_like(abar, gamma)


def smoothed(log_f: LogProb, std: float, draws: torch.Tensor | None) -> LogProb:
    """log f~(x_0) = log mean_k f(y | x_0 + std e_k) for fixed draws e [K, B, ...]; log f itself where
    std = 0 or there are no draws."""
    if std == 0 or draws is None:
        return log_f
    def averaged(x0: torch.Tensor) -> torch.Tensor:
        values = torch.stack([log_f(x0 + std * e) for e in draws])
        return torch.logsumexp(values, dim=0) - math.log(len(draws))
    return averaged


def mean_guidance(x_t: torch.Tensor, predict_x0: Callable[[torch.Tensor], torch.Tensor], log_f: LogProb,
                  rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_hat, Delta_t): the model's x_0 prediction and rho grad_{x_t} log f~(x0_hat(x_t)), the
    gradient taken through the prediction (DPS's and FreeDoM's, TFG's rho term). At rho = 0 no
    gradient is taken."""
    if rho == 0:
        with torch.no_grad():
            return predict_x0(x_t), torch.zeros_like(x_t)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        x0 = predict_x0(x)
        (gradient,) = torch.autograd.grad(log_f(x0).sum(), x)
    return x0.detach(), rho * gradient


def variance_guidance(x0: torch.Tensor, log_f: LogProb, mu: float, inner_steps: int) -> torch.Tensor:
    """Delta_0: ``inner_steps`` gradient-ascent steps of size mu on log f~ in x_0 space, from x0_hat,
    with no Jacobian of the model (MPGD's and UGD's backward guidance, TFG's mu term)."""
    moved = x0.detach()
    if mu == 0:
        return torch.zeros_like(moved)
    for _ in range(inner_steps):
        with torch.enable_grad():
            point = moved.requires_grad_(True)
            (gradient,) = torch.autograd.grad(log_f(point).sum(), point)
        moved = (point + mu * gradient).detach()
    return moved - x0.detach()


def guided_eps_and_direction(x_t: torch.Tensor, x0_hat: torch.Tensor, delta_t: torch.Tensor, delta_0: torch.Tensor,
                             abar_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps for x_0, direction eps) of TFG's step: the first predicts x0_hat + Delta_0 + Delta_t /
    sqrt(abar_t), the second is the unguided eps of x0_hat (DDIM eq. 12's second term keeps it).
    UGD instead renoises with the guided eps (``TrainingFreeSettings.direction``)."""
    eps = (x_t - abar_t.sqrt() * x0_hat) / (1 - abar_t).sqrt()
    guided = x0_hat + delta_0 + delta_t / abar_t.sqrt()
    return (x_t - abar_t.sqrt() * guided) / (1 - abar_t).sqrt(), eps



@dataclass(frozen=True)
class TrainingFreeSettings:
    """TFG's hyper-parameters (Ye et al. 2024, sec. 3; the reference code's names in brackets):
    ``rho`` and ``mu`` the chain's mean weights of the two guidance terms, ``inner_steps`` N_iter
    [iter_steps], ``recurrences`` N_recur [recur_steps], and the schedules of rho and mu over the
    chain (SCHEDULES, or a special case's own step size: PAPER_SCHEDULES), and ``direction``: the
    eps the step renoises with, the unguided one (TFG's code, DPS, FreeDoM, MPGD: x_{t'} is the
    unguided step plus the shifts) or the guided one (UGD: its eps_hat is the eps of the sampler's
    step, both terms). The Gaussian smoothing gamma is left out (gamma = 0: log f itself; TFG's
    CIFAR-10 setting, gamma = 0.001 sqrt(1 - abar_t), moves x_0 by 0.1% of its range)."""

    rho: float = 0.0
    mu: float = 0.0
    inner_steps: int = 1
    recurrences: int = 1
    rho_schedule: str = "constant"
    mu_schedule: str = "constant"
    direction: str = "unguided"

    def __post_init__(self):
        if self.rho < 0 or self.mu < 0:
            raise ValueError(f"training-free guidance: rho and mu must be >= 0, got rho = {self.rho}, mu = {self.mu}")
        if self.inner_steps < 1 or self.recurrences < 1:
            raise ValueError(f"training-free guidance: inner_steps and recurrences must be >= 1, got "
                             f"{self.inner_steps} and {self.recurrences}")
        for kind in (self.rho_schedule, self.mu_schedule):
            if kind not in SCHEDULES + PAPER_SCHEDULES:
                raise ValueError(f"unknown training-free schedule {kind!r}; choose one of {SCHEDULES + PAPER_SCHEDULES}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"training-free guidance: direction {self.direction!r} is not one of {DIRECTIONS}")


class TrainingFreeGuidance(FollowsSteps, nn.Module):
    """TFG's step around an eps-model and a classifier of clean images, ``logits = classifier(x0)``.
    Under a sampler (diffguide.diffusion.chain) it hears the chain's noise levels (for its schedules'
    weights), the step it is on, and asks for ``recurrences`` tries per step; it returns (eps for
    x_0, direction eps) as `guided_eps_and_direction`. ``schedule`` gives abar_t; with ``clip_x0``
    x0_hat is clamped to [-1, 1] before guidance, as TFG's code does, and the guided x_0 is not.
    Called outside a sampler, every step gets the mean weights rho and mu."""

    def __init__(self, model: nn.Module, classifier: nn.Module, settings: TrainingFreeSettings, schedule, clip_x0: bool):
        super().__init__()
        self.model, self.classifier, self.settings = model, classifier, settings
        self.schedule, self.clip_x0 = schedule, clip_x0
        self.recurrences = settings.recurrences
        self.steps, self.weights = StepTracker(), None

    def chain_levels(self, abar: torch.Tensor, abar_next: torch.Tensor) -> None:
        s = self.settings
        self.weights = (s.rho * schedule_weights(s.rho_schedule, abar, abar_next),
                        s.mu * schedule_weights(s.mu_schedule, abar, abar_next))

    def step_weights(self, x: torch.Tensor, t: torch.Tensor) -> tuple[float, float]:
        """(rho_t, mu_t) of the step this call belongs to."""
        if self.weights is None:
            return self.settings.rho, self.settings.mu
        _, index = self.steps.position(x, t)
        return float(self.weights[0][index]), float(self.weights[1][index])

    def eps_and_direction(self, x, t, y):
        abar = self.schedule.abar(t, x)
        rho, mu = self.step_weights(x, t)

        def predict_x0(points):
            x0 = (points - (1 - abar).sqrt() * self.model(points, t, None)) / abar.sqrt()
            return x0.clamp(-1, 1) if self.clip_x0 else x0

        def log_f(x0):
            return torch.log_softmax(self.classifier(x0), dim=-1)[torch.arange(len(x0)), y]

        x0, delta_t = mean_guidance(x, predict_x0, log_f, rho)
        delta_0 = variance_guidance(x0, log_f, mu, self.settings.inner_steps)
        guided, unguided = guided_eps_and_direction(x, x0, delta_t, delta_0, abar)
        return guided, (unguided if self.settings.direction == "unguided" else guided)

    def forward(self, x, t, y):
        return self.eps_and_direction(x, t, y)[0]
