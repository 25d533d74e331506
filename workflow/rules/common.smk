# Config validation, output root, the guidance sweeps and the resources every rule declares.
import os
import sys
from pathlib import Path

from diffguide.naming import base_method, scale_tag
from diffguide.config_schema import config_errors

SCHEMA = workflow.source_path("../schemas/config.schema.yaml")


def validate_config(config):
    """Validate against the schema (which also fills in defaults), then the rules spanning keys
    or depending on the data set (diffguide.config_checks), before any job is scheduled; on
    failure name every wrong key in one line each and stop, having created nothing."""
    lines = config_errors(config, SCHEMA)
    if lines:
        sys.exit("diffguide: invalid config:\n" + "\n".join(lines)
                 + "\nSee config/README.md for every key, its default and its range.")


validate_config(config)


def check_inception_weights(config):
    """With Inception metrics on, stop now, not after training, when no weights are available."""
    if not config["evaluation"]["inception"]:
        return
    from diffguide.inception import InceptionUnavailableError, inception_weights_path

    try:
        inception_weights_path(config["evaluation"]["inception_weights"])
    except InceptionUnavailableError as err:
        sys.exit(f"diffguide: {err}")


check_inception_weights(config)

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"

# Commands that only clean up or unlock must work on a damaged run, so they skip the check.
CLEANUP_FLAGS = ("--unlock", "--delete-all-output", "--delete-temp-output", "--cleanup-metadata", "--cleanup-shadow")


def check_artifacts(results):
    """Every finished artifact of this run against its checksum (diffguide.integrity), before
    Snakemake plans a job: a job that found a corrupt input itself would come too late, after
    Snakemake had deleted that job's previous outputs. Only the main process checks: a job
    re-parsing this file on a cluster must not see another job's artifact mid-write."""
    if not workflow.is_main_process or any(arg in CLEANUP_FLAGS for arg in sys.argv):
        return
    from diffguide.integrity import check_run, forced_targets

    config_path = (workflow.overwrite_configfiles or ["config/config.yaml"])[-1]
    lines = check_run(results, configfile=os.path.relpath(config_path), remade=forced_targets(sys.argv))
    if lines:
        sys.exit(f"diffguide: artifacts of run '{config['run']}' are damaged:\n" + "\n".join(lines))


check_artifacts(RESULTS)


# Each extra p_uncond trains conditional_p<p> and gets a classifier-free sweep cfg_p<p>.
P_UNCOND_SWEEP = [scale_tag(p) for p in config["training"]["conditional"]["p_uncond_sweep"]]
METHODS = config["guidance"]["methods"] + [f"cfg_p{p}" for p in P_UNCOND_SWEEP]


SCALES = {method: [scale_tag(v) for v in config["guidance"][f"{base_method(method)}_scales"]] for method in METHODS}
# Sampling settings as they appear in paths, e.g. ddim25-linspace (25 steps spaced as diffusers'
# timestep_spacing "linspace"; guided-diffusion's "ddim25" is ddim25-leading): the primary one
# (which metrics.csv, the figures and the tables use) first, then sampling.sweep's.
def sampling_tag(setting):
    return f"{setting['sampler']}{setting['steps']}-{setting.get('timestep_spacing', 'linspace')}"


PRIMARY_SAMPLING = sampling_tag(config["sampling"])
SAMPLINGS = list(dict.fromkeys([PRIMARY_SAMPLING] + [sampling_tag(s) for s in config["sampling"]["sweep"]]))


def sampling_setting(tag):
    """ddpm250-leading -> {sampler: ddpm, steps: 250, timestep_spacing: leading}."""
    sampler_steps, spacing = tag.split("-")
    sampler = sampler_steps.rstrip("0123456789")
    return {"sampler": sampler, "steps": int(sampler_steps.removeprefix(sampler)), "timestep_spacing": spacing}


RES = config["resources"]
INCEPTION_REFERENCE = [f"{RESULTS}/reference/test_inception.npz"] if config["evaluation"]["inception"] else []


wildcard_constraints:
    method=r"cfg|cg|cond_cg|cfg_p[0-9.]+",
    scale=r"[0-9.e+-]+",
    split="train|test",
    sampling=r"(ddim|ddpm)[0-9]+-(linspace|leading|trailing)",


# Each rule declares the config it reads as params, so Snakemake's params rerun-trigger reruns
# exactly the jobs whose settings changed (and what depends on them), nothing else.
NETWORK_ARCH = {"unconditional": "unet", "conditional": "unet",
                "noisy_classifier": "noisy_classifier", "eval_classifier": "eval_classifier"}
NETWORK_ARCH |= {f"conditional_p{p}": "unet" for p in P_UNCOND_SWEEP}


def config_subset(*keys):
    return {key: config[key] for key in keys}


# Keys that change how a training job runs but not the model it writes (a resumed run ends
# bitwise equal to an uninterrupted one): left out of params so changing them retrains nothing;
# workflow/scripts/train.py reads them from the config.
# p_uncond_sweep only names the other models: adding a value must not retrain this one.
RUN_ONLY_TRAINING_KEYS = ("checkpoint_every", "p_uncond_sweep")


def training_block(network):
    """The training settings of a network; conditional_p<p> is the conditional block at p_uncond = p."""
    if network.startswith("conditional_p"):
        return {**config["training"]["conditional"], "p_uncond": float(network.removeprefix("conditional_p"))}
    return config["training"][network]


def training_config(wildcards):
    net = wildcards.network
    block = {k: v for k, v in training_block(net).items() if k not in RUN_ONLY_TRAINING_KEYS}
    return {**config_subset("seed", "precision", "dataset", "diffusion"),
            "networks": {NETWORK_ARCH[net]: config["networks"][NETWORK_ARCH[net]]},
            "training": {net: block}}


def training_checkpoint(wildcards, output):
    """results/<run>/checkpoints/<network>.ckpt: beside the model but not an output, so Snakemake
    keeps it when a job is killed and the rerun resumes."""
    return str(Path(output[0]).parent.parent / "checkpoints" / f"{wildcards.network}.ckpt")


def guidance_inputs(wildcards):
    """cfg samples the conditional model (cfg_p<p> the one trained with p_uncond = p); cg the
    unconditional one and cond_cg the conditional one,
    both with the noisy classifier, which scale 0 (no classifier guidance) does not need, so
    retraining the classifier leaves those samples cached."""
    method = wildcards.method
    role = "unconditional" if method == "cg" else "conditional"
    file = "conditional_p" + method.removeprefix("cfg_p") if method.startswith("cfg_p") else role
    inputs = {role: f"{RESULTS}/models/{file}.pt"}
    if base_method(method) != "cfg" and float(wildcards.scale) != 0:
        inputs["noisy_classifier"] = f"{RESULTS}/models/noisy_classifier.pt"
    return inputs


def sampling_guidance(method):
    """The guidance settings a sample job of ``method`` depends on (its scale is a wildcard)."""
    g = config["guidance"]
    classifier_keys = {"cg_form": g["cg_form"], "cg_clip_order": g["cg_clip_order"]}
    return classifier_keys | ({"cond_cg_w": g["cond_cg_w"]} if method == "cond_cg" else {})
