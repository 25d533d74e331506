"""The guidance methods, one unit (a folder) each: its declaration in the folder's ``__init__``
(torch-free: the Method rows with symbol, labels, captions, the networks it needs by role, every
option with default, range and description, its paper's claim and the number of the finding that
tests it, and ORDER, its place in the report) and its implementation in ``wrapper.py`` (the
eps-model wrapper and the builder the declaration names), built on the contract of
`diffguide.guidance.wrappers`. ``papers`` declares the two papers' own methods, whose rules are
that contract. diffguide.registry finds the units by listing this folder: adding a method is
adding a folder (docs/adding_a_method.md).

May import: diffguide.guidance, diffguide.diffusion, diffguide.models, diffguide.registry.
"""
