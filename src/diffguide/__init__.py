"""diffguide: a small, faithful replication of classifier guidance (Dhariwal & Nichol 2021)
and classifier-free guidance (Ho & Salimans 2022) for diffusion models.

Conventions shared by every module:
- images live in [-1, 1] inside the models and as uint8 NHWC on disk;
- schedule tables are float64;
- every noise predictor follows one contract, ``eps = model(x_t, t, y)``, where ``t`` holds the
  integer timesteps of the original T-step process and ``y = None`` means unconditional;
- ``w`` is Ho & Salimans' guidance strength (w = 0 is the plain conditional model; diffusers'
  ``guidance_scale`` equals 1 + w) and ``s`` is Dhariwal & Nichol's classifier scale.
"""

__version__ = "0.1.0"
