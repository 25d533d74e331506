# Config validation, output root, the guidance sweeps and the resources every rule declares, and
# the helpers and input functions of the rules. Every name of a method or network, and what it
# needs, comes from diffguide.registry; nothing here imports torch.
import os
import sys
from pathlib import Path

from diffguide.pipeline.config_checks import config_warnings, reused_model_path
from diffguide.pipeline.config_schema import SCHEMA_PATH, config_errors
from diffguide.registry import (
    method_pattern,
    network_pattern,
    parse_method,
    parse_network,
    run_methods,
    run_networks,
    scale_tag,
    training_block,
)
from diffguide.training.settings import RUN_ONLY_TRAINING_KEYS


def validate_config(config):
    """Validate against the schema (which also fills in defaults), then every rule spanning keys
    or depending on the data set or the machine (diffguide.pipeline.config_checks), before any job is
    scheduled; on failure name every wrong key in one line each and stop, having created nothing.
    What runs but is almost surely unintended (a sampling start that saturates guided samples) is
    printed as a warning, once, by the main process."""
    lines = config_errors(config, SCHEMA_PATH)
    if lines:
        sys.exit(
            "diffguide: invalid config:\n"
            + "\n".join(lines)
            + "\nSee config/README.md for every key, its default and its range."
        )
    warnings = config_warnings(config) if workflow.is_main_process else []
    if warnings:
        print("diffguide: warning: this config runs, but:\n" + "\n".join(warnings), file=sys.stderr)


validate_config(config)

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"

# Commands that only clean up or unlock must work on a damaged run, so they skip the check.
CLEANUP_FLAGS = ("--unlock", "--delete-all-output", "--delete-temp-output", "--cleanup-metadata", "--cleanup-shadow")


def check_artifacts(results):
    """Every finished artifact of this run against its checksum (diffguide.base.integrity), before
    Snakemake plans a job: a job that found a corrupt input itself would come too late, after
    Snakemake had deleted that job's previous outputs. Only the main process checks: a job
    re-parsing this file on a cluster must not see another job's artifact mid-write."""
    if not workflow.is_main_process or any(arg in CLEANUP_FLAGS for arg in sys.argv):
        return
    from diffguide.base.integrity import check_run, forced_targets

    config_path = (workflow.overwrite_configfiles or ["config/config.yaml"])[-1]
    lines = check_run(results, configfile=os.path.relpath(config_path), remade=forced_targets(sys.argv))
    if lines:
        sys.exit(f"diffguide: artifacts of run '{config['run']}' are damaged:\n" + "\n".join(lines))


check_artifacts(RESULTS)


# Each extra p_uncond trains conditional_p<p> and gets a classifier-free sweep cfg_p<p>.
P_UNCOND_SWEEP = config["training"]["conditional"]["p_uncond_sweep"]
METHODS = run_methods(config["guidance"], P_UNCOND_SWEEP)
NETWORKS = run_networks(METHODS)


def method_scales(method):
    return [scale_tag(v) for v in config["guidance"][parse_method(method).method.scales_option]]


SCALES = {method: method_scales(method) for method in METHODS}
# The sweeps guided towards reference images (sdg_image), which get a reference grid too.
REFERENCE_METHODS = [method for method in METHODS if parse_method(method).method.condition == "reference"]


# Sampling settings as they appear in paths, e.g. ddim25-leading (25 steps spaced as diffusers'
# timestep_spacing "leading", which is guided-diffusion's "ddim25"): the primary one
# (which metrics.csv, the figures and the tables use) first, then sampling.sweep's.
def sampling_tag(setting):
    return f"{setting['sampler']}{setting['steps']}-{setting['timestep_spacing']}"


PRIMARY_SAMPLING = sampling_tag(config["sampling"])
SAMPLINGS = list(dict.fromkeys([PRIMARY_SAMPLING] + [sampling_tag(s) for s in config["sampling"]["sweep"]]))


def sampling_setting(tag):
    """ddpm250-leading -> {sampler: ddpm, steps: 250, timestep_spacing: leading}."""
    sampler_steps, spacing = tag.split("-")
    sampler = sampler_steps.rstrip("0123456789")
    return {"sampler": sampler, "steps": int(sampler_steps.removeprefix(sampler)), "timestep_spacing": spacing}


RES = config["resources"]
# GPUs of a job that runs one process (sampling, evaluation, the reference Inception features):
# one when the run asks for any. Only training spreads over several (torchrun, one process per GPU).
ONE_PROCESS_GPUS = min(RES["gpu"], 1)
INCEPTION_REFERENCE_PATH = f"{RESULTS}/reference/test_inception.npz"


wildcard_constraints:
    method=method_pattern(),
    network=network_pattern(),
    scale=r"[0-9.e+-]+",
    split="train|test",
    sampling=r"(ddim|ddpm)[0-9]+-(linspace|leading|trailing)",


