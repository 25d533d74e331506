# diffguide: classifier guidance (Dhariwal & Nichol 2021) and classifier-free guidance
# (Ho & Salimans 2022), from data to figures. `snakemake --cores all` runs config/config.yaml.
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The rules import diffguide: a Snakemake installed elsewhere (pipx, conda, the system's) cannot
# see the project's environment, so say which interpreter this is and how to fix it.
try:
    import diffguide.pipeline.config_schema
except ImportError as err:
    sys.exit(
        f"diffguide: this Snakemake runs in {sys.executable}, which cannot import what the workflow "
        f"needs ({err}).\nRun the project's own Snakemake, .venv/bin/snakemake (made by `make venv`; "
        "`make run` uses it), or install the project into this environment: "
        f"{sys.executable} -m pip install -e {workflow.basedir}"
    )


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
include: "workflow/rules/testbed.smk"
include: "workflow/rules/training_free.smk"


# Jobs of seconds that run in Snakemake's own process, not as a cluster job each: under the SLURM
# profile a submission costs more than the job (queueing, a fresh interpreter, ~5 s of imports).
localrules:
    all,
    prepare_data,
    record_config,
    gather_metrics,
    tradeoff_figure,
    metrics_vs_scale_figure,
    sample_grid,
    reference_grid,
    best_scale_gallery,
    training_curves,
    tables,
    mixture_figure,
    sharpening_figure,
    testbed_toy_figure,
    testbed_figures,
    testbed_table,
    training_free_table,
    training_free_figure,


# The papers' tables need both cfg's and cg's sweeps; a run without them (the testbed) has none.
PAPER_TABLES = (
    [rules.tables.output.hs_table1_md, rules.tables.output.dn_table4_md] if {"cfg", "cg"} <= set(METHODS) else []
)


rule all:
    default_target: True
    input:
        rules.record_config.output,
        rules.gather_metrics.output.primary,
        rules.tradeoff_figure.output.png,
        rules.metrics_vs_scale_figure.output.png,
        expand(rules.sample_grid.output.png, method=METHODS),
        expand(rules.best_scale_gallery.output.png, method=METHODS),
        expand(rules.reference_grid.output.png, method=REFERENCE_METHODS),
        rules.mixture_figure.output.png,
        rules.sharpening_figure.output.png,
        rules.training_curves.output.png,
        PAPER_TABLES,


rule training_free:
    """Training-free guidance against classifier guidance (issue 28; `make training-free`,
    config/training_free.yaml): every sweep on the default run's models, the clean guide classifier
    trained here, and the table at matched accuracy."""
    input:
        rules.record_config.output,
        rules.gather_metrics.output.primary,
        rules.training_free_table.output.md,
        rules.training_free_figure.output.png,
        rules.tradeoff_figure.output.png,
        expand(rules.sample_grid.output.png, method=METHODS),


rule testbed:
    """The guidance testbed (issue 16; `make testbed`, config/testbed.yaml): every method's sweep on
    the default run's models, compared with CFG at each one's best scale, and the 2-D toy figure."""
    input:
        rules.record_config.output,
        rules.gather_metrics.output.primary,
        rules.testbed_figures.output.testbed_tradeoff_png,
        rules.testbed_table.output.md,
        rules.testbed_toy_figure.output.png,
        rules.tradeoff_figure.output.png,
        expand(rules.sample_grid.output.png, method=METHODS),
