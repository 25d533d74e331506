"""openai/guided-diffusion's sampling algorithm, rewritten from its code for the peer test.

Read from guided_diffusion/gaussian_diffusion.py (``p_mean_variance``, ``condition_mean``,
``condition_score``, ``p_sample``, ``ddim_sample``) and respace.py (``space_timesteps``,
``SpacedDiffusion``) at commit 169a6e8; nothing is imported from it. Tables are float64 numpy as
there; the model and classifier gradient are called with the ORIGINAL timestep of the respaced
index (guided-diffusion's _WrappedModel and the wrapped cond_fn), and the caller passes the noise
so that both implementations can be fed the same draws. Only what diffguide claims to follow is
here: eps prediction, fixed variances ("fixedsmall" = beta~, "fixedlarge" = beta) and the
learned-range interpolation with a fixed fraction v.
"""

from __future__ import annotations

import numpy as np
import torch


def space_timesteps(num_timesteps: int, section_counts: str) -> set[int]:
    """respace.py: "ddimN" is range(0, T, stride) with the stride that gives N steps; "N" (one
    section) takes N steps at a fractional stride (T-1)/(N-1), rounded."""
    if section_counts.startswith("ddim"):
        desired = int(section_counts[len("ddim"):])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == desired:
                return set(range(0, num_timesteps, stride))
        raise ValueError(f"cannot create exactly {desired} steps with an integer stride")
    count = int(section_counts)  # one section spanning all of [0, T)
    frac_stride = 1 if count <= 1 else (num_timesteps - 1) / (count - 1)
    cur_idx, taken = 0.0, []
    for _ in range(count):
        taken.append(round(cur_idx))
        cur_idx += frac_stride
    return set(taken)


def _extract(table: np.ndarray, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    values = torch.from_numpy(table)[index].to(like.dtype)
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class GuidedDiffusionReference:
    """SpacedDiffusion over ``base_betas`` at ``use_timesteps``, indices i = 0 .. K-1 (i = 0 is
    the least noisy). ``var_type``: "fixedsmall", "fixedlarge" or "learned_range" (with v)."""

    def __init__(self, base_betas: np.ndarray, use_timesteps: set[int], var_type: str, v: float = 0.0):
        base_abar = np.cumprod(1.0 - base_betas)
        self.timestep_map, new_betas, last = [], [], 1.0
        for i, abar in enumerate(base_abar):  # SpacedDiffusion.__init__
            if i in use_timesteps:
                new_betas.append(1 - abar / last)
                last = abar
                self.timestep_map.append(i)
        betas = np.array(new_betas, dtype=np.float64)
        self.betas, self.var_type, self.v = betas, var_type, v
        self.alphas_cumprod = np.cumprod(1.0 - betas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - self.alphas_cumprod)

    def original_t(self, i: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.timestep_map, dtype=torch.long)[i]

    def predict_xstart_from_eps(self, x, i, eps):
        return _extract(self.sqrt_recip_alphas_cumprod, i, x) * x - _extract(self.sqrt_recipm1_alphas_cumprod, i, x) * eps

    def predict_eps_from_xstart(self, x, i, xstart):
        return (_extract(self.sqrt_recip_alphas_cumprod, i, x) * x - xstart) / _extract(self.sqrt_recipm1_alphas_cumprod, i, x)

    def q_posterior_mean(self, xstart, x, i):
        return _extract(self.posterior_mean_coef1, i, x) * xstart + _extract(self.posterior_mean_coef2, i, x) * x

    def model_variance(self, i, x):
        """(variance, log variance) of p_mean_variance for the fixed and learned-range types."""
        if self.var_type == "fixedlarge":
            table = np.append(self.posterior_variance[1], self.betas[1:])
            return _extract(table, i, x), _extract(np.log(table), i, x)
        if self.var_type == "fixedsmall":
            return _extract(self.posterior_variance, i, x), _extract(self.posterior_log_variance_clipped, i, x)
        frac = (self.v * 2 - 1 + 1) / 2  # the model's var output 2v - 1 in [-1, 1] mapped to [0, 1]
        log_var = frac * _extract(np.log(self.betas), i, x) + (1 - frac) * _extract(self.posterior_log_variance_clipped, i, x)
        return log_var.exp(), log_var

    def p_mean_variance(self, model, x, i, y, clip_denoised: bool) -> dict:
        eps = model(x, self.original_t(i), y)
        xstart = self.predict_xstart_from_eps(x, i, eps)
        if clip_denoised:
            xstart = xstart.clamp(-1, 1)
        variance, log_variance = self.model_variance(i, x)
        return {"mean": self.q_posterior_mean(xstart, x, i), "variance": variance, "log_variance": log_variance,
                "pred_xstart": xstart}

    def condition_mean(self, cond_fn, out, x, i, y):
        return out["mean"] + out["variance"] * cond_fn(x, self.original_t(i), y)

    def condition_score(self, cond_fn, out, x, i, y):
        abar = _extract(self.alphas_cumprod, i, x)
        eps = self.predict_eps_from_xstart(x, i, out["pred_xstart"])
        eps = eps - (1 - abar).sqrt() * cond_fn(x, self.original_t(i), y)
        out = dict(out)
        out["pred_xstart"] = self.predict_xstart_from_eps(x, i, eps)
        out["mean"] = self.q_posterior_mean(out["pred_xstart"], x, i)
        return out

    def p_sample(self, model, x, i, y, noise, clip_denoised=True, cond_fn=None):
        out = self.p_mean_variance(model, x, i, y, clip_denoised)
        nonzero = (i != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        if cond_fn is not None:
            out["mean"] = self.condition_mean(cond_fn, out, x, i, y)
        return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise

    def ddim_sample(self, model, x, i, y, noise, clip_denoised=True, cond_fn=None, eta=0.0):
        out = self.p_mean_variance(model, x, i, y, clip_denoised)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, i, y)
        eps = self.predict_eps_from_xstart(x, i, out["pred_xstart"])
        abar = _extract(self.alphas_cumprod, i, x)
        abar_prev = _extract(self.alphas_cumprod_prev, i, x)
        sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar)) * torch.sqrt(1 - abar / abar_prev)
        mean_pred = out["pred_xstart"] * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma**2) * eps
        nonzero = (i != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return mean_pred + nonzero * sigma * noise
