from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.figures import sample_grid
from diffguide.registry import load_plugins

setup_logging(snakemake.log[0])
load_plugins(snakemake.config["plugins"])
sample_grid(list(snakemake.input), snakemake.wildcards.method, snakemake.params.dataset, snakemake.output.png,
            snakemake.params.per_class)
