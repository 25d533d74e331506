"""Rules of a config that the JSON schema cannot say: those spanning keys and those that depend on
the data set. The Snakefile runs them right after the schema (workflow/rules/common.smk), so a
config that would fail in some job, or quietly do the wrong thing, stops before any job with one
line per problem: the key, its value, the rule, and a fix. `python -m diffguide.pipeline.check_config`
runs the same checks without Snakemake.

Each ``check_*`` function takes the validated config (the schema's defaults filled in) and
returns its problems as lines; ``config_problems`` collects them all. Kept free of torch so the
Snakefile parses fast: a config asking for CUDA counts the GPUs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from diffguide.diffusion.noise_levels import SATURATING_SHIFT, alphas_cumprod, respaced_timesteps, score_shift_factor
from diffguide.evaluation.inception_weights import InceptionUnavailableError, inception_weights_path
from diffguide.registry import REGISTRY, parse_method, scale_tag

# Native side and test-split size of each data set (diffguide.data's catalogue, repeated here so
# parse-time checks need no torch; tests/test_config_checks.py checks the two agree).
NATIVE_SIZE = {"fashion_mnist": 28, "mnist": 28, "cifar10": 32, "digits": 8}
NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10, "digits": 10}
TEST_SPLIT_SIZE = {"fashion_mnist": 10_000, "mnist": 10_000, "cifar10": 10_000, "digits": 360}
# Precision and recall take the k = 3 nearest neighbours inside each half-sample of the
# intervals (diffguide.evaluation.metrics), so a sample set needs halves of at least k + 1 = 4.
MIN_EVALUATED_SAMPLES = 8
UNET_LIKE = ("unet", "weak_unet", "noisy_classifier", "clip")  # clip: the encoders share the noisy classifier's shape


def problem(key: str, value, rule: str, fix: str) -> str:
    """One line of the stop message: key, value, the rule it breaks, and what to do."""
    return f"  {key}: {value!r}: {rule}; {fix}"


def check_run_name(cfg: dict) -> list[str]:
    """results/<run>/ must be one folder inside results/: '.', '..' or a hidden name are not."""
    run = cfg["run"]
    if run.startswith(".") or Path(run).name != run:
        return [problem("run", run, "must be a single folder name inside results/ (not '.', '..', "
                        "nor starting with a dot)", "use letters, digits, '_', '-' and '.', e.g. run: my_run")]
    return []


def scale_lists(cfg: dict) -> dict[str, list]:
    """guidance.<method>_scales -> its values, for every *_scales key of the guidance block."""
    return {f"guidance.{key}": values for key, values in cfg["guidance"].items() if key.endswith("_scales")}


def check_methods(cfg: dict) -> list[str]:
    """Every method of guidance.methods is registered (diffguide.registry) and has its scales;
    every scales list belongs to a registered method (a typo would otherwise be ignored)."""
    lines, methods = [], cfg["guidance"]["methods"]
    for name in methods:
        if name not in REGISTRY.methods:
            lines.append(problem("guidance.methods", name, "is not a registered guidance method",
                                 f"use one of {', '.join(REGISTRY.methods)}, or name the module that registers it "
                                 "in plugins"))
        elif parse_method(name).method.scales_option not in cfg["guidance"]:
            method = parse_method(name).method
            example = list(method.scales.default) if method.scales else [0, 1, 2]  # its declared sweep, if any
            lines.append(problem(method.scales_key, None, f"is missing: {name} is in guidance.methods",
                                 f"add {method.scales_key}: {example}"))
    for key in scale_lists(cfg):
        owner = key.removeprefix("guidance.").removesuffix("_scales")
        if owner not in REGISTRY.methods:
            lines.append(problem(key, cfg["guidance"][key.removeprefix("guidance.")],
                                 f"names no registered guidance method ({owner!r})",
                                 f"fix the name (methods: {', '.join(REGISTRY.methods)}) or remove the key"))
    return lines


def check_unique_scales(cfg: dict) -> list[str]:
    """Each scale names a sample file (scale_<v:g>.npz), so two values with one name (1 and 1.0,
    or 0.1 and 0.10000001) would be sampled, evaluated and tabulated twice as one."""
    lines = []
    lists = scale_lists(cfg)
    lists["training.conditional.p_uncond_sweep"] = cfg["training"]["conditional"]["p_uncond_sweep"]
    for key, values in lists.items():
        tags = [scale_tag(v) for v in values]
        repeated = sorted({t for t in tags if tags.count(t) > 1}, key=float)
        if repeated:
            lines.append(problem(key, values, f"lists {', '.join(repeated)} more than once (1 and 1.0 are "
                                 "one scale)", "keep each value once"))
    p_uncond = scale_tag(cfg["training"]["conditional"]["p_uncond"])
    if p_uncond in [scale_tag(p) for p in lists["training.conditional.p_uncond_sweep"]]:
        lines.append(problem("training.conditional.p_uncond_sweep", lists["training.conditional.p_uncond_sweep"],
                             f"repeats training.conditional.p_uncond ({p_uncond}), whose model is already "
                             "trained and swept as cfg", f"drop {p_uncond} from the sweep"))
    return lines


def check_network_shapes(cfg: dict) -> list[str]:
    """GroupNorm needs norm_groups to divide every width; attention levels must exist; the UNet's
    skip connections need an image side that halves exactly at every level."""
    lines = []
    for name in UNET_LIKE:
        net, key = cfg["networks"][name], f"networks.{name}"
        levels = len(net["widths"])
        missing = [level for level in net["attention_levels"] if level >= levels]
        if missing:
            lines.append(problem(f"{key}.attention_levels", net["attention_levels"],
                                 f"levels {missing} do not exist: widths {net['widths']} give levels 0 to {levels - 1}",
                                 f"use levels below {levels}, or add widths"))
        undivided = [w for w in net["widths"] if w % net["norm_groups"]]
        if undivided:
            lines.append(problem(f"{key}.norm_groups", net["norm_groups"],
                                 f"GroupNorm needs it to divide every width, and {undivided} are not multiples",
                                 "choose a common divisor of the widths (e.g. 8 for widths of 16, 32, 64)"))
    size, halvings = cfg["dataset"]["image_size"], len(cfg["networks"]["unet"]["widths"]) - 1
    multiple = 2**halvings
    if size % multiple:
        below = size - size % multiple
        sizes = " or ".join(str(s) for s in (below, below + multiple) if s > 0)
        lines.append(problem("dataset.image_size", size,
                             f"the UNet halves it {halvings} times (networks.unet.widths has {halvings + 1} levels), "
                             f"so it must be a multiple of {multiple}", f"use {sizes}, or fewer levels"))
    return lines


def check_padding(cfg: dict) -> list[str]:
    """fit: pad centres the native image with equal margins, so it can only grow it by an even number."""
    ds = cfg["dataset"]
    native = NATIVE_SIZE[ds["name"]]
    margin = ds["image_size"] - native
    if ds["fit"] == "pad" and (margin < 0 or margin % 2):
        return [problem("dataset.image_size", ds["image_size"],
                        f"fit: pad cannot centre {ds['name']}'s {native}x{native} images in it (the margin "
                        "must be even and non-negative)",
                        f"use an image_size of {native} + an even number, or dataset.fit: resize")]
    return []


def sampling_settings(cfg: dict) -> list[tuple[str, dict]]:
    """(key, setting) of the primary sampling setting and of each sampling.sweep entry."""
    return [("sampling", cfg["sampling"])] + [(f"sampling.sweep[{i}]", s) for i, s in enumerate(cfg["sampling"]["sweep"])]


def spacing_problem(key: str, steps: int, spacing: str, timesteps: int) -> str | None:
    """Sampling must start from pure noise at t = T - 1. linspace and leading start at t = 0 with
    one step, and leading's stride T // K starts below T - 1 unless K divides T (guided-diffusion
    refuses such a ddimK; diffusers quietly starts lower)."""
    if steps > timesteps:
        return problem(f"{key}.steps", steps, f"cannot exceed diffusion.timesteps ({timesteps})",
                       f"use at most {timesteps} steps")
    if spacing in ("linspace", "leading") and steps < 2:
        return problem(f"{key}.steps", steps, f"with {spacing} spacing one step samples only at t = 0, not from noise",
                       "use 2 or more steps, or timestep_spacing: trailing")
    if spacing == "leading" and timesteps % steps:
        first = (steps - 1) * (timesteps // steps)
        return problem(f"{key}.steps", steps, f"leading spacing needs it to divide diffusion.timesteps ({timesteps}), "
                       f"or sampling starts at t = {first} instead of {timesteps - 1}",
                       "choose a divisor of T, or timestep_spacing: linspace")
    return None


def check_sampling(cfg: dict) -> list[str]:
    """K respaced steps are K of the T timesteps, starting from noise; the mean shift (D&N
    Algorithm 1) needs the ancestral sampler's Sigma, which DDIM does not have."""
    lines, timesteps = [], cfg["diffusion"]["timesteps"]
    classifier_guided = any("cg_form" in parse_method(m).method.option_keys
                            for m in cfg["guidance"]["methods"] if m in REGISTRY.methods)
    for key, setting in sampling_settings(cfg):
        spacing = spacing_problem(key, setting["steps"], setting["timestep_spacing"], timesteps)
        lines += [spacing] if spacing else []
        if classifier_guided and cfg["guidance"]["cg_form"] == "mean" and setting["sampler"] != "ddpm":
            lines.append(problem("guidance.cg_form", "mean", f"the mean shift needs the ddpm sampler, but {key}.sampler "
                                 f"is {setting['sampler']}", f"set {key}.sampler: ddpm, or guidance.cg_form: score"))
        if "cg_laplace" in cfg["guidance"]["methods"] and setting["sampler"] != "ddpm":
            lines.append(problem(f"{key}.sampler", setting["sampler"], "cg_laplace (the second-order rule) reshapes "
                                 "the ancestral step's Gaussian N(mu, Sigma I), which only the ddpm sampler draws",
                                 f"set {key}.sampler: ddpm, or leave cg_laplace out of guidance.methods"))
        if "cfgpp" in cfg["guidance"]["methods"] and setting["sampler"] == "heun":
            lines.append(problem(f"{key}.sampler", "heun", "CFG++ (cfgpp) renoises with the unconditional eps, the "
                                 "direction term of a DDIM or DDPM step; Heun's ODE step has one slope and no such "
                                 "term", f"set {key}.sampler: ddim or ddpm, or leave cfgpp out of guidance.methods"))
    g = cfg["guidance"]
    if classifier_guided and g["cg_form"] == "mean" and g["cg_clip_order"] == "guided_x0" and cfg["sampling"]["clip_x0"]:
        lines.append(problem("guidance.cg_clip_order", "guided_x0", "the mean shift (cg_form: mean) is added to the "
                             "mean after the unguided x0 is clipped (guided-diffusion's condition_mean); clipping the "
                             "x0 the shifted mean implies is not a mean shift", "set guidance.cg_clip_order: "
                             "unguided_x0, or guidance.cg_form: score, or sampling.clip_x0: false"))
    return lines


