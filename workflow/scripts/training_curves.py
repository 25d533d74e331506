from diffguide.figures import plot_training_curves
from diffguide.runtime import setup_logging

setup_logging(snakemake.log[0])
plot_training_curves(snakemake.params.logs, snakemake.output.png)
