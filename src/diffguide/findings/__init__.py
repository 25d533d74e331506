"""Do the papers' findings hold, beyond the noise? The statistics shared by every claim
(`framework`), the claim sets (`papers`: findings 1-8; `sdg`: 9-11; `testbed`: 12 onwards), and
the command that checks a run (`report`, `python -m diffguide.findings`).

May import: diffguide.base, diffguide.evaluation, diffguide.registry.
"""