def check_sample_counts(cfg: dict) -> list[str]:
    """Enough samples for every metric's half-samples, every class, and every figure."""
    lines, n = [], cfg["sampling"]["num_samples"]
    classes, ev = NUM_CLASSES[cfg["dataset"]["name"]], cfg["evaluation"]
    need = max(MIN_EVALUATED_SAMPLES, classes)
    if n < need:
        # The counts below are bounded by num_samples: one line for the cause, not its echoes.
        return [problem("sampling.num_samples", n, f"needs at least {need}: one per class ({classes}) and "
                        f"{MIN_EVALUATED_SAMPLES} for precision / recall on half-samples", f"use {need} or more")]
    available = TEST_SPLIT_SIZE[cfg["dataset"]["name"]]
    if n > available:
        lines.append(problem("sampling.num_samples", n, f"precision / recall compare the samples with as many test "
                             f"images, and {cfg['dataset']['name']}'s test split has {available}",
                             f"use at most {available}"))
    per_class = n // classes
    if cfg["figures"]["grid_per_class"] > max(per_class, 1):
        lines.append(problem("figures.grid_per_class", cfg["figures"]["grid_per_class"],
                             f"the grids show that many samples per class, but {n} samples over {classes} classes "
                             f"give {per_class}", f"use at most {per_class}, or raise sampling.num_samples"))
    if ev["inception"]:
        lines += _inception_counts(cfg, n)
    return lines


