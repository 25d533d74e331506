from diffguide.reports.report_layout import report_entry


rule reference_statistics:
    """Evaluation-classifier features of the real test split, computed once for every evaluation."""
    input:
        classifier=model_path("eval_classifier"),
        test=prepared_split("test"),
    output:
        f"{RESULTS}/reference/test_eval_classifier.npz",
    log:
        f"{LOGS}/reference_statistics.log",
    # A CPU job even in a GPU run: the small evaluation classifier over the test split takes
    # seconds, not worth a GPU slot.
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        batch_size=config["evaluation"]["batch_size"],
    script:
        "../scripts/reference_statistics.py"


rule inception_reference:
    """Inception pool3 and sFID spatial features of the test split, once per run."""
    input:
        test=prepared_split("test"),
    output:
        INCEPTION_REFERENCE_PATH,
    log:
        f"{LOGS}/inception_reference.log",
    benchmark:
        f"{RESULTS}/benchmarks/inception_reference.tsv"
    threads: 1
    resources:
        gpu=ONE_PROCESS_GPUS,
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        num_images=config["evaluation"]["inception_reference"],
        weights=config["evaluation"]["inception_weights"],
    script:
        "../scripts/inception_reference.py"


rule evaluate:
    """One metrics row, each metric with its 95% interval: FID / KID, IS, precision / recall and
    sample accuracy on the evaluation classifier, and Inception FID / sFID / KID / precision /
    recall (/ IS); beside it the metrics on 200 seeded half-samples (the intervals' replicates)."""
    input:
        samples=rules.sample.output[0],
        reference=rules.reference_statistics.output[0],
        classifier=model_path("eval_classifier"),
        inception=[INCEPTION_REFERENCE_PATH] if config["evaluation"]["inception"] else [],
    output:
        row=f"{RESULTS}/metrics/{{sampling}}/{{method}}/scale_{{scale}}.csv",
        replicates=f"{RESULTS}/metrics/{{sampling}}/{{method}}/scale_{{scale}}.replicates.csv",
    log:
        f"{LOGS}/evaluate_{{sampling}}_{{method}}_{{scale}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_{{sampling}}_{{method}}_{{scale}}.tsv"
    threads: 1
    resources:
        gpu=ONE_PROCESS_GPUS,
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        batch_size=config["evaluation"]["batch_size"],
        inception_samples=config["evaluation"]["inception_samples"],
        inception_weights=config["evaluation"]["inception_weights"],
        seed=config["seed"],
    script:
        "../scripts/evaluate.py"


rule gather_metrics:
    """metrics.csv: one row per (method, scale) at the primary sampling setting;
    metrics_by_sampler.csv: the same for every setting of sampling.sweep too;
    metrics_replicates.csv: the half-sample replicates of metrics.csv's rows, for the findings."""
    input:
        rows=every_sweep_point(rules.evaluate.output.row),
        replicates=every_sweep_point(rules.evaluate.output.replicates),
    output:
        primary=report(f"{RESULTS}/metrics.csv", **report_entry("metrics")),
        by_sampler=report(f"{RESULTS}/metrics_by_sampler.csv", **report_entry("metrics_by_sampler")),
        replicates=f"{RESULTS}/metrics_replicates.csv",
    log:
        f"{LOGS}/gather_metrics.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        primary=sampling_setting(PRIMARY_SAMPLING),
    script:
        "../scripts/gather_metrics.py"
