"""Semantic diffusion guidance's encoders (diffguide.models.encoders): the tokenizer, the clip and the
noisy image encoder, their losses against hand-computed values, training on sklearn's digits,
the training stage's initialisation from the clip, and checkpoint round trips."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffguide import data
from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.models import encoders, kinds, networks
from diffguide.pipeline.stages import train as train_stage
from diffguide.training.losses import clip_contrastive_loss, noisy_embedding_loss

FASHION = data.DATASETS["fashion_mnist"].class_names
DIGITS = data.DATASETS["digits"].class_names
IMAGE = dict(image_size=8, channels=1, widths=[8, 16], embed_dim=6, attention_levels=[], norm_groups=4, head_dim=4)


def clip(seed=0, class_names=DIGITS, **kw):
    torch.manual_seed(seed)
    return encoders.ClipModel(**IMAGE, class_names=class_names, text_width=8, **kw)


def images(n=5, seed=1):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# The tokenizer.

def test_class_names_split_into_lowercase_words_that_share_tokens():
    assert encoders.words("a photo of a T-shirt/top") == ["a", "photo", "of", "a", "t", "shirt", "top"]
    vocabulary = encoders.build_vocabulary(FASHION)
    assert vocabulary[:4] == [encoders.PAD, "a", "photo", "of"] and vocabulary.count("shirt") == 1
    tokenizer = encoders.Tokenizer(vocabulary)
    ids, mask = tokenizer(["a photo of a T-shirt/top", "a photo of a Shirt"])
    shirt = vocabulary.index("shirt")
    assert ids[0].tolist() == [1, 2, 3, 1, vocabulary.index("t"), shirt, vocabulary.index("top")]
    assert ids[1].tolist() == [1, 2, 3, 1, shirt, 0, 0]  # padded to the longer prompt
    assert mask[1].tolist() == [True] * 5 + [False] * 2
    assert encoders.build_vocabulary(DIGITS) == [encoders.PAD, "a", "photo", "of", *DIGITS]


def test_an_unknown_word_is_named_with_the_vocabulary():
    tokenizer = encoders.Tokenizer(encoders.build_vocabulary(DIGITS))
    with pytest.raises(ValueError, match=r"'a photo of a cat' has words outside .*: \['cat'\]\. It knows only .*'9'"):
        tokenizer(["a photo of a cat"])
    with pytest.raises(ValueError, match="has no words"):
        tokenizer(["--"])


# Shapes and the interface other modules code against.

def test_clip_shapes_prompts_and_scale():
    model = clip().eval()
    x = images()
    assert model.encode_image(x).shape == (5, 6)
    assert torch.equal(model.encode_image(x), model.image_encoder(x, torch.zeros(5, dtype=torch.long)))
    assert model.prompt("3") == "a photo of a 3"
    texts = model.encode_class_names()
    assert texts.shape == (10, 6)
    assert torch.allclose(texts[3], model.encode_text(["a photo of a 3"])[0])
    assert not torch.allclose(texts[3], texts[4])  # a text encoder, not one shared vector
    image, text, scale = model(x)
    assert image.shape == (5, 6) and torch.equal(text, texts) and scale.item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert model.scale().item() == pytest.approx(100.0)  # CLIP's clip at 100


def test_the_text_encoder_reads_words_so_shared_words_move_two_prompts():
    model = clip(class_names=FASHION)
    with torch.no_grad():
        before = model.encode_class_names()
        model.text_encoder.token_embedding.weight[model.tokenizer.index["shirt"]] += torch.randn(8)
        after = model.encode_class_names()
    changed = [not torch.allclose(b, a) for b, a in zip(before, after)]
    assert changed == [name in ("T-shirt/top", "Shirt") for name in FASHION]


def test_cosine_to_targets_is_the_cosine_and_t_none_is_clean():
    encoder = clip().image_encoder.eval()
    targets = torch.randn(3, 6)
    scorer = encoders.CosineToTargets(encoder, targets)
    x, t = images(4), torch.tensor([0, 5, 9, 30])
    e = encoder(x, t)
    expected = (e / e.norm(dim=1, keepdim=True)) @ (targets / targets.norm(dim=1, keepdim=True)).T
    assert torch.allclose(scorer(x, t), expected, atol=1e-6)
    assert torch.equal(scorer(x), scorer(x, torch.zeros(4, dtype=torch.long)))


# The losses, against values worked by hand.

class Fixed(nn.Module):
    """A ClipModel stand-in whose forward gives fixed embeddings and scale."""

    def __init__(self, images, texts, scale):
        super().__init__()
        self.out = (torch.tensor(images), torch.tensor(texts), torch.tensor(scale))

    def forward(self, x):
        return self.out


def log_softmax(row, k):
    return row[k] - math.log(sum(math.exp(v) for v in row))


def test_clip_contrastive_loss_on_three_images_by_hand():
    # Images at 0, 90 and 45 degrees; prompts at 0, 180 and 90 degrees; scale 2. Classes 0, 0, 2:
    # class 1 is absent, so it is a negative for every image and has no text -> image term.
    r = 1 / math.sqrt(2)
    model = Fixed([[1.0, 0.0], [0.0, 3.0], [2 * r, 2 * r]], [[1.0, 0.0], [-5.0, 0.0], [0.0, 1.0]], 2.0)
    y = torch.tensor([0, 0, 2])
    cos = [[1, -1, 0], [0, 0, 1], [r, -r, r]]
    logits = [[2 * c for c in row] for row in cos]  # [image][class]
    image_to_text = -(log_softmax(logits[0], 0) + log_softmax(logits[1], 0) + log_softmax(logits[2], 2)) / 3
    column = lambda c: [logits[i][c] for i in range(3)]
    class0 = -(0.5 * log_softmax(column(0), 0) + 0.5 * log_softmax(column(0), 1))  # two positives, half each
    class2 = -log_softmax(column(2), 2)
    expected = (image_to_text + (class0 + class2) / 2) / 2
    assert clip_contrastive_loss()(model, torch.zeros(3, 1, 8, 8), y).item() == pytest.approx(expected, rel=1e-6)


class AtTimeZero:
    """A schedule whose only timestep is 0, with the real schedule's noise there."""

    timesteps = 1

    def __init__(self, schedule):
        self.schedule = schedule

    def q_sample(self, x0, t, noise):
        assert (t == 0).all()
        return self.schedule.q_sample(x0, t, noise)


