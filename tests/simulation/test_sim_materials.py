"""pymatgen/ASE interop and periodic boxes of molecules run in OpenMM."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from openmm import unit

from simulation.materials import density, from_ase, from_pymatgen, molecule_box, to_ase, to_pymatgen
from simulation.openmm import Structure3D, create_system
from workbench.errors import InvalidMoleculeError


@pytest.fixture(scope="module")
def box() -> Structure3D:
    return molecule_box("CO", n=4, density=0.6, seed=3)


def _energy_forces(structure: Structure3D) -> tuple[float, np.ndarray]:
    system, _, positions = create_system(structure, "workbench-organic")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), np.asarray(forces)


def test_molecule_box_is_packed_at_the_requested_density(box):
    assert len(box.numbers) == 4 * 6 and len(box.bonds) == 4 * 5
    assert density(box) == pytest.approx(0.6)
    assert np.allclose(box.cell, np.eye(3) * box.cell[0, 0])
    d = box.positions[:, None] - box.positions[None]
    d -= np.round(d / box.cell[0, 0]) * box.cell[0, 0]
    r = np.sqrt((d**2).sum(-1))
    other = np.repeat(np.arange(4), 6)
    assert r[other[:, None] != other[None]].min() >= 1.9  # between molecules, periodic images included
    again = molecule_box("CO", n=4, density=0.6, seed=3)
    np.testing.assert_array_equal(again.positions, box.positions)


def test_molecule_box_refuses_what_cannot_fit():
    with pytest.raises(InvalidMoleculeError, match="could not pack"):
        molecule_box("CO", n=8, density=3.0, max_attempts=50)
    with pytest.raises(ValueError, match="positive density"):
        molecule_box("CO", n=2, density=0.0)


def test_pymatgen_round_trips(box):
    from pymatgen.core import Molecule, Structure

    structure = to_pymatgen(box)
    assert isinstance(structure, Structure)
    assert structure.composition.as_dict() == {"C": 4.0, "H": 16.0, "O": 4.0}
    back = from_pymatgen(structure)
    np.testing.assert_allclose(back.positions, box.positions, atol=1e-10)
    np.testing.assert_allclose(back.cell, box.cell)
    np.testing.assert_array_equal(back.numbers, box.numbers)
    molecule = to_pymatgen("CCO")
    assert isinstance(molecule, Molecule) and len(molecule) == 9
    assert from_pymatgen(molecule).cell is None


def test_ase_round_trips(box):
    atoms = to_ase(box)
    assert atoms.pbc.all() and np.allclose(atoms.cell.array, box.cell)
    back = from_ase(atoms)
    np.testing.assert_allclose(back.positions, box.positions)
    assert from_ase(to_ase("CCO")).cell is None
    assert to_ase(to_pymatgen(box)).get_chemical_formula() == atoms.get_chemical_formula()
    atoms.pbc = [True, False, True]
    with pytest.raises(InvalidMoleculeError, match="some axes"):
        from_ase(atoms)


def test_periodic_forces_are_equal_for_a_lattice_translated_copy(box):
    energy, forces = _energy_forces(box)
    moved = box.positions.copy()
    moved[6:12] += box.cell[0] - box.cell[2]  # the second molecule, one lattice vector away
    energy_moved, forces_moved = _energy_forces(Structure3D(box.numbers, moved, box.bonds, box.cell))
    assert energy_moved == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(forces_moved, forces, atol=1e-6)
    shifted = Structure3D(box.numbers, box.positions + np.array([1.3, -0.4, 2.2]), box.bonds, box.cell)
    energy_shifted, forces_shifted = _energy_forces(shifted)  # a rigid translation of everything
    assert energy_shifted == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(forces_shifted, forces, atol=1e-6)
    isolated = Structure3D(box.numbers, box.positions, box.bonds, None)
    assert abs(_energy_forces(isolated)[0] - energy) > 1e-3  # the images are really seen


def test_pymatgen_structure_runs_periodic_md(box):
    from simulation.md import run

    structure = from_pymatgen(to_pymatgen(box))
    system, _, _ = create_system(structure, "workbench-organic")
    assert system.usesPeriodicBoundaryConditions()
    traj = run(structure, "workbench-organic", protocol="NVT", steps=6, report_every=3, minimise=False)
    assert traj.positions.shape == (3, 24, 3)
    assert np.isfinite(traj.potential_energy).all() and (traj.temperature > 0).all()
