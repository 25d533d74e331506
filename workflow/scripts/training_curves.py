from diffguide.runtime import setup_logging
from diffguide.stages.figures import training_curves

setup_logging(snakemake.log[0])
training_curves(snakemake.params.logs, snakemake.output.png)
