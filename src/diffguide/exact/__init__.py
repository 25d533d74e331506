"""Exact answers to test against: Gaussian-mixture data whose noisy scores, classifiers and
guided targets are known in closed form (`gaussian_mixture`).

May import: diffguide.diffusion, diffguide.guidance.
"""
