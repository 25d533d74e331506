"""The second-order (Laplace) rule of classifier guidance on trained models (issue 28), declared.

Classifier guidance's mean shift (D&N Alg. 1, seed eqs. 1.5-1.10) expands log p_phi(y | x) to first
order around x_t. The seed asks whether a higher-order expansion does better; on the exact mixtures
(`make approximations`, diffguide.exact.step_rules.laplace) the expansion to the Hessian H,

    x_{t'} ~ N(P^-1 (mu / Sigma + s g - s H x_t), P^-1),   P = I / Sigma - s H,

is 2.3 to 2.6 times closer to the exact step than the first-order rule on the exact base, and worse
on the base N(mu, Sigma I) the samplers use. ``cg_laplace`` samples it on the trained models, where H
is never formed: Lanczos iterations of Hessian-vector products solve with P and draw its noise
(second_order/wrapper.py). Ancestral DDPM only, as the mean shift (it needs the step's Sigma).
"""

from __future__ import annotations

from diffguide.guidance.methods.papers import CLASSIFIER
from diffguide.registry import Method, Option, Scales

ORDER = 12  # after training-free guidance: both are issue 28's comparison with classifier guidance

LANCZOS_STEPS = Option(
    "laplace_lanczos_steps",
    6,
    "Lanczos iterations per solve of the Laplace rule (cg_laplace): each costs one Hessian-vector product of "
    "the noisy classifier, and a step takes two solves (its mean and its noise) plus one product; k equal to "
    "the data's dimension is the exact rule",
    type="integer",
    minimum=1,
    fix="set it to an integer >= 1 (6 is converged on the default run's models; see config/README.md)",
)

METHODS = (
    Method(
        "cg_laplace",
        "s",
        "second-order classifier guidance, unconditional model (s)",
        "second-order (Laplace) classifier guidance of the unconditional model, columns: s",
        "Classifier guidance with log p_phi(y | x) expanded to its Hessian around x_t (the seed's "
        "higher-order expansion of eq. 1.5): each ancestral step draws N(P^-1 (mu / Sigma + s g - s H x_t), "
        "P^-1), P = I / Sigma - s H, solved by guidance.laplace_lanczos_steps Lanczos iterations; the mean "
        "shift (cg with cg_form: mean) where P is not positive definite.",
        eps_model="unconditional",
        builder="diffguide.guidance.methods.second_order.wrapper:build_cg_laplace",
        guides=CLASSIFIER,
        options=(LANCZOS_STEPS,),
        scales=Scales((0, 1, 2, 5, 10), "classifier scales s of the Laplace rule on the unconditional model "
                      "(s = 0: unguided)"),
    ),
)
