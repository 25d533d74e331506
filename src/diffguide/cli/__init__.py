"""Commands for people: `diffguide sample` (`sample`) draws images from a finished run, and
`python -m diffguide.cli.train` (`train`) trains one network outside Snakemake.

May import: diffguide.base, diffguide.data, diffguide.diffusion, diffguide.models,
diffguide.pipeline, diffguide.registry.
"""
