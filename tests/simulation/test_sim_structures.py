"""create_system takes pymatgen and ASE objects directly (periodic when they carry a lattice)."""

import numpy as np
import pytest

from simulation.openmm import create_system, to_structure


def _ethanol_xyz():
    from simulation.datasets import embed

    mol = embed("CCO", n_conformers=1, seed=0)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    return z, mol.GetConformer().GetPositions()


def test_pymatgen_molecule_and_structure_become_systems():
    pytest.importorskip("pymatgen")
    from pymatgen.core import Lattice, Molecule, Structure

    z, x = _ethanol_xyz()
    molecule = Molecule([int(n) for n in z], x)
    s = to_structure(molecule)
    assert s.cell is None and np.allclose(s.positions, x)
    periodic = Structure(Lattice.cubic(12.0), [int(n) for n in z], x + 6.0, coords_are_cartesian=True)
    system, topology, _ = create_system(periodic, potential="ethanol")
    assert system.getNumParticles() == len(z)
    assert system.usesPeriodicBoundaryConditions()
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(topology.getPeriodicBoxVectors().unit))
    assert np.allclose(np.diag(box), 1.2)  # nm


def test_ase_atoms_become_systems():
    from ase import Atoms

    z, x = _ethanol_xyz()
    system, _, positions = create_system(Atoms(numbers=z, positions=x), potential="ethanol")
    assert system.getNumParticles() == len(z)
    assert not system.usesPeriodicBoundaryConditions()


def test_run_returns_bonds_and_the_periodic_cell():
    from pymatgen.core import Lattice, Structure

    from simulation.md import run

    z, x = _ethanol_xyz()
    traj = run("CCO", potential="ethanol", steps=4, report_every=2)
    assert traj.cell is None and len(traj.bonds) == 8  # ethanol with hydrogens
    box = Structure(Lattice.cubic(12.0), [int(n) for n in z], x + 6.0, coords_are_cartesian=True)
    periodic = run(box, potential="ethanol", steps=4, report_every=2)
    assert periodic.cell is not None and np.allclose(periodic.cell, 12.0 * np.eye(3))
