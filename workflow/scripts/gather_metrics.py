from diffguide.stages.evaluate import gather_metrics
from diffguide.runtime import setup_logging

setup_logging(snakemake.log[0])
gather_metrics(list(snakemake.input.rows), snakemake.output.primary, snakemake.output.by_sampler, snakemake.params.primary,
               replicate_files=list(snakemake.input.replicates), replicates_output=snakemake.output.replicates)
