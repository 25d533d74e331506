rule prepare_data:
    """One prepared artifact (uint8 images and labels) per data set split; every later rule reads it."""
    output:
        f"{RESULTS}/data/{{split}}.npz",
    log:
        f"{LOGS}/prepare_data_{{split}}.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        cfg=config_subset("dataset"),
    script:
        "../scripts/prepare_data.py"
