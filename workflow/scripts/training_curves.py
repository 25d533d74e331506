from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.figures import training_curves

setup_logging(snakemake.log[0])
training_curves(snakemake.params.logs, snakemake.output.png)
