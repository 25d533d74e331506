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
    ("sdg_text", 0.0, {"eps_model": "unconditional"}),  # gamma 0: the unguided model, no encoders
    ("sdg_text", 10.0, {"eps_model": "unconditional", "noisy_encoder": "noisy_image_encoder", "clip": "clip"}),
    ("sdg_image", 10.0, {"eps_model": "unconditional", "noisy_encoder": "noisy_image_encoder", "clip": "clip"}),
])
def test_each_method_needs_the_models_of_its_paper(name, scale, models):
    assert parse_method(name).models(scale) == models


def test_run_methods_add_one_sweep_per_p_uncond_and_run_networks_one_model():
    methods = registry.run_methods({"methods": ["cfg", "cg"]}, [0.5, 0.3])
    assert methods == ["cfg", "cg", "cfg_p0.5", "cfg_p0.3"]
    assert registry.run_networks(registry.run_methods({"methods": ["cfg", "cg"]}, [0.5])) == [
        "unconditional", "conditional", "noisy_classifier", "eval_classifier", "conditional_p0.5"]


def test_a_run_trains_only_the_networks_its_methods_load_and_what_they_start_from():
    assert registry.run_networks(["cfg"]) == ["conditional", "eval_classifier"]
    # noisy_image_encoder starts from clip's weights (init_from), so clip is trained too
    assert registry.run_networks(["sdg_image"]) == ["unconditional", "eval_classifier", "clip", "noisy_image_encoder"]
    assert registry.parse_network("noisy_image_encoder").network.init_from == "clip"


def test_a_method_guided_by_reference_images_says_so_and_a_bad_condition_is_refused():
    assert parse_method("sdg_image").method.condition == "reference"
    assert parse_method("sdg_text").method.condition == "class"
    with pytest.raises(ValueError, match="condition 'prompt' is not one of"):
        Method("bad", "g", "bad", "bad", "bad", eps_model="unconditional", builder="x:y", condition="prompt")


def declared(**fields) -> Method:
    """A method declaration with these fields on top of a minimal valid one."""
    return Method("bad", "g", "bad", "bad", "bad", eps_model="unconditional", builder="x:y", **fields)


OPTION = registry.Option("bad_weight", 1.0, "a weight", minimum=0)
# Each field a declaration checks, a value it refuses, and the message naming method, field and
# the allowed values (found by make mutate: the checks added in issue 26 had no test of their own).
BAD_DECLARATIONS = [
    ({"scale_zero": "zero"}, "method 'bad': scale_zero 'zero' is not one of ('eps_model', 'null_label', 'own_clip')"),
    ({"options": (OPTION,), "inert_unless": (("bad_weight", "bad_mode", "on"),)},
     "method 'bad': inert_unless / role_inert_unless name options it does not declare: ['bad_mode']"),
    ({"options": (OPTION,), "role_inert_unless": (("classifier", "bad_other", 1),)},
     "method 'bad': inert_unless / role_inert_unless name options it does not declare: ['bad_other']"),
    ({"options": (OPTION,), "role_inert_unless": (("classifier", "bad_weight", 1),)},
     "method 'bad': role_inert_unless names a role it does not declare"),
    ({"condition": "prompt"}, "method 'bad': condition 'prompt' is not one of ('class', 'reference')"),
    ({"group": "extras"}, "method 'bad': group 'extras' is not one of ('papers', 'similarity', 'testbed', 'training_free')"),
    ({"options": ("bad_weight",)}, "method 'bad': options must be Option declarations (diffguide.registry.Option), "
                                   "got ('bad_weight',)"),
]


@pytest.mark.parametrize("fields, message", BAD_DECLARATIONS)
def test_each_field_of_a_declaration_is_checked_with_a_message_naming_it(fields, message):
    with pytest.raises(ValueError) as refused:
        declared(**fields)
    assert str(refused.value) == message


def test_a_declaration_within_its_allowed_values_is_accepted():
    method = declared(options=(OPTION,), guides=(("classifier", "noisy_classifier"),), scale_zero="own_clip",
                      inert_unless=(("bad_weight", "bad_weight", 1.0),),
                      role_inert_unless=(("classifier", "bad_weight", 1.0), ("eps_model", "bad_weight", 0.0)),
                      condition="reference", group="testbed")
    assert method.option_keys == ("bad_weight",) and method.defaults == {"bad_weight": 1.0}


