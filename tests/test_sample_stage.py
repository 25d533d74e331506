"""The sampling job's function (diffguide.pipeline.stages.sample.sample) on a tiny run trained in
seconds by the real training job: the file it writes holds exactly the images the guided model
built from its model files gives with its settings and its seed (so no setting reaches the wrong
argument), with the labels, method and scale beside them. The smoke pipeline runs the same job
through Snakemake; this is its fast test (issue 26, item 5: the wiring mutants of this function
survived every fast test before it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sample_cli import DIFFUSION, train_run

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.models import kinds
from diffguide.pipeline.stages.sample import draw, guided_model, sample

SAMPLING = {"sampler": "ddpm", "eta": 0.0, "variance": "beta_tilde", "steps": 3, "timestep_spacing": "leading",
            "num_samples": 5, "batch_size": 2, "clip_x0": True}
GUIDANCE = {"cg_form": "mean", "cg_clip_order": "unguided_x0"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("stage"), ["unconditional", "noisy_classifier"])


def job(run, tmp_path, *, seed=11, sampling=SAMPLING, guidance=GUIDANCE, scale=2.0, name="out"):
    output = tmp_path / f"{name}.npz"
    sample("cg", scale, model_paths={"eps_model": str(run / "models/unconditional.pt"),
                                     "classifier": str(run / "models/noisy_classifier.pt")},
           sampling=sampling, guidance=guidance, diffusion=DIFFUSION, dataset_name="fashion_mnist", seed=seed,
           precision="fp32", device="cpu", output=str(output))
    return np.load(output)


def expected(run, *, seed, sampling=SAMPLING, guidance=GUIDANCE, scale=2.0) -> np.ndarray:
    """The same images, assembled here from the model files with every argument named."""
    models = {"eps_model": kinds.load_checkpoint(run / "models/unconditional.pt")[0],
              "classifier": kinds.load_checkpoint(run / "models/noisy_classifier.pt")[0]}
    schedule = NoiseSchedule.make(DIFFUSION["schedule"], DIFFUSION["timesteps"])
    guided = guided_model("cg", scale, models, schedule, clip_x0=sampling["clip_x0"], options=guidance)
    conditions = np.arange(sampling["num_samples"]) % 10
    return draw(guided, conditions, schedule=schedule, sampling=sampling, shape=(1, 8, 8), seed=seed,
                device=torch.device("cpu"), precision="fp32")[0]


def test_the_job_writes_the_images_its_files_settings_and_seed_give(run, tmp_path):
    out = job(run, tmp_path)
    assert np.array_equal(out["images"], expected(run, seed=11))
    assert out["labels"].tolist() == [0, 1, 2, 3, 4] and str(out["method"]) == "cg" and float(out["scale"]) == 2.0
    assert (str(out["sampler"]), int(out["steps"]), str(out["timestep_spacing"])) == ("ddpm", 3, "leading")


def test_the_seed_the_guidance_options_and_the_sampler_settings_each_reach_the_images(run, tmp_path):
    base = job(run, tmp_path)["images"]
    changed = {"seed": job(run, tmp_path, seed=12, name="seed")["images"],
               "cg_form": job(run, tmp_path, guidance=GUIDANCE | {"cg_form": "score"}, name="form")["images"],
               "variance": job(run, tmp_path, sampling=SAMPLING | {"variance": "beta"}, name="variance")["images"],
               "spacing": job(run, tmp_path, sampling=SAMPLING | {"timestep_spacing": "linspace"}, name="sp")["images"]}
    for what, images in changed.items():
        assert not np.array_equal(images, base), what
    # the batch size only cuts the work: the images are the same
    assert np.array_equal(job(run, tmp_path, sampling=SAMPLING | {"batch_size": 5}, name="batch")["images"], base)


def test_with_record_displacement_the_file_keeps_each_samples_displacement_and_the_same_images(run, tmp_path):
    score = GUIDANCE | {"cg_form": "score"}
    plain = job(run, tmp_path, guidance=score, name="plain")
    recorded = job(run, tmp_path, guidance=score, sampling=SAMPLING | {"record_displacement": True}, name="rec")
    assert "displacement" not in plain and np.array_equal(recorded["images"], plain["images"])
    assert recorded["displacement"].shape == (5,) and (recorded["displacement"] > 0).all()
    unguided = job(run, tmp_path, guidance=score, sampling=SAMPLING | {"record_displacement": True}, scale=0.0,
                   name="zero")
    assert np.array_equal(unguided["displacement"], np.zeros(5))  # the eps_model itself is not displaced
    with pytest.raises(ValueError, match="sampling.record_displacement"):  # the mean form moves no eps
        job(run, tmp_path, sampling=SAMPLING | {"record_displacement": True}, name="mean")
