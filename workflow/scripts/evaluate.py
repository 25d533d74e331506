from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.evaluate import evaluate

setup_logging(snakemake.log[0])
p = snakemake.params
evaluate(snakemake.input.samples, snakemake.input.reference, snakemake.input.classifier, snakemake.output.row,
         snakemake.config["device"], p.batch_size, inception_reference_path=(list(snakemake.input.inception) or [None])[0],
         inception_samples=p.inception_samples, inception_weights=p.inception_weights, seed=p.seed,
         replicates_output=snakemake.output.replicates)
