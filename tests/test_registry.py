"""The registry: one parser and one formatter of method and network names, the wiring of each
method to the models it needs, and a new method added as one registry row."""

from __future__ import annotations

import re

import pytest

from diffguide import registry
from diffguide.registry import Method, parse_method, parse_network, variant_name


@pytest.mark.parametrize("name, base, p", [("cfg", "cfg", None), ("cg", "cg", None), ("cond_cg", "cond_cg", None),
                                           ("cfg_p0.5", "cfg", 0.5), ("cfg_p0.05", "cfg", 0.05)])
def test_method_names_parse_and_format_back(name, base, p):
    parsed = parse_method(name)
    assert (parsed.method.name, parsed.p_uncond) == (base, p)
    assert variant_name(base, p) == parsed.name == name


@pytest.mark.parametrize("name, base, p", [("unconditional", "unconditional", None), ("conditional_p0.2", "conditional", 0.2),
                                           ("noisy_classifier", "noisy_classifier", None)])
def test_network_names_parse_and_format_back(name, base, p):
    parsed = parse_network(name)
    assert (parsed.network.name, parsed.p_uncond) == (base, p)
    assert variant_name(base, p) == parsed.name == name


@pytest.mark.parametrize("name", ["cg_p0.5", "cond_cg_p0.1", "cfg_px", "cfgp0.5", "toy", "noisy_classifier_p0.5"])
def test_names_without_a_row_or_a_variant_are_refused_with_the_known_names(name):
    with pytest.raises(ValueError, match="known: .*cfg_p<p>|unknown network"):
        parse_method(name) if not name.startswith("noisy") else parse_network(name)


def test_wildcard_patterns_match_exactly_the_parseable_names():
    methods, networks = re.compile(f"^({registry.method_pattern()})$"), re.compile(f"^({registry.network_pattern()})$")
    for name in ("cfg", "cg", "cond_cg", "cfg_p0.5"):
        assert methods.match(name), name
    for name in ("cg_p0.5", "cond", "cfg_p", "x"):
        assert not methods.match(name), name
    for name in ("unconditional", "conditional", "conditional_p0.5", "noisy_classifier", "eval_classifier"):
        assert networks.match(name), name
    assert not networks.match("unconditional_p0.5")


@pytest.mark.parametrize("name, scale, models", [
    ("cfg", 3.0, {"eps_model": "conditional"}),
    ("cfg_p0.5", 3.0, {"eps_model": "conditional_p0.5"}),
    ("cg", 0.0, {"eps_model": "unconditional"}),  # scale 0: the unguided model, no classifier
    ("cg", 2.0, {"eps_model": "unconditional", "classifier": "noisy_classifier"}),
    ("cond_cg", 1.0, {"eps_model": "conditional", "classifier": "noisy_classifier"}),
])
def test_each_method_needs_the_models_of_its_paper(name, scale, models):
    assert parse_method(name).models(scale) == models


def test_run_methods_add_one_sweep_per_p_uncond_and_run_networks_one_model():
    methods = registry.run_methods({"methods": ["cfg", "cg"]}, [0.5, 0.3])
    assert methods == ["cfg", "cg", "cfg_p0.5", "cfg_p0.3"]
    assert registry.run_networks([0.5]) == ["unconditional", "conditional", "noisy_classifier", "eval_classifier",
                                            "conditional_p0.5"]


def test_labels_symbols_and_keys_come_from_the_row():
    assert registry.method_label("cfg_p0.5") == "classifier-free, conditional model p_uncond=0.5 (w)"
    assert registry.method_symbol("cond_cg") == "s" and registry.method_symbol("unknown") == "scale"
    assert parse_method("cfg_p0.5").method.scales_key == "guidance.cfg_scales"
    assert parse_method("cfg_p0.5").title.endswith("(p_uncond = 0.5)")


def test_a_registered_method_is_known_everywhere_until_unregistered():
    toy = Method("toy", "g", "toy (g)", "toy, columns: g", "A toy.", eps_model="unconditional",
                 needs_classifier=False, builder="diffguide.guidance:build_classifier_free")
    registry.register_method(toy)
    try:
        assert parse_method("toy").method is toy
        assert re.fullmatch(registry.method_pattern(), "toy")
    finally:
        registry.unregister_method("toy")
    with pytest.raises(ValueError):
        parse_method("toy")


def test_a_method_must_name_a_registered_eps_model():
    with pytest.raises(ValueError, match="not a registered network"):
        registry.register_method(Method("bad", "g", "bad", "bad", "bad", eps_model="nope", needs_classifier=False,
                                        builder="x:y"))


def test_what_the_snakefile_imports_at_parse_time_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, diffguide.registry, diffguide.config_checks, diffguide.config_schema, diffguide.integrity, "
            "diffguide.training_keys, diffguide.inception_weights; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
