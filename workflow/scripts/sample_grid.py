from diffguide.runtime import setup_logging
from diffguide.stages import grid

setup_logging(snakemake.log[0])
grid(list(snakemake.input), snakemake.wildcards.method, snakemake.params.dataset, snakemake.output.png,
     snakemake.params.per_class)
