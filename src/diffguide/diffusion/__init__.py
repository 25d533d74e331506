"""The diffusion process without guidance: noise schedules (`schedules`: betas, abar_t, the
posterior of DDPM eq. 7), the samplers that walk it back (`samplers`: ancestral DDPM and DDIM, the
clip of x0), and the per-sample noise streams that make every run reproducible (`seeding`).

May import: diffguide.base.
"""
