rule reference_statistics:
    """Evaluation-classifier features of the real test split, computed once for every evaluation."""
    input:
        classifier=f"{RESULTS}/models/eval_classifier.pt",
        test=f"{RESULTS}/data/test.npz",
    output:
        f"{RESULTS}/reference/test_eval_classifier.npz",
    params:
        batch_size=config["evaluation"]["batch_size"],
    log:
        f"{LOGS}/reference_statistics.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/reference_statistics.py"


rule inception_reference:
    """Inception pool3 and sFID spatial features of the test split, once per run."""
    input:
        test=f"{RESULTS}/data/test.npz",
    output:
        f"{RESULTS}/reference/test_inception.npz",
    params:
        num_images=config["evaluation"]["inception_reference"],
        weights=config["evaluation"]["inception_weights"],
    log:
        f"{LOGS}/inception_reference.log",
    threads: 1
    resources:
        gpu=RES["gpu"],
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/inception_reference.py"


rule evaluate:
    """One metrics row, each metric with its 95% interval: FID / KID, IS, precision / recall and
    sample accuracy on the evaluation classifier, and Inception FID / sFID / KID / precision /
    recall (/ IS); beside it the metrics on 200 seeded half-samples (the intervals' replicates)."""
    input:
        samples=f"{RESULTS}/samples/{{sampling}}/{{method}}/scale_{{scale}}.npz",
        reference=f"{RESULTS}/reference/test_eval_classifier.npz",
        classifier=f"{RESULTS}/models/eval_classifier.pt",
        inception=INCEPTION_REFERENCE,
    output:
        row=f"{RESULTS}/metrics/{{sampling}}/{{method}}/scale_{{scale}}.csv",
        replicates=f"{RESULTS}/metrics/{{sampling}}/{{method}}/scale_{{scale}}.replicates.csv",
    params:
        batch_size=config["evaluation"]["batch_size"],
        inception_samples=config["evaluation"]["inception_samples"],
        inception_weights=config["evaluation"]["inception_weights"],
        seed=config["seed"],
    log:
        f"{LOGS}/evaluate_{{sampling}}_{{method}}_{{scale}}.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/evaluate.py"


rule gather_metrics:
    """metrics.csv: one row per (method, scale) at the primary sampling setting;
    metrics_by_sampler.csv: the same for every setting of sampling.sweep too;
    metrics_replicates.csv: the half-sample replicates of metrics.csv's rows, for the findings."""
    input:
        rows=[f"{RESULTS}/metrics/{t}/{m}/scale_{s}.csv" for t in SAMPLINGS for m in METHODS for s in SCALES[m]],
        replicates=[
            f"{RESULTS}/metrics/{t}/{m}/scale_{s}.replicates.csv" for t in SAMPLINGS for m in METHODS for s in SCALES[m]
        ],
    output:
        primary=f"{RESULTS}/metrics.csv",
        by_sampler=f"{RESULTS}/metrics_by_sampler.csv",
        replicates=f"{RESULTS}/metrics_replicates.csv",
    params:
        primary=sampling_setting(PRIMARY_SAMPLING),
    log:
        f"{LOGS}/gather_metrics.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    script:
        "../scripts/gather_metrics.py"
