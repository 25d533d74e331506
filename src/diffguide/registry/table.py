"""The table of registered networks and methods: the networks (written here), the built-in methods
(each unit of diffguide.guidance.methods declares its own; listed and registered when the table is
first read) and a plugin's (registered at its import)."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

from diffguide.registry.declarations import Method, Network


@dataclass
class Registry:
    """The registered networks and methods. The built-in methods are read from their declarations
    (builtin_units) when the table is first used, not when this module is imported: a unit's
    declaration imports this module for Method and Option, so a unit imported first must find it
    importable without the units."""

    networks: dict[str, Network] = field(default_factory=dict)
    registered: dict[str, Method] = field(default_factory=dict)
    builtins_loaded: bool = False

    @property
    def methods(self) -> dict[str, Method]:
        if not self.builtins_loaded:
            self.builtins_loaded = True
            for unit in builtin_units():  # register_method reads this property: the flag is set first
                for method in unit.METHODS:
                    register_method(method)
        return self.registered


REGISTRY = Registry()


def register_network(network: Network) -> Network:
    REGISTRY.networks[network.name] = network
    return network


def register_method(method: Method) -> Method:
    """Add (or replace) a guidance method; a plugin module calls this at import."""
    for role, network in (("eps_model", method.eps_model), *method.guides):
        if network not in REGISTRY.networks:
            raise ValueError(f"method {method.name!r}: {role} {network!r} is not a registered network")
    REGISTRY.methods[method.name] = method
    return method


def unregister_method(name: str) -> None:
    REGISTRY.methods.pop(name, None)


def load_plugins(modules) -> None:
    """Import the config's ``plugins`` (module names), each registering its methods."""
    for module in modules or ():
        importlib.import_module(module)


# The networks. The rule graph reads as the papers' method: the eps-models (H&S Algorithm 1), the
# noisy classifier (D&N section 4), and the evaluation classifier, which only measures.
for _network in (
    Network("unconditional", "eps_unet", "unet", "diffusion",
            "eps-model without labels, the model classifier guidance steers (D&N section 4)"),
    Network("conditional", "eps_unet", "unet", "diffusion",
            "eps-model with labels dropped to the null class with probability p_uncond (H&S Algorithm 1)",
            takes_labels=True, p_uncond_variants=True),
    Network("noisy_classifier", "noisy_classifier", "noisy_classifier", "noisy_classifier",
            "classifier p_phi(y | x_t, t) of noised images, whose gradient guides (D&N section 4)", takes_labels=True),
    Network("eval_classifier", "eval_classifier", "eval_classifier", "clean_classifier",
            "classifier of clean images whose features and predictions measure the samples", takes_labels=True),
    # Training-free guidance's guide (issue 28): a classifier of clean images like the evaluation
    # classifier (its architecture), but trained on the other half of the train split, so the
    # instrument that grades the samples never guides them (TFG measures with another classifier too).
    Network("guide_classifier", "eval_classifier", "eval_classifier", "clean_classifier",
            "classifier f(y | x_0) of clean images whose gradient at x0_hat guides training-free guidance (TFG)",
            takes_labels=True),
    # Semantic diffusion guidance's encoders (Liu et al. 2021): a CLIP-style image / class-name
    # encoder pair trained contrastively here (no CLIP weights offline), then its image encoder
    # fine-tuned on noised images x_t (SDG sec. 3.3) into the E~ whose similarity guides.
    # Autoguidance's weak model (Karras et al. 2024): the conditional eps-model's conditioning, a
    # smaller network (networks.weak_unet) trained for fewer steps (training.weak_conditional).
    Network("weak_conditional", "eps_unet", "weak_unet", "diffusion",
            "smaller, shorter-trained conditional eps-model that autoguidance guides away from (Karras et al. 2024)",
            takes_labels=True),
    Network("clip", "clip", "clip", "clip_contrastive",
            "joint clean-image / class-name encoder E, T trained with a CLIP-style contrastive loss (SDG sec. 3.3)",
            takes_labels=True),
    Network("noisy_image_encoder", "noisy_image_encoder", "clip", "noisy_embedding",
            "image encoder E~(x_t, t) fine-tuned from clip's E on noised images (SDG sec. 3.3)",
            takes_labels=True, init_from="clip"),
):
    register_network(_network)



# The guidance methods: each unit of diffguide.guidance.methods declares its own (METHODS in its
# torch-free __init__, the implementation beside it in wrapper.py) and its place in the report
# (ORDER: the papers' methods first, then similarity guidance, then the testbed in the order its
# methods were added). They are imported here by name, as the config's plugins are, so that this
# table is whole whenever anything reads it and no file but each unit's own lists a method.
METHOD_UNITS = "diffguide.guidance.methods"


def builtin_units() -> list:
    """The units of diffguide.guidance.methods (their __init__ modules), in their declared ORDER."""
    package = importlib.import_module(METHOD_UNITS)
    units = [importlib.import_module(f"{METHOD_UNITS}.{info.name}")
             for info in pkgutil.iter_modules(package.__path__) if info.ispkg]
    for unit in units:
        if not isinstance(getattr(unit, "ORDER", None), int) or not getattr(unit, "METHODS", None):
            raise ValueError(f"{unit.__name__}: a unit of {METHOD_UNITS} declares ORDER (an int, its place in "
                             "the report) and METHODS (its Method declarations) in its __init__")
    orders = [unit.ORDER for unit in units]
    if len(set(orders)) != len(orders):
        raise ValueError(f"units of {METHOD_UNITS} share an ORDER: {sorted(orders)}; give each its own number")
    return sorted(units, key=lambda unit: unit.ORDER)


def group_methods(group: str) -> tuple[str, ...]:
    """The registered methods of one of GROUPS, in registry order."""
    return tuple(name for name, method in REGISTRY.methods.items() if method.group == group)
