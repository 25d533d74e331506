"""The kinds of network and how to rebuild them from a checkpoint.

- ``EpsUNet``: the eps-model (unconditional or class-conditional with a learned null class), a
  diffusers ``UNet2DModel`` with ADM's scale-shift norm and attention at the lowest resolution.
- ``NoisyClassifier``: p_phi(y | x_t, t), the UNet's downsampling half conditioned on t, pooled
  and projected to class logits (Dhariwal & Nichol section 4.3).
- ``EvalClassifier``: a small ResNet trained on clean data; its penultimate features and logits
  drive the domain metrics (FID / KID / IS / sample accuracy).
- ``clip`` and ``noisy_image_encoder``: semantic diffusion guidance's encoders, in diffguide.models.encoders.

Every network is built from a plain ``arch`` dict so a checkpoint can rebuild it by itself.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block
from torch import nn
from torch.nn import functional as F

# The label that asks a conditional network for its unconditional output eps(x, null) (H&S's null
# token; guidance and training's label dropout both use it).
NULL_LABEL = -1


def _attention_head_dim(head_dim: int, widths: list[int]) -> int:
    """Channels per attention head, at most the narrowest width so every block has >= 1 head."""
    return min(head_dim, min(widths))


def _down_block_types(num_levels: int, attention_levels: list[int]) -> list[str]:
    return ["AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(num_levels)]


class EpsUNet(nn.Module):
    """eps = model(x_t, t, y). With ``num_classes`` set, label ``NULL_LABEL`` (or y = None) selects
    the extra learned null embedding used by classifier-free guidance (H&S Algorithm 1)."""

    def __init__(self, image_size: int, channels: int, widths: list[int], layers_per_block: int = 1,
                 attention_levels: list[int] | None = None, num_classes: int | None = None,
                 dropout: float = 0.0, norm_groups: int = 8, head_dim: int = 32, class_embed_std: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        down = _down_block_types(len(widths), attention_levels or [])
        up = [name.replace("Down", "Up") for name in reversed(down)]
        self.unet = UNet2DModel(
            sample_size=image_size, in_channels=channels, out_channels=channels,
            block_out_channels=tuple(widths), layers_per_block=layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up),
            num_class_embeds=None if num_classes is None else num_classes + 1,
            resnet_time_scale_shift="scale_shift", norm_num_groups=norm_groups,
            attention_head_dim=_attention_head_dim(head_dim, widths), dropout=dropout)
        if num_classes is not None and class_embed_std != 1.0:
            # The class embedding is added to the timestep embedding; at N(0, 1) its norm is about
            # 7 times the timestep embedding's, which drowns the noise level early in training.
            nn.init.normal_(self.unet.class_embedding.weight, std=class_embed_std)

    def forward(self, x, t, y=None):
        if self.num_classes is None:
            return self.unet(x, t).sample
        if y is None:
            y = torch.full((x.shape[0],), NULL_LABEL, device=x.device, dtype=torch.long)
        class_index = torch.where(y == NULL_LABEL, torch.full_like(y, self.num_classes), y)
        return self.unet(x, t, class_labels=class_index).sample


class AttentionPool2d(nn.Module):
    """guided-diffusion's ``AttentionPool2d`` (D&N sec. 4.3): the H*W feature tokens with their mean
    prepended, plus a learned positional embedding, go through one multi-head attention whose
    query is the mean token; its output is projected to ``out_dim``."""

    def __init__(self, side: int, channels: int, head_dim: int, out_dim: int):
        super().__init__()
        heads = max(1, channels // head_dim)
        while channels % heads:  # a width not divisible by head_dim: the most heads that divide it
            heads -= 1
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(side * side + 1, channels) / channels ** 0.5)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, out_dim)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + self.positional_embedding.to(x.dtype)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        q = q[:, :1]  # only the mean token's output is kept, so only it needs to query
        split = lambda z: z.reshape(b, z.shape[1], self.heads, c // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))  # [B, heads, 1, C / heads]
        return self.proj(out.transpose(1, 2).reshape(b, c))


class NoisyClassifier(nn.Module):
    """logits = classifier(x_t, t): timestep embedding -> UNet down blocks -> mid block -> pool.

    ``pool``: ``attention`` (GroupNorm -> SiLU -> AttentionPool2d, as D&N's classifier) or ``mean``
    (GroupNorm -> SiLU -> global average -> linear)."""

    POOLS = ("attention", "mean")

    def __init__(self, image_size: int, channels: int, widths: list[int], num_classes: int,
                 layers_per_block: int = 1, attention_levels: list[int] | None = None,
                 norm_groups: int = 8, head_dim: int = 32, pool: str = "attention"):
        super().__init__()
        head_dim = _attention_head_dim(head_dim, widths)
        temb_dim = widths[0] * 4
        self.time_proj = Timesteps(widths[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(widths[0], temb_dim)
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        blocks, in_ch = [], widths[0]
        for level, (name, out_ch) in enumerate(zip(_down_block_types(len(widths), attention_levels or []), widths)):
            blocks.append(get_down_block(
                name, num_layers=layers_per_block, in_channels=in_ch, out_channels=out_ch,
                temb_channels=temb_dim, add_downsample=level < len(widths) - 1, resnet_eps=1e-5,
                resnet_act_fn="silu", resnet_groups=norm_groups, attention_head_dim=head_dim,
                downsample_padding=1, resnet_time_scale_shift="scale_shift"))
            in_ch = out_ch
        self.down_blocks = nn.ModuleList(blocks)
        self.mid = UNetMidBlock2D(in_channels=in_ch, temb_channels=temb_dim, resnet_groups=norm_groups,
                                  attention_head_dim=head_dim, resnet_time_scale_shift="scale_shift")
        if pool not in self.POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {self.POOLS}")
        self.pool = pool
        if pool == "mean":  # the layout of checkpoints written before attention pooling
            self.head = nn.Sequential(nn.GroupNorm(norm_groups, in_ch), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(in_ch, num_classes))
        else:
            side = image_size
            for _ in range(len(widths) - 1):  # each 3x3 stride-2 conv (padding 1) gives ceil(side / 2)
                side = (side + 1) // 2
            self.head = nn.Sequential(nn.GroupNorm(norm_groups, in_ch), nn.SiLU(),
                                      AttentionPool2d(side, in_ch, head_dim, num_classes))

    def forward(self, x, t):
        temb = self.time_embedding(self.time_proj(t).to(x.dtype))
        h = self.conv_in(x)
        for block in self.down_blocks:
            h, _ = block(h, temb)
        return self.head(self.mid(h, temb))


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.skip = (nn.Identity() if stride == 1 and in_ch == out_ch else
                     nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class EvalClassifier(nn.Module):
    """A small ResNet on clean images in [-1, 1]; ``features`` is the penultimate layer."""

    def __init__(self, channels: int, widths: list[int], num_classes: int):
        super().__init__()
        layers = [nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        in_ch = widths[0]
        for level, out_ch in enumerate(widths):
            layers.append(ResidualBlock(in_ch, out_ch, stride=1 if level == 0 else 2))
            in_ch = out_ch
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_ch, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x, t=None):
        return self.fc(self.features(x))
