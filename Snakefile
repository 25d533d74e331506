# diffguide: classifier guidance (Dhariwal & Nichol 2021) and classifier-free guidance
# (Ho & Salimans 2022), from data to figures. `snakemake --cores all` runs config/config.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")


# The default run, unless a config file is given on the command line: a config file stands on
# its own (plus the schema's defaults) instead of silently inheriting the default run's keys.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/toy.smk"


rule all:
    input:
        f"{RESULTS}/metrics.csv",
        f"{RESULTS}/figures/fid_vs_is.png",
        f"{RESULTS}/figures/metrics_vs_scale.png",
        expand(f"{RESULTS}/figures/grid_{{method}}.png", method=METHODS),
        expand(f"{RESULTS}/figures/best_{{method}}.png", method=METHODS),
        f"{RESULTS}/figures/mixture_guidance.png",
        f"{RESULTS}/figures/training_curves.png",
        f"{RESULTS}/tables/hs_table1.md",
        f"{RESULTS}/tables/dn_table4.md",
    default_target: True
