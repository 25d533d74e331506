"""The training loop for every network: ``train``, its learning-rate schedule, EMA, CSV log and
divergence stop.

The loop: AdamW with linear warm-up and constant or cosine decay (torch's LambdaLR), an EMA of the weights (torch.optim.swa_utils.AveragedModel),
bf16 autocast with fp32 master weights, gradient clipping, a tqdm bar with loss and images/s,
a CSV log (step, loss, lr, images/s), and a stop with a clear message on a NaN / inf loss
or non-finite weights, which keeps the last checkpoint from before the divergence (Checkpointer,
in checkpointing.py). The losses it is used with are in losses.py.

Long runs are killed (SLURM time limits, pre-emption, a closed laptop), so the loop writes an
atomic checkpoint every ``checkpoint_every`` steps (checkpointing.py) and a rerun with the same
settings resumes from it, ending with bitwise the same weights as an uninterrupted run.

Under ``torchrun --nproc_per_node N`` (see distributed.py) the model is wrapped in
DistributedDataParallel. ``batch_size`` is then the batch of each rank: every rank draws its own
``batch_size`` indices (its generators are reseeded with the seed offset by its rank), DDP
averages the gradients, so one step sees a global batch of ``batch_size * N`` images at the same
learning rate. The EMA follows the underlying model; only rank 0 writes the CSV log and the
checkpoints (which hold every rank's RNG states), the others wait at a barrier; a non-finite loss
on any rank stops them all. Without torchrun nothing of this happens.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from diffguide.base.runtime import autocast, progress_bar, resolve_precision, seed_everything
from diffguide.training import distributed
from diffguide.training.checkpointing import SPIKE_FACTOR, Checkpointer, settings_fingerprint
from diffguide.training.losses import LossFn
from diffguide.training.settings import TrainSettings


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
