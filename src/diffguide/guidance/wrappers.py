"""Guidance as eps-model wrappers and a mean-shift hook. Each wrapper takes a model with the contract
``eps = model(x_t, t, y)`` and returns one, so the samplers never know which guidance is active (as
k-diffusion's wrappers); guidance that moves the ancestral mean instead is guided-diffusion's
``cond_fn``, a hook the ancestral step calls where its mean and variance exist. Every method is
built as the same pair, ``Guided(model, cond_fn)``, which the samplers take as their ``model`` and
``cond_fn`` arguments.

Conventions:
- ``w`` is Ho & Salimans' guidance strength: w = 0 is the plain conditional model. diffusers'
  and Imagen's ``guidance_scale`` equals 1 + w.
- ``s`` is Dhariwal & Nichol's classifier scale. D&N read scaling the gradient by s as guiding with
  the sharper classifier p(y | x)^s / Z (D&N sec. 4.3), but only approximately: Z(x) = sum_y
  p(y | x)^s depends on x and guidance drops its gradient, so it follows p_t(x) p_t(y | x)^s
  (docs/equations.md, part 8).
- ``NULL_LABEL`` (-1) asks a conditional model for its unconditional output eps(x, null).

Classifier guidance is one instance of *gradient guidance*: a guide (x_t, t) -> [B, K] values,
entry y of which is large when x_t matches the condition y, shifts the model along
g = grad_{x_t} guide(x_t, t)[y] (``guide_gradient``). For classifier guidance the guide is
log_softmax(classifier(x_t, t)) = log p_phi(y | x_t) (``ClassifierLogProb``); semantic diffusion
guidance (diffguide.guidance.methods.similarity) uses a similarity F(x_t, y) of image and target embeddings instead
(D&N's derivation needs only that g points towards x_t matching y). Two forms live here:
- ``GradientGuidance``: the score shift (D&N Alg. 2, D&N eqs. 13-14), an eps-model wrapper valid
  for any sampler (DDIM with any eta, ancestral DDPM); guided-diffusion's ``condition_score``.
  ``ClassifierGuidance`` is it with the classifier's guide.
- ``GradientCondFn``: the mean shift of an ancestral step (D&N Alg. 1, D&N eqs. 7-10), the hook
  ``cond_fn`` of samplers.sample_ddpm, which adds Sigma * cond_fn to the mean (guided-diffusion's
  ``condition_mean``). ``ClassifierCondFn`` is it with the classifier's guide.
``gradient_guided`` assembles either form with x0 clipping; ``classifier_guided`` is it with the
classifier's guide.

x0 clipping is a wrapper too (``ClipDenoised``), so where it sits in the chain is explicit:
- classifier-free guidance clips the *guided* prediction: ClipDenoised(ClassifierFreeGuidance(m)),
  as diffusers' pipelines do (the scheduler clips what the guided eps implies);
- classifier guidance (and any gradient guidance), by default (``clip_order="unguided_x0"``), clips
  the *unguided* x0 and then shifts eps (or the mean) with nothing clipped again:
  ClassifierGuidance(ClipDenoised(m)), or ClipDenoised(m) with the cond_fn hook. This is
  guided-diffusion's order (``p_mean_variance`` clips, then ``condition_score`` / ``condition_mean``
  shift), so our s is Dhariwal & Nichol's s.
  ``clip_order="guided_x0"`` clips after the score shift instead, ClipDenoised(ClassifierGuidance(m)):
  every x0 the sampler sees stays in [-1, 1], which tames very large s, but where x0 saturates it
  absorbs part of the guidance displacement (on the mixtures a DDIM step keeps a median 60%, 34%
  and 11% of it at s = 1, 3 and 10), so s means less. The mean shift has no such order: it is added
  to the mean after x0 is clipped, and clipping the x0 the shifted mean implies is not a shift by
  Sigma * cond_fn (it moves the mean even where Sigma = 0), so ``gradient_guided`` refuses it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from diffguide.diffusion.samplers import clip_denoised
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.models.networks import NULL_LABEL

CLIP_ORDERS = ("unguided_x0", "guided_x0")
CG_FORMS = ("score", "mean")


class Guided(NamedTuple):
    """What every guidance method builds: the eps-model the sampler calls, and the mean-shift hook
    of ancestral steps (None unless the method shifts the mean: classifier guidance's mean form)."""

    model: nn.Module
    cond_fn: Callable[..., torch.Tensor] | None = None


class ClipDenoised(nn.Module):
    """The model's eps, replaced by the eps of its x0 prediction clipped to [-1, 1]
    (samplers.clip_denoised). Images live in [-1, 1], so a prediction outside cannot be right;
    clipping it keeps the early, noisy steps from saturating. Computed in x's dtype (autocast may
    hand back bf16 eps)."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule):
        super().__init__()
        self.model, self.schedule = model, schedule

    def forward(self, x, t, y):
        return clip_denoised(self.schedule, x, t, self.model(x, t, y).to(x.dtype))[1]


Guide = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x_t, t) -> [B, K]: entry (b, y) is large when x_t[b] matches condition y (gradient guidance's target)."""


def guide_gradient(guide: Guide, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_{x_t} guide(x_t, t)[b, y_b], row by row: one forward and one backward of the guide only
    (rows are independent, so the gradient of the sum is each row's own gradient). Low-precision values
    (bf16 / fp16 autocast) are promoted to float32 before they are picked; float64 stays float64. The
    gradient comes back in x_t's dtype."""
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        values = guide(x_in, t)
        values = values.to(torch.promote_types(values.dtype, torch.float32))
        selected = values[torch.arange(len(y), device=y.device), y]
        (grad,) = torch.autograd.grad(selected.sum(), x_in)
    return grad.to(x_t.dtype)


class ClassifierLogProb(nn.Module):
    """Classifier guidance's guide: log p_phi(y | x_t) = log_softmax(classifier(x_t, t)) for every y,
    the softmax taken in float32 at least (bf16 / fp16 autocast logits are promoted first, as
    guided-diffusion's cond_fn takes log_softmax of float logits)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x, t):
        logits = self.classifier(x, t)
        return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def classifier_log_prob_grad(classifier: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                             y: torch.Tensor) -> torch.Tensor:
    """grad_{x_t} log p_phi(y | x_t, t): one forward and one backward of the classifier only.
    Low-precision logits (bf16 / fp16 autocast) are promoted to float32; float64 logits stay float64."""
    return guide_gradient(ClassifierLogProb(classifier), x_t, t, y)


def conditional_and_null(model: nn.Module, x, t, y) -> tuple[torch.Tensor, torch.Tensor]:
    """eps(x, y) and eps(x, null) from ONE forward pass over a batch of 2B rows (conditional half,
    null half), in the model's output dtype: the call of every method that mixes the two."""
    return conditional_and_other(model, x, t, y, torch.full_like(y, NULL_LABEL))


def conditional_and_other(model: nn.Module, x, t, y, other) -> tuple[torch.Tensor, torch.Tensor]:
    """eps(x, y) and eps(x, other) (other labels per row: the null one, or ICG's independent classes)
    from ONE forward pass over 2B rows, in the model's output dtype."""
    return model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, other])).chunk(2)


