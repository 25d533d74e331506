# The guidance testbed (issue 16): the successors of classifier-free guidance against CFG on the
# same trained models. Figures and table from metrics.csv; the claims are tested by
# `python -m diffguide.findings --set testbed`. Where each sits in `snakemake --report`:
# diffguide.reports.report_layout.
from diffguide.reports.report_layout import report_entry


rule testbed_figures:
    """FID against sample accuracy and IS, each method's best point starred; saturated pixels
    against the scale, the test split's level dashed."""
    input:
        metrics=rules.gather_metrics.output.primary,
        test_split=prepared_split("test"),
    output:
        # one rule, two figures: figure_outputs' png and pdf keys prefixed with each figure's name
        **{f"testbed_tradeoff_{k}": v for k, v in figure_outputs("testbed_tradeoff", "testbed_tradeoff").items()},
        **{f"testbed_saturation_{k}": v for k, v in figure_outputs("testbed_saturation", "testbed_saturation").items()},
    log:
        f"{LOGS}/testbed_figures.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        features=config["figures"]["table_features"],
    script:
        "../scripts/testbed_figures.py"


rule testbed_table:
    """Each method at its lowest-FID scale: FID, accuracy and saturation there, the FID difference
    to CFG's best with its paired interval, and its paper's claim with the verdicts of the findings;
    then each method matched to CFG's strength (accuracy, displacement) at w = 1 and 4."""
    input:
        metrics=rules.gather_metrics.output.primary,
        replicates=rules.gather_metrics.output.replicates,
    output:
        md=report(f"{RESULTS}/tables/testbed.md", **report_entry("testbed_table_md")),
        csv=f"{RESULTS}/tables/testbed.csv",
        matched_csv=f"{RESULTS}/tables/testbed_matched.csv",
    log:
        f"{LOGS}/testbed_table.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        features=config["figures"]["table_features"],
    script:
        "../scripts/testbed_table.py"
