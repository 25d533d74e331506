"""Checkpoints and resume of the training loop, and the stop on a non-finite loss (CPU, tiny
models, seconds). A kill is simulated by a loss function that raises in the middle of a step
after the last checkpoint, so the resumed run must redo steps, not just continue from a boundary."""

import logging

import numpy as np
import pytest
import torch

from diffguide import data
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.models import kinds
from diffguide.pipeline.stages import train as train_stage
from diffguide.training.checkpointing import settings_fingerprint
from diffguide.training.loop import TrainSettings, train
from diffguide.training.losses import diffusion_loss

SCHEDULE = NoiseSchedule.make("cosine", 100)


class Killed(Exception):
    """Stands in for SIGKILL / a SLURM time limit: the run stops in the middle of a step."""


def dies_at_call(loss_fn, call: int, error=Killed):
    """``loss_fn`` that raises ``error`` at its ``call``-th call (1-based), mid-step."""
    calls = 0

    def loss(model, x0, y):
        nonlocal calls
        calls += 1
        if calls == call:
            raise error("killed")
        return loss_fn(model, x0, y)

    return loss


def nan_at_call(loss_fn, call: int):
    calls = 0

    def loss(model, x0, y):
        nonlocal calls
        calls += 1
        value = loss_fn(model, x0, y)
        return value * float("nan") if calls == call else value

    return loss


def tiny_conditional_unet():
    torch.manual_seed(0)  # the pipeline seeds before building, so every rerun starts from these weights
    arch = dict(image_size=8, channels=1, widths=[8, 16], attention_levels=[], num_classes=3, norm_groups=4,
                dropout=0.1)
    return kinds.build_network("eps_unet", arch)


def toy_data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(32, 1, 8, 8, generator=generator), torch.arange(32) % 3


def settings(**overrides):
    base = dict(steps=10, batch_size=4, lr=0.01, warmup_steps=3, lr_schedule="cosine", ema_decay=0.9,
                precision="fp32", log_every=2, checkpoint_every=4)
    return TrainSettings(**base | overrides)


def run(tmp_path, loss_fn=None, checkpoint="c.ckpt", **overrides):
    """One training job as the pipeline runs it: seeded model, seeded data, then train()."""
    model = tiny_conditional_unet()
    images, labels = toy_data()
    loss_fn = loss_fn or diffusion_loss(SCHEDULE, p_uncond=0.2)
    kept = train(model, loss_fn, images, labels, settings(**overrides), device=torch.device("cpu"), name="toy",
                 csv_path=tmp_path / "log.csv", checkpoint_path=tmp_path / checkpoint if checkpoint else None,
                 context={"network": "toy"})
    return model, kept


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def csv_steps_and_losses(path):
    rows = path.read_text().splitlines()
    return [row.split(",")[:2] for row in rows]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_killed_run_resumes_to_bitwise_the_same_weights_and_log(tmp_path, caplog, precision):
    straight = tmp_path / "straight"
    model_a, ema_a = run(straight, checkpoint=None, precision=precision)
    killed = tmp_path / "killed"
    with pytest.raises(Killed):  # dies in step 6 (the 7th loss call); the last checkpoint is after step 3 (4 done)
        run(killed, loss_fn=dies_at_call(diffusion_loss(SCHEDULE, 0.2), 7), precision=precision)
    assert torch.load(killed / "c.ckpt", weights_only=True)["step"] == 4
    torch.manual_seed(1234)  # whatever the global RNGs hold now, the checkpoint's states must win
    with caplog.at_level(logging.INFO, logger="diffguide"):
        model_b, ema_b = run(killed, precision=precision)
    assert "resuming toy from step 4" in caplog.text
    assert_same_weights(model_b, model_a)
    assert_same_weights(ema_b, ema_a)
    assert csv_steps_and_losses(killed / "log.csv") == csv_steps_and_losses(straight / "log.csv")
    assert not (killed / "c.ckpt.tmp").exists()


