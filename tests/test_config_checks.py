"""Every cross-key or data-set rule of a config stops at parse time with one line naming the key.

Each case is the smoke config changed in one place, as issue 12 found them: values the schema
accepts that failed only after jobs had run, or did the wrong thing quietly.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffguide import data
from diffguide.pipeline import config_checks
from diffguide.pipeline.check_config import main as check_config_main
from diffguide.pipeline.config_schema import SCHEMA_PATH, config_errors

REPO = Path(__file__).resolve().parents[1]
SCHEMA = SCHEMA_PATH
SMOKE = yaml.safe_load((REPO / "config/smoke.yaml").read_text())


def changed(dotted: str, value) -> dict:
    cfg = copy.deepcopy(SMOKE)
    *path, last = dotted.split(".")
    node = cfg
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    return cfg


# (changed key, value, key the stop line must name, a phrase of its rule)
BAD = [
    ("guidance.cfg_scales", [0, 1, 1.0], "guidance.cfg_scales", "more than once"),
    ("guidance.cg_scales", [0.1, 0.10000001], "guidance.cg_scales", "more than once"),
    ("training.conditional.p_uncond_sweep", [0.2], "training.conditional.p_uncond_sweep", "repeats"),
    ("run", ".", "run", "single folder name"),
    ("run", "..", "run", "single folder name"),
    ("run", ".hidden", "run", "single folder name"),
    ("networks.unet.attention_levels", [5], "networks.unet.attention_levels", "do not exist"),
    ("networks.noisy_classifier.attention_levels", [2], "networks.noisy_classifier.attention_levels", "do not exist"),
    ("networks.unet.norm_groups", 6, "networks.unet.norm_groups", "divide every width"),
    ("networks.noisy_classifier.norm_groups", 5, "networks.noisy_classifier.norm_groups", "divide every width"),
    ("networks.unet.widths", [16, 32, 32, 32, 32, 32], "dataset.image_size", "multiple of 32"),
    ("sampling.steps", 101, "sampling.steps", "cannot exceed diffusion.timesteps"),
    ("sampling.sweep", [{"sampler": "ddpm", "steps": 500}], "sampling.sweep[0].steps", "cannot exceed"),
    ("guidance.cg_form", "mean", "guidance.cg_form", "needs the ddpm sampler"),
    ("sampling.num_samples", 5, "sampling.num_samples", "at least 10"),
    ("figures.grid_per_class", 3, "figures.grid_per_class", "give 2"),
    ("evaluation.inception_samples", 30, "evaluation.inception_samples", "sampling.num_samples = 20"),
    ("evaluation.inception_reference", 400, "evaluation.inception_reference", "test split"),
    ("training.eval_classifier.warmup_steps", 40, "training.eval_classifier.warmup_steps", "never reaches lr"),
    ("dataset.source_dir", "/nonexistent/raw", "dataset.source_dir", "not a directory"),
    ("sampling.timestep_spacing", "leading", None, None),  # 4 divides T = 100
    ("sampling.sweep", [{"sampler": "ddim", "steps": 3, "timestep_spacing": "leading"}], "sampling.sweep[0].steps",
     "starts at t = 66 instead of 99"),
    ("sampling.steps", 1, "sampling.steps", "samples only at t = 0"),
    ("guidance.methods", ["cfg", "cond_cg"], "guidance.methods", "need both cfg and cg"),
    ("guidance.methods", ["cfg", "apg"], None, None),  # no cg: no paper tables (the testbed)
    ("training.conditional.p_uncond", 0, "training.conditional.p_uncond", "untrained null class"),
    ("training.conditional.p_uncond_sweep", [0.00005], "training.conditional.p_uncond_sweep", "do not match"),
    ("diffusion.schedule", "linear", None, None),  # T = 100 is fine
    ("diffusion.timesteps", 3, "diffusion.timesteps", "minimum of 4"),
    ("sampling.eta", 1.5, "sampling.eta", "maximum of 1"),
    ("seed", 2**40, "seed", "maximum of 4294967295"),
    ("training.eval_classifier.batch_size", 1, "training.eval_classifier.batch_size", "BatchNorm"),
    ("sampling.num_samples", 400, "sampling.num_samples", "test split has 360"),
    ("evaluation.inception_reference", 9, "evaluation.inception_reference", "at least evaluation.inception_samples"),
    ("figures.table_features", "inception", None, None),  # fine: smoke has inception on
    ("networks.clip.attention_levels", [3], "networks.clip.attention_levels", "do not exist"),
    ("networks.clip.norm_groups", 5, "networks.clip.norm_groups", "divide every width"),  # widths 32, 64, 64
    ("guidance.sdg_similarity", "l2", "guidance.sdg_similarity", "is not one of"),
    ("training.noisy_image_encoder.recipe", "pixels", "training.noisy_image_encoder.recipe", "is not one of"),
    ("training.clip.steps", 50, "training.clip.warmup_steps", "never reaches lr"),  # its default warm-up: 50
]


@pytest.mark.parametrize("key,value,named,rule", [case for case in BAD if case[2]])
def test_each_bad_value_is_one_line_naming_key_value_rule_and_fix(key, value, named, rule):
    lines = config_errors(changed(key, value), SCHEMA)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"  {named}: "), lines
    # the rule, then the fix after '; ' (the schema's own errors: the key's description in [...])
    assert rule in lines[0] and ("; " in lines[0] or "  [" in lines[0]), lines


def test_the_shipped_configs_pass_every_check(capsys):
    for name in ("config.yaml", "smoke.yaml"):
        assert config_errors(yaml.safe_load((REPO / "config" / name).read_text()), SCHEMA) == [], name
    # make run-sdg: config/sdg.yaml merged over the default run, as snakemake merges two --configfile
    assert check_config_main([str(REPO / "config/config.yaml"), str(REPO / "config/sdg.yaml")]) == 0
    assert "config/config.yaml + " in capsys.readouterr().out
    for key, value, named, _ in BAD:
        if named is None:  # the listed values that are fine
            assert config_errors(changed(key, value), SCHEMA) == [], key


def test_padding_that_cannot_centre_is_stopped_for_the_data_set_in_the_config():
    cfg = changed("dataset.name", "fashion_mnist")
    cfg["dataset"] |= {"fit": "pad", "image_size": 31}
    cfg["networks"]["unet"] |= {"widths": [16], "attention_levels": [0]}  # no halving rule in the way
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  dataset.image_size: 31: fit: pad cannot centre fashion_mnist's 28x28"), line
    cfg["dataset"]["image_size"] = 30
    assert config_errors(cfg, SCHEMA) == []


def test_the_mean_shift_with_the_guided_clip_order_is_stopped_naming_three_fixes():
    cfg = changed("guidance.cg_form", "mean")
    cfg["sampling"]["sampler"] = "ddpm"
    cfg["guidance"]["cg_clip_order"] = "guided_x0"
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  guidance.cg_clip_order: 'guided_x0': the mean shift") and "sampling.clip_x0: false" in line
    cfg["sampling"]["clip_x0"] = False  # nothing is clipped: the mean shift is exact again
    assert config_errors(cfg, SCHEMA) == []


def test_guidance_methods_must_be_registered_and_each_needs_its_scales():
    (line,) = config_errors(changed("guidance.methods", ["cfg", "cg", "cgf"]), SCHEMA)
    assert line.startswith("  guidance.methods: 'cgf': is not a registered guidance method") and "plugins" in line
    cfg = changed("guidance.cgf_scales", [0, 1])  # a typo of a method's scales key
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  guidance.cgf_scales: [0, 1]: names no registered guidance method ('cgf')"), line


def test_a_registered_method_without_its_scales_is_stopped_naming_the_key_to_add():
    from diffguide.registry import Method, register_method, unregister_method

    register_method(Method("toy", "g", "toy (g)", "toy", "toy", eps_model="conditional", 
                           builder="diffguide.guidance.wrappers:build_classifier_free"))
    try:
        (line,) = config_errors(changed("guidance.methods", ["cfg", "cg", "toy"]), SCHEMA)
        assert line.startswith("  guidance.toy_scales: None: is missing: toy is in guidance.methods; add"), line
        cfg = changed("guidance.methods", ["cfg", "cg", "toy"])
        cfg["guidance"]["toy_scales"] = [0, 1]
        assert config_errors(cfg, SCHEMA) == []
    finally:
        unregister_method("toy")


def test_a_plugin_that_cannot_be_imported_is_one_line_with_the_fix():
    (line,) = config_errors(changed("plugins", ["no_such_plugin_module"]), SCHEMA)
    assert line.startswith("  plugins: ['no_such_plugin_module']: No module named 'no_such_plugin_module'")
    assert "PYTHONPATH" in line


def test_the_linear_schedule_needs_more_than_20_timesteps():
    cfg = changed("diffusion.schedule", "linear")
    cfg["diffusion"]["timesteps"] = 20
    cfg["sampling"]["steps"] = 4
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  diffusion.timesteps: 20: the linear schedule needs more than 20")


def test_cuda_without_a_gpu_stops_locally_but_not_when_a_cluster_runs_the_jobs(monkeypatch):
    cfg = config_checks_config(device="cuda")
    monkeypatch.setattr(sys, "argv", ["snakemake", "--cores", "1"])
    (line,) = config_checks.check_device(cfg, cuda_devices=0)
    assert line.startswith("  device: 'cuda': asks for a GPU this machine lacks (it has no CUDA)") and "auto" in line
    assert config_checks.check_device(cfg, cuda_devices=1) == []
    (line,) = config_checks.check_device(config_checks_config(device="cuda:1"), cuda_devices=1)
    assert line.startswith("  device: 'cuda:1': asks for a GPU this machine lacks (it has 1 CUDA device(s))")
    monkeypatch.setattr(sys, "argv", ["snakemake", "--profile", "workflow/profiles/slurm"])
    cfg["resources"]["gpu"] = 1
    assert config_checks.check_device(cfg, cuda_devices=0) == []


def test_cuda_on_a_cluster_with_jobs_that_ask_for_no_gpu_stops(monkeypatch):
    """They would be sent to a CPU partition (workflow/profiles/slurm/partitions.yaml) and fail."""
    cfg = config_checks_config(device="cuda")
    monkeypatch.setattr(sys, "argv", ["snakemake", "--profile", "workflow/profiles/slurm"])
    cfg["resources"]["gpu"] = 0
    (line,) = config_checks.check_device(cfg, cuda_devices=0)
    assert line.startswith("  device: 'cuda': asks for a GPU, but resources.gpu: 0") and "resources.gpu: 1" in line


def config_checks_config(**top):
    """The smoke config with top-level keys replaced, its defaults filled in by the schema. (The
    device check's probe of this machine's CUDA devices, a subprocess importing torch for 3 s,
    is left out: each test passes the count it means.)"""
    cfg = copy.deepcopy(SMOKE) | top
    probe, config_checks.count_cuda_devices = config_checks.count_cuda_devices, lambda: 0
    try:
        assert config_errors(cfg, SCHEMA) == [] or top.get("device")
    finally:
        config_checks.count_cuda_devices = probe
    return cfg


def test_parse_time_tables_agree_with_the_data_catalogue():
    for name, info in data.DATASETS.items():
        assert config_checks.NATIVE_SIZE[name] == info.native_size, name
        assert config_checks.NUM_CLASSES[name] == info.num_classes, name
    digits_test = data.prepare_dataset("digits", "test", image_size=8)
    assert config_checks.TEST_SPLIT_SIZE["digits"] == len(digits_test.labels)


def run_snakemake(tmp_path, cfg: dict, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path),
                           "-d", str(REPO), *extra], capture_output=True, text=True, cwd=REPO,
                          env=os.environ | {"PYTHONWARNINGS": "ignore"})


def test_snakemake_stops_at_parse_time_and_creates_nothing(tmp_path):
    cfg = changed("guidance.cfg_scales", [0, 1, 1.0]) | {"run": "config_checks_probe"}
    cfg["networks"]["unet"]["attention_levels"] = [5]
    result = run_snakemake(tmp_path, cfg)
    assert result.returncode != 0
    assert "diffguide: invalid config:\n  guidance.cfg_scales: [0, 1, 1.0]" in result.stderr, result.stderr
    assert "  networks.unet.attention_levels: [5]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (REPO / "results/config_checks_probe").exists()


def test_check_config_names_the_line_of_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: x\nsampling:\n  steps: [4\n")
    assert check_config_main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not valid YAML at line 4" in err, err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(SMOKE))
    assert check_config_main([str(good)]) == 0
    good.write_text(yaml.safe_dump(changed("sampling.steps", 101)))
    assert check_config_main([str(good)]) == 1
    assert "  sampling.steps: 101: cannot exceed diffusion.timesteps (100)" in capsys.readouterr().err
    fix = tmp_path / "fix.yaml"  # a second file merged over the first fixes it, as snakemake would merge them
    fix.write_text("sampling: {steps: 4}\n")
    assert check_config_main([str(good), str(fix)]) == 0


def test_make_run_sdg_changes_only_keys_that_the_default_runs_jobs_do_not_read():
    """config/sdg.yaml merged over config/config.yaml (make run-sdg) may add similarity guidance's
    keys and methods only: every key a job of the default run reads as its params (diffguide's
    rules: the training blocks and shapes of its networks, sampling, the guidance options of its
    methods, evaluation) keeps its value, so Snakemake reuses those models, samples and metrics."""
    from diffguide.pipeline.check_config import merged

    def flat(node, prefix=""):
        if not isinstance(node, dict):
            return {prefix: node}
        return {k: v for key, child in node.items() for k, v in flat(child, f"{prefix}{key}.").items()}

    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    both = merged([default, yaml.safe_load((REPO / "config/sdg.yaml").read_text())])
    for cfg in (default, both):
        assert config_errors(cfg, SCHEMA) == []  # fills in the schema's defaults
    changed_keys = {key.rstrip(".") for key, value in flat(both).items() if flat(default).get(key) != value}
    sdg_keys = ("guidance.methods", "guidance.sdg_", "networks.clip.", "training.clip.", "training.noisy_image_encoder.")
    assert changed_keys and all(key.startswith(sdg_keys) for key in changed_keys), changed_keys
    assert both["guidance"]["methods"][:3] == default["guidance"]["methods"]  # the default sweeps, then sdg's


def test_sdg_image_needs_a_sample_for_every_reference_and_only_it_is_checked():
    """The smoke run with similarity guidance (config/smoke_sdg.yaml merged over it): 2 references
    per class are the 20 samples' 20; 3 would leave 10 references without a sample."""
    from diffguide.pipeline.check_config import merged

    sdg = merged([SMOKE, yaml.safe_load((REPO / "config/smoke_sdg.yaml").read_text())])
    assert config_errors(copy.deepcopy(sdg), SCHEMA) == []
    sdg["guidance"]["sdg_references_per_class"] = 3
    assert config_errors(copy.deepcopy(sdg), SCHEMA) == [
        "  guidance.sdg_references_per_class: 3: 3 per class x 10 classes = 30 references, more than the 20 samples "
        "that are guided towards them (or the 360 test images); use at most 2, or raise sampling.num_samples"]
    assert config_errors(changed("guidance.sdg_references_per_class", 3), SCHEMA) == []  # smoke runs no sdg_image