class ClassifierFreeGuidance(nn.Module):
    """Ho & Salimans eq. 6:  eps~(x, y) = (1 + w) eps(x, y) - w eps(x, null).

    Both terms come from ONE forward pass over a batch of 2B (conditional half, null half); with
    ``batched=False`` from two forwards of B (the same numbers; `make bench` times both). With
    w = 0 the conditional model is returned unchanged and the null half is skipped, and so it is
    when y is None (there is nothing to guide towards). Rows of y already equal to NULL_LABEL give
    (1 + w) eps(x, null) - w eps(x, null) = eps(x, null).
    """

    def __init__(self, model: nn.Module, w: float, batched: bool = True):
        super().__init__()
        self.model, self.w, self.batched = model, float(w), batched

    def forward(self, x, t, y):
        if self.w == 0 or y is None:
            return self.model(x, t, y)
        if self.batched:
            eps_cond, eps_null = conditional_and_null(self.model, x, t, y)
        else:
            eps_cond, eps_null = self.model(x, t, y), self.model(x, t, torch.full_like(y, NULL_LABEL))
        return (1 + self.w) * eps_cond - self.w * eps_null


class GradientGuidance(nn.Module):
    """The score shift of D&N Alg. 2 (D&N eqs. 13-14) along any guide's gradient:

        eps_hat(x_t) = eps(x_t) - s * sqrt(1 - abar_t) * grad_{x_t} guide(x_t, t)[y].

    Since eps = -sqrt(1 - abar_t) grad log p_t(x_t), this is the eps of the score
    grad log p_t(x_t) + s grad guide[y]: the density p_t(x_t) exp(s guide(x_t, t)[y]).
    ``eps`` is the unconditional model (``condition_model=False``) or the conditional / classifier-free
    guided model given y (``condition_model=True``). It is evaluated under no-grad: only the guide is
    differentiated. Valid for any DDIM eta. At s = 0 the guide, which may be None, is never called.
    """

    def __init__(self, model: nn.Module, guide: Guide | None, scale: float, schedule: NoiseSchedule,
                 condition_model: bool = False):
        super().__init__()
        self.model, self.guide, self.scale = model, guide, float(scale)
        self.schedule, self.condition_model = schedule, condition_model

    def forward(self, x, t, y):
        with torch.no_grad():
            eps = self.model(x, t, y if self.condition_model else None)
        if self.scale == 0:
            return eps
        grad = guide_gradient(self.guide, x, t, y)
        return eps - self.scale * (1 - self.schedule.abar(t, x)).sqrt() * grad


