"""`diffguide sample` (diffguide.cli.sample) on a tiny run trained in seconds by the real training
job (so its model files carry the metadata the pipeline writes): the files it writes, its seed,
the settings it reads from the model files, scale 0 as the unguided sampler, and its error
messages, the run's recorded config and the saturation warning; and that, on the smoke run, it
reproduces a real Snakemake sampling job's file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffguide import data
from diffguide.base.integrity import record
from diffguide.cli.sample import main
from diffguide.diffusion.noise_levels import respaced_timesteps
from diffguide.diffusion.samplers import sample_ddim
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.wrappers import ClipDenoised
from diffguide.models import kinds
from diffguide.pipeline.stages import train as train_stage

FASHION = list(data.DATASETS["fashion_mnist"].class_names)
DIFFUSION = {"schedule": "cosine", "timesteps": 100}
RUN_SEED = 7


def prepared(root: Path, split: str, n: int) -> str:
    """A synthetic 8x8 split named fashion_mnist: its class names are the ones the CLI matches."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    labels = np.arange(n, dtype=np.int64) % 10
    images = (rng.integers(0, 60, (n, 8, 8, 1)) + 19 * labels[:, None, None, None]).astype(np.uint8)
    split_data = data.PreparedData(images, labels, "fashion_mnist", split, "test", tuple(FASHION))
    data.save_prepared(split_data, root / "data" / f"{split}.npz")
    return str(root / "data" / f"{split}.npz")


def job_config(network: str, diffusion: dict) -> dict:
    block = {"steps": 2, "batch_size": 8, "lr": 0.005, "log_every": 1}
    return {"seed": RUN_SEED, "precision": "fp32", "device": "cpu",
            "dataset": {"name": "fashion_mnist", "image_size": 8, "fit": "pad"}, "diffusion": diffusion,
            "networks": {"unet": {"widths": [8, 16], "attention_levels": [], "norm_groups": 4},
                         "noisy_classifier": {"widths": [8, 16], "attention_levels": [], "norm_groups": 4}},
            "training": {network: block | ({"p_uncond": 0.2} if network == "conditional" else {})}}


def train_run(root: Path, networks_to_train, diffusion: dict = DIFFUSION) -> Path:
    """results/<run>/ with data/ and models/<network>.pt written by the training job itself."""
    train, test = prepared(root, "train", 20), prepared(root, "test", 20)
    for network in networks_to_train:
        cfg = job_config(network, diffusion)
        train_stage.train_network(network, **train_stage.config_sections(cfg, network), train_path=train,
                                  test_path=test, output=str(root / "models" / f"{network}.pt"),
                                  csv_log=str(root / "logs" / f"train_{network}.csv"))
    return root


