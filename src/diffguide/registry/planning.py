"""What a run trains and samples, from its config's methods: the Snakefile's plan (run_methods,
run_networks) and each network's training block (training_block)."""

from __future__ import annotations

from diffguide.registry.names import parse_method, parse_network, variant_name
from diffguide.registry.table import REGISTRY


# Keys of a training block that name other models, not this one's training.
NAMING_KEYS = ("p_uncond_sweep",)


def training_block(training: dict, network: str) -> dict:
    """A network's training settings from the config's training section: its own block, and for
    conditional_p<p> the conditional block at p_uncond = p; keys that only name other models
    (p_uncond_sweep) left out. A section already keyed by the full name (a rule's params) is
    read as it is."""
    if network in training:
        block = training[network]
    else:
        parsed = parse_network(network)
        block = {**training[parsed.network.name], "p_uncond": parsed.p_uncond}
    return {key: value for key, value in block.items() if key not in NAMING_KEYS}


def run_methods(guidance: dict, p_uncond_sweep) -> list[str]:
    """The sweeps a run samples: guidance.methods, then each method with p_uncond variants once
    more per training.conditional.p_uncond_sweep value (cfg_p<p>)."""
    methods = list(guidance["methods"])
    variants = [m for m in methods if REGISTRY.methods[m].p_uncond_variants]
    return methods + [variant_name(m, p) for p in p_uncond_sweep for m in variants]


def run_networks(methods) -> list[str]:
    """The networks a run trains: those its sweeps (run_methods) load, at any scale, the networks
    they start from (``init_from``), and the evaluation classifier, which measures every sweep; in
    registry order, the p_uncond variants last. A run without classifier guidance trains no noisy
    classifier, one without similarity guidance no encoders."""
    wanted = {"eval_classifier"}
    for name in methods:
        parsed = parse_method(name)
        wanted |= {parsed.eps_model, *(network for _, network in parsed.method.guides)}
    pending = list(wanted)
    while pending:  # what the wanted networks start from, and what that starts from
        start = REGISTRY.networks[parse_network(pending.pop()).network.name].init_from
        if start and start not in wanted:
            wanted.add(start)
            pending.append(start)
    order = list(REGISTRY.networks)
    return sorted(wanted, key=lambda n: (n not in REGISTRY.networks, order.index(parse_network(n).network.name), n))