def check_references(cfg: dict) -> list[str]:
    """sdg_image guides sample i towards reference i mod R (R = sdg_references_per_class * K), so
    every reference needs a sample and the test split must hold them (the sampling job checks the
    exact per-class counts of the split)."""
    if not any(parse_method(m).method.condition == "reference" for m in cfg["guidance"]["methods"]
               if m in REGISTRY.methods):
        return []
    per_class, classes = cfg["guidance"]["sdg_references_per_class"], NUM_CLASSES[cfg["dataset"]["name"]]
    n, available = cfg["sampling"]["num_samples"], TEST_SPLIT_SIZE[cfg["dataset"]["name"]]
    if n < classes:  # check_sample_counts names that cause; this line would only echo it
        return []
    if per_class * classes > min(n, available):
        return [problem("guidance.sdg_references_per_class", per_class,
                        f"{per_class} per class x {classes} classes = {per_class * classes} references, more than the "
                        f"{n} samples that are guided towards them (or the {available} test images)",
                        f"use at most {min(n, available) // classes}, or raise sampling.num_samples")]
    return []


def _inception_counts(cfg: dict, n: int) -> list[str]:
    ev, lines = cfg["evaluation"], []
    if not MIN_EVALUATED_SAMPLES <= ev["inception_samples"] <= n:
        lines.append(problem("evaluation.inception_samples", ev["inception_samples"],
                             f"must lie in [{MIN_EVALUATED_SAMPLES}, sampling.num_samples = {n}] (the first ones of "
                             "each set are fed to Inception)", f"use a value from {MIN_EVALUATED_SAMPLES} to {n}"))
    available = TEST_SPLIT_SIZE[cfg["dataset"]["name"]]
    if ev["inception_reference"] < min(ev["inception_samples"], n):
        lines.append(problem("evaluation.inception_reference", ev["inception_reference"],
                             f"precision / recall compare as many real images as samples, so it needs at least "
                             f"evaluation.inception_samples ({ev['inception_samples']})", "raise it"))
    elif not MIN_EVALUATED_SAMPLES <= ev["inception_reference"] <= available:
        lines.append(problem("evaluation.inception_reference", ev["inception_reference"],
                             f"must lie in [{MIN_EVALUATED_SAMPLES}, {available}], the size of "
                             f"{cfg['dataset']['name']}'s test split", f"use at most {available}"))
    return lines


