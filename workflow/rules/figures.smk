# Figures (PNG for the README and the report, PDF beside each) and the papers' tables. Where each
# sits in `snakemake --report`: diffguide.reports.report_layout.
from diffguide.reports.report_layout import report_entry


rule tradeoff_figure:
    """FID vs IS for both guidance methods on one axes."""
    input:
        rules.gather_metrics.output.primary,
    output:
        **figure_outputs("fid_vs_is", "fid_vs_is"),
    log:
        f"{LOGS}/tradeoff_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/tradeoff_figure.py"


rule metrics_vs_scale_figure:
    """FID, IS, precision, recall and sample accuracy against the guidance scale, every sampling
    setting of sampling.sweep included."""
    input:
        rules.gather_metrics.output.by_sampler,
    output:
        **figure_outputs("metrics_vs_scale", "metrics_vs_scale"),
    log:
        f"{LOGS}/metrics_vs_scale_figure.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/metrics_vs_scale_figure.py"


rule sample_grid:
    """Rows = classes, columns = scales, the same initial noise in every column."""
    input:
        primary_samples_of_method,
    output:
        **figure_outputs("grid_{method}", "grid"),
    log:
        f"{LOGS}/sample_grid_{{method}}.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        caption=lambda wildcards: parse_method(wildcards.method).method.caption,
        dataset=config["dataset"]["name"],
        per_class=config["figures"]["grid_per_class"],
    script:
        "../scripts/sample_grid.py"


rule reference_grid:
    """Similarity guidance by reference image (SDG Figure 1 style): rows = one reference image per
    class, then its samples across the scales, the same initial noise in every column."""
    input:
        primary_samples_of_method,
    output:
        **figure_outputs("references_{method}", "references"),
    log:
        f"{LOGS}/reference_grid_{{method}}.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        caption=lambda wildcards: parse_method(wildcards.method).method.caption,
        dataset=config["dataset"]["name"],
        per_reference=config["figures"]["grid_per_class"],
    script:
        "../scripts/reference_grid.py"


rule best_scale_gallery:
    """figures.gallery_per_class samples per class at the method's lowest-FID scale (chosen from
    metrics.csv with the tables' features)."""
    input:
        metrics=rules.gather_metrics.output.primary,
        samples=primary_samples_of_method,
    output:
        **figure_outputs("best_{method}", "best_samples"),
    log:
        f"{LOGS}/best_scale_gallery_{{method}}.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        caption=lambda wildcards: parse_method(wildcards.method).method.caption,
        dataset=config["dataset"]["name"],
        per_class=config["figures"]["gallery_per_class"],
        features=config["figures"]["table_features"],
    script:
        "../scripts/best_scale_gallery.py"


rule training_curves:
    """Training loss against step, one panel per network, from the training jobs' CSV logs. Its
    inputs are the models, not the logs: a log is complete only once its model is (a failed or
    killed training job leaves a partial log behind), and a retrained model redraws the curves."""
    input:
        **{network: model_path(network) for network in TRAINED_NETWORKS},
    output:
        **figure_outputs("training_curves", "training_curves"),
    log:
        f"{LOGS}/training_curves.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        logs={network: f"{LOGS}/train_{network}.csv" for network in TRAINED_NETWORKS},
    script:
        "../scripts/training_curves.py"


rule tables:
    """H&S Table 1 and D&N Table 4 in Markdown, LaTeX and HTML, the papers' numbers beside ours."""
    input:
        rules.gather_metrics.output.primary,
    output:
        **{
            f"{name}_{ext}": report(f"{RESULTS}/tables/{name}.{ext}", **report_entry(f"{name}_{ext}"))
            for name in ("hs_table1", "dn_table4")
            for ext in ("md", "tex", "html")
        },
    log:
        f"{LOGS}/tables.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        p_uncond=config["training"]["conditional"]["p_uncond"],
        dataset=config["dataset"]["name"],
        image_size=config["dataset"]["image_size"],
        features=config["figures"]["table_features"],
        inception_samples=config["evaluation"]["inception_samples"],
    script:
        "../scripts/tables.py"
