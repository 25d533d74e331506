"""Measuring sample sets: features and FID / KID / IS / accuracy (`metrics`), precision and recall
(`precision_recall`), Inception-v3 features (`inception`, `inception_weights`), and the 95%
intervals every metric carries (`intervals`: half-sample replicates, delete-d jackknife).

May import: diffguide.base, diffguide.diffusion.
"""
