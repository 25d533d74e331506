"""Where each result of a run sits in the HTML report (`snakemake --report`), in one table.

The report follows the papers: the headline trade-off first (H&S Figure 4, D&N Figure 5), then a
category per guidance method with its samples and its paper's table, the guidance testbed (its
comparison of the successor methods with CFG first, then their samples), the exact mixture, training,
and last the files every number comes from (metrics.csv, the tables' Markdown and LaTeX).
Snakemake's report sorts categories, subcategories and entries by name (the entries by their
labels), so every name starts with its place ("1. ...").

The rules flag their outputs with ``report(path, **report_entry(name))``; a per-method figure
(``{method}`` in its path) gets its method's category and subcategory as functions of the job's
wildcards. This module imports nothing heavy: the Snakefile reads it at every parse.
"""

from __future__ import annotations

from diffguide.registry import TESTBED_METHODS, parse_method

HEADLINE = "1. Headline trade-off"
CLASSIFIER_FREE = "2. Classifier-free guidance (Ho & Salimans)"
CLASSIFIER = "3. Classifier guidance (Dhariwal & Nichol)"
SIMILARITY = "4. Similarity guidance (SDG, Liu et al.)"
TESTBED = "5. Guidance testbed"
MIXTURE = "6. Exact Gaussian mixture"
TRAINING = "7. Training"
FILES = "8. Metrics and table files"
OTHER_METHODS = "9. Other guidance methods (plugins)"
CATEGORIES = (HEADLINE, CLASSIFIER_FREE, CLASSIFIER, SIMILARITY, TESTBED, MIXTURE, TRAINING, FILES, OTHER_METHODS)



def method_category(method: str) -> str:
    """The category of a guidance method: the testbed's methods (registry.TESTBED_METHODS) their own;
    otherwise read from its registry row (what steers it): no extra network is classifier-free
    guidance, a noisy classifier or a clean one (training-free guidance) is classifier
    guidance, the encoders are similarity guidance;
    anything else a plugin registers goes to its own category."""
    parsed = parse_method(method)
    if parsed.method.name in TESTBED_METHODS:
        return TESTBED
    roles = {role for role, _ in parsed.method.guides}
    if not roles:
        return CLASSIFIER_FREE
    if roles & {"classifier", "clean_classifier"}:  # the noisy classifier, or training-free guidance's clean one
        return CLASSIFIER
    if "noisy_encoder" in roles:
        return SIMILARITY
    return OTHER_METHODS


def method_subcategory(method: str) -> str:
    """One subcategory per method of a category (cfg and cfg_p0.5, cg and cond_cg); "Samples"
    sorts before the paper's table ("Table 1", "Table 4") in the same category."""
    return f"Samples of {parse_method(method).name}"


def _per_method(figure: str, caption: str) -> dict:
    return {"caption": caption, "category": lambda wildcards: method_category(wildcards.method),
            "subcategory": lambda wildcards: method_subcategory(wildcards.method), "labels": {"figure": figure}}


def _entry(category: str, label: str, caption: str, subcategory: str | None = None, key: str = "figure") -> dict:
    return {"caption": caption, "category": category, "subcategory": subcategory, "labels": {key: label}}


# name -> report()'s arguments: the caption file under workflow/report/, the category and
# subcategory, and one label, whose value names the entry in its list (its number orders the list).
ENTRIES = {
    "fid_vs_is": _entry(HEADLINE, "1. FID against IS, every method", "fid_vs_is"),
    "metrics_vs_scale": _entry(HEADLINE, "2. each metric against the guidance scale", "metrics_vs_scale"),
    "grid": _per_method("1. samples across the scales, the same noise in each column", "grid"),
    "best_samples": _per_method("2. gallery at the lowest-FID scale", "best_samples"),
    "references": _per_method("3. reference images and the samples guided towards them", "references"),
    "hs_table1_html": _entry(CLASSIFIER_FREE, "H&S Table 1: FID and IS against w", "hs_table1",
                             subcategory="Table 1 (Ho & Salimans)", key="table"),
    "dn_table4_html": _entry(CLASSIFIER, "D&N Table 4: classifier guidance of both models", "dn_table4",
                             subcategory="Table 4 (Dhariwal & Nichol)", key="table"),
    "testbed_tradeoff": _entry(TESTBED, "1. FID against sample accuracy and IS, every method, best points starred",
                               "testbed_tradeoff", subcategory="Comparison with CFG"),
    "testbed_saturation": _entry(TESTBED, "2. saturated pixels against the scale, the test split's level dashed",
                                 "testbed_saturation", subcategory="Comparison with CFG"),
    "testbed_table_md": _entry(TESTBED, "3. each method at its best scale beside its paper's claim, Markdown",
                               "testbed_table", subcategory="Comparison with CFG", key="table"),
    "training_free_table_md": _entry(CLASSIFIER, "training-free guidance against the noisy classifier at matched "
                                     "accuracy, Markdown", "training_free_table",
                                     subcategory="Training-free guidance (issue 28)", key="table"),
    "training_free_tradeoff": _entry(CLASSIFIER, "FID against sample accuracy: training-free guidance and the "
                                     "second-order rule beside the noisy classifier's", "training_free_tradeoff",
                                     subcategory="Training-free guidance (issue 28)"),
    "testbed_toy": _entry(TESTBED, "1. CFG, autoguidance, the interval and APG on an exact 2-D mixture", "testbed_toy",
                          subcategory="Exact 2-D toy (Karras et al. Fig. 1)"),
    "mixture_guidance": _entry(MIXTURE, "1. classifier-free guidance of the exact mixture (H&S Fig. 2)", "mixture"),
    "sharpening_guidance": _entry(MIXTURE, "2. classifier guidance against a sharpened classifier", "sharpening"),
    "training_curves": _entry(TRAINING, "1. training loss of every network", "training_curves"),
    "metrics": _entry(FILES, "1. metrics.csv: every method and scale, 95% intervals", "metrics", key="file"),
    "metrics_by_sampler": _entry(FILES, "2. metrics_by_sampler.csv: every sampling setting too", "metrics_by_sampler",
                                 key="file"),
    "hs_table1_md": _entry(FILES, "3. H&S Table 1, Markdown", "hs_table1", key="file"),
    "hs_table1_tex": _entry(FILES, "4. H&S Table 1, LaTeX", "hs_table1", key="file"),
    "dn_table4_md": _entry(FILES, "5. D&N Table 4, Markdown", "dn_table4", key="file"),
    "dn_table4_tex": _entry(FILES, "6. D&N Table 4, LaTeX", "dn_table4", key="file"),
}


def report_entry(name: str) -> dict:
    """The keyword arguments of Snakemake's ``report()`` for the result ``name`` (a key of
    ENTRIES): caption (relative to workflow/rules/), category, subcategory and labels."""
    entry = dict(ENTRIES[name])
    return entry | {"caption": f"../report/{entry['caption']}.rst"}