class Encodes:
    """A frozen-target stand-in: fixed clean-image and prompt embeddings."""

    def __init__(self, clean, texts, scale):
        self.clean, self.texts, self.logit = torch.tensor(clean), torch.tensor(texts), math.log(scale)

    def eval(self):
        return self

    def requires_grad_(self, flag):
        return self

    def encode_image(self, x):
        return self.clean

    def encode_class_names(self):
        return self.texts

    def scale(self):
        return torch.tensor(self.logit).exp()


class Gives(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = torch.tensor(out)

    def forward(self, x, t):
        return self.out


def test_noisy_embedding_loss_recipes_by_hand():
    schedule = AtTimeZero(NoiseSchedule.make("cosine", 40))
    noisy = [[1.0, 0.0], [0.6, 0.8]]
    target = Encodes(clean=[[0.0, 2.0], [1.0, 0.0]], texts=[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], scale=3.0)
    x0, y = torch.zeros(2, 1, 8, 8), torch.tensor([1, 2])
    # clean_image: logits_ij = 100 cos(E~_i, E_j); the i -> j and j -> i cross-entropies, summed (SDG's script).
    logits = [[0.0, 100.0], [80.0, 60.0]]
    rows = -(log_softmax(logits[0], 0) + log_softmax(logits[1], 1)) / 2
    columns = -(log_softmax([0.0, 80.0], 0) + log_softmax([100.0, 60.0], 1)) / 2
    loss = noisy_embedding_loss(schedule, target, "clean_image")(Gives(noisy), x0, y)
    assert loss.item() == pytest.approx(rows + columns, rel=1e-6)
    # text: cross-entropy of the clip's scale (3) times cos(E~_i, T_c) against y.
    expected = -(log_softmax([3.0, 0.0, -3.0], 1) + log_softmax([1.8, 2.4, -1.8], 2)) / 2
    loss = noisy_embedding_loss(schedule, target, "text")(Gives(noisy), x0, y)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"unknown recipe 'labels'; choose one of \('clean_image', 'text'\)"):
        noisy_embedding_loss(schedule, target, "labels")


