from diffguide.base.runtime import setup_logging
from diffguide.pipeline.stages.sample import sample
from diffguide.registry import load_plugins

setup_logging(snakemake.log[0])
load_plugins(snakemake.config["plugins"])  # a plugin's method must be known in this process too
p = snakemake.params.cfg
sample(snakemake.wildcards.method, float(snakemake.wildcards.scale), model_paths=dict(snakemake.input),
       sampling=p["sampling"], guidance=p["guidance"], diffusion=p["diffusion"], dataset_name=p["dataset"]["name"],
       seed=p["seed"], precision=p["precision"], device=snakemake.config["device"], output=snakemake.output[0],
       threads=snakemake.threads)