def test_a_method_must_name_registered_guiding_networks():
    with pytest.raises(ValueError, match="method 'bad': classifier 'nope' is not a registered network"):
        registry.register_method(Method("bad", "g", "bad", "bad", "bad", eps_model="unconditional", builder="x:y",
                                        guides=(("classifier", "nope"),)))
    assert "bad" not in registry.REGISTRY.methods


def test_labels_symbols_and_keys_come_from_the_row():
    assert registry.method_label("cfg_p0.5") == "classifier-free, conditional model p_uncond=0.5 (w)"
    assert registry.method_symbol("cond_cg") == "s" and registry.method_symbol("unknown") == "scale"
    assert parse_method("cfg_p0.5").method.scales_key == "guidance.cfg_scales"
    assert parse_method("cfg_p0.5").title.endswith("(p_uncond = 0.5)")


def test_a_registered_method_is_known_everywhere_until_unregistered():
    toy = Method("toy", "g", "toy (g)", "toy, columns: g", "A toy.", eps_model="unconditional",
                 builder="diffguide.guidance.wrappers:build_classifier_free")
    registry.register_method(toy)
    try:
        assert parse_method("toy").method is toy
        assert re.fullmatch(registry.method_pattern(), "toy")
    finally:
        registry.unregister_method("toy")
    with pytest.raises(ValueError):
        parse_method("toy")


def test_training_blocks_of_variants_are_the_conditional_block_at_their_p_uncond():
    training = {"conditional": {"steps": 5, "p_uncond": 0.2, "p_uncond_sweep": [0.5]}, "unconditional": {"steps": 3}}
    assert registry.training_block(training, "conditional_p0.5") == {"steps": 5, "p_uncond": 0.5}
    assert registry.training_block(training, "conditional") == {"steps": 5, "p_uncond": 0.2}  # the sweep names others
    assert registry.training_block(training, "unconditional") == {"steps": 3}
    keyed = {"conditional_p0.5": {"steps": 7, "p_uncond": 0.5}}  # a rule's params: keyed by the full name
    assert registry.training_block(keyed, "conditional_p0.5") == {"steps": 7, "p_uncond": 0.5}


