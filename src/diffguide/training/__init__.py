"""Training the networks: the loop (`loop`: AdamW, EMA, warmup, AMP, resuming), the losses
(`losses`: H&S Algorithm 1 with label dropout, the noisy classifier's, CLIP's), checkpoints of a
run in progress (`checkpointing`), DDP (`distributed`) and the keys a training section takes
(`settings`).

May import: diffguide.base, diffguide.diffusion, diffguide.models.
"""
