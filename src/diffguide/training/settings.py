"""Which training settings are run-only: they change how a training job is carried out, not what
it computes (a resumed run ends bitwise equal to an uninterrupted one), so they are left out of a
checkpoint's settings fingerprint (checkpointing.py) and of the training rule's params
(workflow/rules/common.smk), and changing one retrains nothing.

The one definition of them, beside `TrainSettings`, the settings a training job runs with. It
imports nothing but the standard library, so the workflow can read it at parse time
without importing torch.
"""

from dataclasses import dataclass

RUN_ONLY_TRAINING_KEYS = ("checkpoint_every",)  # how a run is carried out, not what it computes


@dataclass
class TrainSettings:
    """One training section of the config (``training.<network>``), as the loop reads it."""

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
