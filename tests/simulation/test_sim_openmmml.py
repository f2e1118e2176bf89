"""openmm-ml finds the workbench potentials by name; energies equal simulation.openmm's."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit

from simulation.openmm import EV_TO_KJ_PER_MOL, create_system, load_potential
from workbench.errors import CheckpointError, UnsupportedElementError


@pytest.fixture(scope="module")
def ethanol_pdb(tmp_path_factory) -> str:
    from rdkit import Chem

    from simulation.datasets import embed

    path = tmp_path_factory.mktemp("openmmml") / "ethanol.pdb"
    Chem.MolToPDBFile(embed("CCO", n_conformers=1, seed=7), str(path))
    return str(path)


def _energy_kj(system: openmm.System, positions) -> tuple[float, np.ndarray]:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), np.asarray(forces)


def test_entry_points_register_every_name():
    from importlib.metadata import entry_points

    from simulation.openmmml_plugin import REGISTERED_NAMES

    names = {e.name for e in entry_points(group="openmmml.potentials")}
    assert set(REGISTERED_NAMES) <= names


def _shipped(name: str):
    """The name as a test parameter, skipped while its checkpoint folder is not built."""
    from simulation.openmm import CHECKPOINTS

    folder = CHECKPOINTS / name.removeprefix("workbench-")
    return pytest.param(name, marks=pytest.mark.skipif(not folder.is_dir(), reason=f"{folder} not built"))


@pytest.mark.parametrize("name", ["workbench-ethanol", "workbench-organic", _shipped("workbench-ethanol-w4a8")])
def test_mlpotential_energy_equals_simulation_openmm(name, ethanol_pdb):
    from openmmml import MLPotential

    pdb = app.PDBFile(ethanol_pdb)
    system = MLPotential(name).createSystem(pdb.topology)
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    energy, forces = _energy_kj(system, pdb.positions)
    reference_system, _, positions = create_system(ethanol_pdb, name)
    expected, expected_forces = _energy_kj(reference_system, positions)
    assert energy == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(forces, expected_forces, atol=1e-6)
    model = load_potential(name)
    z = [a.element.atomic_number for a in pdb.topology.atoms()]
    e_model, _ = model.predict(z, pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    assert energy == pytest.approx(e_model * EV_TO_KJ_PER_MOL, abs=1e-6)


def test_single_precision_is_close_to_double(ethanol_pdb):
    from openmmml import MLPotential

    pdb = app.PDBFile(ethanol_pdb)
    double, _ = _energy_kj(MLPotential("workbench-ethanol").createSystem(pdb.topology), pdb.positions)
    single, _ = _energy_kj(
        MLPotential("workbench-ethanol", precision="single").createSystem(pdb.topology), pdb.positions
    )
    assert single == pytest.approx(double, abs=0.05)  # kJ/mol


def test_atom_subset_sees_only_its_own_atoms(ethanol_pdb):
    """Two ethanols 30 A apart; the potential on the first one only equals one ethanol alone."""
    from openmmml import MLPotential

    pdb = app.PDBFile(ethanol_pdb)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    shifted = [p + openmm.Vec3(3.0, 0.0, 0.0) * unit.nanometer for p in pdb.positions]
    modeller.add(pdb.topology, shifted)
    potential = MLPotential("workbench-ethanol")
    both, _ = _energy_kj(potential.createSystem(modeller.topology), modeller.positions)
    first, forces = _energy_kj(potential.createSystem(modeller.topology, atoms=range(9)), modeller.positions)
    alone, _ = _energy_kj(potential.createSystem(pdb.topology), pdb.positions)
    assert first == pytest.approx(alone, abs=1e-6)
    assert both == pytest.approx(2 * alone, abs=1e-5)
    assert np.abs(forces[9:]).max() == 0.0


def test_generic_name_takes_a_folder_and_periodic_topologies_use_the_box(ethanol_pdb):
    from openmmml import MLPotential

    from simulation.openmm import CHECKPOINTS

    pdb = app.PDBFile(ethanol_pdb)
    topology = pdb.topology
    topology.setPeriodicBoxVectors(np.diag([0.7, 0.7, 0.7]) * unit.nanometer)
    system = MLPotential("workbench", potential=CHECKPOINTS / "ethanol").createSystem(topology)
    assert system.usesPeriodicBoundaryConditions()
    periodic, _ = _energy_kj(system, pdb.positions)
    topology.setPeriodicBoxVectors(None)
    isolated, _ = _energy_kj(MLPotential("workbench-ethanol").createSystem(topology), pdb.positions)
    assert abs(periodic - isolated) > 1e-3  # images within the 5 A cutoff interact


def test_bad_requests_are_refused_clearly(ethanol_pdb):
    from openmmml import MLPotential

    with pytest.raises(CheckpointError, match="shipped"):
        MLPotential("workbench", potential="/no/such/dir")
    with pytest.raises(ValueError, match="needs potential="):
        MLPotential("workbench")
    with pytest.raises(ValueError, match="precision"):
        MLPotential("workbench-ethanol", precision="half")
    pdb = app.PDBFile(ethanol_pdb)
    potential = MLPotential("workbench-ethanol")
    with pytest.raises(ValueError, match="unknown createSystem option"):
        potential.createSystem(pdb.topology, temperature=300)
    with pytest.raises(ValueError, match="outside"):
        potential.createSystem(pdb.topology, atoms=[0, 99])
    topology = app.Topology()
    residue = topology.addResidue("X", topology.addChain())
    topology.addAtom("Si", app.Element.getBySymbol("Si"), residue)
    with pytest.raises(UnsupportedElementError, match="Si"):
        potential.createSystem(topology)


def test_mixed_system_puts_the_potential_on_the_subset_only(ethanol_pdb):
    """createMixedSystem (mechanical embedding) hands the subset positionally: ethanol on the ML potential,
    a distant water on a classical harmonic O-H bond force only."""
    from openmmml import MLPotential

    pdb = app.PDBFile(ethanol_pdb)
    modeller = app.Modeller(pdb.topology, pdb.positions)
    water = app.Topology()
    residue = water.addResidue("HOH", water.addChain())
    o = water.addAtom("O", app.Element.getBySymbol("O"), residue)
    h1 = water.addAtom("H1", app.Element.getBySymbol("H"), residue)
    h2 = water.addAtom("H2", app.Element.getBySymbol("H"), residue)
    water.addBond(o, h1)
    water.addBond(o, h2)
    water_xyz = [openmm.Vec3(3.0, 0.0, 0.0), openmm.Vec3(3.1, 0.0, 0.0), openmm.Vec3(3.0, 0.1, 0.0)] * unit.nanometer
    modeller.add(water, water_xyz)
    mm = openmm.System()
    for atom in modeller.topology.atoms():
        mm.addParticle(atom.element.mass)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(9, 10, 0.09572, 1000.0)
    bonds.addBond(9, 11, 0.09572, 1000.0)
    mm.addForce(bonds)
    nonbonded = openmm.NonbondedForce()  # mechanical embedding adds its exclusions here
    for _ in range(mm.getNumParticles()):
        nonbonded.addParticle(0.0, 0.1, 0.0)
    mm.addForce(nonbonded)
    mixed = MLPotential("workbench-ethanol").createMixedSystem(modeller.topology, mm, list(range(9)))
    energy, forces = _energy_kj(mixed, modeller.positions)
    alone, alone_forces = _energy_kj(MLPotential("workbench-ethanol").createSystem(pdb.topology), pdb.positions)
    stretch = 0.5 * 1000.0 * ((0.1 - 0.09572) ** 2 + (0.1 - 0.09572) ** 2)
    assert energy == pytest.approx(alone + stretch, abs=1e-5)
    np.testing.assert_allclose(forces[:9], alone_forces, atol=1e-5)
