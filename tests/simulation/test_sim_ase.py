"""The ASE calculator: the model's energies and forces, relaxation, dynamics, periodic cells, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from simulation.ase import WorkbenchCalculator
from workbench.errors import InvalidMoleculeError, UnsupportedElementError


@pytest.fixture(scope="module")
def calc() -> WorkbenchCalculator:
    return WorkbenchCalculator("workbench-ethanol")


@pytest.fixture()
def atoms(ethanol) -> Atoms:
    numbers, positions = ethanol
    return Atoms(numbers=numbers, positions=positions)


def test_energy_and_forces_equal_the_model(calc, atoms):
    atoms.calc = calc
    energy, forces = calc.model.predict(atoms.numbers, atoms.positions)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-10)


def test_forces_are_minus_the_energy_gradient(calc, atoms):
    atoms.calc = calc
    atoms.rattle(0.05, seed=1)
    forces = atoms.get_forces()
    h = 1e-4
    for a, k in [(0, 0), (3, 1), (8, 2)]:
        shifted = atoms.copy()
        shifted.calc = calc
        shifted.positions[a, k] += h
        e_plus = shifted.get_potential_energy()
        shifted.positions[a, k] -= 2 * h
        e_minus = shifted.get_potential_energy()
        assert -(e_plus - e_minus) / (2 * h) == pytest.approx(forces[a, k], abs=1e-5)


def test_bfgs_relaxation_lowers_the_energy(calc, atoms):
    from ase.optimize import BFGS

    atoms.rattle(0.1, seed=0)
    atoms.calc = calc
    start = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=200)
    assert atoms.get_potential_energy() < start - 0.01
    assert np.abs(atoms.get_forces()).max() < 0.05


def test_velocity_verlet_conserves_energy(calc, atoms):
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs, logfile=None)
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=5)
    dyn.run(100)
    assert len(totals) == 21
    assert np.ptp(totals) < 0.02  # eV over 50 fs for 9 atoms at 0.5 fs


def test_periodic_cell_is_used_and_lattice_translation_invariant(calc, atoms):
    atoms.cell = np.diag([7.0, 7.5, 8.0])
    atoms.pbc = True
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    isolated, _ = calc.model.predict(atoms.numbers, atoms.positions)
    assert abs(energy - isolated) > 1e-6  # images within the 5 A cutoff contribute
    moved = atoms.copy()
    moved.positions[2] += atoms.cell.array[1]  # one atom shifted by a lattice vector
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(energy, abs=1e-9)
    np.testing.assert_allclose(moved.get_forces(), forces, atol=1e-9)


def test_partial_periodicity_is_refused(calc, atoms):
    atoms.cell = np.diag([7.0, 7.0, 7.0])
    atoms.pbc = [True, True, False]
    atoms.calc = calc
    with pytest.raises(InvalidMoleculeError, match="periodic along some axes"):
        atoms.get_potential_energy()


def test_untrained_elements_are_refused(calc):
    atoms = Atoms(
        "SiH4", positions=[[0, 0, 0], [0.9, 0.9, 0.9], [-0.9, -0.9, 0.9], [-0.9, 0.9, -0.9], [0.9, -0.9, -0.9]]
    )
    atoms.calc = calc
    with pytest.raises(UnsupportedElementError, match="Si"):
        atoms.get_potential_energy()


def test_accepts_a_model_instance(small_model, atoms):
    calc = WorkbenchCalculator(small_model)
    atoms.calc = calc
    energy, _ = small_model.predict(atoms.numbers, atoms.positions)
    assert atoms.get_potential_energy() == pytest.approx(energy)
    assert "EquivariantPotential" in repr(calc)
