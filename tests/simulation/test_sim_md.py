"""The potential inside OpenMM (PythonForce) and the NVT/NVE protocols with their guard."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from simulation.md import run
from simulation.model import EquivariantPotential, PotentialConfig
from simulation.openmm import EV_TO_KJ_PER_MOL, Structure3D, create_system, load_potential
from workbench.errors import CheckpointError, InvalidMoleculeError, SimulationError, UnsupportedElementError


@pytest.fixture(scope="module")
def potential():
    torch.manual_seed(1)
    model = EquivariantPotential(PotentialConfig(elements=[1, 6, 8], features=16, layers=2, heads=2))
    return model.double().eval()


def _openmm_energy_forces(system, positions):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


def test_python_force_reproduces_the_model_in_openmm_units(potential, ethanol):
    system, topology, positions = create_system(ethanol, potential)
    assert system.getNumParticles() == 9 and topology.getNumAtoms() == 9
    energy, forces = _openmm_energy_forces(system, positions)
    e_ref, f_ref = potential.predict(*ethanol)
    assert energy == pytest.approx(e_ref * EV_TO_KJ_PER_MOL, abs=1e-6)
    assert np.allclose(forces, f_ref * EV_TO_KJ_PER_MOL * 10.0, atol=1e-5)


def test_periodic_system_in_a_big_box_matches_the_open_one(potential, ethanol):
    open_system, _, positions = create_system(ethanol, potential)
    boxed = Structure3D(ethanol[0], ethanol[1], [], cell=np.eye(3) * 25.0)
    periodic_system, topology, _ = create_system(boxed, potential)
    assert periodic_system.usesPeriodicBoundaryConditions()
    assert topology.getPeriodicBoxVectors() is not None
    e_open, f_open = _openmm_energy_forces(open_system, positions)
    e_box, f_box = _openmm_energy_forces(periodic_system, positions)
    assert e_box == pytest.approx(e_open, abs=1e-6) and np.allclose(f_box, f_open, atol=1e-6)


def test_nve_conserves_energy(potential, ethanol):
    traj = run(ethanol, potential, protocol="NVE", steps=200, report_every=20, timestep_fs=0.25, temperature=300)
    assert traj.positions.shape == (11, 9, 3)
    assert np.ptp(traj.total_energy) < 2e-3  # eV over 50 fs
    assert abs(traj.energy_drift()) < 5.0  # meV/atom/ps


def test_nvt_writes_reporters_and_restarts_from_its_checkpoint(potential, ethanol, tmp_path):
    first = run(ethanol, potential, steps=40, report_every=20, temperature=300, out_dir=tmp_path, seed=3)
    assert (tmp_path / "trajectory.dcd").stat().st_size > 0
    lines = (tmp_path / "state.csv").read_text().splitlines()
    assert lines[0].startswith("#") and len(lines) == 3
    assert first.time_ps[-1] == pytest.approx(0.02)
    second = run(ethanol, potential, steps=40, report_every=20, temperature=300, out_dir=tmp_path, seed=3)
    assert second.time_ps[0] == pytest.approx(0.02) and second.time_ps[-1] == pytest.approx(0.04)
    assert len((tmp_path / "state.csv").read_text().splitlines()) == 5


def test_guard_stops_cleanly_and_keeps_the_last_good_frame(potential, ethanol, tmp_path):
    # after minimisation the forces are tiny; the first dynamics steps exceed this bound
    with pytest.raises(SimulationError, match="force reached") as info:
        run(ethanol, potential, steps=100, report_every=10, max_force_ev_per_a=0.05, out_dir=tmp_path)
    last = info.value.last_frame
    assert last is not None and np.isfinite(last["positions"]).all() and last["time_ps"] == 0.0
    assert (tmp_path / "last_good.pdb").read_text().count("HETATM") + (tmp_path / "last_good.pdb").read_text().count(
        "ATOM"
    ) >= 9
    with pytest.raises(SimulationError, match="force reached") as info:
        run(ethanol, potential, steps=20, report_every=10, max_force_ev_per_a=1e-9)
    assert info.value.last_frame is None  # even the minimised structure fails: nothing to keep


def test_untrained_elements_are_refused_before_the_run(potential):
    structure = Structure3D(np.array([6, 17]), np.array([[0.0, 0.0, 0.0], [1.8, 0.0, 0.0]]), [])
    with pytest.raises(UnsupportedElementError, match="Cl"):
        run(structure, potential, steps=10)


def test_molecule_without_3d_coordinates_is_refused(potential):
    from rdkit import Chem

    with pytest.raises(InvalidMoleculeError, match="no 3D coordinates"):
        run(Chem.AddHs(Chem.MolFromSmiles("CCO")), potential, steps=10)


def test_large_timestep_without_constraints_warns(potential, ethanol):
    with pytest.warns(UserWarning, match="above 2 fs"):
        run(ethanol, potential, steps=0, timestep_fs=3.0)


def test_unknown_potential_name_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="no such potential"):
        load_potential("does-not-exist")
