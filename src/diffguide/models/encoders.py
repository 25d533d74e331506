"""The CLIP-style encoders of semantic diffusion guidance (SDG; Liu et al. 2023, "More Control for
Free! Image Synthesis with Semantic Diffusion Guidance", arXiv 2112.05744; code xh-liu/SDG_code).

SDG guides with F(x_t, y) = sim(E~(x_t, t), E(y)) (its eqs. 5-8), E a joint image / text encoder
(CLIP) and E~ its image encoder fine-tuned on noised images. No CLIP weights exist offline, so
both are trained here on the data set itself:

- ``ClipModel``: a clean image encoder E(x) and a text encoder T(prompt) trained together with a
  contrastive loss (losses.clip_contrastive_loss) on (image, "a photo of a <class name>") pairs,
  so both embed into one space.
- ``NoisyImageEncoder``: E~(x_t, t), the same network as the clip's image encoder, initialised
  from its weights and fine-tuned on x_t = q_sample(x_0, t) (losses.noisy_embedding_loss).
- ``CosineToTargets``: (x, t) -> cos(E~(x, t), target_c) for a few target embeddings, a
  classifier-shaped module (metrics.accuracy_by_t reads it as logits; guidance can take its
  gradient).

The image encoders are networks.NoisyClassifier (timestep embedding -> UNet down blocks -> mid
block -> attention pool -> linear) with ``embed_dim`` outputs instead of class logits: the clean
one is called with t = 0, so a clean encoder's weights initialise the noisy one unchanged.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn import functional as F

from diffguide.models.networks import NoisyClassifier

# The measures of similarity guidance (Liu et al.: the cosine; the dot product for comparison).
SIMILARITIES = ("cosine", "dot")

# CLIP's zero-shot prompt (Radford et al. 2021, sec. 3.1.4).
PROMPT_TEMPLATE = "a photo of a {}"
PAD = "<pad>"
# CLIP initialises its temperature at 0.07 and clips the logit scale at 100 (Radford et al. 2021, sec. 2.5).
LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100)
# The arch keys of ClipModel that only its text side reads; the rest shape the image encoder.
TEXT_KEYS = ("class_names", "text_width", "template", "vocabulary")


def words(text: str) -> list[str]:
    """Lower-case words, split on anything not a letter or digit: "T-shirt/top" -> t, shirt, top."""
    return re.findall(r"[a-z0-9]+", text.lower())


def build_vocabulary(class_names, template: str = PROMPT_TEMPLATE) -> list[str]:
    """The padding token, then every word of the class prompts in order of first appearance (a
    fixed order for fixed class names, so a rebuilt model maps each word to the same row)."""
    prompts = [words(template.format(name)) for name in class_names]
    return list(dict.fromkeys([PAD] + [word for prompt in prompts for word in prompt]))


class Tokenizer:
    """Prompts -> (token ids [N, L], mask [N, L]), padded with id 0 to the longest prompt."""

    def __init__(self, vocabulary: list[str]):
        self.vocabulary = list(vocabulary)
        self.index = {word: i for i, word in enumerate(self.vocabulary)}

    def ids(self, prompt: str) -> list[int]:
        unknown = [w for w in words(prompt) if w not in self.index]
        if unknown:
            raise ValueError(f"prompt {prompt!r} has words outside the text encoder's vocabulary: {unknown}. "
                             f"It knows only the words of its data set's class prompts: {self.vocabulary[1:]}")
        if not words(prompt):
            raise ValueError(f"prompt {prompt!r} has no words")
        return [self.index[w] for w in words(prompt)]

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.ids(p) for p in prompts]
        length = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (length - len(r)) for r in rows], dtype=torch.long)
        return ids, ids != 0


class TextEncoder(nn.Module):
    """T(prompt): token embedding -> mean over the prompt's words -> residual MLP -> projection.

    Mean pooling ignores word order, which no class prompt here needs (the prompts differ only in
    their class words); a transformer would add cost and nothing to learn from ten prompts."""

    def __init__(self, vocabulary_size: int, width: int, embed_dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary_size, width, padding_idx=0)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))
        self.norm = nn.LayerNorm(width)
        self.projection = nn.Linear(width, embed_dim, bias=False)  # CLIP's text_projection

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.unsqueeze(-1).to(self.token_embedding.weight.dtype)
        pooled = (self.token_embedding(ids) * mask).sum(1) / mask.sum(1)
        return self.projection(self.norm(pooled + self.mlp(pooled)))


class NoisyImageEncoder(NoisyClassifier):
    """E~(x_t, t) -> [B, embed_dim]: networks.NoisyClassifier with embed_dim outputs. SDG fine-tunes
    a CLIP image encoder on noised images (SDG sec. 3.3; scripts/clip_finetune_noise_nolabel.py)."""

    def __init__(self, image_size: int, channels: int, widths: list[int], embed_dim: int,
                 layers_per_block: int = 1, attention_levels: list[int] | None = None,
                 norm_groups: int = 8, head_dim: int = 32, pool: str = "attention"):
        super().__init__(image_size, channels, widths, num_classes=embed_dim, layers_per_block=layers_per_block,
                         attention_levels=attention_levels, norm_groups=norm_groups, head_dim=head_dim, pool=pool)
        self.embed_dim = embed_dim


class ClipModel(nn.Module):
    """A small CLIP: ``image_encoder`` E (a NoisyImageEncoder called at t = 0) and a text encoder
    over the words of "a photo of a <class name>", in one ``embed_dim``-dimensional space.

    ``forward(x)`` returns (E(x) [B, D], T(class prompts) [C, D], logit scale), all that
    losses.clip_contrastive_loss needs in one call (so DistributedDataParallel sees the forward).
    The vocabulary is part of the arch, so a checkpoint rebuilds the same tokenizer by itself."""

    def __init__(self, image_size: int, channels: int, widths: list[int], embed_dim: int, class_names,
                 layers_per_block: int = 1, attention_levels: list[int] | None = None, norm_groups: int = 8,
                 head_dim: int = 32, pool: str = "attention", text_width: int = 64,
                 template: str = PROMPT_TEMPLATE, vocabulary: list[str] | None = None):
        super().__init__()
        self.class_names = list(class_names)
        self.template = template
        self.tokenizer = Tokenizer(vocabulary or build_vocabulary(self.class_names, template))
        self.image_encoder = NoisyImageEncoder(image_size, channels, widths, embed_dim, layers_per_block,
                                               attention_levels, norm_groups, head_dim, pool)
        self.text_encoder = TextEncoder(len(self.tokenizer.vocabulary), text_width, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    def prompt(self, class_name: str) -> str:
        return self.template.format(class_name)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """E(x), unnormalised: the image encoder at t = 0."""
        return self.image_encoder(x, torch.zeros(len(x), dtype=torch.long, device=x.device))

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """T(prompts), unnormalised, [N, D]."""
        ids, mask = self.tokenizer(prompts)
        device = self.logit_scale.device
        return self.text_encoder(ids.to(device), mask.to(device))

    def encode_class_names(self) -> torch.Tensor:
        """T of the C class prompts, in class order: [C, D]."""
        return self.encode_text([self.prompt(name) for name in self.class_names])

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clipped at 100 as CLIP's (no gradient beyond it)."""
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()

    def forward(self, x: torch.Tensor):
        return self.encode_image(x), self.encode_class_names(), self.scale()


