"""Training under torch.distributed (CPU, gloo, 2 processes, a tiny model, a few steps): the ranks
end with the same weights, which differ from the initial ones; a NaN on one rank stops both
instead of hanging. Single-process training is covered by test_training.py and test_resume.py."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.models import kinds
from diffguide.training import distributed
from diffguide.training.loop import TrainSettings, train
from diffguide.training.losses import diffusion_loss

SCHEDULE = NoiseSchedule.make("cosine", 100)


def tiny_unet():
    torch.manual_seed(0)
    arch = dict(image_size=8, channels=1, widths=[8, 16], attention_levels=[], num_classes=3, norm_groups=4,
                dropout=0.1)
    return kinds.build_network("eps_unet", arch)


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    device = distributed.init(torch.device("cpu"))
    assert dist.get_backend() == "gloo" and distributed.rank() == rank and distributed.world_size() == world
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(32, 1, 8, 8, generator=generator), torch.arange(32) % 3
    settings = TrainSettings(steps=4, batch_size=4, lr=0.01, ema_decay=0.9, precision="fp32", log_every=1,
                             checkpoint_every=2)
    model = tiny_unet()
    torch.save(model.state_dict(), f"{out}/initial{rank}.pt")
    kept = train(model, diffusion_loss(SCHEDULE, p_uncond=0.2), images, labels, settings, device=device,
                 name="toy", csv_path=f"{out}/log.csv", checkpoint_path=f"{out}/c.ckpt")
    torch.save({"model": model.state_dict(), "ema": kept.state_dict()}, f"{out}/final{rank}.pt")
    # Each rank draws its own batch: the index draws after training differ between ranks.
    torch.save(torch.randint(0, 1000, (8,)), f"{out}/draw{rank}.pt")

    calls = 0

    def nan_on_rank_1(net, x0, y):
        nonlocal calls
        calls += 1
        value = diffusion_loss(SCHEDULE, p_uncond=0.2)(net, x0, y)
        return value * float("nan") if rank == 1 and calls == 2 else value

    try:
        train(tiny_unet(), nan_on_rank_1, images, labels, settings, device=device, name="toy",
              csv_path=f"{out}/nan.csv")
    except FloatingPointError:
        open(f"{out}/stopped{rank}", "w").close()
    distributed.teardown()


@pytest.mark.slow  # two gloo processes (about 10 s): make test-slow, which CI runs; make test stays under 10 minutes
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_ranks_train_identical_weights(tmp_path, free_port):
    mp.spawn(worker, args=(2, free_port, str(tmp_path)), nprocs=2, join=True)
    initial = torch.load(tmp_path / "initial0.pt")
    final = [torch.load(tmp_path / f"final{r}.pt") for r in range(2)]
    for part in ("model", "ema"):
        for key in final[0][part]:
            assert torch.equal(final[0][part][key], final[1][part][key]), (part, key)
    assert any(not torch.equal(initial[key], final[0]["model"][key]) for key in initial)
    assert not torch.equal(torch.load(tmp_path / "draw0.pt"), torch.load(tmp_path / "draw1.pt"))
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,images_per_s" and len(rows) == 5  # rank 0 alone wrote it
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert state["step"] == 4 and len(state["rng_ranks"]) == 2
    assert (tmp_path / "stopped0").exists() and (tmp_path / "stopped1").exists()


def test_single_process_is_not_distributed(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed.launched()
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.init(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.slow  # ~45 s of Snakemake and two torchrun processes; make test-slow (CI) runs it
def test_snakemake_rule_launches_torchrun_when_the_config_asks_for_two_gpus(tmp_path):
    """resources.gpu: 2 makes train_network start torchrun with 2 ranks (gloo here: device cpu);
    the model lands where the rest of the pipeline reads it."""
    from workflow_copies import SMOKE, copy_workflow, snakemake

    workdir = copy_workflow(tmp_path)
    target = "results/smoke/models/noisy_classifier.pt"
    snakemake(workdir, "--configfile", SMOKE, "--config", "device=cpu", "resources={gpu: 2}", "--", target)
    log = (workdir / "results/smoke/logs/train_noisy_classifier.log").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m diffguide.cli.train" in log
    assert "process 1 of 2" in log and "process 2 of 2" in log
    _, payload = kinds.load_checkpoint(workdir / target)
    assert payload["extra"]["processes"] == 2 and payload["extra"]["steps"] == 20