def test_models_from_names_the_missing_model_and_how_to_make_it(tmp_path):
    """The testbed reads the default run's models (models_from): a missing one stops the run at
    parse time with the file and `make run`, not the first sampling job that needs it."""
    cfg = changed("models_from.run", "default")
    cfg["models_from"]["networks"] = ["conditional", "eval_classifier"]
    models = tmp_path / "results" / "default" / "models"
    models.mkdir(parents=True)
    (models / "eval_classifier.pt").write_bytes(b"weights")
    (line,) = config_checks.check_models_from(cfg, root=tmp_path)
    assert line.startswith("  models_from.networks: 'conditional': results/default/models/conditional.pt does not "
                           "exist"), line
    assert "make run" in line and "drop conditional" in line
    (models / "conditional.pt").write_bytes(b"weights")
    assert config_checks.check_models_from(cfg, root=tmp_path) == []


@pytest.mark.parametrize("run,networks,fragment", [
    (None, ["conditional"], "models_from.run names no run"),
    ("smoke", ["conditional"], "is this run itself"),
    ("default", ["teacher"], "is not a registered network"),
])
def test_models_from_refuses_what_it_cannot_read(tmp_path, run, networks, fragment):
    cfg = changed("models_from.networks", networks)
    cfg["models_from"]["run"] = run
    cfg["run"] = "smoke"
    lines = config_checks.check_models_from(cfg, root=tmp_path)
    assert any(fragment in line for line in lines), lines


