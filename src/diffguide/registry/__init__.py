"""The registry: the one place that knows every guidance method and every network.

Everything that needs a method's or a network's facts reads them here: the Snakefile (wildcard
patterns, which models a sampling job needs, the guidance keys it depends on), the sampling stage
(how to build the guided eps-model), the figures and tables (labels, symbols, titles), the
findings and the config checks. Four modules, one concern each, whose public names this package
gives:

- ``declarations``: the row types, Method (with its Options, Scales and Claim) and Network;
- ``table``: REGISTRY, the networks, and the methods: each unit of diffguide.guidance.methods
  declares its own (its folder's ``__init__``), found by listing that folder when the table is
  first read; a plugin module named in the config's ``plugins`` registers its own at import;
- ``names``: names with a parameter (``cfg_p0.5``, ``conditional_p0.5``), parsed and written in
  one place, and the Snakefile's wildcard patterns;
- ``planning``: what a run trains and samples (run_methods, run_networks, training_block).

Adding a guidance method is adding a folder to diffguide/guidance/methods (docs/adding_a_method.md).

This package imports no torch: the Snakefile imports it at parse time.

May import: nothing of diffguide (the method units' declarations, builders and plugins are imported
by name: the units register rows in this table, the builders run when a job builds a model).
"""

from __future__ import annotations

from diffguide.registry.declarations import (CLAIM_TESTS, CONDITIONS, GROUPS, OPTION_SCOPES, OPTION_TYPES, SCALE_ZERO,
                                             Claim, Method, Network, Option, Scales)
from diffguide.registry.names import (MethodName, NetworkName, method_label, method_pattern, method_symbol,
                                      network_pattern, parse_method, parse_network, scale_tag, variant_name)
from diffguide.registry.planning import NAMING_KEYS, run_methods, run_networks, training_block
from diffguide.registry.table import (METHOD_UNITS, REGISTRY, Registry, builtin_units, group_methods, load_plugins,
                                      register_method, register_network, unregister_method)

__all__ = ["CLAIM_TESTS", "CONDITIONS", "GROUPS", "OPTION_SCOPES", "OPTION_TYPES", "SCALE_ZERO", "Claim", "Method",
           "Network", "Option", "Scales", "MethodName", "NetworkName", "method_label", "method_pattern",
           "method_symbol", "network_pattern", "parse_method", "parse_network", "scale_tag", "variant_name",
           "NAMING_KEYS", "run_methods", "run_networks", "training_block", "METHOD_UNITS", "REGISTRY", "Registry",
           "builtin_units", "group_methods", "load_plugins", "register_method", "register_network",
           "unregister_method", "TESTBED_METHODS"]


def __getattr__(name: str):
    """TESTBED_METHODS: the testbed's method names, in registry order (its report category, its
    findings), computed when first asked for (the declarations load lazily, see table.Registry)."""
    if name == "TESTBED_METHODS":
        return group_methods("testbed")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
