"""The fast MD path: static all-pairs graph equals the neighbour-list model; compiled equals eager; OpenMM runs."""

from __future__ import annotations

import warnings

import numpy as np
import openmm
import pytest
import torch

from simulation.fast import FastPotential, all_pairs
from simulation.model import neighbour_list
from simulation.openmm import EV_TO_KJ_PER_MOL, create_force


def _reference(model, numbers, positions, cell=None):
    z = torch.as_tensor(numbers)
    x = torch.as_tensor(positions, dtype=torch.float64)
    batch = torch.zeros(len(numbers), dtype=torch.long)
    c = None if cell is None else torch.as_tensor(cell, dtype=torch.float64)
    energy, forces = model.energy_and_forces(z, x, batch, c, 1, neighbours=neighbour_list(x, 5.0, batch, c))
    return float(energy.detach()[0]), forces.detach().numpy()


@pytest.fixture(scope="module")
def octane():
    """A molecule longer than the 5 Angstrom cutoff, so the all-pairs graph holds pairs beyond it."""
    from simulation.datasets import embed

    mol = embed("CCCCCCCCO", n_conformers=1, seed=3)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), np.array(mol.GetConformer().GetPositions())


def test_all_pairs_lists_every_ordered_pair_once():
    i, j = all_pairs(4)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(pairs) == len(i) == 12
    assert all(a != b for a, b in pairs)


def test_all_pairs_graph_equals_the_neighbour_list_beyond_the_cutoff(small_model, octane):
    numbers, positions = octane
    x = torch.as_tensor(positions)
    n_listed = neighbour_list(x, 5.0)[0].numel()
    assert n_listed < len(numbers) * (len(numbers) - 1)  # some pairs are beyond the cutoff
    fast = FastPotential(small_model, numbers)
    assert fast.static and not fast.compiled
    energy, forces = fast(x)
    e_ref, f_ref = _reference(small_model, numbers, positions)
    assert abs(float(energy) - e_ref) < 1e-10
    np.testing.assert_allclose(forces.numpy(), f_ref, atol=1e-10)


def test_fast_path_leaves_the_callers_model_trainable(small_model, ethanol):
    FastPotential(small_model, ethanol[0])
    assert all(p.requires_grad for p in small_model.parameters())


def test_periodic_systems_keep_the_neighbour_list(small_model, ethanol):
    numbers, positions = ethanol
    cell = 30.0 * np.eye(3)
    fast = FastPotential(small_model, numbers, periodic=True)
    assert not fast.static
    energy, forces = fast(torch.as_tensor(positions), torch.as_tensor(cell))
    e_ref, f_ref = _reference(small_model, numbers, positions, cell)
    assert abs(float(energy) - e_ref) < 1e-10
    np.testing.assert_allclose(forces.numpy(), f_ref, atol=1e-10)


def test_untrained_element_is_refused_when_the_fast_path_is_built(small_model):
    from workbench.errors import UnsupportedElementError

    with pytest.raises(UnsupportedElementError, match="Cl"):
        FastPotential(small_model, [6, 17, 1, 1, 1])


def test_failed_compilation_falls_back_to_the_exact_eager_path(small_model, ethanol, monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    numbers, positions = ethanol
    fast = FastPotential(small_model, numbers, compile=True)
    assert fast.compiled
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        energy, forces = fast(torch.as_tensor(positions))
    assert not fast.compiled
    e_ref, f_ref = _reference(small_model, numbers, positions)
    assert abs(float(energy) - e_ref) < 1e-10
    np.testing.assert_allclose(forces.numpy(), f_ref, atol=1e-10)


class _Wrapped(torch.nn.Module):
    """A potential with the EquivariantPotential interface that is not one (as quantized potentials are)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config
        self.elements = model.elements

    def element_indices(self, numbers, source="structure"):
        return self.inner.element_indices(numbers, source)

    def energy_and_forces(self, *args, **kwargs):
        return self.inner.energy_and_forces(*args, **kwargs)


def _openmm_energy_forces(force: openmm.Force, positions: np.ndarray) -> tuple[float, np.ndarray]:
    system = openmm.System()
    for _ in positions:
        system.addParticle(12.0)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions / 10.0)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
    return energy, np.asarray(forces)


def test_python_force_fast_and_generic_paths_agree_with_the_model(small_model, ethanol):
    numbers, positions = ethanol
    e_ref, f_ref = _reference(small_model, numbers, positions)
    for potential in (small_model, _Wrapped(small_model)):
        energy, forces = _openmm_energy_forces(create_force(potential, numbers), positions)
        assert abs(energy - e_ref * EV_TO_KJ_PER_MOL) < 1e-6
        np.testing.assert_allclose(forces, f_ref * EV_TO_KJ_PER_MOL * 10.0, atol=1e-6)


def test_nve_run_on_the_fast_path_conserves_energy(small_model, ethanol):
    from simulation.md import run

    traj = run(ethanol, small_model, protocol="NVE", steps=200, report_every=20, timestep_fs=0.25, compile=False)
    assert traj.positions.shape == (11, 9, 3)
    spread = np.ptp(traj.total_energy)
    assert spread < 0.02 * max(np.ptp(traj.kinetic_energy), 1e-6) + 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_path_equals_eager(small_model, ethanol, dtype):
    numbers, positions = ethanol
    model = small_model.to(dtype)
    eager = FastPotential(model, numbers)
    compiled = FastPotential(model, numbers, compile=True)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a silent fallback to eager would prove nothing
        for _ in range(3):
            x = torch.as_tensor(positions + 0.05 * rng.standard_normal(positions.shape), dtype=dtype)
            e_eager, f_eager = eager(x)
            e_comp, f_comp = compiled(x)
            assert compiled.compiled
            assert abs(float(e_comp) - float(e_eager)) < 1e-5 * max(1.0, abs(float(e_eager)))
            np.testing.assert_allclose(f_comp.numpy(), f_eager.numpy(), atol=1e-5)


@pytest.mark.slow
def test_compiled_md_run(small_model, ethanol):
    from simulation.md import run

    traj = run(ethanol, small_model, protocol="NVE", steps=400, report_every=100, timestep_fs=0.25, compile=True)
    assert np.isfinite(traj.total_energy).all()
    assert np.ptp(traj.total_energy) < 0.02 * max(np.ptp(traj.kinetic_energy), 1e-6) + 1e-4
