"""Improved precision and recall (Kynkäänniemi et al. 2019, arXiv 1904.06991), k = 3.

The manifold of a feature set is the union of balls, one around each feature, whose radius is
the distance to that feature's k-th nearest neighbour in the same set (the feature itself is not
counted: it is the 0-th neighbour, at distance 0). Then

    precision = fraction of generated features inside the real manifold,
    recall    = fraction of real features inside the generated manifold.

This follows guided-diffusion's evaluator (``ManifoldEstimator``, k = 3, the closed ball
``distance <= radius``), in float64 instead of its float16/float32. The ``prdc`` package uses the
open ball (``<``); the two differ only for a distance exactly equal to a radius. Distances are
computed blockwise (``batch_size`` rows against ``batch_size`` columns at a time), so memory is
O(batch_size^2) whatever the set sizes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def _as_tensor(features, device) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64, device=device)
    if x.ndim != 2:
        raise ValueError(f"expected [N, D] features, got shape {tuple(x.shape)}")
    return x


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 as ||a||^2 - 2 a.b + ||b||^2 (as sklearn and guided-diffusion), clamped at 0."""
    d = (a * a).sum(1)[:, None] - 2.0 * (a @ b.T) + (b * b).sum(1)[None, :]
    return d.clamp_min_(0.0)


def _squared_radii(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Squared distance from each row of x to its k-th nearest neighbour in x, itself excluded."""
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < number of features, got k={k}, n={n}")
    radii = torch.empty(n, dtype=torch.float64, device=x.device)
    for r0 in range(0, n, batch_size):
        rows = x[r0:r0 + batch_size]
        best = torch.full((len(rows), 0), float("inf"), dtype=torch.float64, device=x.device)
        for c0 in range(0, n, batch_size):
            d = _squared_distances(rows, x[c0:c0 + batch_size])
            # A feature's distance to itself is exactly 0 (the 0-th neighbour).
            lo, hi = max(r0, c0), min(r0 + len(rows), c0 + d.shape[1])
            if lo < hi:
                i = torch.arange(lo, hi, device=x.device)
                d[i - r0, i - c0] = 0.0
            best = torch.cat([best, d], dim=1)
            best = torch.topk(best, min(k + 1, best.shape[1]), dim=1, largest=False).values
        radii[r0:r0 + len(rows)] = best.max(dim=1).values  # the (k+1)-th smallest, self included
    return radii


def manifold_radii(features, k: int = 3, batch_size: int = 4096, device=None) -> np.ndarray:
    """Distance from each feature to its k-th nearest neighbour in the same set (float64)."""
    return _squared_radii(_as_tensor(features, device), k, batch_size).sqrt().cpu().numpy()


def precision_recall(real_features, fake_features, k: int = 3, batch_size: int = 4096, device=None,
                     real_radii: np.ndarray | None = None) -> PrecisionRecall:
    """Improved precision and recall of generated (``fake``) against real features.

    ``real_radii`` (from ``manifold_radii(real_features, k)``) can be passed to reuse the real
    manifold across many generated sets.
    """
    real = _as_tensor(real_features, device)
    fake = _as_tensor(fake_features, device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} and {fake.shape[1]}")
    if real_radii is None:
        real_r2 = _squared_radii(real, k, batch_size)
    else:
        real_r2 = torch.as_tensor(np.asarray(real_radii), dtype=torch.float64, device=real.device) ** 2
        if real_r2.shape != (len(real),):
            raise ValueError("real_radii must have one radius per real feature")
    fake_r2 = _squared_radii(fake, k, batch_size)

    fake_in_real = torch.zeros(len(fake), dtype=torch.bool, device=real.device)
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for r0 in range(0, len(real), batch_size):
        r = real[r0:r0 + batch_size]
        for f0 in range(0, len(fake), batch_size):
            d = _squared_distances(r, fake[f0:f0 + batch_size])  # [real block, fake block]
            fake_in_real[f0:f0 + d.shape[1]] |= (d <= real_r2[r0:r0 + d.shape[0], None]).any(dim=0)
            real_in_fake[r0:r0 + d.shape[0]] |= (d <= fake_r2[None, f0:f0 + d.shape[1]]).any(dim=1)
    return PrecisionRecall(precision=float(fake_in_real.double().mean()),
                           recall=float(real_in_fake.double().mean()))
