"""The losses the training loop is used with, and the classifier augmentation one of them
draws: DDPM's eps loss with label dropping for classifier-free guidance (optionally Min-SNR
weighted), the noisy classifier's cross-entropy on x_t (D&N sec. 4.3), the evaluation
classifier's cross-entropy on clean images, and semantic diffusion guidance's two encoder losses
(the clip's contrastive loss, the noisy image encoder's). Each is a ``LossFn``: ``loss(model, x0, y)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # only for annotations: encoders imports networks, which imports guidance
    from diffguide.models.encoders import ClipModel

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.models.networks import NULL_LABEL

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def min_snr_weights(schedule: NoiseSchedule, t: torch.Tensor, gamma: float, like: torch.Tensor) -> torch.Tensor:
    """Hang et al. 2023 (Min-SNR-gamma), eq. for eps-prediction: w_t = min(SNR_t, gamma) / SNR_t,
    SNR_t = abar_t / (1 - abar_t). Low-noise steps (SNR > gamma), whose eps is hard to predict and
    matters little for samples, stop dominating the gradient; high-noise steps keep weight 1."""
    abar = schedule.alphas_cumprod.to(t.device)[t]  # float64: 1 - abar_0 ~ 4e-5 is lost in float32
    snr = abar / (1 - abar)
    return (snr.clamp(max=gamma) / snr).to(device=like.device, dtype=torch.float32)


def diffusion_loss(schedule: NoiseSchedule, p_uncond: float | None, min_snr_gamma: float | None = None) -> LossFn:
    """DDPM's simple loss ||eps - eps_theta(x_t, t, y)||^2 with t ~ U{0..T-1}. For a conditional
    model (p_uncond not None) each label is replaced by the null class with probability p_uncond
    (H&S Alg. 1; DDPM eq. 14); an unconditional model gets y = None. With
    ``min_snr_gamma`` each image's loss is weighted by min_snr_weights."""

    def loss(model, x0, y):
        t = torch.randint(0, schedule.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise)
        if p_uncond is None:
            y_in = None
        else:
            drop = torch.rand(len(y), device=y.device) < p_uncond
            y_in = torch.where(drop, torch.full_like(y, NULL_LABEL), y)
        if min_snr_gamma is None:
            return F.mse_loss(model(x_t, t, y_in).float(), noise)
        per_image = (model(x_t, t, y_in).float() - noise).pow(2).flatten(1).mean(1)
        return (min_snr_weights(schedule, t, min_snr_gamma, x0) * per_image).mean()

    return loss


