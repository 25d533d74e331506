"""Training-free guidance (issue 28), declared: DPS (Chung et al. 2023), FreeDoM (Yu et al. 2023), MPGD
(He et al. 2024), UGD (Bansal et al. 2023) and TFG (Ye et al. 2024), each one setting of TFG's unified
step (diffguide.guidance.training_free). They guide the UNCONDITIONAL model, as classifier guidance
does, but by a classifier of clean images (the network guide_classifier) applied to the model's own
x0 estimate, never by the noisy classifier. The builders are wrapper.py.

Each method's scale is its paper's strength: DPS's zeta and FreeDoM's rho (x_{t'} += scale grad_{x_t}
log f(x0_hat)), MPGD's c (x_0 += c grad_{x_0} log f), UGD's s (both its forward and backward
strength) and TFG's rho (its mu = guidance.tfg_mu_ratio * rho). Scale 0 is the unguided model.
"""

from __future__ import annotations

from diffguide.registry import Method, Option, Scales

ORDER = 11  # its place in the registry and the report: after the testbed

# The clean guide classifier f(y | x_0), loaded in the role "clean_classifier" (TFG measures with
# a different classifier than the one that guides; so does every run here: eval_classifier).
CLEAN_CLASSIFIER = (("clean_classifier", "guide_classifier"),)

FREEDOM_RECURRENCES = Option(
    "freedom_recurrences",
    2,
    "FreeDoM's time travel: tries of each step, renoised back to t in between (Yu et al. 2023's r; 1: no time travel)",
    type="integer",
    minimum=1,
    fix="set it to an integer >= 1; each try costs a whole guided step",
)
UGD_RECURRENCES = Option(
    "ugd_recurrences",
    2,
    "UGD's self-recurrence: tries of each step, renoised back to t in between (Bansal et al. 2023's k)",
    type="integer",
    minimum=1,
    fix="set it to an integer >= 1; each try costs a whole guided step",
)
UGD_BACKWARD_STEPS = Option(
    "ugd_backward_steps",
    1,
    "UGD's backward guidance: gradient steps on log f in x_0 space (Bansal et al. 2023's m)",
    type="integer",
    minimum=1,
    fix="set it to an integer >= 1",
)
TFG_MU_RATIO = Option(
    "tfg_mu_ratio",
    0.25,
    "TFG's variance-guidance weight as a share of its mean-guidance weight: mu = ratio * rho "
    "(TFG's CIFAR-10 label guidance: rho = 1, mu = 0.25)",
    minimum=0,
    fix="set it to a number >= 0 (0: TFG's mean guidance alone)",
)
TFG_INNER_STEPS = Option(
    "tfg_inner_steps",
    4,
    "TFG's N_iter: gradient steps of its variance guidance in x_0 space (its CIFAR-10 script: 4)",
    type="integer",
    minimum=1,
    fix="set it to an integer >= 1",
)
TFG_RECURRENCES = Option(
    "tfg_recurrences",
    1,
    "TFG's N_recur: tries of each step, renoised back to t in between (its CIFAR-10 script: 1)",
    type="integer",
    minimum=1,
    fix="set it to an integer >= 1; each try costs a whole guided step",
)
TFG_SCHEDULE = Option(
    "tfg_schedule",
    "increase",
    "TFG's schedule of rho and mu over the chain, each normalised to mean 1: increase (alpha_t, its "
    "default), decrease (1 - alpha_t) or constant",
    type="string",
    enum=("increase", "decrease", "constant"),
)

BUILDERS = "diffguide.guidance.methods.training_free.wrapper"


def _method(name, symbol, label, caption, options=(), scales=(0, 1, 2, 4)) -> Method:
    return Method(
        name,
        symbol,
        f"{label} ({symbol})",
        f"{label} of the unconditional model by the clean guide classifier, columns: {symbol}",
        caption,
        eps_model="unconditional",
        builder=f"{BUILDERS}:build_{name}",
        guides=CLEAN_CLASSIFIER,
        options=options,
        scales=Scales(scales, f"{label}'s strength {symbol} on the unconditional model ({symbol} = 0: unguided)"),
        group="training_free",
    )


METHODS = (
    _method("dps", "zeta", "DPS",
            "DPS (Chung et al. 2023, Alg. 1, log f(y | x0_hat) in place of -||y - A(x0_hat)||^2): the unguided "
            "step plus zeta grad_{x_t} log f(y | x0_hat(x_t)), through the eps-model; TFG with rho_t = zeta "
            "sqrt(alpha_t).", scales=(0, 0.5, 1, 2)),
    _method("freedom", "rho", "FreeDoM",
            "FreeDoM (Yu et al. 2023): DPS's step with time travel, each step taken "
            "guidance.freedom_recurrences times and renoised back to t in between.",
            options=(FREEDOM_RECURRENCES,), scales=(0, 0.5, 1, 2)),
    _method("mpgd", "c", "MPGD",
            "MPGD (He et al. 2024, Alg. 1): x0_hat moved by c grad_{x_0} log f(y | x_0), no Jacobian of the "
            "eps-model, then the unguided step from it; TFG with mu = c and one inner step.",
            scales=(0, 0.5, 1, 2)),
    _method("ugd", "s", "UGD",
            "UGD (Bansal et al. 2023): forward guidance eps - s sqrt(1 - abar_t) grad_{x_t} log f(y | x0_hat), "
            "guidance.ugd_backward_steps steps of s grad_{x_0} log f in x_0, and guidance.ugd_recurrences "
            "tries per step; the guided eps renoises.",
            options=(UGD_RECURRENCES, UGD_BACKWARD_STEPS), scales=(0, 0.5, 1, 2)),
    _method("tfg", "rho", "TFG",
            "TFG (Ye et al. 2024, Alg. 1): mean guidance rho_t grad_{x_t} log f(y | x0_hat) and variance "
            "guidance, guidance.tfg_inner_steps steps of mu_t grad_{x_0} log f, mu = guidance.tfg_mu_ratio rho, "
            "both on guidance.tfg_schedule.",
            options=(TFG_MU_RATIO, TFG_INNER_STEPS, TFG_RECURRENCES, TFG_SCHEDULE), scales=(0, 0.5, 1, 2)),
)
