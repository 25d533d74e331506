"""The pipeline's stages, one module per rule file of workflow/rules/ and one function per rule,
named as the rule: ``data.prepare_data``, ``train.train_network``, ``sample.sample``,
``evaluate.evaluate`` (and the reference features and the gathering), ``figures.*``.

Each function takes explicit arguments (paths and the config sections it reads, never the whole
config), so a stage runs and is tested without Snakemake; each script of workflow/scripts/
unpacks ``snakemake.params`` and calls one of them. The rule graph is the papers' method: the
eps-models (H&S Algorithm 1) and the noisy classifier (D&N section 4) are trained, the eps-models
are sampled under guidance, and the evaluation classifier, trained apart, only measures.
"""