def augment_images(x0: torch.Tensor, random_flip: bool = False, random_crop: int = 0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """guided-diffusion's classifier augmentation, drawn per image: a horizontal flip with
    probability 1/2, and a shift by up to ``random_crop`` pixels each way (reflection-pad by
    ``random_crop``, then crop back to the original size). Both off: ``x0`` itself is returned."""
    if random_flip:
        flip = torch.rand(len(x0), generator=generator, device=x0.device) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    if random_crop > 0:
        b, _, h, w = x0.shape
        p = random_crop
        mode = "reflect" if p < min(h, w) else "replicate"  # reflection needs a pad below the side
        padded = F.pad(x0, (p, p, p, p), mode=mode)
        dy, dx = (torch.randint(0, 2 * p + 1, (b,), generator=generator, device=x0.device) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h, device=x0.device))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=x0.device))[:, None, :]  # [B, 1, W]
        x0 = padded[torch.arange(b, device=x0.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    return x0


def noisy_classifier_loss(schedule: NoiseSchedule, random_flip: bool = False, random_crop: int = 0) -> LossFn:
    """Cross-entropy of p_phi(y | x_t, t) on x_t = q_sample(x_0, t), t ~ U{0..T-1} (D&N sec. 4.3),
    with x_0 optionally augmented first (``augment_images``; off by default, since a flip changes
    the class of some digits)."""

    def loss(model, x0, y):
        x0 = augment_images(x0, random_flip, random_crop)
        t = torch.randint(0, schedule.timesteps, (len(x0),), device=x0.device)
        x_t = schedule.q_sample(x0, t, torch.randn_like(x0))
        return F.cross_entropy(model(x_t, t).float(), y)

    return loss


def clean_classifier_loss() -> LossFn:
    """Cross-entropy on clean images. No flip augmentation: a flip changes the class of some
    digits, and the evaluation classifier should judge samples by the data as it is."""

    def loss(model, x0, y):
        return F.cross_entropy(model(x0).float(), y)

    return loss



def cosine_logits(a: torch.Tensor, b: torch.Tensor, scale) -> torch.Tensor:
    """scale * cos(a_i, b_j) [len(a), len(b)], in float32 even under bf16 autocast: at CLIP's
    scale of up to 100, bf16's 3 significant digits would put errors of 0.4 into the logits."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        return scale * F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def clip_contrastive_loss() -> LossFn:
    """CLIP's symmetric contrastive loss (Radford et al. 2021, Fig. 3) between a batch of images
    and the C class prompts, for a ClipModel whose forward gives (E(x), T(prompts), scale).

    CLIP pairs each image with its own caption and treats the other B - 1 captions as negatives.
    Here a batch holds many images of each class, and images of one class share one prompt, so
    that one-to-one InfoNCE would push apart an image and its own class's prompt (false
    negatives). Instead, with logits_ic = scale * cos(E(x_i), T(prompt_c)):
    - image -> text: cross-entropy of each image over all C class prompts against its label;
    - text -> image: for each class present in the batch, cross-entropy of its prompt over the
      batch's images against soft targets uniform over that class's images (multi-positive,
      as SupCon, Khosla et al. 2020); a class absent from the batch has no positive and no term;
    and the loss is their average, as CLIP's."""

    def loss(model, x0, y):
        images, texts, scale = model(x0)
        logits = cosine_logits(images, texts, scale.float())  # [B, C]
        present = torch.unique(y)
        positives = (y[None, :] == present[:, None]).float()  # [P, B]
        text_to_image = F.cross_entropy(logits.T[present], positives / positives.sum(1, keepdim=True))
        return (F.cross_entropy(logits, y) + text_to_image) / 2

    return loss


NOISY_EMBEDDING_RECIPES = ("clean_image", "text")
SDG_LOGIT_SCALE = 100.0  # the fixed scale of SDG's fine-tuning loss (clip_finetune_noise_nolabel.py)


def _against_clean_image(target: "ClipModel", noisy: torch.Tensor, x0: torch.Tensor, y: torch.Tensor):
    """SDG's loss: E~(x_t)_i should match E(x_0)_i among the batch's clean embeddings, and back."""
    with torch.no_grad():
        clean = target.encode_image(x0)
    logits = cosine_logits(noisy, clean, SDG_LOGIT_SCALE)
    same = torch.arange(len(x0), device=x0.device)
    return F.cross_entropy(logits, same) + F.cross_entropy(logits.T, same)


def _against_text(target: "ClipModel", noisy: torch.Tensor, x0: torch.Tensor, y: torch.Tensor):
    """E~(x_t) classified by the class prompts' T, at the clip's own learned scale."""
    with torch.no_grad():
        texts, scale = target.encode_class_names(), target.scale().float()
    return F.cross_entropy(cosine_logits(noisy, texts, scale), y)


def noisy_embedding_loss(schedule: NoiseSchedule, target: "ClipModel", recipe: str = "clean_image") -> LossFn:
    """Fine-tune E~(x_t, t) on x_t = q_sample(x_0, t), t ~ U{0..T-1}, against ``target``, a
    ClipModel frozen here (eval mode, no gradients).

    - ``clean_image`` (default; SDG's released recipe, scripts/clip_finetune_noise_nolabel.py):
      symmetric InfoNCE between the normalised E~(x_t, t) and the frozen clean encoder's
      normalised E(x_0) of the same batch, logits scaled by 100, loss = the two directions'
      cross-entropies summed (as that script does). It needs no text, and it trains E~(x_t) to
      estimate E(x_0): the space both guidance targets (an image's E, a prompt's T) live in.
    - ``text``: cross-entropy of cos(E~(x_t, t), T(class prompts)) times the clip's own learned
      scale against y: E~ learns to classify by the prompts directly, and only toward them."""
    if recipe not in NOISY_EMBEDDING_RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {NOISY_EMBEDDING_RECIPES}")
    target.eval().requires_grad_(False)
    against = {"clean_image": _against_clean_image, "text": _against_text}[recipe]

    def loss(model, x0, y):
        t = torch.randint(0, schedule.timesteps, (len(x0),), device=x0.device)
        return against(target, model(schedule.q_sample(x0, t, torch.randn_like(x0)), t), x0, y)

    return loss
