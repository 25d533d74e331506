"""Training checkpoints: what they hold, when one is resumed, and which one survives a divergence.

Long runs are killed (SLURM time limits, pre-emption, a closed laptop), so the loop writes an
atomic checkpoint every ``checkpoint_every`` steps with everything the next step depends on:
weights, EMA, optimizer, LR scheduler, step, the CSV rows so far and every RNG state (the batch
indices, the noise, t and the dropped labels all come from the global generators). A rerun with
the same settings (``settings_fingerprint``) resumes from it and ends with bitwise the same
weights as an uninterrupted run. ``LossTrail`` judges whether the newest checkpoint is sound,
and ``Checkpointer`` keeps the last sound one as ``<path>.prev`` until the next is proven.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import statistics
from pathlib import Path

import numpy as np
import torch

from diffguide.base.atomic import atomic_open
from diffguide.training import distributed
from diffguide.training.settings import RUN_ONLY_TRAINING_KEYS, TrainSettings


def settings_fingerprint(settings: TrainSettings, context: dict) -> str:
    """sha256 of the settings (bar checkpoint_every, which cannot change the result) and the
    caller's context (network, architecture, data, loss options): a checkpoint is resumed only
    by a run that would have computed exactly the same steps."""
    fields = {k: v for k, v in dataclasses.asdict(settings).items() if k not in RUN_ONLY_TRAINING_KEYS}
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
