"""A diverging run keeps the last checkpoint from before the divergence, says where a rerun starts,
and names only the settings that can help (CPU, a 4-weight linear model, well under a second a run).

The divergence is injected, so it happens at a known step: at a given call the loss function
multiplies every weight by 1e6 (as a too-large update would) before or after computing the loss,
and at a later call it returns NaN. Steps are 0-based and step k is call k + 1; with
checkpoint_every=2 the checkpoint of step k holds the weights after steps 0..k-1."""

import logging
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from diffguide.training import distributed
from diffguide.training.loop import TrainSettings, train

BLOWN_UP = 1e6


def regression_loss(model, x0, y):
    return (model(x0.flatten(1)).float().squeeze(1) - y).pow(2).mean()


def diverging(blow_up_call=None, when="after", nan_call=None, nan_weights_call=None):
    """regression_loss that scales the weights by 1e6 at ``blow_up_call`` (``when``: before the loss is
    computed, so that loss is already a spike, or after, so only the next one shows it), returns NaN
    from ``nan_call`` on, and sets the weights to NaN after a finite loss at ``nan_weights_call``."""
    calls = 0

    def loss(model, x0, y):
        nonlocal calls
        calls += 1
        if calls == blow_up_call and when == "before":
            scale(model, BLOWN_UP)
        value = regression_loss(model, x0, y)
        if calls == blow_up_call and when == "after":
            scale(model, BLOWN_UP)
        if calls == nan_weights_call:
            scale(model, float("nan"))
        return value * float("nan") if nan_call is not None and calls >= nan_call else value

    return loss


@torch.no_grad()
def scale(model, factor):
    for p in model.parameters():
        p.mul_(factor)


def settings(**overrides):
    base = dict(steps=12, batch_size=8, lr=0.01, grad_clip=0.5, precision="fp32", log_every=1, checkpoint_every=2)
    return TrainSettings(**base | overrides)


