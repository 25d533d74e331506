from diffguide.runtime import setup_logging
from diffguide.stages import figures

setup_logging(snakemake.log[0])
figures(snakemake.input[0], snakemake.output.png)