def check_training(cfg: dict) -> list[str]:
    """A warm-up as long as training never reaches the peak learning rate the config names;
    BatchNorm (the clean classifiers) needs two images per batch; DDPM's linear schedule
    scales beta_T = 0.02 * 1000 / T, which reaches 1 (abar = 0: no signal) at T = 20."""
    lines, diffusion = [], cfg["diffusion"]
    if diffusion["schedule"] == "linear" and diffusion["timesteps"] <= 20:
        lines.append(problem("diffusion.timesteps", diffusion["timesteps"], "the linear schedule needs more than 20 (its "
                             "beta_T = 0.02 * 1000 / T reaches 1)", "use 21 or more, or schedule: cosine"))
    for name in ("eval_classifier", "guide_classifier"):  # the clean classifiers' BatchNorm
        if cfg["training"][name]["batch_size"] < 2:
            lines.append(problem(f"training.{name}.batch_size", 1, "BatchNorm needs at least 2 images per batch",
                                 "use 2 or more"))
    for name, block in cfg["training"].items():
        if block["warmup_steps"] >= block["steps"]:
            lines.append(problem(f"training.{name}.warmup_steps", block["warmup_steps"],
                                 f"must be below training.{name}.steps ({block['steps']}), or the learning rate "
                                 "never reaches lr", "shorten the warm-up or train longer"))
    return lines


