"""Semantic diffusion guidance (Liu et al. 2021), declared: the unconditional model steered by the
gradient of a similarity between the noise-aware image encoder's embedding and a class name's
(sdg_text) or a reference image's (sdg_image). The implementation is wrapper.py.
"""

from __future__ import annotations

from diffguide.guidance.methods.papers import CG_CLIP_ORDER, CG_FORM
from diffguide.registry import Method, Option, Scales

ORDER = 2  # its place in the registry, the report and the testbed table

SDG_SIMILARITY = Option(
    "sdg_similarity",
    "cosine",
    "F of similarity guidance: cosine of E~(x_t) with the target (SDG's code; gamma means the "
    "same for every image and step) or their dot product",
    type="string",
    enum=("cosine", "dot"),
)

SDG_REFERENCE = Option(
    "sdg_reference",
    "clean",
    "sdg_image's target: E(x_ref), the clean reference's embedding (the issue's F), or "
    "E~(q_sample(x_ref, t), t), the reference noised to the step's t as SDG's code does (noise "
    "seeded by t)",
    type="string",
    enum=("clean", "noised"),
)

SDG_REFERENCES_PER_CLASS = Option(
    "sdg_references_per_class",
    5,
    "reference test images per class for sdg_image (seeded choice); sample i is guided towards "
    "reference i // K of class i mod K, cyclically",
    type="integer",
    minimum=1,
    acts_in="references",  # the sampling job's choice (pipeline.stages.sample.choose_references)
)

METHODS = (
    Method(
        "sdg_text",
        "gamma",
        "similarity guidance by class name, unconditional model (gamma)",
        "text-similarity guidance of the unconditional model, columns: gamma",
        "Semantic diffusion guidance by language (Liu et al. 2021): the unconditional model "
        "steered by gamma * grad F, F the similarity of the noise-aware image encoder's E~(x_t) "
        "with the class name's embedding; gamma = 0 is the unguided model. SDG found that language "
        "guidance steers an unconditional model to the text's content as gamma grows; make "
        "findings 9 and 11 measure whether ours does, and its FID against classifier guidance at "
        "matched accuracy.",
        eps_model="unconditional",
        builder="diffguide.guidance.methods.similarity.wrapper:build_text_similarity_guided",
        guides=(("noisy_encoder", "noisy_image_encoder"), ("clip", "clip")),
        options=(CG_FORM, CG_CLIP_ORDER, SDG_SIMILARITY),
        scales=Scales(
            (0, 10, 30, 100),
            "similarity-guidance scales gamma of sdg_text (the class name's embedding as "
            "target; gamma = 0: the unguided unconditional model)",
        ),
        group="similarity",
    ),
    Method(
        "sdg_image",
        "gamma",
        "similarity guidance by reference image, unconditional model (gamma)",
        "reference-image similarity guidance of the unconditional model, columns: gamma",
        "Semantic diffusion guidance by a reference image (Liu et al. 2021): the unconditional "
        "model steered by gamma * grad F, F the similarity of E~(x_t) with the clean embedding "
        "E(x_ref) of a test image; gamma = 0 is the unguided model. SDG found that image guidance "
        "carries the reference's content into the sample; make findings 10 measures our samples' "
        "similarity to their references.",
        eps_model="unconditional",
        builder="diffguide.guidance.methods.similarity.wrapper:build_image_similarity_guided",
        guides=(("noisy_encoder", "noisy_image_encoder"), ("clip", "clip")),
        condition="reference",
        options=(CG_FORM, CG_CLIP_ORDER, SDG_SIMILARITY, SDG_REFERENCE, SDG_REFERENCES_PER_CLASS),
        scales=Scales(
            (0, 10, 30, 100),
            "similarity-guidance scales gamma of sdg_image (a reference test image's embedding as target)",
        ),
        group="similarity",
        role_inert_unless=(("clip", "sdg_reference", "clean"),),  # noised: E~ embeds the references itself
    ),
)
