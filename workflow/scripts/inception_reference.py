from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.evaluate import inception_reference

setup_logging(snakemake.log[0])
inception_reference(snakemake.input.test, snakemake.output[0], snakemake.params.num_images, snakemake.params.weights,
                    snakemake.config["device"])
