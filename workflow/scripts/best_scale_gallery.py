from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.figures import best_scale_gallery
from diffguide.registry import load_plugins

setup_logging(snakemake.log[0])
load_plugins(snakemake.config["plugins"])
best_scale_gallery(snakemake.input.metrics, list(snakemake.input.samples), snakemake.wildcards.method,
                   snakemake.params.dataset, snakemake.output.png, snakemake.params.per_class,
                   snakemake.params.features)
