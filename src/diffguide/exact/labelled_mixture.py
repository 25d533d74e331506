"""Classes made of several Gaussian components: the data the exact transition is measured on.

`gaussian_mixture.GaussianMixture` has one component per class, so its exact conditional
transition p(x_{t'} | x_t, y) is one Gaussian, and a Gaussian rule could match it exactly. Real
classes are multimodal. Here class y owns the components k with ``classes[k] = y``:

    p(x_0 | y) = sum_{k: c_k = y} pi_k N(m_k, C_k) / sum_{k: c_k = y} pi_k,    p(y) = sum_{k: c_k = y} pi_k,

and everything stays closed form under the forward process (DDPM eq. 4), component by component:

    p_t(k | x_t)    = softmax_k(log pi_k + log N(x_t; sqrt(abar_t) m_k, S_k(t)))      (responsibilities)
    p_t(y | x_t)    = sum_{k: c_k = y} p_t(k | x_t)                                   (the Bayes classifier)
    grad log p_t(y | x_t) = sum_k [p_t(k | x_t, y) - p_t(k | x_t)] grad log N_k(x_t)  (D&N eq. 12's gradient)

with p_t(k | x_t, y) the responsibilities renormalised within class y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffguide.exact.gaussian_mixture import GaussianMixture, random_mixture


@dataclass(frozen=True, eq=False)
class LabelledMixture:
    """``components`` (a GaussianMixture whose K components need not be one per class) and
    ``classes`` [K], the class of each component (0 .. C-1, every class owning at least one)."""

    components: GaussianMixture
    classes: torch.Tensor

    def __post_init__(self):
        classes = torch.as_tensor(self.classes, dtype=torch.long)
        if classes.shape != (self.components.num_classes,):
            raise ValueError(f"classes must give one class per component ({self.components.num_classes}), "
                             f"got shape {tuple(classes.shape)}")
        owned = torch.bincount(classes.clamp(min=0), minlength=int(classes.max()) + 1)
        if classes.min() < 0 or (owned == 0).any():
            raise ValueError(f"classes must number 0 .. C-1 with every class owning a component, got "
                             f"{classes.tolist()}")
        object.__setattr__(self, "classes", classes)

    @classmethod
    def one_per_class(cls, mixture: GaussianMixture) -> "LabelledMixture":
        """The GaussianMixture convention: component k is class k."""
        return cls(mixture, torch.arange(mixture.num_classes))

    @property
    def num_classes(self) -> int:
        return int(self.classes.max()) + 1

    @property
    def dim(self) -> int:
        return self.components.dim

    def membership(self) -> torch.Tensor:
        """[C, K] boolean: component k belongs to class y."""
        return self.classes[None, :] == torch.arange(self.num_classes)[:, None]

    # ------------------------------------------------------------------ noised posteriors

    def component_log_posterior(self, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """log p_t(k | x_t), [B, K], for x [B, d] and abar [B, 1]."""
        return torch.log_softmax(self.components.log_joint(x, abar), dim=-1)

    def class_log_prob(self, x: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """log p_t(y | x_t), [B, C]: the Bayes classifier, summing its components' responsibilities."""
        log_resp = self.component_log_posterior(x, abar)
        masked = torch.where(self.membership()[None], log_resp[:, None, :], -torch.inf)  # [B, C, K]
        return torch.logsumexp(masked, dim=-1)

    def in_class_log_posterior(self, x: torch.Tensor, abar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p_t(k | x_t, y), [B, K]: responsibilities renormalised within each row's class y
        (-inf for the components of other classes)."""
        log_resp = self.component_log_posterior(x, abar)
        masked = torch.where(self.classes[None, :] == y.long()[:, None], log_resp, -torch.inf)
        return torch.log_softmax(masked, dim=-1)

    def class_log_prob_grad(self, x: torch.Tensor, abar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(y | x_t), [B, d], in closed form (no autograd): the class-weighted scores
        of the components minus the marginal score."""
        _, scores = self.components.component_log_prob_and_score(x, abar)
        within = self.in_class_log_posterior(x, abar, y).exp()
        overall = self.component_log_posterior(x, abar).exp()
        return ((within - overall)[:, :, None] * scores).sum(1)

    def sample_noised(self, labels: torch.Tensor, abar: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact draws x_t ~ p_t(x_t | y), one per label: q_sample (DDPM eq. 4) of exact clean draws."""
        x0 = self.sample(labels, generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        return math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise

    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact draws x_0 ~ p(x_0 | y), one per label: a component within the class by its weight,
        then the component's Gaussian."""
        weights = torch.where(self.membership()[labels.long()], self.components.weights[None], 0.0)
        component = torch.multinomial(weights, 1, generator=generator)[:, 0]
        return self.components.sample(component, generator=generator)


def two_modes_per_class(dim: int, generator: torch.Generator, num_classes: int = 3, spread: float = 1.5,
                        min_var: float = 0.05) -> LabelledMixture:
    """A random mixture whose every class has two components (so p(x_0 | y) is bimodal), for the
    one-step error study: 2C components from `random_mixture`'s recipe."""
    components = random_mixture(2 * num_classes, dim, generator, spread=spread, min_var=min_var)
    return LabelledMixture(components, torch.arange(2 * num_classes) % num_classes)
