"""Similarity guidance: semantic diffusion guidance (SDG; Liu et al., "More Control for Free! Image
Synthesis with Semantic Diffusion Guidance", arXiv 2112.05744; code xh-liu/SDG_code).

Guidance needs only a function that is large when x_t matches the condition y, so SDG replaces the
classifier's log p_phi(y | x_t) by a similarity of embeddings (docs/equations.md, part 9):

    F(x_t, y, t) = sim(E~(x_t, t), target_y)                                   (SDG, similarity)

with E~ a noise-aware image encoder (encoders.NoisyImageEncoder) and target_y either the text
embedding T("a photo of a <class y>") of the class prompt (``sdg_text``) or the clean image
embedding E(x_ref) of reference image y (``sdg_image``), E and T the CLIP-style encoders
(encoders.ClipModel). Guidance by F at scale gamma is gradient guidance with the guide F
(guidance.gradient_guided), in either of classifier guidance's forms:

    x_{t'} ~ N(mu + gamma * Sigma * grad_{x_t} F(x_t, y, t), Sigma)            (SDG, guided step; mean form)
    eps_hat = eps - gamma * sqrt(1 - abar_t) * grad_{x_t} F(x_t, y, t)         (SDG, score form)

the mean form for the ancestral sampler (guidance.GradientCondFn, guided-diffusion's
condition_mean, as SDG's scripts/sample.py runs it through p_sample_loop's cond_fn), the score
form for DDIM with any eta (guidance.GradientGuidance). x0 clipping sits where guidance.cg_clip_order
says, as for classifier guidance (by default the unguided x0 is clipped, then the shift).

``sim`` (option ``sdg_similarity``):
- ``"cosine"`` (default): <E~, target> / (||E~|| ||target||). SDG's code normalises both features
  (sdg/guidance.py text_loss and image_loss "semantic"), and the cosine keeps gamma's meaning: the
  dot product is ||E~|| ||target|| cos, whose gradient ||target|| (||E~|| grad cos + cos grad ||E~||)
  scales the alignment term by both norms (which differ between images, steps and targets: class
  prompts' T are not normalised) and adds a pull towards a larger ||E~|| whatever its direction;
  the cosine is the alignment alone, bounded in [-1, 1] for every target.
- ``"dot"``: <E~, target>, the inner product as the SDG paper writes F (E~(x_t, t) . E(y)).

Where we differ from SDG's code (named deviations):
- Image guidance compares E~(x_t, t) with the *clean* embedding E(x_ref) of the reference
  (``sdg_reference: clean``, the default, as issue 14 asks). SDG's cond_fn_sdg compares it with
  E~(q_sample(x_ref, t), t), the noise-aware embedding of the reference noised to the same t, with
  fresh noise at each step. ``sdg_reference: noised`` does that (``NoisedReferenceSimilarity``), with
  the noise seeded by the timestep (the same draw for every batch, scale and rerun) instead of fresh.
  The config key is guidance.sdg_reference.
- SDG's style guidance (image_loss "style": the MSE of Gram matrices of intermediate features) is
  not implemented; only its semantic (embedding) term is.
- SDG multiplies the similarity by text_weight / image_weight inside cond_fn; here gamma is the
  scale of the wrapper, the same number.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.wrappers import Guided, gradient_guided
from diffguide.models.encoders import SIMILARITIES, similarity

REFERENCE_TARGETS = ("clean", "noised")
# The noised references' draws: timestep t uses PerSampleNoise(REFERENCE_NOISE_SEED, [t]), a generator seeded with
# REFERENCE_NOISE_SEED * 1_000_003 + t.
REFERENCE_NOISE_SEED = 0

Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Similarity(nn.Module):
    """F(x_t, k, t) = sim(E~(x_t, t), targets[k]) for every k: the guide of similarity guidance,
    (x_t, t) -> [B, K] (guidance.Guide). ``encoder``: (x_t, t) -> [B, D]; ``targets``: [K, D], fixed
    (detached: only x_t is differentiated)."""

    def __init__(self, encoder: Encoder, targets: torch.Tensor, measure: str = "cosine"):
        super().__init__()
        if measure not in SIMILARITIES:
            raise ValueError(f"unknown similarity {measure!r}; choose one of {SIMILARITIES}")
        self.encoder, self.measure = encoder, measure
        self.register_buffer("targets", targets.detach())

    def forward(self, x, t):
        return similarity(self.encoder(x, t), self.targets, self.measure)


class NoisedReferenceSimilarity(nn.Module):
    """SDG's image guidance as its code computes it (scripts/sample.py, cond_fn_sdg):
    F(x_t, r, t) = sim(E~(x_t, t), E~(q_sample(x_ref_r, t, z_t), t)), the reference noised to the
    step's own t (DDPM eq. 4) and embedded by the noise-aware encoder, under no-grad. SDG draws z
    afresh each step; here z_t is drawn from a generator seeded by t alone (REFERENCE_NOISE_SEED), in
    float64 on the CPU and then cast, so every batch, scale and rerun sees the same noised references.
    Rows of different t (the mean form's grad_at="mean" hands t' = max(t', 0)) get their own targets."""

    def __init__(self, encoder: Encoder, references: torch.Tensor, schedule: NoiseSchedule, measure: str = "cosine",
                 seed: int = REFERENCE_NOISE_SEED):
        super().__init__()
        if measure not in SIMILARITIES:
            raise ValueError(f"unknown similarity {measure!r}; choose one of {SIMILARITIES}")
        self.encoder, self.schedule, self.measure, self.seed = encoder, schedule, measure, int(seed)
        self.register_buffer("references", references.detach())

    def noise(self, t: int) -> torch.Tensor:
        """z_t for every reference: [R, C, H, W], the same for the same (seed, t): the sampler's
        per-index generator (seeding.PerSampleNoise) with the timestep as the index."""
        z = PerSampleNoise(self.seed, [int(t)]).randn(self.references.shape, device=self.references.device,
                                                      dtype=self.references.dtype)
        return z[0]

    @torch.no_grad()
    def targets(self, t: int) -> torch.Tensor:
        """E~(q_sample(x_ref, t, z_t), t): [R, D]."""
        tt = torch.full((len(self.references),), int(t), dtype=torch.long, device=self.references.device)
        return self.encoder(self.schedule.q_sample(self.references, tt, self.noise(t)), tt)

    def forward(self, x, t):
        by_t = {value: self.targets(value) for value in t.unique().tolist()}
        per_row = torch.stack([by_t[value] for value in t.tolist()])  # [B, R, D]
        return similarity(self.encoder(x, t), per_row, self.measure)


def _option(options: dict, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise ValueError(f"guidance.{key}: {value!r} is not one of {choices}")
    return value


def _similarity_guided(models: dict, guide: nn.Module | None, scale: float, schedule: NoiseSchedule, *,
                       clip_x0: bool, options: dict) -> Guided:
    """Gradient guidance of the unconditional eps-model (called without labels: y is for the guide,
    as classifier guidance's cg) by ``guide``, in the form and clip order of guidance.cg_form and
    guidance.cg_clip_order."""
    return gradient_guided(models["eps_model"], guide, scale, schedule, form=options["cg_form"], clip_x0=clip_x0,
                           clip_order=options["cg_clip_order"], condition_model=False)


# The builders the registry's rows name (sdg_text, sdg_image), with the registry's builder signature.
# At scale 0 ``models`` holds only eps_model, no guide is built, and the result is the unguided model.

def build_text_similarity_guided(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                                 options: dict) -> Guided:
    """sdg_text: similarity guidance at gamma = scale towards the class prompt's text embedding:
    F(x_t, y, t) = sim(E~(x_t, t), T(prompt_y)) with T(prompt_y) = models["clip"].encode_class_names()[y]
    (class order), E~ = models["noisy_encoder"], sim = guidance.sdg_similarity (cosine by default)."""
    measure = _option(options, "sdg_similarity", "cosine", SIMILARITIES)
    guide = None
    if scale != 0:
        with torch.no_grad():
            targets = models["clip"].encode_class_names()
        guide = Similarity(models["noisy_encoder"], targets, measure)
    return _similarity_guided(models, guide, scale, schedule, clip_x0=clip_x0, options=options)


def build_image_similarity_guided(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool,
                                  options: dict) -> Guided:
    """sdg_image: similarity guidance at gamma = scale towards a reference image: y is each sample's
    reference slot r (0..R-1) of models["references"] ([R, channels, H, W] in [-1, 1]) and
    F(x_t, r, t) = sim(E~(x_t, t), E(x_ref_r)) with E = models["clip"].encode_image, the clean
    embedding (``sdg_reference: clean``, default), or SDG code's E~(q_sample(x_ref_r, t), t)
    (``sdg_reference: noised``, NoisedReferenceSimilarity)."""
    measure = _option(options, "sdg_similarity", "cosine", SIMILARITIES)
    reference = _option(options, "sdg_reference", "clean", REFERENCE_TARGETS)
    guide = None
    if scale != 0:
        references = models["references"]
        if reference == "clean":
            with torch.no_grad():
                targets = models["clip"].encode_image(references)
            guide = Similarity(models["noisy_encoder"], targets, measure)
        else:
            guide = NoisedReferenceSimilarity(models["noisy_encoder"], references, schedule, measure)
    return _similarity_guided(models, guide, scale, schedule, clip_x0=clip_x0, options=options)
