from diffguide.figures import plot_training_curves
from diffguide.runtime import setup_logging

setup_logging(snakemake.log[0])
plot_training_curves(dict(snakemake.input.items()), snakemake.output.png)
