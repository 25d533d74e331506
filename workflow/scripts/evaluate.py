from diffguide.runtime import setup_logging
from diffguide.stages import evaluate

setup_logging(snakemake.log[0])
evaluate(snakemake.input.samples, snakemake.input.reference, snakemake.input.classifier, snakemake.output[0],
         snakemake.config["device"], snakemake.params.batch_size)
