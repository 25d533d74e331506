"""Names shared by the workflow and the package: which model a network name is, which guidance a
method name uses. Kept free of heavy imports, since the Snakefile imports it at parse time."""

# The papers' symbol for each method's guidance scale: H&S's w, D&N's s.
SCALE_SYMBOLS = {"cfg": "w", "cg": "s", "cond_cg": "s"}


def is_conditional(network: str) -> bool:
    """The conditional eps-model, or one of its p_uncond variants conditional_p<p>."""
    return network == "conditional" or network.startswith("conditional_p")


def base_method(method: str) -> str:
    """cfg_p<p> (classifier-free guidance of the p_uncond = p model) guides as cfg."""
    return "cfg" if method.startswith("cfg_p") else method


def scale_tag(value) -> str:
    """A guidance scale (or p_uncond) as it appears in file names: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(value):g}"
