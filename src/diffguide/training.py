"""One training loop for every network, and the three losses it is used with.

The loop: AdamW with linear warm-up and constant or cosine decay (torch's LambdaLR), an EMA of the weights (torch.optim.swa_utils.AveragedModel),
bf16 autocast with fp32 master weights, gradient clipping, a tqdm bar with loss and images/s,
a CSV log (step, loss, lr, images/s), and a stop with a clear message on a NaN / inf loss
or non-finite weights, which keeps the last checkpoint from before the divergence (Checkpointer).

Long runs are killed (SLURM time limits, pre-emption, a closed laptop), so the loop writes an
atomic checkpoint every ``checkpoint_every`` steps with everything the next step depends on:
weights, EMA, optimizer, LR scheduler, step, the CSV rows so far and every RNG state (the batch
indices, the noise, t and the dropped labels all come from the global generators). A rerun with
the same settings resumes from it and ends with bitwise the same weights as an uninterrupted run.

Under ``torchrun --nproc_per_node N`` (see distributed.py) the model is wrapped in
DistributedDataParallel. ``batch_size`` is then the batch of each rank: every rank draws its own
``batch_size`` indices (its generators are reseeded with the seed offset by its rank), DDP
averages the gradients, so one step sees a global batch of ``batch_size * N`` images at the same
learning rate. The EMA follows the underlying model; only rank 0 writes the CSV log and the
checkpoints (which hold every rank's RNG states), the others wait at a barrier; a non-finite loss
on any rank stops them all. Without torchrun nothing of this happens.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from . import distributed
from .atomic import atomic_open
from .guidance import NULL_LABEL
from .runtime import autocast, progress_bar, resolve_precision, seed_everything
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
    checkpoint_every: int = 200


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
    (Ho & Salimans Algorithm 1; seed eqs. 2.1-2.2); an unconditional model gets y = None. With
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


RUN_ONLY_SETTINGS = ("checkpoint_every",)  # how a run is carried out, not what it computes


def settings_fingerprint(settings: TrainSettings, context: dict) -> str:
    """sha256 of the settings (bar checkpoint_every, which cannot change the result) and the
    caller's context (network, architecture, data, loss options): a checkpoint is resumed only
    by a run that would have computed exactly the same steps."""
    fields = {k: v for k, v in dataclasses.asdict(settings).items() if k not in RUN_ONLY_SETTINGS}
    text = json.dumps({"settings": fields, "context": context}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def rng_states() -> dict:
    """Every generator a training step may draw from: torch CPU (batch indices, t, noise, label
    dropping, dropout), CUDA (the same draws on a GPU), numpy and Python's random."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": [kind, key.tolist(), pos, has_gauss, gauss],
              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what rng_states saved (CUDA only onto the same number of GPUs)."""
    torch.set_rng_state(states["torch"])
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if len(states.get("cuda", [])) == torch.cuda.device_count() > 0:  # same GPUs: same draws
        torch.cuda.set_rng_state_all(states["cuda"])


SPIKE_FACTOR = 10.0  # a loss this many times the median before a checkpoint shows divergence
SPIKE_WINDOW = 100  # the per-step losses that median is taken over


class LossTrail:
    """Whether the losses since the newest checkpoint show divergence. The loss of step k is the
    first one computed on the weights of checkpoint k (written after step k - 1), so the losses
    from there on are the evidence about that checkpoint: its trail is clean while every one is
    finite and at most SPIKE_FACTOR times the median of the last SPIKE_WINDOW losses before it.
    Batch noise of a healthy run stays within a few times its median, while a diverging run's
    loss grows by orders of magnitude before it overflows. A false alarm only means an older
    checkpoint is kept, and only once the run has diverged anyway. The median (not the mean or
    the max) so that one odd batch does not move the bar, and spikes never enter the window, so
    a long run of huge finite losses cannot make itself the norm and a later diverged checkpoint
    look sound. A climb slower than 10x within the window is not caught. A median <= 0 (a loss
    that is not a positive error) turns the spike test off, leaving only finiteness."""

    def __init__(self, recent=()):
        self.recent = collections.deque(recent, maxlen=SPIKE_WINDOW)
        self.restart()

    def restart(self) -> None:
        """A checkpoint was just written or resumed: judge the losses from here on."""
        median = statistics.median(self.recent) if self.recent else 0.0
        self.limit = SPIKE_FACTOR * median if median > 0 else math.inf
        self.clean, self.seen = True, 0

    def add(self, loss: float) -> None:
        normal = math.isfinite(loss) and loss <= self.limit
        self.clean, self.seen = self.clean and normal, self.seen + 1
        if normal:
            self.recent.append(loss)

    @property
    def sound(self) -> bool:
        """The newest checkpoint's own loss and every one after it were clean (none seen: unknown,
        so not sound: its weights may be what made the very next loss non-finite)."""
        return self.seen > 0 and self.clean


class Checkpointer:
    """Periodic training checkpoints at ``path`` (None: none). Written atomically (a temp file in
    the same folder, fsync, os.replace), so a kill mid-write leaves the previous one intact and an
    unreadable file can only come from outside (a broken disk, another torch version): it stops
    the run with the file named rather than silently throwing away hours of training.

    A checkpoint with finite weights can still be on its way to a NaN (weights of 1e6 written
    just before the loss overflows). So the newest checkpoint is judged by its LossTrail, and
    the previous one is kept as ``<path>.prev`` while the newest is unproven: writing checkpoint
    k moves the current one there only when its trail was clean, so ``.prev`` always holds the
    last checkpoint proven sound. On divergence ``settle`` makes the newest sound checkpoint the
    resume point (``path``) and deletes the others; afterwards ``path`` is the resume point or no
    checkpoint file is left. Checkpoints with non-finite weights are never written (train
    checks first)."""

    def __init__(self, path: str | Path | None, fingerprint: str, name: str, logger: logging.Logger):
        self.path, self.fingerprint, self.name, self.logger = (Path(path) if path else None), fingerprint, name, logger
        self.prev_path = self.path.with_name(self.path.name + ".prev") if self.path else None
        self.saved_step: int | None = None
        self.saved_in: Path | None = None  # the file of saved_step: path, or prev_path when resumed from it
        self.trail = LossTrail()

    def resume(self, parts: dict) -> tuple[int, list]:
        """Load the state into ``parts`` (name -> object with load_state_dict) and the RNGs when the
        fingerprint matches; return (steps done, CSV rows so far)."""
        state = self._read()
        if state is None:
            return 0, []
        for key, part in parts.items():
            part.load_state_dict(state[key])
        set_rng_states(state["rng_ranks"][distributed.rank()] if "rng_ranks" in state else state["rng"])
        self.saved_step = state["step"]
        self.trail = LossTrail(state.get("recent_losses", ()))
        self.logger.info("resuming %s from step %d (%s)", self.name, state["step"], self.saved_in)
        return state["step"], state["log_rows"]

    def _read(self) -> dict | None:
        if self.path is None:
            return None
        # Only a .prev: killed after moving a sound checkpoint there and before the next was complete.
        source = self.path if self.path.exists() else self.prev_path
        if not source.exists():
            return None
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise ValueError(f"{self.name}: cannot read the training checkpoint {source} ({reason}). "
                             f"Delete it to train {self.name} from step 0, then rerun.") from err
        if state.get("fingerprint") != self.fingerprint:
            self.logger.warning("%s: checkpoint %s was written with other settings; starting afresh "
                                "(it will be overwritten)", self.name, source)
            return None
        self.saved_in = source
        return state

    def save(self, step: int, parts: dict, log_rows: list) -> None:
        """Called on every rank; under torchrun rank 0 writes every rank's RNG states, then all
        ranks meet at a barrier so none runs ahead of a checkpoint being written."""
        if self.path is None:
            return
        rng = rng_states()
        state = {"rng": rng}
        if distributed.active():
            gathered = [None] * distributed.world_size()
            torch.distributed.all_gather_object(gathered, rng)
            state["rng_ranks"] = gathered
        if distributed.is_main():
            if self.saved_in == self.path and self.trail.sound:  # proven sound: keep it as the fallback
                os.replace(self.path, self.prev_path)
            self._write(state | {key: part.state_dict() for key, part in parts.items()}
                        | {"step": step, "log_rows": list(log_rows), "fingerprint": self.fingerprint,
                           "recent_losses": list(self.trail.recent)})
        distributed.barrier()
        self.saved_step, self.saved_in = step, self.path
        self.trail.restart()

    def _write(self, state: dict) -> None:
        with atomic_open(self.path) as handle:
            torch.save(state, handle)

    def settle(self) -> int | None:
        """On divergence, on every rank: leave the newest sound checkpoint at ``path`` and no other
        checkpoint file; return its step (None: a rerun starts from step 0). Rank 0 moves the
        files and tells the others, so every rank's message names the same step."""
        kept = self._keep_sound() if distributed.is_main() else None
        if distributed.active():
            box = [kept]
            torch.distributed.broadcast_object_list(box, src=0)
            kept = box[0]
        return kept

    def _keep_sound(self) -> int | None:
        if self.path is None:
            return None
        keep = None
        if self.saved_step is not None and self.trail.sound:
            keep = (self.saved_in, self.saved_step)
        elif self.saved_in == self.path:  # the newest is unsound; .prev was proven sound when moved there
            keep = self._prev_of_these_settings()
        for file in (self.path, self.prev_path):
            if keep is None or file != keep[0]:
                file.unlink(missing_ok=True)
        if keep is None:
            return None
        os.replace(keep[0], self.path)  # a no-op when it is there already
        return keep[1]

    def _prev_of_these_settings(self) -> tuple[Path, int] | None:
        """(.prev, its step) when it exists and was written with these settings (a .prev left by
        other settings is stale). mmap: only the step and fingerprint are read from disk."""
        if not self.prev_path.exists():
            return None
        try:
            state = torch.load(self.prev_path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            return None  # unreadable: not a resume point
        return (self.prev_path, state["step"]) if state.get("fingerprint") == self.fingerprint else None

    def finish(self) -> None:
        """The run ended well: ``path`` holds the final state; the fallback is no longer needed."""
        if self.prev_path is not None and distributed.is_main():
            self.prev_path.unlink(missing_ok=True)


def divergence_message(name: str, what: str, settings: TrainSettings, precision: str, kept: int | None,
                       path: Path | None) -> str:
    """What happened, where a rerun starts, and the settings that can prevent it. A rerun with the
    same settings repeats the same steps (resume is bitwise exact), so it helps only when the
    cause lay outside them (the data, the code); any change to lr, grad_clip or precision changes
    the fingerprint, so that rerun starts from step 0. fp32 is offered only to a bf16 run."""
    if kept is not None:
        where = (f"Kept {path} from step {kept}, the newest checkpoint whose weights were finite and whose losses "
                 f"stayed finite and within {SPIKE_FACTOR:g}x of their recent median until then. A rerun with the "
                 f"same settings resumes from step {kept} and repeats the same steps, so it diverges again unless "
                 "the cause lay outside the training settings; a rerun with any change below starts from step 0.")
    elif path is None:
        where = "This run writes no checkpoints, so a rerun starts from step 0."
    else:
        where = (f"No checkpoint from before the divergence remains at {path} (later ones were deleted), "
                 "so a rerun starts from step 0.")
    fixes = [f"lower training.{name}.lr (now {settings.lr:g})",
             f"set a smaller training.{name}.grad_clip (the gradient-norm clip, now {settings.grad_clip:g})"]
    if precision == "bf16":
        fixes.append("set precision: fp32 (this run trained in bf16)")
    fix = f"To prevent it, {', '.join(fixes[:-1])} or {fixes[-1]}, then rerun."
    return f"{name}: {what}. The final model was not written. {where} {fix}"


class CsvLog:
    """The step, loss, lr, images/s CSV. Its rows also travel in the checkpoint, so a resumed run
    writes back exactly the rows up to the checkpoint and appends from there: steps redone after
    a kill are not logged twice, and nothing is lost if the file was removed meanwhile."""

    HEADER = ["step", "loss", "lr", "images_per_s"]

    def __init__(self, path: str | Path, rows: list, write: bool = True):
        self.rows = [list(row) for row in rows]
        if not write:  # a rank other than 0 under torchrun: keep the rows, write nothing
            self.handle = open(os.devnull, "w", newline="")
            self.writer = csv.writer(self.handle)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "w", newline="")
        self.writer = csv.writer(self.handle)
        self.writer.writerows([self.HEADER, *self.rows])
        self.handle.flush()

    def add(self, row: list) -> None:
        self.rows.append(row)
        self.writer.writerow(row)
        self.handle.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _mean_over_ranks(loss: torch.Tensor) -> float:
    """The loss of the global batch, non-finite when it is on any rank. One all_reduce a step, and
    every rank gets the same number, so all take the same decisions (stop, or whether a checkpoint
    is sound) instead of the others hanging in the next gradient all-reduce."""
    value = loss.detach().float().reshape(1).clone()
    if distributed.active():
        torch.distributed.all_reduce(value)
        value /= distributed.world_size()
    return value.item()


