"""The sampler's random draws, seeded per sample index and owned by the caller.

As EDM's ``StackedRandomGenerator`` (NVlabs/edm generate.py), one generator per sample: the caller
draws the initial noise x_T with ``initial`` and hands the object to the sampler as its ``noise``
callable (``noise(x)``, a standard normal draw shaped like x, as EDM's ``randn_like`` or
k-diffusion's ``noise_sampler``), so the samplers know nothing of seeding.

Sample i's generator is seeded with seed * 1_000_003 + i, so its noise depends on (seed, i) only:
the batch size never changes an image, and the scales of a sweep share their noise. Draws are made
in float64 on the CPU and then cast, so the same seed gives the same image on every device and in
every sampling dtype up to that cast.
"""

from __future__ import annotations

from typing import Sequence

import torch


class PerSampleNoise:
    """Standard normal draws from one CPU generator per sample index."""

    def __init__(self, seed: int, indices: Sequence[int]):
        self.generators = [torch.Generator().manual_seed(int(seed) * 1_000_003 + int(i)) for i in indices]

    def randn(self, shape: Sequence[int], *, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """One draw of the per-sample ``shape`` from each generator, stacked: [len(indices), *shape]."""
        draws = [torch.randn(tuple(shape), generator=g, dtype=torch.float64) for g in self.generators]
        return torch.stack(draws).to(device=device, dtype=dtype)

    def initial(self, shape: Sequence[int], *, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """x_T ~ N(0, I), the sampler's starting point, for images of ``shape`` (no batch axis)."""
        return self.randn(shape, device=device, dtype=dtype)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        """z ~ N(0, I) shaped like the batch ``like``, on its device and in its dtype."""
        if len(like) != len(self.generators):
            raise ValueError(f"a batch of {len(like)} samples, but noise for {len(self.generators)} sample indices")
        return self.randn(like.shape[1:], device=like.device, dtype=like.dtype)