def run(tmp_path, loss_fn=regression_loss, checkpoint="c.ckpt", **overrides):
    """A seeded model and data, then train(); the pipeline seeds the same way before each job."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(64, 1, 2, 2, generator=generator)
    labels = images.flatten(1) @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    kept = train(model, loss_fn, images, labels, settings(**overrides), device=torch.device("cpu"), name="toy",
                 csv_path=tmp_path / "log.csv", checkpoint_path=tmp_path / checkpoint if checkpoint else None,
                 context={"network": "toy"})
    return kept


def diverge(tmp_path, loss_fn, **overrides) -> str:
    with pytest.raises(FloatingPointError) as error:
        run(tmp_path, loss_fn, **overrides)
    return str(error.value)


def checkpoint_state(tmp_path):
    return torch.load(tmp_path / "c.ckpt", weights_only=True)


@pytest.mark.parametrize("when, kept", [
    # Blown up by the update of step 5: checkpoint 6 holds weights of 1e6, all finite, and its own
    # loss (step 6) is the NaN. Checkpoint 4's losses (steps 4, 5) were normal: it is kept.
    ("after", 4),
    # Blown up before step 5's loss: that loss is already a spike, so checkpoint 4 is unproven and
    # the one before it (2) is kept.
    ("before", 2),
])
def test_the_kept_checkpoint_is_from_before_the_divergence_with_moderate_weights(tmp_path, when, kept):
    message = diverge(tmp_path, diverging(blow_up_call=6, when=when, nan_call=7))
    assert message.startswith("toy: the loss became nan at step 6. The final model was not written.")
    state = checkpoint_state(tmp_path)
    assert state["step"] == kept and f"from step {kept}" in message and f"resumes from step {kept}" in message
    weights = torch.cat([w.flatten() for w in state["model"].values()])
    assert torch.isfinite(weights).all() and weights.abs().max() < 10
    assert not (tmp_path / "c.ckpt.prev").exists()  # the resume point is the only checkpoint left


def test_a_long_run_of_huge_finite_losses_does_not_make_a_later_checkpoint_sound(tmp_path):
    """Blown up at step 5, NaN only at step 11: checkpoints 6, 8 and 10 hold weights of 1e6 and
    losses of ~1e13 follow each; none may displace checkpoint 2, the last one proven sound."""
    diverge(tmp_path, diverging(blow_up_call=6, when="before", nan_call=12))
    assert checkpoint_state(tmp_path)["step"] == 2


def test_a_rerun_with_the_cause_gone_resumes_from_the_kept_step_and_matches_a_clean_run(tmp_path, caplog):
    diverge(tmp_path / "diverged", diverging(blow_up_call=6, when="after", nan_call=7))
    with caplog.at_level(logging.INFO, logger="diffguide"):
        resumed = run(tmp_path / "diverged")
    assert "resuming toy from step 4" in caplog.text
    clean = run(tmp_path / "clean", checkpoint=None)
    assert torch.equal(resumed.weight, clean.weight) and torch.equal(resumed.bias, clean.bias)


def test_a_rerun_with_a_lower_lr_starts_from_step_0_as_the_message_says(tmp_path, caplog):
    message = diverge(tmp_path, diverging(blow_up_call=6, when="after", nan_call=7))
    assert "a rerun with any change below starts from step 0" in message
    with caplog.at_level(logging.INFO, logger="diffguide"):
        run(tmp_path, lr=0.005)
    assert "written with other settings; starting afresh" in caplog.text and "resuming" not in caplog.text


def test_with_no_sound_checkpoint_every_checkpoint_goes_and_a_rerun_starts_from_step_0(tmp_path, caplog):
    """Blown up by the update of step 1: the first checkpoint (2) already holds weights of 1e6."""
    message = diverge(tmp_path, diverging(blow_up_call=2, when="after", nan_call=3))
    assert "loss became nan at step 2" in message and "so a rerun starts from step 0" in message
    assert "resume" not in message
    assert not (tmp_path / "c.ckpt").exists() and not (tmp_path / "c.ckpt.prev").exists()
    with caplog.at_level(logging.INFO, logger="diffguide"):
        again = run(tmp_path)
    assert "resuming" not in caplog.text
    clean = run(tmp_path / "clean", checkpoint=None)
    assert torch.equal(again.weight, clean.weight)


def test_non_finite_weights_after_a_finite_loss_are_never_saved(tmp_path):
    """NaN weights from the update of step 3 (a finite loss, say, with an overflow in the backward
    pass): checkpoint 4 is not written, checkpoint 2 stays the resume point."""
    message = diverge(tmp_path, diverging(nan_weights_call=4))
    assert message.startswith("toy: the weights became non-finite in step 3 (its loss was finite).")
    assert checkpoint_state(tmp_path)["step"] == 2 and "resumes from step 2" in message


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_message_offers_fp32_only_to_a_bf16_run_and_names_lr_and_grad_clip(tmp_path, precision):
    message = diverge(tmp_path, diverging(nan_call=4), precision=precision).replace(str(tmp_path), "<dir>")
    assert "lower training.toy.lr (now 0.01)" in message
    assert "a smaller training.toy.grad_clip (the gradient-norm clip, now 0.5)" in message
    assert ("fp32" in message) == (precision == "bf16")  # an fp32 run is not told to use fp32
    assert "set precision: fp32 (this run trained in bf16)" in message or precision == "fp32"


def test_without_checkpoints_the_message_promises_no_resume(tmp_path):
    message = diverge(tmp_path, diverging(nan_call=4), checkpoint=None)
    assert "This run writes no checkpoints, so a rerun starts from step 0." in message
    assert "resume" not in message and "Kept" not in message


def test_a_kill_between_keeping_the_previous_checkpoint_and_writing_the_next_resumes_from_it(tmp_path, caplog):
    """Writing checkpoint k first moves a sound current one to .prev; a kill before the new one is
    complete leaves .prev alone, and the rerun resumes from it to the same final weights."""
    class Killed(Exception):
        pass

    calls = 0

    def killed_at_step_5(model, x0, y):
        nonlocal calls
        calls += 1
        if calls == 6:
            raise Killed
        return regression_loss(model, x0, y)

    with pytest.raises(Killed):
        run(tmp_path, killed_at_step_5)
    assert torch.load(tmp_path / "c.ckpt.prev", weights_only=True)["step"] == 2
    (tmp_path / "c.ckpt").unlink()  # checkpoint 4 never completed
    with caplog.at_level(logging.INFO, logger="diffguide"):
        resumed = run(tmp_path)
    assert "resuming toy from step 2" in caplog.text and "c.ckpt.prev" in caplog.text
    assert torch.equal(resumed.weight, run(tmp_path / "clean", checkpoint=None).weight)
    assert not (tmp_path / "c.ckpt.prev").exists()


# Under torchrun every rank must take the same decision and name the same resume point.

def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))
    # Every rank blows up the shared weights in the update of step 5; only rank 1 sees the NaN at step 6.
    loss = diverging(blow_up_call=6, when="after", nan_call=7 if rank == 1 else None)
    try:
        run(Path(out), loss)
    except FloatingPointError as error:
        (Path(out) / f"message{rank}").write_text(str(error))
    distributed.teardown()


@pytest.mark.slow  # two gloo processes (about 6 s): make test-slow, which CI runs; make test stays under 10 minutes
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_under_two_ranks_both_stop_and_name_the_same_kept_checkpoint(tmp_path, free_port):
    mp.spawn(ddp_worker, args=(2, free_port, str(tmp_path)), nprocs=2, join=True)
    messages = [(tmp_path / f"message{r}").read_text() for r in range(2)]
    assert messages[0] == messages[1] and "resumes from step 4" in messages[0]
    assert checkpoint_state(tmp_path)["step"] == 4 and not (tmp_path / "c.ckpt.prev").exists()
