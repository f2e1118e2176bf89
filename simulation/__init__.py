"""Equivariant machine-learned interatomic potentials trained on GFN2-xTB, for molecular dynamics.

Modules: :mod:`simulation.reference` (xTB labels), :mod:`simulation.datasets` (MD17-style data sets),
:mod:`simulation.model` (the equivariant attention network), :mod:`simulation.train` (training),
:mod:`simulation.openmm` (the potential as an OpenMM ``PythonForce``) and :mod:`simulation.md` (NVT/NVE runs).
Importing this package is cheap; torch and OpenMM are imported only by the modules that need them.
"""
