from diffguide.runtime import setup_logging
from diffguide.stages import gather_metrics

setup_logging(snakemake.log[0])
gather_metrics(list(snakemake.input), snakemake.output.primary, snakemake.output.by_sampler, snakemake.params.primary)