# Each rule declares the config it reads as params, so Snakemake's params rerun-trigger reruns
# exactly the jobs whose settings changed (and what depends on them), nothing else.
def config_subset(*keys):
    return {key: config[key] for key in keys}


def training_config(wildcards):
    """The settings a training job's model depends on. Run-only keys (diffguide.training.settings)
    change how the job runs, not the model, and p_uncond_sweep only names the other models: both
    are left out, so changing them retrains nothing (workflow/scripts/train.py reads the former
    from the config)."""
    net = wildcards.network
    arch = parse_network(net).network.arch_key
    block = {k: v for k, v in training_block(config["training"], net).items() if k not in RUN_ONLY_TRAINING_KEYS}
    return {
        **config_subset("seed", "precision", "dataset", "diffusion"),
        "networks": {arch: config["networks"][arch]},
        "training": {net: block},
    }


def training_priority(wildcards):
    """The eps-models first, then the classifiers (see rule train_network)."""
    return 20 if parse_network(wildcards.network).network.loss == "diffusion" else 10


def training_checkpoint(wildcards, output):
    """results/<run>/checkpoints/<network>.ckpt: beside the model but not an output, so Snakemake
    keeps it when a job is killed and the rerun resumes."""
    return str(Path(output[0]).parent.parent / "checkpoints" / f"{wildcards.network}.ckpt")


def training_inputs(wildcards):
    """The prepared splits, and for a network that starts from another's weights (init_from:
    the noisy image encoder from clip) that network's model."""
    inputs = {"train": prepared_split("train"), "test": prepared_split("test")}
    start = parse_network(wildcards.network).network.init_from
    return inputs | ({"init": model_path(start)} if start else {})


def guidance_inputs(wildcards):
    """The models a sampling job loads, by role (diffguide.registry.MethodName.models): the
    eps-model it guides, and the networks that steer it (the noisy classifier, the encoders),
    which scale 0 (no guidance) does not need, so retraining them leaves those samples cached.
    A method guided towards reference images also reads the test split they come from."""
    parsed = parse_method(wildcards.method)
    inputs = {role: model_path(network) for role, network in parsed.models(float(wildcards.scale)).items()}
    return inputs | ({"references": prepared_split("test")} if parsed.method.condition == "reference" else {})


def sampling_config(wildcards):
    """The settings a sampling job's samples depend on: only this job's sampling setting (adding
    one to sampling.sweep reruns nothing cached) and only its method's guidance options."""
    sampling = {k: v for k, v in config["sampling"].items() if k != "sweep"} | sampling_setting(wildcards.sampling)
    if not sampling.get("record_displacement"):  # off: left out, so runs sampled before the key stay cached
        sampling.pop("record_displacement", None)
    options = parse_method(wildcards.method).method.option_keys
    return {
        **config_subset("seed", "precision", "dataset", "diffusion"),
        "sampling": sampling,
        "guidance": {key: config["guidance"][key] for key in options},
    }


def figure_outputs(name, entry):
    """results/<run>/figures/<name>.png, flagged for `snakemake --report` as diffguide.reports.report_layout's
    ``entry`` says (caption, category, subcategory, label), and the PDF the figure code writes beside it."""
    from diffguide.reports.report_layout import report_entry

    png = report(f"{RESULTS}/figures/{name}.png", **report_entry(entry))
    return {"png": png, "pdf": f"{RESULTS}/figures/{name}.pdf"}


def primary_samples_of_method(wildcards):
    """Every scale's samples of one method, in the primary sampling setting."""
    return expand(
        rules.sample.output[0], sampling=PRIMARY_SAMPLING, method=wildcards.method, scale=SCALES[wildcards.method]
    )


# Networks read from another run's models (models_from: the testbed reuses the default run's), not
# trained here; config_checks.check_models_from has made sure each file exists.
REUSED_NETWORKS = set(config["models_from"]["networks"]) if config["models_from"]["run"] else set()
# The networks this run trains itself (whose training logs it has).
TRAINED_NETWORKS = [network for network in NETWORKS if network not in REUSED_NETWORKS]


def model_path(network):
    """The model file of a network: rule train_network's output, or the other run's file for a
    network listed in models_from.networks."""
    if network in REUSED_NETWORKS:
        return str(reused_model_path(config, network))
    return expand(rules.train_network.output[0], network=network)[0]


def prepared_split(split):
    """The prepared data of a split (rule prepare_data's output)."""
    return expand(rules.prepare_data.output[0], split=split)[0]


def every_sweep_point(pattern):
    """``pattern`` (with {sampling}, {method}, {scale}) at every sampling setting, method and scale."""
    return [
        path for method in METHODS for path in expand(pattern, sampling=SAMPLINGS, method=method, scale=SCALES[method])
    ]
