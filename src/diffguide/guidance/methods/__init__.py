"""The guidance methods since 2022 (and similarity guidance), one module each, built on the
contract of `diffguide.guidance.wrappers`; the registry names their builders.

May import: diffguide.guidance, diffguide.diffusion, diffguide.models.
"""