def image_arch(clip_arch: dict) -> dict:
    """A NoisyImageEncoder's arch from a ClipModel's: its image part, so the two cannot differ."""
    return {key: value for key, value in clip_arch.items() if key not in TEXT_KEYS}


def noisy_encoder_from(clip: ClipModel, clip_arch: dict) -> tuple[NoisyImageEncoder, dict]:
    """E~ initialised as the clip's image encoder E (SDG fine-tunes CLIP's image encoder), and its arch."""
    arch = image_arch(clip_arch)
    encoder = NoisyImageEncoder(**arch)
    encoder.load_state_dict(clip.image_encoder.state_dict())
    return encoder, arch


def similarity(features: torch.Tensor, targets: torch.Tensor, measure: str = "cosine") -> torch.Tensor:
    """sim(features[b], targets[k]) for every b and k: [B, D] x [K, D] -> [B, K] (or [B, K, D]
    targets, one set per row, -> [B, K]). Computed in float32 at least, autocast or not (bf16
    autocast features are promoted before normalising, as guide values are). The cosine normalises with
    torch.nn.functional.normalize (norm clamped at 1e-12), so a zero feature vector gives a finite
    gradient where SDG's plain division gives NaN."""
    if measure not in SIMILARITIES:
        raise ValueError(f"unknown similarity {measure!r}; choose one of {SIMILARITIES}")
    features = features.to(torch.promote_types(features.dtype, torch.float32))
    targets = targets.to(device=features.device, dtype=features.dtype)
    with torch.autocast(features.device.type, enabled=False):  # autocast would take the product back to bf16
        if measure == "cosine":
            features, targets = F.normalize(features, dim=-1), F.normalize(targets, dim=-1)
        if targets.dim() == 3:
            return torch.einsum("bd,bkd->bk", features, targets)
        return features @ targets.T



class CosineToTargets(nn.Module):
    """(x, t) -> cos(encoder(x, t), target_c) [B, C]: an image encoder read as a classifier whose
    logits are the cosine similarities to fixed target embeddings (e.g. the class prompts' T), i.e.
    similarity guidance's guide (guidance.methods.similarity.Similarity) with the cosine. t = None
    means t = 0 (clean images)."""

    def __init__(self, encoder: nn.Module, targets: torch.Tensor):
        super().__init__()
        self.encoder, self.measure = encoder, "cosine"
        self.register_buffer("targets", targets.float().detach())

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if t is None:
            t = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return similarity(self.encoder(x, t), self.targets, self.measure)


@torch.no_grad()
def zero_shot_accuracy(clip: ClipModel, images: torch.Tensor, labels: torch.Tensor, device,
                       batch_size: int = 500) -> float:
    """CLIP's zero-shot classification of clean images: argmax_c cos(E(x), T(prompt_c))."""
    scorer = CosineToTargets(clip.image_encoder, clip.encode_class_names()).to(device).eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = scorer(images[start:start + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / len(images)
