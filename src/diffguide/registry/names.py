"""Names with a parameter, read and written in one place. The conditional eps-model can be trained
at several label-drop probabilities: ``conditional_p0.5`` is the conditional model trained with
p_uncond = 0.5, and ``cfg_p0.5`` is classifier-free guidance of that model. ``parse_method`` /
``parse_network`` read such names, ``variant_name`` writes them, and ``method_pattern`` /
``network_pattern`` are the Snakefile's wildcard constraints; nothing else takes a name apart."""

from __future__ import annotations

import re
from dataclasses import dataclass

from diffguide.registry.declarations import Method, Network
from diffguide.registry.table import REGISTRY

# How a p_uncond variant is written in names: <base>_p<p>, p as scale_tag writes it.
_VARIANT = re.compile(r"^(?P<base>[a-z][a-z0-9_]*?)_p(?P<p>[0-9][0-9.]*)$")
_VARIANT_PATTERN = r"_p[0-9.]+"


def scale_tag(value) -> str:
    """A guidance scale (or p_uncond) as it appears in file names: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{float(value):g}"



@dataclass(frozen=True)
class MethodName:
    """A parsed method name: its registry row and, for a p_uncond variant, its p."""

    method: Method
    p_uncond: float | None = None

    @property
    def name(self) -> str:
        return variant_name(self.method.name, self.p_uncond)

    @property
    def eps_model(self) -> str:
        """The network file this method's eps comes from: conditional_p0.5 for cfg_p0.5."""
        return variant_name(self.method.eps_model, self.p_uncond)

    def models(self, scale: float) -> dict[str, str]:
        """role -> network name of the models a sampling job at ``scale`` loads."""
        models = {"eps_model": self.eps_model}
        if float(scale) != 0:
            models |= dict(self.method.guides)
        return models

    @property
    def label(self) -> str:
        if self.p_uncond is None:
            return self.method.label
        stem, symbol = self.method.label.removesuffix(f" ({self.method.symbol})"), self.method.symbol
        return f"{stem} p_uncond={scale_tag(self.p_uncond)} ({symbol})"

    @property
    def title(self) -> str:
        if self.p_uncond is None:
            return self.method.title
        return f"{self.method.title} (p_uncond = {scale_tag(self.p_uncond)})"


@dataclass(frozen=True)
class NetworkName:
    """A parsed network name: its registry row and, for conditional_p<p>, its p."""

    network: Network
    p_uncond: float | None = None
    name = property(lambda self: variant_name(self.network.name, self.p_uncond))


def _parse(name: str, table: dict, what: str):
    """(row, p_uncond) for ``name``, a row's name or <row>_p<p> of a row with variants."""
    if name in table:
        return table[name], None
    match = _VARIANT.match(name)
    row = table.get(match["base"]) if match else None
    if row is None or not row.p_uncond_variants:
        variants = [f"{n}_p<p>" for n, r in table.items() if r.p_uncond_variants]
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join([*table, *variants])}")
    try:
        return row, float(match["p"])
    except ValueError:
        raise ValueError(f"{what} {name!r}: {match['p']!r} is not a number") from None


def parse_method(name: str) -> MethodName:
    return MethodName(*_parse(name, REGISTRY.methods, "guidance method"))


def parse_network(name: str) -> NetworkName:
    return NetworkName(*_parse(name, REGISTRY.networks, "network"))


def method_label(name: str) -> str:
    """Legend text of a method name; the name itself for one no registered method has (a row
    of a plugin's method read without the plugin)."""
    try:
        return parse_method(name).label
    except ValueError:
        return name


def method_symbol(name: str) -> str:
    """The paper's symbol of a method's scale (w, s), or "scale" for an unknown method."""
    try:
        return parse_method(name).method.symbol
    except ValueError:
        return "scale"


def variant_name(base: str, p_uncond: float | None = None) -> str:
    """A method's or network's name: ``base``, or <base>_p<p> for the variant trained at p_uncond = p."""
    return base if p_uncond is None else f"{base}_p{scale_tag(p_uncond)}"


def _pattern(table: dict) -> str:
    names = [re.escape(n) for n in table] + [re.escape(n) + _VARIANT_PATTERN for n, r in table.items()
                                             if r.p_uncond_variants]
    return "|".join(names)  # the wildcard is matched whole, between slashes: the order does not matter


def method_pattern() -> str:
    """The regex of every method name, for Snakemake's wildcard constraints."""
    return _pattern(REGISTRY.methods)


def network_pattern() -> str:
    return _pattern(REGISTRY.networks)
