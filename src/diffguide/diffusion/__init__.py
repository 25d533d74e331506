"""The diffusion process without guidance: noise schedules (`schedules`: betas, abar_t, the
posterior of DDPM eq. 7; `noise_levels`: abar_t and the respaced timesteps without torch, for the
config checks), the samplers that walk it back (`samplers`: ancestral DDPM, DDIM, Heun on
DDIM's ODE, the clip of x0), the contract by which a sampler tells its model where a chain stands
(`chain`), and the per-sample noise streams that make every run reproducible (`seeding`).

May import: diffguide.base.
"""
