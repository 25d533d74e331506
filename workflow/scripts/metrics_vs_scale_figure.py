from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.figures import metrics_vs_scale_figure

setup_logging(snakemake.log[0])
metrics_vs_scale_figure(snakemake.input[0], snakemake.output.png)