def test_heun_with_cfgpp_is_stopped_naming_the_sampler_and_the_fix():
    """CFG++ renoises with a direction term that Heun's ODE step does not have (issue 26): the
    check stops it before any job, in the main setting and in a sweep's."""
    cfg = changed("sampling.sampler", "heun")
    cfg.setdefault("guidance", {})["methods"] = ["cfg", "cfgpp"]
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  sampling.sampler: 'heun': CFG++ (cfgpp)") and "set sampling.sampler: ddim or ddpm" in line
    cfg["sampling"]["sampler"] = "ddim"
    cfg["sampling"]["sweep"] = [{"sampler": "heun", "steps": 4}]
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  sampling.sweep[0].sampler: 'heun'")
    cfg["guidance"]["methods"].remove("cfgpp")
    assert config_errors(cfg, SCHEMA) == []


def test_a_model_without_label_dropout_is_allowed_in_the_sweep_only_beside_guidance_without_a_null_class():
    """p_uncond_sweep: [0] trains conditional_p0, whose null class is untrained: refused for CFG alone,
    allowed where icg or tsg runs (icg_p0 and tsg_p0 need none; cfg_p0 is then the contrast, issue 29), and the
    main model's p_uncond = 0 stays refused either way."""
    cfg = changed("training.conditional.p_uncond_sweep", [0])
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  training.conditional.p_uncond_sweep: 0:") and "add icg or tsg to guidance.methods" in line
    for beside in ("icg", "tsg"):
        cfg.setdefault("guidance", {})["methods"] = ["cfg", beside]
        assert config_errors(cfg, SCHEMA) == [], beside
    cfg["training"]["conditional"] |= {"p_uncond": 0, "p_uncond_sweep": []}
    (line,) = config_errors(cfg, SCHEMA)
    assert line.startswith("  training.conditional.p_uncond: 0:")