def check_figures(cfg: dict) -> list[str]:
    """The papers' tables are made for a run that sweeps both cfg and cg (the Snakefile's
    PAPER_TABLES; the testbed sweeps no cg and makes none): D&N Table 4's conditional rows
    (cond_cg) are read against cg's, so a run with cond_cg needs cg too."""
    lines, methods = [], cfg["guidance"]["methods"]
    if cfg["figures"]["table_features"] == "inception" and not cfg["evaluation"]["inception"]:
        lines.append(problem("figures.table_features", "inception", "needs evaluation.inception: true",
                             "set evaluation.inception: true, or figures.table_features: classifier"))
    if "cond_cg" in methods and not {"cfg", "cg"} <= set(methods):
        lines.append(problem("guidance.methods", methods, "cond_cg's rows of D&N Table 4 need both cfg and cg beside "
                             "them", "add the missing ones, or drop cond_cg"))
    return lines


def check_inception_weights(cfg: dict) -> list[str]:
    """With Inception metrics on, stop now, not after training, when no weights are available."""
    if not cfg["evaluation"]["inception"]:
        return []
    try:
        inception_weights_path(cfg["evaluation"]["inception_weights"])
    except InceptionUnavailableError as err:
        return [f"  evaluation.inception_weights: {cfg['evaluation']['inception_weights']!r}: {err}"]
    return []


def check_guidance(cfg: dict) -> list[str]:
    """Classifier-free guidance extrapolates from the null-label prediction, which a model trained
    with p_uncond = 0 never learned (H&S Algorithm 1). A p_uncond_sweep entry of 0 is allowed where
    guidance without a null class runs (icg or tsg: icg_p0 and tsg_p0 need none; cfg_p0 beside them is
    then the contrast, CFG through the untrained null class, issue 29)."""
    lines, g = [], cfg["guidance"]
    guided = any(w > 0 for w in g["cfg_scales"]) or ("cond_cg" in g["methods"] and g["cond_cg_w"] > 0)
    p_values = [("training.conditional.p_uncond", cfg["training"]["conditional"]["p_uncond"])]
    if not {"icg", "tsg"} & set(g["methods"]):
        p_values += [("training.conditional.p_uncond_sweep", p) for p in cfg["training"]["conditional"]["p_uncond_sweep"]]
    for key, p in p_values:
        if guided and p == 0:
            lines.append(problem(key, p, "a model trained without dropping its label has an untrained null class, so "
                                 "guidance with w > 0 steers towards noise", "use a p_uncond above 0 (H&S: 0.1 to 0.2), or, for the "
                                 "sweep, add icg or tsg to guidance.methods (they need no null class)"))
    for p in cfg["training"]["conditional"]["p_uncond_sweep"]:
        if "e" in scale_tag(p):
            lines.append(problem("training.conditional.p_uncond_sweep", p, f"names its model conditional_p{scale_tag(p)}, "
                                 "which the rules' file patterns do not match", "use a value of at least 0.0001"))
    return lines