class ClassifierGuidance(GradientGuidance):
    """Classifier guidance's score shift (D&N Alg. 2, D&N eqs. 13-14): GradientGuidance with the guide
    log p_phi(y | x_t) (``ClassifierLogProb``):

        eps_hat(x_t) = eps(x_t) - s * sqrt(1 - abar_t) * grad_{x_t} log p_phi(y | x_t).

    ``eps`` is the unconditional model (``condition_model=False``, D&N's main setting) or the
    conditional / classifier-free guided model given y (the conditional rows of D&N Table 4).

    With the exact eps and classifier, s = 1 on the unconditional model is the exact conditional
    eps (D&N eqs. 12-14), and s on top of ClassifierFreeGuidance(model, w) with condition_model=True
    is classifier-free guidance at w + s (both are shifts along grad log p(y | x_t)).
    """

    def __init__(self, model: nn.Module, classifier: nn.Module | None, scale: float, schedule: NoiseSchedule,
                 condition_model: bool = False):
        super().__init__(model, None if classifier is None else ClassifierLogProb(classifier), scale, schedule,
                         condition_model)

    @property
    def classifier(self) -> nn.Module | None:
        return None if self.guide is None else self.guide.classifier


class WithoutLabels(nn.Module):
    """eps(x_t, t, None): the model asked for its unconditional prediction whatever y is (the mean
    form's model when classifier guidance guides an unconditional model: y is for the classifier)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, t, y):
        return self.model(x, t, None)


class GradientCondFn:
    """The mean shift of D&N Alg. 1 (D&N eqs. 7-10) along any guide's gradient, as guided-diffusion's
    ``cond_fn``: the ancestral step (samplers.ddpm_step) moves its mean by Sigma times this,

        x_{t'} ~ N(mu + Sigma * cond_fn,  Sigma),   cond_fn = s * grad_{x_t} guide(x_t, t)[y]  at (x_t, t),

    as guided-diffusion's ``condition_mean`` (mean + variance * cond_fn). The sampler supplies mu and
    Sigma where they already exist, so the hook needs none of the sampler's settings. Compared with the
    score form, the shift of the mean is s * Sigma * g instead of s * (beta_t / sqrt(alpha_t)) * g:
    equal for Sigma = beta up to sqrt(alpha_t) = 1 - O(beta_t).

    ``grad_at="x_t"`` (default) takes g at (x_t, t) as Algorithm 1 and guided-diffusion's
    condition_mean do. ``grad_at="mean"`` takes it where the Taylor expansion of D&N eqs. 5-6
    puts it: at the unguided mean mu, for the noise level of x_{t'}, i.e.
    g = grad guide(x_{t'}, t')[y] at x_{t'} = mu with guide timestep max(t', 0).
    """

    GRAD_AT = ("x_t", "mean")

    def __init__(self, guide: Guide, scale: float, grad_at: str = "x_t"):
        if grad_at not in self.GRAD_AT:
            raise ValueError(f"grad_at must be one of {self.GRAD_AT}, got {grad_at!r}")
        self.guide, self.scale, self.grad_at = guide, float(scale), grad_at

    def __call__(self, x, t, y, *, mean, t_prev):
        if self.grad_at == "x_t":
            return self.scale * guide_gradient(self.guide, x, t, y)
        return self.scale * guide_gradient(self.guide, mean, t_prev.clamp(min=0), y)


class ClassifierCondFn(GradientCondFn):
    """Classifier guidance's mean shift (D&N Alg. 1, D&N eqs. 7-10): GradientCondFn with the guide
    log p_phi(y | x_t) (``ClassifierLogProb``), cond_fn = s * grad log p_phi(y | x_t), or at
    (mu, max(t', 0)) with ``grad_at="mean"``."""

    def __init__(self, classifier: nn.Module, scale: float, grad_at: str = "x_t"):
        super().__init__(ClassifierLogProb(classifier), scale, grad_at)

    @property
    def classifier(self) -> nn.Module:
        return self.guide.classifier


def gradient_guided(model: nn.Module, guide: Guide | None, scale: float, schedule: NoiseSchedule, *,
                    form: str = "score", clip_x0: bool = True, clip_order: str = "unguided_x0",
                    condition_model: bool = False, grad_at: str = "x_t") -> Guided:
    """Gradient guidance of ``model`` by ``guide`` at scale s as the pipeline samples it: the score
    shift (``form="score"``, any sampler: a GradientGuidance wrapper, cond_fn None) or the mean shift
    (``form="mean"``, ancestral sampling only: the model, x0-clipped, and a GradientCondFn), with x0
    clipping (``clip_x0``) placed by ``clip_order`` (see the module docstring). The eps is the unguided
    model's (given y only when ``condition_model``). At scale 0 the result is that unguided model with
    no hook and the guide, which may be None, is never called."""
    if form not in CG_FORMS:
        raise ValueError(f"unknown classifier-guidance form {form!r}; choose one of {CG_FORMS}")
    if clip_order not in CLIP_ORDERS:
        raise ValueError(f"unknown clip order {clip_order!r}; choose one of {CLIP_ORDERS}")
    if form == "mean" and clip_x0 and clip_order == "guided_x0":
        raise ValueError("guidance.cg_form: mean with guidance.cg_clip_order: guided_x0 has no mean-shift reading: the "
                         "mean shift is added after the unguided x0 is clipped, and nothing is clipped after it "
                         "(guided-diffusion's condition_mean); set guidance.cg_clip_order: unguided_x0, or "
                         "guidance.cg_form: score (or sampling.clip_x0: false)")
    clip = (lambda m: ClipDenoised(m, schedule)) if clip_x0 else (lambda m: m)
    if form == "mean":
        inner = clip(model if condition_model else WithoutLabels(model))
        return Guided(inner, GradientCondFn(guide, scale, grad_at) if scale != 0 else None)
    inner = clip(model) if clip_order == "unguided_x0" else model
    guided = GradientGuidance(inner, guide, scale, schedule, condition_model=condition_model)
    return Guided(guided if clip_order == "unguided_x0" else clip(guided))


def classifier_guided(model: nn.Module, classifier: nn.Module | None, scale: float, schedule: NoiseSchedule, *,
                      form: str = "score", clip_x0: bool = True, clip_order: str = "unguided_x0",
                      condition_model: bool = False, grad_at: str = "x_t") -> Guided:
    """Classifier guidance of ``model`` at scale s as the pipeline samples it: ``gradient_guided`` with
    the guide log p_phi(y | x_t) (D&N Alg. 2 for ``form="score"``, Alg. 1 for ``form="mean"``). At
    scale 0 the result is the unguided model with no hook and the classifier, which may be None, is
    never called."""
    guide = None if classifier is None else ClassifierLogProb(classifier)
    return gradient_guided(model, guide, scale, schedule, form=form, clip_x0=clip_x0, clip_order=clip_order,
                           condition_model=condition_model, grad_at=grad_at)


# The builders the registry's rows name (diffguide.registry): each takes the loaded models by role
# (eps_model, and classifier where the row needs one; absent at scale 0), the scale, the schedule,
# sampling.clip_x0 and the row's guidance options, and returns the Guided pair a sampler runs.

def with_guided_x0_clipped(guided: nn.Module, schedule: NoiseSchedule, clip_x0: bool) -> Guided:
    """``guided`` (an eps-model that mixes its own predictions) as the sampler's Guided pair, its
    guided x0 clipped when ``clip_x0``: classifier-free guidance's order, which every successor of
    CFG keeps (diffusers' pipelines clip what the guided eps implies)."""
    return Guided(ClipDenoised(guided, schedule) if clip_x0 else guided)


def build_classifier_free(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                          options: dict) -> Guided:
    """cfg: H&S eq. 6 on the conditional model at w = scale, its guided x0 clipped (as diffusers'
    pipelines do: the scheduler clips what the guided eps implies)."""
    return with_guided_x0_clipped(ClassifierFreeGuidance(models["eps_model"], w=scale), schedule, clip_x0)


def build_classifier_guided(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                            options: dict) -> Guided:
    """cg: classifier guidance of the unconditional model at s = scale (D&N Alg. 1 or 2, as
    guidance.cg_form says; clipped where guidance.cg_clip_order says)."""
    return classifier_guided(models["eps_model"], models.get("classifier"), scale, schedule, form=options["cg_form"],
                             clip_x0=clip_x0, clip_order=options["cg_clip_order"])


def build_conditional_classifier_guided(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                                        options: dict) -> Guided:
    """cond_cg: classifier guidance at s = scale of the conditional model, itself guided at
    w = guidance.cond_cg_w (D&N Table 4's conditional rows when w = 0)."""
    conditional = ClassifierFreeGuidance(models["eps_model"], w=options["cond_cg_w"])
    return classifier_guided(conditional, models.get("classifier"), scale, schedule, form=options["cg_form"],
                             clip_x0=clip_x0, clip_order=options["cg_clip_order"], condition_model=True)