def test_a_finished_checkpoint_resumes_without_training_again(tmp_path, caplog):
    _, first = run(tmp_path)
    with caplog.at_level(logging.INFO, logger="diffguide"):
        _, again = run(tmp_path, loss_fn=dies_at_call(diffusion_loss(SCHEDULE, 0.2), 1))
    assert "resuming toy from step 10" in caplog.text
    assert_same_weights(again, first)


def test_a_checkpoint_of_other_settings_is_ignored(tmp_path, caplog):
    run(tmp_path / "other", lr=0.02)
    (tmp_path / "mine").mkdir()
    (tmp_path / "other" / "c.ckpt").rename(tmp_path / "mine" / "c.ckpt")
    with caplog.at_level(logging.INFO, logger="diffguide"):
        model, _ = run(tmp_path / "mine")
    assert "written with other settings; starting afresh" in caplog.text and "resuming" not in caplog.text
    reference, _ = run(tmp_path / "reference", checkpoint=None)
    assert_same_weights(model, reference)


def test_checkpoint_every_is_not_part_of_the_fingerprint():
    assert settings_fingerprint(settings(checkpoint_every=1), {}) == settings_fingerprint(settings(), {})
    assert settings_fingerprint(settings(lr=0.02), {}) != settings_fingerprint(settings(), {})
    assert settings_fingerprint(settings(), {"arch": 1}) != settings_fingerprint(settings(), {"arch": 2})


def test_a_truncated_checkpoint_stops_with_the_file_named_and_the_fix(tmp_path):
    """Writes are atomic, so a kill never truncates a checkpoint; an unreadable one comes from
    outside and may hold hours of training: stop and say what to do rather than discard it."""
    with pytest.raises(Killed):
        run(tmp_path, loss_fn=dies_at_call(diffusion_loss(SCHEDULE, 0.2), 6))
    path = tmp_path / "c.ckpt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cannot read the training checkpoint .*c\.ckpt.*Delete it"):
        run(tmp_path)


def test_a_nan_loss_names_the_network_step_and_the_kept_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match=r"toy: the loss became nan at step 6\. The final model was not "
                                                 r"written\. Kept .*c\.ckpt from step 4, .* resumes from step 4"):
        run(tmp_path, loss_fn=nan_at_call(diffusion_loss(SCHEDULE, 0.2), 7))
    assert torch.load(tmp_path / "c.ckpt", weights_only=True)["step"] == 4
    assert not (tmp_path / "c.ckpt.prev").exists()


# The whole job, as workflow/scripts/train.py runs it.

def prepared(tmp_path, split, n):
    rng = np.random.default_rng(0 if split == "train" else 1)
    labels = np.arange(n, dtype=np.int64) % 10
    images = (rng.integers(0, 60, (n, 8, 8, 1)) + 19 * labels[:, None, None, None]).astype(np.uint8)
    info = data.DATASETS["digits"]
    data.save_prepared(data.PreparedData(images, labels, "digits", split, "test", info.class_names),
                       tmp_path / f"{split}.npz")
    return str(tmp_path / f"{split}.npz")


def job_config(network):
    block = dict(steps=8, batch_size=8, lr=0.005, log_every=2, checkpoint_every=3)
    return {"seed": 0, "precision": "fp32", "device": "cpu", "dataset": {"name": "digits", "image_size": 8},
            "diffusion": {"schedule": "cosine", "timesteps": 40},
            "networks": {"unet": dict(widths=[8, 16], attention_levels=[], norm_groups=4),
                         "noisy_classifier": dict(widths=[8, 16], attention_levels=[], norm_groups=4)},
            "training": {network: block | ({"p_uncond": 0.2} if network == "conditional" else {})}}


def train_job(tmp_path, network, out="model.pt"):
    train_stage.train_network(network, **train_stage.config_sections(job_config(network), network),
                              train_path=prepared(tmp_path, "train", 40), test_path=prepared(tmp_path, "test", 20),
                              output=str(tmp_path / out), csv_log=str(tmp_path / "logs" / f"train_{network}.csv"),
                              checkpoint=str(tmp_path / "checkpoints" / f"{network}.ckpt"))
    return tmp_path / out