def test_plugins_are_imported_and_register_their_methods(tmp_path, monkeypatch):
    (tmp_path / "plugin_for_test.py").write_text(
        "from diffguide.registry import Method, register_method\n"
        "register_method(Method('plugged', 'g', 'plugged (g)', 't', 'c', eps_model='conditional', "
        "builder='x:y'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry.load_plugins(["plugin_for_test"])
        assert parse_method("plugged").method.symbol == "g"
    finally:
        registry.unregister_method("plugged")
    registry.load_plugins([])  # nothing to import
    registry.load_plugins(None)
    with pytest.raises(ImportError):
        registry.load_plugins(["no_such_plugin_for_test"])


def test_unregistering_leaves_the_other_methods():
    before = dict(registry.REGISTRY.methods)
    registry.unregister_method("not_registered")  # a no-op, not an error
    assert registry.REGISTRY.methods == before


def test_a_method_must_name_a_registered_eps_model():
    with pytest.raises(ValueError, match="not a registered network"):
        registry.register_method(Method("bad", "g", "bad", "bad", "bad", eps_model="nope", 
                                        builder="x:y"))


def test_what_the_snakefile_imports_at_parse_time_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, diffguide.registry, diffguide.pipeline.config_checks, diffguide.pipeline.config_schema, diffguide.base.integrity, "
            "diffguide.training.settings, diffguide.evaluation.inception_weights; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# The wiring: which eps-model each method guides, with which labels, and when the classifier acts.
import torch  # noqa: E402
from probes import ProbeEps  # noqa: E402
from torch import nn  # noqa: E402

from diffguide.diffusion.schedules import NoiseSchedule  # noqa: E402
from diffguide.guidance.wrappers import NULL_LABEL  # noqa: E402
from diffguide.pipeline.stages.sample import guided_model  # noqa: E402

OPTIONS = {"cg_form": "score", "cg_clip_order": "unguided_x0", "cond_cg_w": 0.0}


class LinearClassifier(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, x, t):
        return x.flatten(1) @ self.weight


def wiring_case():
    torch.manual_seed(0)
    schedule = NoiseSchedule.make("cosine", 50)
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    t, y = torch.tensor([40, 20, 5]), torch.tensor([0, 2, 1])
    weight = torch.randn(4, 3, dtype=torch.float64)
    return schedule, x, t, y, LinearClassifier(weight)


def log_prob_grad(classifier, x, y):
    """grad_x log softmax(x W)_y = W[:, y] - W p, by hand."""
    p = torch.softmax(x.flatten(1) @ classifier.weight, dim=1)
    return (classifier.weight[:, y].T - p @ classifier.weight.T).reshape(x.shape)


@pytest.mark.parametrize("w", [0.0, 2.0])
def test_cfg_guides_the_conditional_model_with_the_label_and_the_null_label(w):
    schedule, x, t, y, _ = wiring_case()
    probe = ProbeEps()
    guided = guided_model("cfg", w, {"eps_model": probe}, schedule, clip_x0=False, options={})
    eps = guided.model(x, t, y)
    expected = (1 + w) * probe(x, t, y) - w * probe(x, t, torch.full_like(y, NULL_LABEL))
    assert torch.allclose(eps, expected, atol=1e-15, rtol=0) and guided.cond_fn is None
    assert probe.calls[0] == ([*y.tolist(), *[NULL_LABEL] * 3] if w else y.tolist())  # one batched call


@pytest.mark.parametrize("method, cond_cg_w", [("cg", 0.0), ("cond_cg", 0.0), ("cond_cg", 1.5)])
def test_classifier_guidance_shifts_the_right_models_eps_along_the_classifier_gradient(method, cond_cg_w):
    schedule, x, t, y, classifier = wiring_case()
    probe, s = ProbeEps(), 2.0
    options = OPTIONS | {"cond_cg_w": cond_cg_w}
    guided = guided_model(method, s, {"eps_model": probe, "classifier": classifier}, schedule, clip_x0=False,
                          options=options)
    eps = guided.model(x, t, y)
    null = torch.full_like(y, NULL_LABEL)
    if method == "cg":  # the unconditional model: no label reaches it
        base = probe(x, t, None)
        assert probe.calls[0] is None
    else:  # the conditional model given y, classifier-free guided at cond_cg_w
        base = (1 + cond_cg_w) * probe(x, t, y) - cond_cg_w * probe(x, t, null)
        assert probe.calls[0] == (y.tolist() if cond_cg_w == 0 else [*y.tolist(), *null.tolist()])
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    expected = base - s * (1 - abar).sqrt() * log_prob_grad(classifier, x, y)  # D&N Alg. 2
    assert torch.allclose(eps, expected, atol=1e-12, rtol=0)


def test_the_mean_form_hooks_the_classifier_gradient_and_scale_zero_needs_no_classifier():
    schedule, x, t, y, classifier = wiring_case()
    probe = ProbeEps()
    guided = guided_model("cg", 3.0, {"eps_model": probe, "classifier": classifier}, schedule, clip_x0=False,
                          options=OPTIONS | {"cg_form": "mean"})
    assert torch.equal(guided.model(x, t, y), probe(x, t, None)) and probe.calls[0] is None  # unguided eps
    shift = guided.cond_fn(x, t, y, mean=x, t_prev=t - 1)
    assert torch.allclose(shift, 3.0 * log_prob_grad(classifier, x, y), atol=1e-12, rtol=0)  # s * g
    unguided = guided_model("cg", 0.0, {"eps_model": probe}, schedule, clip_x0=False, options=OPTIONS)
    assert torch.equal(unguided.model(x, t, y), probe(x, t, None))


def test_with_clipping_on_classifier_guidance_shifts_the_clipped_unguided_prediction():
    """The pipeline's default (sampling.clip_x0: true, cg_clip_order: unguided_x0): x0 of the
    unguided eps clipped to [-1, 1], its eps shifted, nothing clipped again (guided-diffusion)."""
    schedule, x, t, y, classifier = wiring_case()
    x = 3 * x  # some x0 predictions outside [-1, 1]
    probe, s = ProbeEps(), 2.0
    guided = guided_model("cg", s, {"eps_model": probe, "classifier": classifier}, schedule, clip_x0=True,
                          options=OPTIONS)
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x0 = ((x - (1 - abar).sqrt() * probe(x, t, None)) / abar.sqrt())
    assert (x0.abs() > 1).any()
    clipped_eps = (x - abar.sqrt() * x0.clamp(-1, 1)) / (1 - abar).sqrt()
    expected = clipped_eps - s * (1 - abar).sqrt() * log_prob_grad(classifier, x, y)
    assert torch.allclose(guided.model(x, t, y), expected, atol=1e-12, rtol=0)


def clipped_eps(schedule, x, t, eps):
    """The eps of eps's x0 prediction clipped to [-1, 1], by hand."""
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
    return (x - abar.sqrt() * x0) / (1 - abar).sqrt()


def test_with_clipping_on_cfg_clips_the_guided_prediction():
    schedule, x, t, y, _ = wiring_case()
    x, probe, w = 3 * x, ProbeEps(), 2.0
    guided = guided_model("cfg", w, {"eps_model": probe}, schedule, clip_x0=True, options={})
    raw = (1 + w) * probe(x, t, y) - w * probe(x, t, torch.full_like(y, NULL_LABEL))
    assert not torch.allclose(clipped_eps(schedule, x, t, raw), raw)  # clipping acts here
    assert torch.allclose(guided.model(x, t, y), clipped_eps(schedule, x, t, raw), atol=1e-12, rtol=0)


@pytest.mark.parametrize("order", ["unguided_x0", "guided_x0"])
def test_cond_cg_passes_the_clip_settings_and_the_form_through(order):
    schedule, x, t, y, classifier = wiring_case()
    x, probe, s = 3 * x, ProbeEps(), 2.0
    options = OPTIONS | {"cg_clip_order": order}
    guided = guided_model("cond_cg", s, {"eps_model": probe, "classifier": classifier}, schedule, clip_x0=True,
                          options=options)
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    shift = s * (1 - abar).sqrt() * log_prob_grad(classifier, x, y)
    eps = probe(x, t, y)
    expected = clipped_eps(schedule, x, t, eps) - shift if order == "unguided_x0" else \
        clipped_eps(schedule, x, t, eps - shift)
    assert torch.allclose(guided.model(x, t, y), expected, atol=1e-12, rtol=0)
    mean_form = guided_model("cond_cg", s, {"eps_model": probe, "classifier": classifier}, schedule, clip_x0=True,
                             options=OPTIONS | {"cg_form": "mean"})
    assert mean_form.cond_fn is not None and torch.allclose(mean_form.model(x, t, y), clipped_eps(schedule, x, t, eps))


def test_an_unknown_name_is_refused_naming_what_it_is_and_every_known_name():
    with pytest.raises(ValueError) as info:
        parse_method("toy")
    assert str(info.value) == ("unknown guidance method 'toy'; known: cfg, cg, cond_cg, sdg_text, sdg_image, cfg_interval, "
                                "cg_interval, cfg_schedule, cg_schedule, autoguidance, cfgpp, apg, cfg_rescale, "
                                "dynamic_threshold, cfg_zero_star, dps, freedom, mpgd, ugd, tfg, cg_laplace, tcfg, mambo_g, apg_mix, fdg, "
                                "slg, pag, seg, autoguidance_skip, icg, tsg, cfg_p<p>, icg_p<p>, tsg_p<p>")
    with pytest.raises(ValueError) as info:
        parse_network("unet")
    assert str(info.value) == ("unknown network 'unet'; known: unconditional, conditional, noisy_classifier, "
                               "eval_classifier, guide_classifier, weak_conditional, clip, noisy_image_encoder, conditional_p<p>")


@pytest.mark.parametrize("w", [0.5, 3.0])
def test_cfg_in_two_forwards_asks_for_the_null_label_and_equals_the_batched_forward(w):
    from diffguide.guidance.wrappers import ClassifierFreeGuidance

    schedule, x, t, y, _ = wiring_case()
    probe = ProbeEps()
    two = ClassifierFreeGuidance(probe, w, batched=False)(x, t, y)
    assert probe.calls == [y.tolist(), [NULL_LABEL] * 3]
    assert torch.allclose(two, ClassifierFreeGuidance(ProbeEps(), w)(x, t, y), atol=1e-15, rtol=0)


# Every row's builder and option keys, resolved (issue 26: a builder is named by a string, so a
# typo or a moved module would surface only when a sampling job of that method runs).
@pytest.mark.parametrize("name", sorted(registry.REGISTRY.methods))
def test_every_registered_builder_resolves_to_a_builder_of_the_sampling_contract(name):
    """The builder imports, and takes what the sampling stage passes it: (models, scale, schedule,
    *, clip_x0, options)."""
    import inspect

    build = registry.REGISTRY.methods[name].build()
    parameters = inspect.signature(build).parameters
    positional = [p.name for p in parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional[:3] == ["models", "scale", "schedule"], (name, positional)
    assert {"clip_x0", "options"} <= {p.name for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
