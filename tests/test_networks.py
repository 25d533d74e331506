"""The noisy classifier's pooling heads and its training augmentation (D&N section 4.3)."""

import pytest
import torch

from diffguide.models import kinds, networks
from diffguide.training.losses import augment_images

ARCH = dict(channels=1, widths=[8, 16], num_classes=3, attention_levels=[], norm_groups=4, head_dim=4)


def classifier(image_size, **kw):
    torch.manual_seed(0)
    return kinds.build_network("noisy_classifier", dict(ARCH, image_size=image_size) | kw)


@pytest.mark.parametrize("image_size, widths", [(16, [8, 16]), (32, [8, 16, 16])])
def test_attention_pooled_classifier_gives_logits_with_gradients_and_depends_on_t(image_size, widths):
    model = classifier(image_size, widths=widths)
    assert isinstance(model.head[-1], networks.AttentionPool2d) and model.head[-1].heads == 4
    x = torch.randn(2, 1, image_size, image_size, requires_grad=True)
    t = torch.tensor([3, 3])
    logits = model(x, t)
    assert logits.shape == (2, 3)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x)  # classifier guidance needs d log p / d x
    assert grad.shape == x.shape and grad.abs().sum() > 0
    assert not torch.allclose(model(x, torch.tensor([900, 900])), logits)


def test_mean_pooling_and_an_arch_without_pool():
    mean = classifier(16, pool="mean")
    assert mean(torch.randn(2, 1, 16, 16), torch.tensor([1, 2])).shape == (2, 3)
    assert isinstance(mean.head[2], torch.nn.AdaptiveAvgPool2d)  # the layout of older checkpoints
    legacy = kinds.build_network("noisy_classifier", dict(ARCH, image_size=16))  # no "pool" key
    assert legacy.pool == "attention"
    assert legacy(torch.randn(1, 1, 16, 16), torch.tensor([0])).shape == (1, 3)
    with pytest.raises(ValueError, match="unknown pool"):
        classifier(16, pool="max")


def images(n=8, side=8):
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_augmentation_off_leaves_x0_untouched():
    x = images()
    assert augment_images(x, random_flip=False, random_crop=0) is x


def test_random_flip_flips_some_images_exactly():
    x = images(16)
    out = augment_images(x, random_flip=True, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_random_crop_shifts_content_and_keeps_shape_and_range():
    x = images(16)
    out = augment_images(x, random_crop=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)
    # a shifted image agrees with its source on the overlap for some shift (dy, dx) in [-2, 2]^2
    for o, xi in zip(out, x):
        assert any(torch.equal(o[:, max(0, dy):8 + min(0, dy), max(0, dx):8 + min(0, dx)],
                               xi[:, max(0, -dy):8 + min(0, -dy), max(0, -dx):8 + min(0, -dx)])
                   for dy in range(-2, 3) for dx in range(-2, 3))
    both = augment_images(x, random_flip=True, random_crop=3, generator=torch.Generator().manual_seed(0))
    assert both.shape == x.shape and both.min() >= -1 and both.max() <= 1


@pytest.mark.parametrize("std", [1.0, 0.15])
def test_class_embedding_starts_at_the_configured_std(std):
    arch = dict(image_size=8, channels=1, widths=[32, 64], attention_levels=[], norm_groups=8, num_classes=10)
    model = kinds.build_network("eps_unet", arch | {"class_embed_std": std})
    weight = model.unet.class_embedding.weight  # 11 rows (10 classes and the null class) of 128
    assert abs(weight.std().item() / std - 1) < 0.1


def test_precision_auto_is_bf16_only_where_native():
    from diffguide.base.runtime import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)
