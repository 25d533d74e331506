from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.figures import tradeoff_figure

setup_logging(snakemake.log[0])
tradeoff_figure(snakemake.input[0], snakemake.output.png)
