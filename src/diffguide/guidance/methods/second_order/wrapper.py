"""The Laplace rule of classifier guidance as an ancestral step's hook (cg_laplace; declared in
__init__.py, its exact twin on the mixtures is diffguide.exact.step_rules.laplace).

With mu and Sigma the unguided ancestral step's mean and variance (DDPM eq. 7, beta~), g and H the
gradient and Hessian of log p_phi(y | x, t) at x_t, the step to x_{t'} multiplies N(mu, Sigma I) by
exp(s [g.(x - x_t) + (x - x_t)^T H (x - x_t) / 2]) (seed eq. 1.5 to second order) and completes the
square. Written with A = I - Sigma s H (so the precision is P = A / Sigma):

    mean   = mu + Sigma A^-1 b,     b = s g + s H (mu - x_t)
    x_{t'} = mean + sqrt(Sigma) A^-1/2 z

which at H = 0 is the mean shift mu + Sigma s g (D&N Alg. 1) with the same noise. A has the image's
d = C H W dimensions, so it is never formed: A^-1 b and A^-1/2 z are each k Lanczos iterations
(Golub & Van Loan, sec. 10.1) of the product v -> v - Sigma s H v, whose H v is one double backward
through the classifier. Lanczos gives A restricted to the Krylov space of its start vector as a k x k
tridiagonal T; f(A) v ~ |v| Q f(T) e1 (k = d is exact up to round-off). The rule exists where P,
hence A, is positive definite. Where T (of either solve) has an eigenvalue <= 0 the row takes the
mean shift instead, as the exact rule does; with k < d this sees only the curvature within the
Krylov spaces, so on trained models "positive definite" means "positive definite where we looked".
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffguide.diffusion.schedules import NoiseSchedule
from diffguide.guidance.methods.second_order import LANCZOS_STEPS
from diffguide.guidance.wrappers import ClassifierLogProb, ClipDenoised, Guided, WithoutLabels

Product = Callable[[torch.Tensor], torch.Tensor]  # [B, d] -> [B, d], row by row


def gradient_and_hessian_product(classifier: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                                 y: torch.Tensor) -> tuple[torch.Tensor, Product]:
    """g = grad_x log p_phi(y | x, t) at x_t, flattened [B, d], and v -> H v, H its Hessian there:
    the backward of g.v, through the graph of g kept (rows are independent, so the summed log-probs
    give each row's own derivatives). Attention runs on PyTorch's math kernel, the one CPU kernel
    that is twice differentiable. Computed in float32 at least (float64 stays float64)."""
    log_prob = ClassifierLogProb(classifier)
    dtype = torch.promote_types(x_t.dtype, torch.float32)
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        x_in = x_t.detach().to(dtype).requires_grad_(True)
        values = log_prob(x_in, t).to(dtype)
        (grad,) = torch.autograd.grad(values[torch.arange(len(y)), y].sum(), x_in, create_graph=True)

    def hessian_product(v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            (product,) = torch.autograd.grad(grad, x_in, grad_outputs=v.reshape(x_in.shape).to(dtype),
                                             retain_graph=True)
        return product.flatten(1)

    return grad.detach().flatten(1), hessian_product


def lanczos(product: Product, start: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k = ``steps`` Lanczos iterations of the symmetric ``product`` from ``start`` [B, d], row by row:
    the orthonormal basis Q [B, k, d] of the Krylov space, the tridiagonal T = Q A Q^T [B, k, k] (in
    float64) and |start| [B]. Each new vector is orthogonalised against all earlier ones (full
    reorthogonalisation: k is small, and float32 loses orthogonality otherwise). Where a row's Krylov
    space closes early (A v in span of the earlier vectors: the answer is already exact) its later
    vectors are 0 and their block of T is the identity, decoupled, so it changes neither f(T) e1 nor
    the sign of T's eigenvalues. A row whose start is zero gets Q = 0."""
    norm = start.norm(dim=1)
    q = start / norm.clamp_min(torch.finfo(start.dtype).tiny)[:, None]
    open_rows = norm > 0
    basis, diagonal, off_diagonal = [], [], []
    for j in range(steps):
        basis.append(q)
        w = product(q)
        alpha = (w * q).sum(1)
        diagonal.append(torch.where(open_rows, alpha, torch.ones_like(alpha)))
        for earlier in basis:
            w = w - (w * earlier).sum(1, keepdim=True) * earlier
        if j == steps - 1:
            break
        beta = w.norm(dim=1)
        # closed: what is left of A q is round-off of the product's size
        open_rows = open_rows & (beta > 1e3 * torch.finfo(w.dtype).eps * alpha.abs().clamp_min(1))
        beta = torch.where(open_rows, beta, torch.zeros_like(beta))
        off_diagonal.append(beta)
        q = torch.where(open_rows[:, None], w / beta.clamp_min(torch.finfo(w.dtype).tiny)[:, None], torch.zeros_like(w))
    tridiagonal = torch.diag_embed(torch.stack(diagonal, 1).double())
    if off_diagonal:
        betas = torch.stack(off_diagonal, 1).double()
        tridiagonal = tridiagonal + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)
    return torch.stack(basis, 1), tridiagonal, norm