def record_run_config(root: Path, sampling: dict, **keys) -> dict:
    """results/<run>/config.yaml as rule record_config writes it: the schema's defaults filled in
    (the synthetic 8x8 'fashion_mnist' passes the schema, not the data set's cross-key checks)."""
    from snakemake.utils import validate

    from diffguide.pipeline.config_schema import SCHEMA_PATH
    from diffguide.pipeline.run_record import run_config_path, write_run_config

    cfg = job_config("conditional", DIFFUSION) | {"run": root.name, "training": {}, "sampling": sampling} | keys
    validate(cfg, str(SCHEMA_PATH), set_default=True)
    write_run_config(cfg, run_config_path(root))
    return cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run of the three networks that recorded its config: DDIM, 10 leading steps (T = 100)."""
    root = train_run(tmp_path_factory.mktemp("run"), ["conditional", "unconditional", "noisy_classifier"])
    record_run_config(root, {"sampler": "ddim", "steps": 10, "timestep_spacing": "leading"})
    return root


def sample(tmp_path, *args, name="out", steps: int | None = 4):
    """Run the command (with 4 sampling steps unless ``steps`` is None: the run's); return its npz."""
    prefix = tmp_path / name
    code = main(["sample", *map(str, args), *(["--steps", str(steps)] if steps else []), "--device", "cpu",
                 "--out", str(prefix)])
    assert code == 0
    return np.load(prefix.with_name(name + ".npz"))


def error_of(capsys, *args) -> str:
    assert main(["sample", *map(str, args), "--steps", "4", "--out", "/nonexistent/never"]) == 1
    return capsys.readouterr().err


def test_the_npz_holds_count_images_of_the_asked_classes_and_the_png_shows_them(run, tmp_path):
    out = sample(tmp_path, "--run", run, "--method", "cfg", "--scale", 2, "--classes", "sandal, SNEAKER", "--count", 5)
    assert out["images"].shape == (5, 8, 8, 1) and out["images"].dtype == np.uint8
    assert out["labels"].tolist() == [5, 7, 5, 7, 5]  # sample i asks for the i-th class, cyclically
    assert list(out["class_names"]) == FASHION
    settings = json.loads(str(out["settings"]))
    assert (str(out["method"]), float(out["scale"]), int(out["steps"])) == ("cfg", 2.0, 4)
    assert settings["sampling"]["sampler"] == "ddim" and settings["models"]["eps_model"].endswith("conditional.pt")
    assert Image.open(tmp_path / "out.png").size[0] > 100  # a grid, not an empty figure


def test_indices_name_classes_too_and_a_seed_fixes_every_image(run, tmp_path):
    cfg = ("--run", run, "--method", "cfg", "--scale", 1, "--count", 4)
    first = sample(tmp_path, *cfg, "--classes", "5,7", "--seed", 3)
    again = sample(tmp_path, *cfg, "--classes", "Sandal,sneaker", "--seed", 3, name="again")
    other = sample(tmp_path, *cfg, "--classes", "5,7", "--seed", 4, name="other")
    assert np.array_equal(first["labels"], again["labels"]) and np.array_equal(first["images"], again["images"])
    assert not np.array_equal(first["images"], other["images"])


def schedule_of(diffusion: dict) -> NoiseSchedule:
    return NoiseSchedule.make(diffusion["schedule"], diffusion["timesteps"])


def unguided(model, schedule: NoiseSchedule, labels, seed: int, steps: int = 4, spacing: str = "leading") -> np.ndarray:
    """The sampler by hand: DDIM (eta 0) of the x0-clipped model from seeded per-sample noise."""
    noise = PerSampleNoise(seed, range(len(labels)))
    timesteps = respaced_timesteps(schedule.timesteps, steps, spacing)
    x = sample_ddim(ClipDenoised(model, schedule), noise.initial((1, 8, 8)), timesteps, schedule=schedule,
                    labels=torch.as_tensor(labels), noise=noise, progress=False)
    return data.images_to_uint8(x)


def test_scale_0_is_the_unguided_sampler_and_a_scale_above_it_guides(run, tmp_path):
    schedule = schedule_of(DIFFUSION)
    conditional = kinds.load_checkpoint(run / "models" / "conditional.pt")[0]
    bags_and_coats = ("--run", run, "--method", "cfg", "--classes", "bag,coat", "--count", 4)
    w0 = sample(tmp_path, *bags_and_coats, "--scale", 0)
    assert np.array_equal(w0["images"], unguided(conditional, schedule, [8, 4, 8, 4], RUN_SEED))
    w3 = sample(tmp_path, *bags_and_coats, "--scale", 3, name="w3")
    assert not np.array_equal(w3["images"], w0["images"])
    unconditional = kinds.load_checkpoint(run / "models" / "unconditional.pt")[0]
    s0 = sample(tmp_path, "--run", run, "--method", "cg", "--scale", 0, "--count", 3, name="s0")
    assert np.array_equal(s0["images"], unguided(unconditional, schedule, [0, 1, 2], RUN_SEED))
    s5 = sample(tmp_path, "--run", run, "--method", "cg", "--scale", 5, "--count", 3, name="s5")  # loads the classifier
    assert not np.array_equal(s5["images"], s0["images"])


def test_schedule_t_and_seed_come_from_the_model_files(tmp_path):
    linear = {"schedule": "linear", "timesteps": 32}
    root = train_run(tmp_path / "linear", ["conditional"], diffusion=linear)
    out = sample(tmp_path, "--checkpoint", root / "models" / "conditional.pt", "--method", "cfg", "--scale", 0,
                 "--count", 2)
    assert json.loads(str(out["settings"]))["diffusion"] == linear | {"parameterisation": "eps"}
    model = kinds.load_checkpoint(root / "models" / "conditional.pt")[0]
    assert int(out["seed"]) == RUN_SEED  # the run's seed by default, as its sampling jobs
    assert np.array_equal(out["images"], unguided(model, schedule_of(linear), [0, 1], RUN_SEED))
    assert not np.array_equal(out["images"], unguided(model, schedule_of(DIFFUSION), [0, 1], RUN_SEED))


def test_a_model_file_carries_what_it_was_trained_on(run):
    meta = torch.load(run / "models" / "noisy_classifier.pt", weights_only=True)["metadata"]
    assert meta["network"] == "noisy_classifier" and meta["diffusion"]["timesteps"] == 100
    assert meta["dataset"]["class_names"] == FASHION and meta["dataset"]["image_size"] == 8
    assert meta["config"]["networks"] == {"noisy_classifier": job_config("noisy_classifier", DIFFUSION)["networks"]
                                          ["noisy_classifier"]}
    assert meta["precision"] == {"config": "fp32", "trained_in": "fp32"} and meta["diffguide_version"]


def test_a_bad_class_is_named_with_the_valid_ones(run, capsys):
    err = error_of(capsys, "--run", run, "--method", "cfg", "--scale", 1, "--classes", "sandal,sandle")
    assert "unknown class 'sandle'" in err and "5 Sandal" in err and "9 Ankle boot" in err


def test_an_unknown_method_lists_the_registered_ones(run, capsys):
    err = error_of(capsys, "--run", run, "--method", "cfgg", "--scale", 1)
    assert "'cfgg'" in err and all(name in err for name in ("cfg", "cg", "cond_cg", "sdg_text"))


def test_a_method_whose_network_the_run_lacks_names_the_file_and_the_training_command(run, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    (partial / "models" / "noisy_classifier.pt").unlink()
    err = error_of(capsys, "--run", partial, "--method", "cg", "--scale", 2)
    assert f"needs noisy_classifier, but {partial}/models/noisy_classifier.pt does not exist" in err
    assert ("snakemake --cores all --configfile <the config file of this run> "
            f"{partial}/models/noisy_classifier.pt") in err
    err = error_of(capsys, "--checkpoint", run / "models" / "unconditional.pt", "--method", "cg", "--scale", 2)
    assert "also needs noisy_classifier" in err and "--run" in err
    err = error_of(capsys, "--checkpoint", run / "models" / "unconditional.pt", "--method", "cfg", "--scale", 2)
    assert "holds the unconditional network, but cfg guides the conditional one" in err


def test_a_model_file_without_metadata_says_to_retrain_or_give_the_config(run, tmp_path, capsys):
    model, payload = kinds.load_checkpoint(run / "models" / "conditional.pt")
    old = tmp_path / "models" / "conditional.pt"
    old.parent.mkdir()
    torch.save({key: payload[key] for key in ("kind", "arch", "state_dict", "extra")}, old)  # an older diffguide's file
    record(old)
    err = error_of(capsys, "--checkpoint", old, "--method", "cfg", "--scale", 1)
    assert f"{old} carries no metadata" in err and "Retrain it with the current diffguide" in err
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps(job_config("conditional", DIFFUSION) | {"training": {}}))
    cfg = ("--method", "cfg", "--scale", 1, "--count", 2)
    from_config = sample(tmp_path, "--checkpoint", old, "--config", config, *cfg)
    from_metadata = sample(tmp_path, "--checkpoint", run / "models" / "conditional.pt", *cfg, name="meta")
    assert np.array_equal(from_config["images"], from_metadata["images"])


def test_the_runs_own_settings_reproduce_a_sampling_job_of_the_smoke_run(smoke_run, tmp_path):
    """The smoke run (the real Snakefile, conftest.py) sampled cfg at w = 1; the command, given only
    the run, reads its recorded config (4 DDIM steps, leading) and writes the same images."""
    target = smoke_run / "results/smoke/samples/ddim4-leading/cfg/scale_1.npz"
    job = np.load(target)
    out = sample(tmp_path, "--run", smoke_run / "results/smoke", "--method", "cfg", "--scale", 1, "--count",
                 len(job["images"]), steps=None)
    assert np.array_equal(out["labels"], job["labels"]) and np.array_equal(out["images"], job["images"])


def test_chosen_classes_get_references_of_their_own_class_in_turn(run):
    """sdg_image under --classes: the n-th sample of class c is guided towards reference n mod R_c
    of class c (slot (n mod per_class) * K + c); with every class in turn that is the job's i mod R."""
    from diffguide.pipeline.stages.sample import reference_slots, sample_conditions

    labels, slots, kept = sample_conditions("sdg_image", 5, 10, labels=np.array([3, 3, 3, 5, 3]), per_class=2, seed=0,
                                            references_path=str(run / "data" / "test.npz"))
    assert slots.tolist() == [3, 13, 3, 5, 13]
    assert (data.load_prepared(run / "data" / "test.npz").labels[kept["reference_indices"][slots]] == labels).all()
    assert np.array_equal(reference_slots(np.arange(45) % 10, 2, 10), np.arange(45) % 20)


def test_the_runs_recorded_config_gives_the_settings_and_flags_override_it(run, tmp_path):
    """Without flags the command samples as the run's jobs did (its config.yaml: 10 leading DDIM
    steps); a flag overrides one setting and keeps the others."""
    recorded = sample(tmp_path, "--run", run, "--method", "cfg", "--scale", 0, "--count", 2, steps=None)
    settings = json.loads(str(recorded["settings"]))["sampling"]
    assert (settings["sampler"], settings["steps"], settings["timestep_spacing"]) == ("ddim", 10, "leading")
    conditional = kinds.load_checkpoint(run / "models" / "conditional.pt")[0]
    assert np.array_equal(recorded["images"], unguided(conditional, schedule_of(DIFFUSION), [0, 1], RUN_SEED, steps=10))
    trailing = sample(tmp_path, "--run", run, "--method", "cfg", "--scale", 0, "--count", 2,
                      "--timestep-spacing", "trailing", steps=None, name="trailing")
    settings = json.loads(str(trailing["settings"]))["sampling"]
    assert (settings["steps"], settings["timestep_spacing"]) == (10, "trailing")
    assert np.array_equal(trailing["images"], unguided(conditional, schedule_of(DIFFUSION), [0, 1], RUN_SEED,
                                                       steps=10, spacing="trailing"))


def test_a_run_without_a_recorded_config_says_so_and_samples_with_the_schemas_defaults(run, tmp_path, caplog):
    older = tmp_path / "older"
    shutil.copytree(run, older)
    (older / "config.yaml").unlink()
    out = sample(tmp_path, "--run", older, "--method", "cfg", "--scale", 0, "--count", 2)
    assert f"{older}/config.yaml does not exist" in caplog.text and "--config" in caplog.text
    assert json.loads(str(out["settings"]))["sampling"]["timestep_spacing"] == "leading"  # the schema's default


def test_an_edited_recorded_config_is_refused_naming_the_file(run, tmp_path, capsys):
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    config = edited / "config.yaml"
    config.write_text(config.read_text().replace("steps: 10", "steps: 20"))
    err = error_of(capsys, "--run", edited, "--method", "cfg", "--scale", 1)
    assert f"{config} does not match its checksum" in err and "--forcerun" in err


@pytest.mark.parametrize("method, spacing, scale, warned", [
    ("cg", "linspace", 5, True),  # starts at t = 99 of 100: abar 2.4e-7, the shift amplified 2,029-fold
    ("cg", "trailing", 5, True),
    ("cg", "leading", 5, False),  # starts at t = 75: 2.4-fold
    ("cg", "linspace", 0, False),  # unguided: nothing to amplify
    ("cfg", "linspace", 5, False),  # no gradient: CFG mixes two predictions
])
def test_a_start_that_saturates_score_form_guidance_is_warned_about_with_the_flag_that_fixes_it(
        run, tmp_path, caplog, method, spacing, scale, warned):
    sample(tmp_path, "--run", run, "--method", method, "--scale", scale, "--count", 2, "--timestep-spacing", spacing)
    assert ("saturate" in caplog.text) == warned
    if warned:
        assert "start at t = 99" in caplog.text and "pass --timestep-spacing leading (t = 75, factor 2)" in caplog.text


def test_a_run_that_reads_another_runs_models_samples_with_them(run, tmp_path):
    """A run whose recorded config reuses another run's conditional model (models_from, as the
    testbed reuses the default run's) samples cfg with that file, found beside it under results/."""
    results = tmp_path / "results"
    shutil.copytree(run, results / "donor")
    reuser = results / "reuser"
    (reuser / "models").mkdir(parents=True)
    cfg = record_run_config(reuser, {"sampler": "ddim", "steps": 10, "timestep_spacing": "leading"},
                            models_from={"run": "donor", "networks": ["conditional"]})
    assert cfg["models_from"]["run"] == "donor"
    out = sample(tmp_path, "--run", reuser, "--method", "cfg", "--scale", 0, "--count", 2, steps=None)
    assert json.loads(str(out["settings"]))["models"]["eps_model"] == str(results / "donor/models/conditional.pt")
    donor = sample(tmp_path, "--run", results / "donor", "--method", "cfg", "--scale", 0, "--count", 2, steps=None,
                   name="donor")
    assert np.array_equal(out["images"], donor["images"])