def test_noisy_encoder_starts_as_the_clips_image_encoder_whose_loss_beats_a_random_one():
    model = clip().eval()
    arch = dict(IMAGE, class_names=list(DIGITS), text_width=8)
    noisy, noisy_arch = encoders.noisy_encoder_from(model, arch)
    assert noisy_arch == IMAGE and isinstance(noisy, encoders.NoisyImageEncoder)
    x, t = images(8), torch.tensor([0, 1, 5, 10, 20, 30, 39, 2])
    assert torch.equal(noisy.eval()(x, t), model.image_encoder(x, t))
    loss = noisy_embedding_loss(AtTimeZero(NoiseSchedule.make("cosine", 40)), model, "clean_image")
    assert not any(p.requires_grad for p in model.parameters())  # the target is frozen
    torch.manual_seed(0)
    matched = loss(noisy, images(32), None).item()
    random = loss(encoders.NoisyImageEncoder(**IMAGE).eval(), images(32), None).item()
    assert matched < 0.5 * random, (matched, random)


def test_a_few_dozen_steps_on_digits_lift_zero_shot_accuracy_far_above_chance():
    train_x, train_y = data.prepare_dataset("digits", "train", 8).to_tensor()
    test_x, test_y = data.prepare_dataset("digits", "test", 8).to_tensor()
    torch.manual_seed(0)
    model = encoders.ClipModel(8, 1, [16, 32], 16, DIGITS, norm_groups=4, head_dim=8, text_width=16)
    assert encoders.zero_shot_accuracy(model.eval(), test_x, test_y, "cpu") < 0.2
    optimizer = torch.optim.AdamW(model.train().parameters(), lr=3e-3)
    loss_fn = clip_contrastive_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        pick = torch.randint(0, len(train_x), (64,), generator=generator)
        loss = loss_fn(model, train_x[pick], train_y[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert encoders.zero_shot_accuracy(model.eval(), test_x, test_y, "cpu") > 0.4  # chance: 0.1


# Checkpoints and the training stage.

def test_checkpoints_rebuild_both_kinds_and_the_older_noisy_classifiers(tmp_path):
    model = clip(class_names=FASHION).eval()
    arch = dict(IMAGE, class_names=list(FASHION), text_width=8, vocabulary=encoders.build_vocabulary(FASHION))
    kinds.save_checkpoint(tmp_path / "clip.pt", "clip", arch, model)
    loaded, payload = kinds.load_checkpoint(tmp_path / "clip.pt")
    assert isinstance(loaded, encoders.ClipModel) and loaded.tokenizer.vocabulary == arch["vocabulary"]
    x = images()
    assert torch.equal(loaded.encode_image(x), model.encode_image(x))
    assert torch.equal(loaded.encode_class_names(), model.encode_class_names())
    noisy, noisy_arch = encoders.noisy_encoder_from(model, arch)
    kinds.save_checkpoint(tmp_path / "noisy.pt", "noisy_image_encoder", noisy_arch, noisy)
    rebuilt, _ = kinds.load_checkpoint(tmp_path / "noisy.pt")
    t = torch.arange(5)
    assert isinstance(rebuilt, encoders.NoisyImageEncoder) and torch.equal(rebuilt(x, t), noisy.eval()(x, t))
    for pool in ("mean", "attention"):  # written before "pool" was an arch key: the weights tell
        old = dict(IMAGE, num_classes=3)
        old.pop("embed_dim")
        classifier = networks.NoisyClassifier(**old, pool=pool)
        kinds.save_checkpoint(tmp_path / f"{pool}.pt", "noisy_classifier", old, classifier)
        assert kinds.load_checkpoint(tmp_path / f"{pool}.pt")[0].pool == pool


def prepared(tmp_path, split, n):
    rng = np.random.default_rng(0 if split == "train" else 1)
    labels = np.arange(n, dtype=np.int64) % 10
    pixels = (rng.integers(0, 60, (n, 8, 8, 1)) + 19 * labels[:, None, None, None]).astype(np.uint8)
    data.save_prepared(data.PreparedData(pixels, labels, "digits", split, "test", DIGITS), tmp_path / f"{split}.npz")
    return str(tmp_path / f"{split}.npz")


def train_job(tmp_path, network, init_path=None, recipe=None):
    block = dict(steps=4, batch_size=8, lr=0.005, log_every=2, checkpoint_every=3)
    block |= {"recipe": recipe} if recipe else {}
    arch = dict(widths=[8, 16], attention_levels=[], norm_groups=4, head_dim=4, embed_dim=6, text_width=8)
    cfg = {"seed": 0, "precision": "fp32", "device": "cpu", "dataset": {"name": "digits", "image_size": 8},
           "diffusion": {"schedule": "cosine", "timesteps": 40}, "networks": {"clip": arch},
           "training": {network: block}}
    train_stage.train_network(network, **train_stage.config_sections(cfg, network),
                              train_path=prepared(tmp_path, "train", 40), test_path=prepared(tmp_path, "test", 20),
                              output=str(tmp_path / f"{network}.pt"),
                              csv_log=str(tmp_path / "logs" / f"train_{network}.csv"),
                              checkpoint=str(tmp_path / "checkpoints" / f"{network}.ckpt"), init_path=init_path)
    return kinds.load_checkpoint(tmp_path / f"{network}.pt")


def test_the_stage_trains_the_clip_then_the_noisy_encoder_from_it(tmp_path, monkeypatch):
    clip_model, clip_payload = train_job(tmp_path, "clip")
    assert clip_payload["arch"]["class_names"] == list(DIGITS)
    assert clip_payload["arch"]["vocabulary"] == encoders.build_vocabulary(DIGITS)
    assert 0 <= clip_payload["extra"]["test_accuracy"] <= 1
    seen = {}
    real_initial = train_stage.initial_model

    def initial_model(*args):  # the noisy encoder as the loop receives it, before any step
        model, arch = real_initial(*args)
        seen["first"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model, arch

    monkeypatch.setattr(train_stage, "initial_model", initial_model)
    noisy, payload = train_job(tmp_path, "noisy_image_encoder", init_path=str(tmp_path / "clip.pt"), recipe="text")
    first = clip_model.image_encoder.state_dict()
    assert all(torch.equal(seen["first"][k], first[k]) for k in first)
    assert payload["arch"] == encoders.image_arch(clip_payload["arch"])
    identity = {"network": "clip", "sha256": (tmp_path / "clip.pt.sha256").read_text().split()[0]}
    assert payload["extra"]["init"] == identity
    by_t = payload["extra"]["test_accuracy_by_t"]
    assert list(by_t) == ["0-9", "10-19", "20-29", "30-39"]
    table = (tmp_path / "logs" / "noisy_image_encoder_accuracy_by_t.csv").read_text().splitlines()
    assert table[0] == "band,t_min,t_max,accuracy,images" and len(table) == 5
    assert [line.split(",")[3] for line in table[1:]] == [repr(by_t[band]) for band in by_t]


def test_the_noisy_encoders_checkpoint_context_names_its_clip(tmp_path, monkeypatch):
    train_job(tmp_path, "clip")
    contexts = []
    real_train = train_stage.train
    monkeypatch.setattr(train_stage, "train", lambda *a, **kw: contexts.append(kw["context"]) or real_train(*a, **kw))
    train_job(tmp_path, "noisy_image_encoder", init_path=str(tmp_path / "clip.pt"))
    assert contexts[0]["init"]["sha256"] == (tmp_path / "clip.pt.sha256").read_text().split()[0]
    with pytest.raises(ValueError, match="noisy_image_encoder starts from the trained clip network: pass its model"):
        train_job(tmp_path, "noisy_image_encoder")