def reused_model_path(cfg: dict, network: str) -> Path:
    """Where a network listed in models_from.networks is read: the other run's model file."""
    return Path("results") / cfg["models_from"]["run"] / "models" / f"{network}.pt"


def check_models_from(cfg: dict, root: str | Path = ".") -> list[str]:
    """models_from names registered networks of another run whose training has finished: a
    reused model that is missing would otherwise stop the first sampling job that reads it."""
    reuse, lines = cfg["models_from"], []
    if reuse["run"] is None:
        if reuse["networks"]:
            lines.append(problem("models_from.networks", reuse["networks"], "names networks to reuse but "
                                 "models_from.run names no run", "set models_from.run (e.g. default) or drop the list"))
        return lines
    if reuse["run"] == cfg["run"]:
        lines.append(problem("models_from.run", reuse["run"], "is this run itself", "name another run, or null"))
    for network in reuse["networks"]:
        if network not in REGISTRY.networks:
            lines.append(problem("models_from.networks", network, "is not a registered network",
                                 f"use one of {', '.join(REGISTRY.networks)}"))
        elif not (Path(root) / reused_model_path(cfg, network)).is_file():
            lines.append(problem("models_from.networks", network, f"{reused_model_path(cfg, network)} does not exist",
                                 f"finish run '{reuse['run']}' first (for the default run: make run), or drop "
                                 f"{network} from models_from.networks to train it in this run"))
    return lines


def check_data_source(cfg: dict) -> list[str]:
    """A configured source_dir is the data set's source (no fallback), so it must exist."""
    source = cfg["dataset"]["source_dir"]
    if source is not None and not Path(source).is_dir():
        return [problem("dataset.source_dir", source, "is not a directory",
                        "point it at the folder holding the raw files, or set it to null to use the default sources")]
    return []


def cluster_submission(argv: list[str] | None = None) -> bool:
    """Whether this Snakemake submits jobs elsewhere (an executor or a profile), where the jobs'
    machines, not this one, must have the GPU."""
    argv = sys.argv if argv is None else argv
    flags = ("--executor", "-e", "--profile", "--workflow-profile")
    return any(arg.split("=")[0] in flags for arg in argv) or bool(os.environ.get("SNAKEMAKE_PROFILE"))


def count_cuda_devices() -> int:
    """torch's CUDA device count, asked in a subprocess: the Snakefile's process stays torch-free."""
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return int(result.stdout.strip() or 0) if result.returncode == 0 else 0


def check_device(cfg: dict, cuda_devices: int | None = None) -> list[str]:
    """device: cuda (or cuda:N) that this machine lacks, for a run whose jobs run here; on a
    cluster, device: cuda with jobs that ask the scheduler for no GPU. (Several
    training processes on the CPU, resources.gpu > 1 with device: cpu, are allowed: gloo DDP,
    which the tests use to run the torchrun path without GPUs.)"""
    device = cfg["device"]
    if not device.startswith("cuda"):
        return []
    if cluster_submission():
        if cfg["resources"]["gpu"] == 0:  # the jobs would go to CPU partitions and fail there
            return [problem("device", device, "asks for a GPU, but resources.gpu: 0 submits every job without one "
                            "(to a CPU partition)", "set resources.gpu: 1 (or more), or device: auto")]
        return []
    if cuda_devices is None:
        cuda_devices = count_cuda_devices()
    index = int(device.partition(":")[2] or 0)
    if index >= cuda_devices:
        have = f"has {cuda_devices} CUDA device(s)" if cuda_devices else "has no CUDA"
        return [problem("device", device, f"asks for a GPU this machine lacks (it {have})",
                        "set device: auto (CUDA when present, else the CPU), cpu, or an existing cuda:N")]
    return []


CHECKS = (check_run_name, check_methods, check_unique_scales, check_network_shapes, check_padding, check_sampling,
          check_sample_counts, check_references, check_training, check_figures, check_guidance, check_data_source,
          check_device, check_inception_weights, check_models_from)


