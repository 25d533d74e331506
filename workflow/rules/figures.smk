rule tradeoff_figure:
    """FID vs IS for both guidance methods on one axes."""
    input:
        f"{RESULTS}/metrics.csv",
    output:
        report(f"{RESULTS}/figures/fid_vs_is.png", caption="../report/fid_vs_is.rst", category="Figures"),
    log:
        f"{LOGS}/tradeoff_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/tradeoff_figure.py"


rule sample_grid:
    """Rows = classes, columns = scales, the same initial noise in every column."""
    input:
        lambda wc: [f"{RESULTS}/samples/{wc.method}/scale_{s}.npz" for s in SCALES[wc.method]],
    output:
        report(f"{RESULTS}/figures/grid_{{method}}.png", caption="../report/grid.rst", category="Figures"),
    params:
        dataset=config["dataset"]["name"],
        per_class=config["figures"]["grid_per_class"],
    log:
        f"{LOGS}/sample_grid_{{method}}.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/sample_grid.py"


rule training_curves:
    """Training loss against step, one panel per network, from the training jobs' CSV logs."""
    input:
        **{network: f"{LOGS}/train_{network}.csv" for network in NETWORK_ARCH},
    output:
        f"{RESULTS}/figures/training_curves.png",
    log:
        f"{LOGS}/training_curves.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/training_curves.py"
