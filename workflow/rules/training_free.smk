# Training-free guidance against classifier guidance (issue 28; `make training-free`,
# config/training_free.yaml): the table at matched accuracy. Its findings are
# `python -m diffguide.findings --set training_free`.


rule training_free_table:
    """Each method's sweep, and every training-free method at the accuracy classifier guidance reaches
    at each of its scales (and cg_laplace, its second-order rule), with paired intervals, and findings 20
    to 22."""
    input:
        metrics=rules.gather_metrics.output.primary,
        replicates=rules.gather_metrics.output.replicates,
    output:
        md=report(f"{RESULTS}/tables/training_free.md", **report_entry("training_free_table_md")),
        csv=f"{RESULTS}/tables/training_free.csv",
    log:
        f"{LOGS}/training_free_table.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        features=config["figures"]["table_features"],
    script:
        "../scripts/training_free_table.py"


rule training_free_figure:
    """FID against sample accuracy, one curve per method: the matched comparison's picture."""
    input:
        metrics=rules.gather_metrics.output.primary,
    output:
        **figure_outputs("training_free_tradeoff", "training_free_tradeoff"),
    log:
        f"{LOGS}/training_free_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        features=config["figures"]["table_features"],
    script:
        "../scripts/training_free_figure.py"
