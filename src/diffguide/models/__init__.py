"""The networks: the eps-UNet, the noisy and the evaluation classifiers (`networks`, with the
null label and the checkpoint format), and similarity guidance's CLIP-style encoders (`encoders`).
Networks know nothing of guidance: guidance wraps them.

May import: diffguide.base.
"""