def test_a_killed_job_reruns_to_the_same_model_and_deletes_its_checkpoint(tmp_path, monkeypatch):
    straight = kinds.load_checkpoint(train_job(tmp_path, "conditional", "straight.pt"))[0]
    real_loss = train_stage.loss_function
    monkeypatch.setattr(train_stage, "loss_function", lambda *args: dies_at_call(real_loss(*args), 5))
    with pytest.raises(Killed):
        train_job(tmp_path, "conditional")
    assert (tmp_path / "checkpoints" / "conditional.ckpt").exists() and not (tmp_path / "model.pt").exists()
    monkeypatch.setattr(train_stage, "loss_function", real_loss)
    resumed = kinds.load_checkpoint(train_job(tmp_path, "conditional"))[0]
    assert_same_weights(resumed, straight)
    assert not (tmp_path / "checkpoints" / "conditional.ckpt").exists()
    assert not (tmp_path / "checkpoints" / "conditional.ckpt.prev").exists()  # the fallback goes too


def test_a_nan_job_writes_no_model_and_keeps_its_checkpoint(tmp_path, monkeypatch):
    real_loss = train_stage.loss_function
    monkeypatch.setattr(train_stage, "loss_function", lambda *args: nan_at_call(real_loss(*args), 5))
    expected = r"noisy_classifier: the loss became nan at step 4\..*Kept .*noisy_classifier\.ckpt from step 3"
    with pytest.raises(FloatingPointError, match=expected):
        train_job(tmp_path, "noisy_classifier")
    assert not (tmp_path / "model.pt").exists()
    assert torch.load(tmp_path / "checkpoints" / "noisy_classifier.ckpt", weights_only=True)["step"] == 3


def test_the_noisy_classifier_job_stores_and_writes_its_accuracy_by_t(tmp_path):
    model_path = train_job(tmp_path, "noisy_classifier")
    _, payload = kinds.load_checkpoint(model_path)
    by_t = payload["extra"]["test_accuracy_by_t"]
    assert list(by_t) == ["0-9", "10-19", "20-29", "30-39"]
    table = (tmp_path / "logs" / "noisy_classifier_accuracy_by_t.csv").read_text().splitlines()
    assert table[0] == "band,t_min,t_max,accuracy,images" and table[1].startswith("0-9,0,9,")
    assert table[1].endswith(",20") and len(table) == 5
    assert not (tmp_path / "checkpoints" / "noisy_classifier.ckpt").exists()


@pytest.mark.parametrize("half", [0, 1])
def test_train_half_trains_on_that_half_of_the_train_split_only(tmp_path, monkeypatch, half):
    seen = {}
    real_train = train_stage.train

    def spy(model, loss_fn, images, labels, *args, **kwargs):
        seen["images"], seen["labels"] = images, labels
        return real_train(model, loss_fn, images, labels, *args, **kwargs)

    monkeypatch.setattr(train_stage, "train", spy)
    config = job_config("eval_classifier")
    config["networks"]["eval_classifier"] = {"widths": [8, 16]}
    config["training"]["eval_classifier"]["train_half"] = half  # as config/config.yaml sets it
    sections = train_stage.config_sections(config, "eval_classifier")
    train_path = prepared(tmp_path, "train", 40)
    train_stage.train_network("eval_classifier", **sections, train_path=train_path,
                              test_path=prepared(tmp_path, "test", 20), output=str(tmp_path / "m.pt"),
                              csv_log=str(tmp_path / "logs" / "train.csv"))
    full = data.load_prepared(train_path)
    keep = data.class_balanced_half(full.labels, half, seed=0)
    assert len(seen["labels"]) == 20
    assert torch.equal(seen["labels"], torch.from_numpy(full.labels[keep]))
    assert torch.equal(seen["images"], full.to_tensor()[0][keep])
