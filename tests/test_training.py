"""The training loop, networks and checkpoints on tiny models (CPU, seconds)."""

import numpy as np
import pytest
import torch

from diffguide.base.integrity import CorruptArtifactError, record
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.wrappers import NULL_LABEL
from diffguide.models import kinds
from diffguide.training.loop import TrainSettings, train
from diffguide.training.losses import clean_classifier_loss, diffusion_loss


def tiny_unet(num_classes=3):
    return kinds.build_network("eps_unet", dict(image_size=8, channels=1, widths=[8, 16], attention_levels=[],
                                                   num_classes=num_classes, norm_groups=4))


def test_conditional_unet_uses_its_null_class_for_none_and_null_label():
    torch.manual_seed(0)
    model = tiny_unet().eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 500])
    null = model(x, t, torch.full((3,), NULL_LABEL))
    assert torch.equal(model(x, t, None), null)
    assert not torch.allclose(model(x, t, torch.tensor([0, 1, 2])), null)


def test_classifier_learns_a_separable_problem_and_keeps_its_csv_log(tmp_path):
    torch.manual_seed(0)
    images = torch.randn(256, 1, 8, 8) * 0.1
    labels = torch.arange(256) % 2
    images[labels == 1] += 1.0
    model = kinds.build_network("eval_classifier", dict(channels=1, widths=[4, 8], num_classes=2))
    settings = TrainSettings(steps=40, batch_size=32, lr=0.01, precision="fp32", log_every=10)
    kept = train(model, clean_classifier_loss(), images, labels, settings, device=torch.device("cpu"),
                 name="toy", csv_path=tmp_path / "log.csv")
    with torch.no_grad():
        accuracy = (kept(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "step,loss,lr,images_per_s" and rows[-1].startswith("39,")


def test_ema_copy_is_what_training_returns_when_ema_is_set(tmp_path):
    torch.manual_seed(0)
    model = tiny_unet(num_classes=None)
    before = [p.detach().clone() for p in model.parameters()]
    settings = TrainSettings(steps=5, batch_size=4, lr=0.01, ema_decay=0.9, precision="fp32")
    kept = train(model, diffusion_loss(NoiseSchedule.make("linear", 100), None), torch.randn(16, 1, 8, 8),
                 torch.zeros(16, dtype=torch.long), settings, device=torch.device("cpu"), name="ema",
                 csv_path=tmp_path / "log.csv")
    assert kept is not model
    for p_ema, p_raw, p0 in zip(kept.parameters(), model.parameters(), before):
        if not torch.equal(p_raw, p0):  # a trained parameter: the EMA lies strictly between
            assert not torch.equal(p_ema, p_raw)
            break
    else:
        pytest.fail("no parameter changed during training")


def test_nan_loss_stops_with_the_network_and_step_named(tmp_path):
    model = kinds.build_network("eval_classifier", dict(channels=1, widths=[4], num_classes=2))
    images = torch.full((8, 1, 8, 8), float("nan"))
    settings = TrainSettings(steps=3, batch_size=4, lr=0.01, precision="fp32")
    with pytest.raises(FloatingPointError, match=r"nan_net: the loss became nan at step 0"):
        train(model, clean_classifier_loss(), images, torch.zeros(8, dtype=torch.long), settings,
              device=torch.device("cpu"), name="nan_net", csv_path=tmp_path / "log.csv")


def test_checkpoint_roundtrip_rebuilds_the_same_function(tmp_path):
    torch.manual_seed(0)
    arch = dict(image_size=8, channels=1, widths=[8, 16], num_classes=3, attention_levels=[1], norm_groups=4)
    model = kinds.build_network("noisy_classifier", arch).eval()
    kinds.save_checkpoint(tmp_path / "c.pt", "noisy_classifier", arch, model, {"steps": 1})
    loaded, payload = kinds.load_checkpoint(tmp_path / "c.pt")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 70])
    assert torch.equal(loaded(x, t), model(x, t))
    assert payload["extra"] == {"steps": 1} and not (tmp_path / "c.pt.tmp").exists()


def test_corrupt_checkpoint_is_named_with_a_fix(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptArtifactError, match=r"broken\.pt has no checksum file.*--forcerun .*broken\.pt$"):
        kinds.load_checkpoint(path)
    record(path)  # its checksum matches, but torch cannot read it: a foreign file
    with pytest.raises(ValueError, match=r"broken\.pt.*run: snakemake --cores all --configfile .* --forcerun .*broken\.pt$"):
        kinds.load_checkpoint(path)


def test_p_uncond_drops_labels_at_the_requested_rate():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, t, y):
            seen.append(y)
            return torch.zeros_like(x)

    torch.manual_seed(0)
    loss = diffusion_loss(NoiseSchedule.make("cosine", 100), p_uncond=0.3)
    for _ in range(20):
        loss(Recorder(), torch.zeros(500, 1, 2, 2), torch.ones(500, dtype=torch.long))
    dropped = np.mean([(y == NULL_LABEL).float().mean().item() for y in seen])
    assert abs(dropped - 0.3) < 0.02  # 10,000 draws: standard error 0.0046
    assert all(set(y.unique().tolist()) <= {NULL_LABEL, 1} for y in seen)


