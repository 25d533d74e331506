from diffguide.integrity import read_csv
from diffguide.figures import plot_metrics_vs_scale
from diffguide.runtime import setup_logging

setup_logging(snakemake.log[0])
plot_metrics_vs_scale(read_csv(snakemake.input[0]), snakemake.output.png)