def _state_tensors(parts: dict) -> list[torch.Tensor]:
    """Every floating tensor a checkpoint would hold: weights, EMA, optimizer moments."""
    found, todo = [], [part.state_dict() for part in parts.values()]
    while todo:
        item = todo.pop()
        if isinstance(item, torch.Tensor):
            found += [item] if item.is_floating_point() else []
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return found


def _all_finite(tensors: list[torch.Tensor], device: torch.device) -> bool:
    """Whether every tensor is finite on every rank (one all_reduce): a finite loss can still give
    NaN gradients (an overflow in the backward pass), and so NaN weights that must not be saved."""
    finite = torch.stack([torch.isfinite(t).all().to(device) for t in tensors]).all().float().reshape(1)
    if distributed.active():
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    return bool(finite.item())


def _diverged(checkpoints: Checkpointer, what: str, settings: TrainSettings, precision: str) -> FloatingPointError:
    kept = checkpoints.settle()
    return FloatingPointError(divergence_message(checkpoints.name, what, settings, precision, kept, checkpoints.path))


def _optimizer_step(model, loss, optimizer, scheduler, ema, grad_clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    if ema is not None:
        ema.update_parameters(model)


def train(model: nn.Module, loss_fn: LossFn, images: torch.Tensor, labels: torch.Tensor,
          settings: TrainSettings, *, device: torch.device, name: str, csv_path: str | Path,
          logger: logging.Logger | None = None, checkpoint_path: str | Path | None = None,
          context: dict | None = None) -> nn.Module:
    """Train ``model`` in place for ``settings.steps`` steps and return the network to keep:
    the EMA copy when ``ema_decay`` is set, the trained model otherwise. With ``checkpoint_path``
    the state is saved every ``checkpoint_every`` steps and after the last one, and a run whose
    settings, data shape and ``context`` match the checkpoint's resumes from it."""
    logger = logger or logging.getLogger("diffguide")
    ranks, main = distributed.world_size(), distributed.is_main()
    if ranks > 1:
        # The same draw on every rank (same seed so far), offset by the rank: own batches and noise.
        seed_everything(int(torch.randint(0, 2**62, (1,)).item()) + distributed.rank())
        context = {**(context or {}), "world_size": ranks}  # N ranks compute other steps than 1
    model.to(device).train()
    ema = AveragedModel(model, avg_fn=ema_average(settings.ema_decay)) if settings.ema_decay else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(settings, step))
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler} | ({"ema": ema} if ema else {})
    fingerprint = settings_fingerprint(settings, {**(context or {}), "images": list(images.shape)})
    checkpoints = Checkpointer(checkpoint_path, fingerprint, name, logger)
    precision = resolve_precision(settings.precision, device)  # what the message may offer instead
    first, rows = checkpoints.resume(parts)
    net = model  # what the loss calls: the DDP wrapper under torchrun (it averages the gradients)
    if ranks > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    with CsvLog(csv_path, rows, write=main) as csv_log:
        bar = progress_bar(range(first, settings.steps), initial=first, total=settings.steps,
                           desc=f"train {name}", unit="step", disable=not main)
        start = time.perf_counter()
        for step in bar:
            lr = scheduler.get_last_lr()[0]
            index = torch.randint(0, len(images), (settings.batch_size,))
            x0, y = images[index].to(device), labels[index].to(device)
            with autocast(device, settings.precision):
                loss = loss_fn(net, x0, y)
            value = _mean_over_ranks(loss)  # the loss of the global batch
            if not math.isfinite(value):  # judged before trail.add: the trail ends before the NaN
                raise _diverged(checkpoints, f"the loss became {value} at step {step}", settings, precision)
            checkpoints.trail.add(value)
            _optimizer_step(model, loss, optimizer, scheduler, ema, settings.grad_clip)
            if step % settings.log_every == 0 or step == settings.steps - 1:
                speed = (step + 1 - first) * settings.batch_size * ranks / (time.perf_counter() - start)
                csv_log.add([step, f"{value:.6f}", f"{lr:.3e}", f"{speed:.1f}"])
                bar.set_postfix(loss=f"{value:.4f}", img_s=f"{speed:.0f}")
                if main:
                    logger.info("%s step %d loss %.5f lr %.2e %.0f img/s", name, step, value, lr, speed)
            if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
                if not _all_finite(_state_tensors(parts), device):  # never save non-finite weights
                    what = f"the weights became non-finite in step {step} (its loss was finite)"
                    raise _diverged(checkpoints, what, settings, precision)
                checkpoints.save(step + 1, parts, csv_log.rows)
    checkpoints.finish()
    kept = ema.module if ema is not None else model
    return kept.eval()


