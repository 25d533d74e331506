"""Guidance: the eps-wrapper contract every method follows and the two papers' rules
(`wrappers`: classifier-free guidance, H&S eq. 6; classifier guidance, D&N Algorithms 1 and 2, with
guided-diffusion's clip order), and the parts the newer methods share (`parts`). Each newer method
is one module of `methods/`; this package never imports them.

May import: diffguide.diffusion, diffguide.models.
"""