def test_the_laplace_rule_off_the_ancestral_sampler_is_stopped_naming_the_sampler_and_the_fix():
    """cg_laplace draws the ancestral step's Gaussian with its own covariance: DDIM and Heun have none."""
    for sampler in ("ddim", "heun"):
        cfg = changed("sampling.sampler", sampler)
        cfg.setdefault("guidance", {})["methods"] = ["cg", "cg_laplace"]
        cfg["guidance"]["cg_form"] = "score"
        (line,) = config_errors(cfg, SCHEMA)
        assert line.startswith(f"  sampling.sampler: '{sampler}': cg_laplace") and "set sampling.sampler: ddpm" in line
    cfg["sampling"]["sampler"] = "ddpm"
    assert config_errors(cfg, SCHEMA) == []


def test_a_start_that_saturates_score_form_guidance_is_a_warning_naming_the_key_and_the_fix(capsys, tmp_path):
    """smoke.yaml's T = 100 cosine from t = 99 (linspace or trailing) amplifies cg's and cond_cg's
    score-form shift 2,029-fold: a warning (the run goes on), per sampling setting, naming the
    spacing that starts lower; the mean form, scale 0 alone, or leading spacing get none."""
    cfg = changed("sampling.timestep_spacing", "linspace")
    cfg["sampling"]["sweep"] = [{"sampler": "ddim", "steps": 4, "timestep_spacing": "trailing"}]
    assert config_errors(cfg, SCHEMA) == []  # allowed
    first, sweep = config_checks.config_warnings(cfg)
    assert first.startswith("  sampling.timestep_spacing: 'linspace': 4 steps of T = 100 spaced linspace start at "
                            "t = 99, where abar = 2.4e-07: the score-form guidance of cg, cond_cg moves x0 there by "
                            "2,029 times"), first
    assert "set sampling.timestep_spacing: leading (t = 75, factor 2)" in first
    assert sweep.startswith("  sampling.sweep[0].timestep_spacing: 'trailing'")
    quiet = [changed("sampling.timestep_spacing", "leading"), changed("guidance.methods", ["cfg"])]
    quiet[1]["sampling"]["timestep_spacing"] = "linspace"
    mean = changed("guidance.cg_form", "mean")
    mean["sampling"] |= {"sampler": "ddpm", "timestep_spacing": "linspace"}
    only_zero = changed("guidance.cg_scales", [0])
    only_zero["guidance"] |= {"methods": ["cfg", "cg"]}
    only_zero["sampling"]["timestep_spacing"] = "linspace"
    for config in (*quiet, mean, only_zero):
        assert config_errors(config, SCHEMA) == [] and config_checks.config_warnings(config) == [], config
    every_step = changed("sampling.steps", 100)  # leading over all T steps starts at t = 99 too: no fix there
    assert config_errors(every_step, SCHEMA) == []
    (line,) = config_checks.config_warnings(every_step)
    assert "'leading': 100 steps of T = 100 spaced leading start at t = 99" in line
    assert "use fewer sampling.steps, dividing T, with timestep_spacing: leading" in line
    path = tmp_path / "linspace.yaml"
    path.write_text(yaml.safe_dump(changed("sampling.timestep_spacing", "linspace")))
    assert check_config_main([str(path)]) == 0  # valid, and it says why it may not be what you want
    assert "warning" in capsys.readouterr().err


# What tests/test_config_fuzz.py found, each class of problem with the check that now names its
# key (key changed, value, key the stop line must name, a phrase of the line).
FUZZED = [
    # plugins were imported before the schema had seen them: a float or a list of numbers raised
    # TypeError; now only a list of module names is imported and the schema names the rest.
    ("plugins", 2.5, "plugins", "is not of type 'array'"),
    ("plugins", [3], "plugins.0", "is not of type 'string'"),
]


@pytest.mark.parametrize("key,value,named,rule", FUZZED)
def test_what_the_fuzzer_found_stops_with_one_line_naming_the_key(key, value, named, rule):
    lines = config_errors(changed(key, value), SCHEMA)
    assert len(lines) == 1 and lines[0].startswith(f"  {named}: ") and rule in lines[0], lines
