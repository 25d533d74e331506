"""The network kinds a config names, and the checkpoint file that rebuilds one: `build_network`
from a kind and its architecture, `save_checkpoint` and `load_checkpoint` (verified against its
checksum) for every network the pipeline trains."""

from __future__ import annotations

import torch
from torch import nn

from diffguide.base.atomic import atomic_open
from diffguide.base.integrity import restore_command, verify
from diffguide.models.encoders import ClipModel, NoisyImageEncoder
from diffguide.models.networks import EpsUNet, EvalClassifier, NoisyClassifier

# The network kinds a config's ``networks`` blocks and a checkpoint's ``kind`` name.
NETWORKS = {"eps_unet": EpsUNet, "noisy_classifier": NoisyClassifier, "eval_classifier": EvalClassifier,
            "clip": ClipModel, "noisy_image_encoder": NoisyImageEncoder}


def build_network(kind: str, arch: dict) -> nn.Module:
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}; choose one of {sorted(NETWORKS)}")
    return NETWORKS[kind](**arch)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(path, kind: str, arch: dict, model: nn.Module, extra: dict | None = None,
                    metadata: dict | None = None) -> None:
    """Write {kind, arch, state_dict, extra, metadata} atomically: a temp file in the same folder,
    then rename, so an interrupted job never leaves a truncated artifact behind. ``metadata`` is
    what the model was trained on and with (stages.train.model_metadata: data set, class names,
    diffusion schedule and T, the config subset), so a sampler can be rebuilt from the file alone."""
    payload = {"kind": kind, "arch": arch, "state_dict": model.state_dict(), "extra": extra or {},
               "metadata": metadata or {}}
    with atomic_open(path, checksum=True) as handle:
        torch.save(payload, handle)


def load_checkpoint(path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a network from its checkpoint (verified against its checksum), in eval mode, with
    gradients disabled. A damaged file raises integrity.CorruptArtifactError with its own fix."""
    verify(path)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a foreign file (another torch, not a diffguide model): say which and what to do
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"cannot read checkpoint {path} ({reason}). To retrain it and what was made from it, "
                         f"run: {restore_command(path)}") from err
    if payload["kind"] == "noisy_classifier" and "pool" not in payload["arch"]:
        # An arch saved without the key: its weights say which head it has (mean-pooled
        # classifiers predate attention pooling, and have no positional embedding).
        attention = any(key.endswith("positional_embedding") for key in payload["state_dict"])
        payload["arch"]["pool"] = "attention" if attention else "mean"
    model = build_network(payload["kind"], payload["arch"]).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval().requires_grad_(False)
    return model, payload
