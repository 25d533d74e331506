"""`diffguide sample` (diffguide.cli.sample) on a tiny run trained in seconds by the real training
job (so its model files carry the metadata the pipeline writes): the files it writes, its seed,
the settings it reads from the model files, scale 0 as the unguided sampler, and its error
messages. The slow test checks that it reproduces a real Snakemake sampling job's file."""

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
from diffguide.diffusion.samplers import respaced_timesteps, sample_ddim
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.diffusion.seeding import PerSampleNoise
from diffguide.guidance.wrappers import ClipDenoised
from diffguide.models import kinds
from diffguide.pipeline.stages import train as train_stage

FASHION = list(data.DATASETS["fashion_mnist"].class_names)
DIFFUSION = {"schedule": "cosine", "timesteps": 40}
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


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("run"), ["conditional", "unconditional", "noisy_classifier"])


def sample(tmp_path, *args, name="out", steps: int | None = 3):
    """Run the command (with 3 sampling steps unless ``steps`` is None: the config's); return its npz."""
    prefix = tmp_path / name
    code = main(["sample", *map(str, args), *(["--steps", str(steps)] if steps else []), "--device", "cpu",
                 "--out", str(prefix)])
    assert code == 0
    return np.load(prefix.with_name(name + ".npz"))


def error_of(capsys, *args) -> str:
    assert main(["sample", *map(str, args), "--steps", "3", "--out", "/nonexistent/never"]) == 1
    return capsys.readouterr().err


def test_the_npz_holds_count_images_of_the_asked_classes_and_the_png_shows_them(run, tmp_path):
    out = sample(tmp_path, "--run", run, "--method", "cfg", "--scale", 2, "--classes", "sandal, SNEAKER", "--count", 5)
    assert out["images"].shape == (5, 8, 8, 1) and out["images"].dtype == np.uint8
    assert out["labels"].tolist() == [5, 7, 5, 7, 5]  # sample i asks for the i-th class, cyclically
    assert list(out["class_names"]) == FASHION
    settings = json.loads(str(out["settings"]))
    assert (str(out["method"]), float(out["scale"]), int(out["steps"])) == ("cfg", 2.0, 3)
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


def unguided(model, schedule: NoiseSchedule, labels, seed: int, steps: int = 3) -> np.ndarray:
    """The sampler by hand: DDIM (eta 0) of the x0-clipped model from seeded per-sample noise."""
    noise = PerSampleNoise(seed, range(len(labels)))
    timesteps = respaced_timesteps(schedule.timesteps, steps)
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
    linear = {"schedule": "linear", "timesteps": 30}
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
    assert meta["network"] == "noisy_classifier" and meta["diffusion"]["timesteps"] == 40
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


@pytest.mark.slow
def test_the_run_settings_reproduce_a_sampling_job_of_the_smoke_run(tmp_path):
    """The real Snakefile trains the smoke run's conditional model and samples cfg at w = 1 (only
    those jobs: about a minute); the command, given the run and its config, writes the same images."""
    from test_pipeline import SMOKE, copy_workflow, snakemake

    workdir = copy_workflow(tmp_path)
    target = "results/smoke/samples/ddim4-linspace/cfg/scale_1.npz"
    snakemake(workdir, target, "--configfile", SMOKE)  # the target first: --configfile takes several
    job = np.load(workdir / target)
    out = sample(tmp_path, "--run", workdir / "results/smoke", "--config", workdir / SMOKE, "--method", "cfg",
                 "--scale", 1, "--count", len(job["images"]), steps=None)
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