def test_learning_rate_warms_up_then_decays_to_zero_with_cosine():
    from diffguide.training.loop import lr_factor

    settings = TrainSettings(steps=110, batch_size=1, lr=1.0, warmup_steps=10, lr_schedule="cosine")
    assert lr_factor(settings, 0) == pytest.approx(0.1) and lr_factor(settings, 9) == pytest.approx(1.0)
    assert lr_factor(settings, 10) == pytest.approx(1.0) and lr_factor(settings, 60) == pytest.approx(0.5)
    assert lr_factor(settings, 110) == pytest.approx(0.0, abs=1e-12)
    constant = TrainSettings(steps=110, batch_size=1, lr=1.0, warmup_steps=10)
    assert lr_factor(constant, 100) == 1.0


def test_t_bands_split_all_timesteps_into_equal_quarters():
    from diffguide.evaluation.metrics import t_bands

    assert t_bands(1000) == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    bands = t_bands(10)
    assert bands[0][0] == 0 and bands[-1][1] == 10 and all(a[1] == b[0] for a, b in zip(bands, bands[1:]))


class SignOfMean(torch.nn.Module):
    """A noisy 'classifier' that calls an image class 1 when its mean is positive: right at small t,
    a coin flip once the noise dominates."""

    def forward(self, x, t):
        positive = (x.mean(dim=(1, 2, 3)) > 0).float()
        return torch.stack([1 - positive, positive], dim=1)


def test_accuracy_by_t_falls_to_chance_as_the_noise_grows_and_repeats():
    from diffguide.evaluation.metrics import accuracy_by_t

    labels = torch.arange(400) % 2
    images = (2.0 * labels - 1.0)[:, None, None, None].expand(400, 1, 4, 4).contiguous()
    schedule = NoiseSchedule.make("linear", 100)
    by_t = accuracy_by_t(SignOfMean(), images, labels, schedule, torch.device("cpu"), per_band=300, batch_size=64)
    assert list(by_t) == ["0-24", "25-49", "50-74", "75-99"]
    assert by_t["0-24"] == 1.0 and abs(by_t["75-99"] - 0.5) < 0.15
    assert accuracy_by_t(SignOfMean(), images, labels, schedule, torch.device("cpu"), per_band=300) == by_t


def test_accuracy_by_t_runs_the_noisy_classifier_network():
    from diffguide.evaluation.metrics import accuracy_by_t

    torch.manual_seed(0)
    arch = dict(image_size=8, channels=1, widths=[8, 16], num_classes=3, attention_levels=[], norm_groups=4)
    model = kinds.build_network("noisy_classifier", arch)
    by_t = accuracy_by_t(model, torch.randn(30, 1, 8, 8), torch.arange(30) % 3, NoiseSchedule.make("cosine", 40),
                         torch.device("cpu"), per_band=20, batch_size=7)
    assert list(by_t) == ["0-9", "10-19", "20-29", "30-39"]
    assert all(0 <= v <= 1 and v * 20 == round(v * 20) for v in by_t.values())


@pytest.mark.slow  # seconds each: make test-slow (CI runs it), for make test's 10-minute budget
def test_plot_training_curves_writes_a_png(tmp_path):
    from diffguide.reports.figures import plot_training_curves

    paths = {}
    for name in ("unconditional", "conditional", "noisy_classifier", "eval_classifier"):
        paths[name] = tmp_path / f"train_{name}.csv"
        steps = np.arange(0, 100, 10)
        lines = ["step,loss,lr,images_per_s"] + [f"{s},{1 / (s + 1):.6f},1.000e-03,100.0" for s in steps]
        paths[name].write_text("\n".join(lines) + "\n")
    plot_training_curves(paths, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_min_snr_weights_are_hang_et_al_and_gamma_large_is_the_simple_loss():
    """w_t = min(SNR_t, gamma) / SNR_t: 1 where SNR < gamma (noisy steps), gamma / SNR above; with
    gamma beyond every SNR the weighted loss equals DDPM's simple loss on the same draws."""
    from diffguide.training.losses import min_snr_weights

    schedule = NoiseSchedule.make("cosine", 1000)
    t = torch.tensor([0, 100, 500, 900, 999])
    abar = schedule.alphas_cumprod[t]
    snr = abar / (1 - abar)
    x = torch.zeros(5, 1, 2, 2)
    expected = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr
    assert torch.allclose(min_snr_weights(schedule, t, 5.0, x).double(), expected, rtol=1e-6)
    assert min_snr_weights(schedule, t, 5.0, x)[0] < 1e-3 and min_snr_weights(schedule, t, 5.0, x)[-1] == 1

    model = kinds.build_network("eps_unet", dict(image_size=8, channels=1, widths=[8, 16], attention_levels=[],
                                                    norm_groups=4, num_classes=None))
    x0, y = torch.randn(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)
    torch.manual_seed(3)
    plain = diffusion_loss(schedule, None)(model, x0, y)
    torch.manual_seed(3)
    huge_gamma = diffusion_loss(schedule, None, min_snr_gamma=1e12)(model, x0, y)
    torch.manual_seed(3)
    weighted = diffusion_loss(schedule, None, min_snr_gamma=1.0)(model, x0, y)
    assert torch.allclose(plain, huge_gamma, rtol=1e-5) and weighted < plain