def t_bands(timesteps: int, bands: int = 4) -> list[tuple[int, int]]:
    """[lo, hi) bands splitting {0..T-1} into equal parts: [0,250), [250,500), ... for T = 1000."""
    edges = [round(i * timesteps / bands) for i in range(bands + 1)]
    return list(zip(edges[:-1], edges[1:]))


@torch.no_grad()
def accuracy_by_t(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule,
                  device: torch.device, *, bands: int = 4, per_band: int = 2000, seed: int = 0,
                  batch_size: int = 500, precision: str = "fp32") -> dict[str, float]:
    """Accuracy of p_phi(y | x_t, t) on x_t = q_sample(x_0, t), t uniform within each band, keyed
    "lo-hi" (inclusive). Guidance leans on the classifier at large t, where the mean accuracy over
    all t hides how close to chance it is. Up to ``per_band`` images per band; the subset, t and
    noise come from a CPU generator seeded by ``seed``, so the numbers repeat on any device."""
    classifier.eval()
    generator = torch.Generator().manual_seed(seed)
    n = min(per_band, len(images))
    result = {}
    for lo, hi in t_bands(schedule.timesteps, bands):
        pick = torch.randperm(len(images), generator=generator)[:n]
        t = torch.randint(lo, hi, (n,), generator=generator)
        noise = torch.randn((n, *images.shape[1:]), generator=generator)
        correct = 0
        for s in range(0, n, batch_size):
            x0, t_b = images[pick[s:s + batch_size]].to(device), t[s:s + batch_size].to(device)
            with autocast(device, precision):
                logits = classifier(schedule.q_sample(x0, t_b, noise[s:s + batch_size].to(device)), t_b)
            correct += (logits.argmax(1).cpu() == labels[pick[s:s + batch_size]]).sum().item()
        result[f"{lo}-{hi - 1}"] = correct / n
    return result
