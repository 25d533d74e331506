"""Which training settings are run-only: they change how a training job is carried out, not what
it computes (a resumed run ends bitwise equal to an uninterrupted one), so they are left out of a
checkpoint's settings fingerprint (checkpointing.py) and of the training rule's params
(workflow/rules/common.smk), and changing one retrains nothing.

The one definition of them. It imports nothing, so the workflow can read it at parse time
without importing torch.
"""

RUN_ONLY_TRAINING_KEYS = ("checkpoint_every",)  # how a run is carried out, not what it computes
