"""GFN2-xTB reference labels: units, force/gradient consistency and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from simulation.reference import ReferenceLabel, check_geometry, xtb_label
from workbench.errors import InvalidMoleculeError, UnsupportedElementError


def test_ethanol_label_is_finite_and_in_ev(ethanol):
    label = xtb_label(*ethanol)
    assert isinstance(label, ReferenceLabel)
    # GFN2-xTB total energy of ethanol is about -11.4 Hartree = -310 eV
    assert -320.0 < label.energy < -300.0
    assert label.forces.shape == (9, 3) and np.isfinite(label.forces).all()
    assert np.abs(label.forces.sum(axis=0)).max() < 1e-6  # translation invariance: no net force


def test_forces_are_minus_the_energy_gradient(ethanol):
    z, x = ethanol
    x = x + np.random.default_rng(0).normal(scale=0.05, size=x.shape)  # off the MMFF minimum
    forces = xtb_label(z, x).forces
    h = 1e-4
    for atom, axis in [(0, 0), (2, 1), (6, 2)]:
        plus, minus = x.copy(), x.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        numeric = -(xtb_label(z, plus).energy - xtb_label(z, minus).energy) / (2 * h)
        assert numeric == pytest.approx(forces[atom, axis], abs=2e-4)


def test_nan_positions_raise(ethanol):
    x = ethanol[1].copy()
    x[2, 0] = np.nan
    with pytest.raises(InvalidMoleculeError, match=r"non-finite.*\[2\]"):
        xtb_label(ethanol[0], x)


def test_overlapping_atoms_raise(ethanol):
    x = ethanol[1].copy()
    x[5] = x[1] + [0.1, 0.1, 0.0]
    with pytest.raises(InvalidMoleculeError, match="atoms 1 and 5 overlap"):
        xtb_label(ethanol[0], x)


def test_unsupported_element_raises():
    with pytest.raises(UnsupportedElementError, match="U"):
        xtb_label([92, 8], [[0.0, 0.0, 0.0], [1.8, 0.0, 0.0]])


def test_shape_mismatch_raises():
    with pytest.raises(InvalidMoleculeError, match="shape"):
        check_geometry([1, 1, 1], np.zeros((2, 3)))
