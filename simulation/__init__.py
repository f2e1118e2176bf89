"""Equivariant machine-learned interatomic potentials trained on GFN2-xTB, for molecular dynamics.

Modules: :mod:`simulation.reference` (xTB labels), :mod:`simulation.datasets` (MD17-style data sets),
:mod:`simulation.model` (the equivariant attention network), :mod:`simulation.train` (training).
Importing this package is cheap; torch is imported only by the modules that need it.
"""