def apply_function(product: Product, vector: torch.Tensor, steps: int,
                   power: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A^power v by ``steps`` Lanczos iterations, |v| Q^T T^power e1, and for each row whether T is
    positive definite (where it is not, the row's value is meaningless and the caller falls back)."""
    basis, tridiagonal, norm = lanczos(product, vector, steps)
    eigenvalues, eigenvectors = torch.linalg.eigh(tridiagonal)
    positive = eigenvalues.min(dim=1).values > 0  # a zero start's T is the identity: value 0, nothing to flag
    powered = eigenvalues.clamp_min(torch.finfo(torch.float64).tiny) ** power
    coefficients = eigenvectors @ (powered * eigenvectors[:, 0, :])[..., None]  # T^power e1, [B, k, 1]
    value = (basis.double().transpose(1, 2) @ coefficients)[..., 0] * norm.double()[:, None]
    return value.to(vector.dtype), positive


class LaplaceCondFn:
    """The Laplace step as the ancestral sampler's ``cond_fn`` hook: samplers.ddpm_step calls its
    ``draw_step`` in place of a mean shift, which draws the whole step, mean and noise (module
    docstring). The other samplers refuse any cond_fn."""

    def __init__(self, classifier: torch.nn.Module, scale: float, lanczos_steps: int):
        self.classifier, self.scale, self.lanczos_steps = classifier, float(scale), int(lanczos_steps)
        self.row_steps, self.fallbacks = 0, 0  # rows drawn, and of them the rows that took the mean shift

    def draw_step(self, x, t, y, *, mean, t_prev, sigma2, noise):
        """x_{t'} of the Laplace rule from the unguided ``mean`` and variance ``sigma2`` (a scalar
        tensor), with ``noise`` z (None at the last step, which returns the mean)."""
        gradient, hessian_product = gradient_and_hessian_product(self.classifier, x, t, y)
        s, shape, flat = self.scale, x.shape, lambda v: v.flatten(1).to(gradient.dtype)
        sigma2 = sigma2.to(gradient.dtype).reshape(-1)[:1]  # one Sigma for the batch, [1] broadcasts over [B, d]
        steps = min(self.lanczos_steps, gradient.shape[1])

        def a_product(v):  # A v = v - Sigma s H v
            return v - sigma2 * s * hessian_product(v)

        b = s * gradient + s * hessian_product(flat(mean) - flat(x))
        solved, positive = apply_function(a_product, b, steps, -1.0)
        step = flat(mean) + sigma2 * solved
        if noise is not None:
            shaped, positive_too = apply_function(a_product, flat(noise), steps, -0.5)
            step, positive = step + sigma2.sqrt() * shaped, positive & positive_too
        first_order = flat(mean) + sigma2 * s * gradient + (0 if noise is None else sigma2.sqrt() * flat(noise))
        self.row_steps, self.fallbacks = self.row_steps + len(positive), self.fallbacks + int((~positive).sum())
        return torch.where(positive[:, None], step, first_order).reshape(shape).to(x.dtype)


def build_cg_laplace(models: dict, scale: float, schedule: NoiseSchedule, *, clip_x0: bool, options: dict) -> Guided:
    """cg_laplace: the unconditional model, its unguided x0 clipped as the mean shift's (cg with
    cg_form: mean), and the Laplace hook at s = scale with guidance.laplace_lanczos_steps iterations.
    At s = 0 the unguided model (the classifier, absent there, is not needed)."""
    inner = WithoutLabels(models["eps_model"])
    inner = ClipDenoised(inner, schedule) if clip_x0 else inner
    if scale == 0:
        return Guided(inner)
    classifier = models.get("classifier")
    if classifier is None:
        raise ValueError("cg_laplace: models['classifier'] is missing; the Laplace rule needs the noisy classifier")
    return Guided(inner, LaplaceCondFn(classifier, scale, LANCZOS_STEPS.value_in(options)))
