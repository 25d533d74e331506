rule prepare_data:
    """One prepared artifact (uint8 images and labels) per data set split; every later rule reads it."""
    output:
        f"{RESULTS}/data/{{split}}.npz",
    log:
        f"{LOGS}/prepare_data_{{split}}.log",
    # Training waits on it (priority 20, rule train_network): without a priority of its own it can sit
    # behind every ready sampling job of a run whose models come from another (the testbed started
    # training 16 minutes late once), and the longest job then starts last.
    priority: 20
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        cfg=config_subset("dataset"),
    script:
        "../scripts/prepare_data.py"


rule record_config:
    """results/<run>/config.yaml: the run's config as its jobs saw it (every config file merged,
    the schema's defaults filled in), read by `diffguide sample --run`. Its params are the whole
    config: any changed setting rewrites it, and nothing else reruns for it."""
    output:
        f"{RESULTS}/config.yaml",
    log:
        f"{LOGS}/record_config.log",
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=RES["light_runtime"],
    params:
        cfg=config,
    script:
        "../scripts/record_config.py"
