from diffguide.runtime import setup_logging
from diffguide.stages.evaluate import inception_reference

setup_logging(snakemake.log[0])
inception_reference(snakemake.input.test, snakemake.output[0], snakemake.params.num_images, snakemake.params.weights,
                    snakemake.config["device"])