def config_problems(cfg: dict) -> list[str]:
    """Every cross-key and data-set problem of a schema-valid config, one line each."""
    return [line for check in CHECKS for line in check(cfg)]


@dataclass(frozen=True)
class SaturatingStart:
    """A sampling setting whose first step amplifies a score-form guidance shift more than
    SATURATING_SHIFT-fold (diffguide.diffusion.noise_levels), and what leading spacing would give."""

    spacing: str
    steps: int
    timesteps: int
    first: int
    abar: float
    leading_first: int | None  # None where leading spacing is no fix (K does not divide T, or it starts as high)
    leading_abar: float | None

    def describe(self, methods: list[str]) -> str:
        return (f"{self.steps} steps of T = {self.timesteps} spaced {self.spacing} start at t = {self.first}, where "
                f"abar = {self.abar:.2g}: the score-form guidance of {', '.join(methods)} moves x0 there by "
                f"{score_shift_factor(self.abar):,.0f} times s * grad log p(y | x_t), and its guided samples saturate "
                "(pixels at 0 or 255)")

    def lower_start(self) -> str:
        """Where leading spacing starts, e.g. 't = 960, factor 16'."""
        return f"t = {self.leading_first}, factor {score_shift_factor(self.leading_abar):,.0f}"


def saturating_start(setting: dict, diffusion: dict) -> SaturatingStart | None:
    """The sampling setting's start when it amplifies a score-form shift beyond SATURATING_SHIFT,
    else None (also for a setting spacing_problem refuses). Only a warning, not a stop: sampling
    there is how the saturation is shown (config/README.md, sampling.timestep_spacing), but it is
    never what one wants by accident."""
    spacing, steps, timesteps = setting["timestep_spacing"], setting["steps"], diffusion["timesteps"]
    if spacing_problem("sampling", steps, spacing, timesteps):
        return None
    abar = alphas_cumprod(diffusion["schedule"], timesteps)
    first = respaced_timesteps(timesteps, steps, spacing)[0]
    if score_shift_factor(abar[first]) <= SATURATING_SHIFT:
        return None
    lower = respaced_timesteps(timesteps, steps, "leading")[0] if timesteps % steps == 0 else None
    if lower is not None and score_shift_factor(abar[lower]) > SATURATING_SHIFT:  # K = T: leading starts at T - 1
        lower = None
    return SaturatingStart(spacing, steps, timesteps, first, float(abar[first]), lower,
                           None if lower is None else float(abar[lower]))


def check_saturating_start(cfg: dict) -> list[str]:
    """A warning for each sampling setting of the run (saturating_start) where one of its
    score-form methods samples at a nonzero scale."""
    g = cfg["guidance"]
    declared = {name: parse_method(name).method for name in g["methods"] if name in REGISTRY.methods}
    shifting = [name for name, method in declared.items() if method.shifts_score(g)
                and any(scale != 0 for scale in g.get(method.scales_option, []))]
    lines = []
    for key, setting in sampling_settings(cfg) if shifting else []:
        start = saturating_start(setting, cfg["diffusion"])
        if start:
            leading = (f"set {key}.timestep_spacing: leading ({start.lower_start()})" if start.leading_first is not None
                       else f"use fewer {key}.steps, dividing T, with timestep_spacing: leading")
            lines.append(f"  {key}.timestep_spacing: {start.spacing!r}: {start.describe(shifting)}; {leading}, or "
                         "guidance.cg_form: mean with the ddpm sampler")
    return lines


# What is allowed but almost surely unintended: printed, and the run goes on.
WARNINGS = (check_saturating_start,)


def config_warnings(cfg: dict) -> list[str]:
    """Every warning about a config without problems (config_problems), one line each."""
    return [line for check in WARNINGS for line in check(cfg)]
