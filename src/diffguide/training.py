"""One training loop for every network, and the three losses it is used with.

The loop: AdamW with linear warm-up and constant or cosine decay (torch's LambdaLR), an EMA of the weights (torch.optim.swa_utils.AveragedModel),
bf16 autocast with fp32 master weights, gradient clipping, a tqdm bar with loss and images/s,
a CSV log (step, loss, lr, images/s), and a stop with a clear message on a NaN / inf loss.
"""

from __future__ import annotations

import csv
import math
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .guidance import NULL_LABEL
from .runtime import autocast, progress_bar
from .schedules import NoiseSchedule

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainSettings:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    ema_decay: float | None = None
    grad_clip: float = 1.0
    precision: str = "bf16"
    log_every: int = 25


def diffusion_loss(schedule: NoiseSchedule, p_uncond: float | None) -> LossFn:
    """DDPM's simple loss ||eps - eps_theta(x_t, t, y)||^2 with t ~ U{0..T-1}. For a conditional
    model (p_uncond not None) each label is replaced by the null class with probability p_uncond
    (Ho & Salimans Algorithm 1; seed eqs. 2.1-2.2); an unconditional model gets y = None."""

    def loss(model, x0, y):
        t = torch.randint(0, schedule.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise)
        if p_uncond is None:
            y_in = None
        else:
            drop = torch.rand(len(y), device=y.device) < p_uncond
            y_in = torch.where(drop, torch.full_like(y, NULL_LABEL), y)
        return F.mse_loss(model(x_t, t, y_in).float(), noise)

    return loss


def noisy_classifier_loss(schedule: NoiseSchedule) -> LossFn:
    """Cross-entropy of p_phi(y | x_t, t) on x_t = q_sample(x_0, t), t ~ U{0..T-1} (D&N sec. 4.3)."""

    def loss(model, x0, y):
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


def ema_average(decay: float):
    """EMA with the usual warm-up min(decay, (1 + n) / (10 + n)) so short runs are not dominated
    by the random initial weights (n = number of updates so far)."""

    def avg_fn(averaged, current, num_averaged):
        d = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged)))
        return d * averaged + (1 - d) * current

    return avg_fn


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then constant or cosine decay to zero at the last step (a classifier's
    last iterate is much better with decay; diffusion models rely on the EMA instead)."""
    if settings.warmup_steps and step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    if settings.lr_schedule == "cosine":
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))
    if settings.lr_schedule == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {settings.lr_schedule!r}; choose one of {LR_SCHEDULES}")


def train(model: nn.Module, loss_fn: LossFn, images: torch.Tensor, labels: torch.Tensor,
          settings: TrainSettings, *, device: torch.device, name: str, csv_path: str | Path,
          logger: logging.Logger | None = None) -> nn.Module:
    """Train ``model`` in place for ``settings.steps`` steps and return the network to keep:
    the EMA copy when ``ema_decay`` is set, the trained model otherwise."""
    logger = logger or logging.getLogger("diffguide")
    model.to(device).train()
    ema = AveragedModel(model, avg_fn=ema_average(settings.ema_decay)) if settings.ema_decay else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(settings, step))
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss", "lr", "images_per_s"])
        bar = progress_bar(range(settings.steps), desc=f"train {name}", unit="step")
        start = time.perf_counter()
        for step in bar:
            lr = scheduler.get_last_lr()[0]
            index = torch.randint(0, len(images), (settings.batch_size,))
            x0, y = images[index].to(device), labels[index].to(device)
            with autocast(device, settings.precision):
                loss = loss_fn(model, x0, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{name}: the loss became {loss.item()} at step {step}. Nothing was written; "
                    "lower training.<network>.lr or use precision: fp32, then rerun.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            if step % settings.log_every == 0 or step == settings.steps - 1:
                speed = (step + 1) * settings.batch_size / (time.perf_counter() - start)
                writer.writerow([step, f"{loss.item():.6f}", f"{lr:.3e}", f"{speed:.1f}"])
                bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{speed:.0f}")
                logger.info("%s step %d loss %.5f lr %.2e %.0f img/s", name, step, loss.item(), lr, speed)
    kept = ema.module if ema is not None else model
    return kept.eval()
