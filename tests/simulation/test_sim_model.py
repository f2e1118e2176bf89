"""Symmetries, smoothness, periodic boundaries and bad input of the equivariant potential."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulation.model import TAU_MAX, EquivariantPotential, PotentialConfig, fit_element_shifts, neighbour_list
from workbench.errors import CheckpointError, InvalidMoleculeError, UnsupportedElementError


def _rotation(seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.tensor(q)


def test_energy_invariant_and_forces_equivariant_under_rotation_translation(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    energy, forces = small_model.energy_and_forces(z, x)
    for seed in range(3):
        rot = _rotation(seed)
        shift = torch.tensor([1.5, -2.0, 0.7]) * (seed + 1)
        energy_r, forces_r = small_model.energy_and_forces(z, x @ rot.T + shift)
        assert torch.allclose(energy_r, energy, atol=1e-5, rtol=0)
        assert torch.allclose(forces_r, forces @ rot.T, atol=1e-5, rtol=0)


def test_improper_rotation_is_a_symmetry_too(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    e1, f1 = small_model.energy_and_forces(z, x)
    e2, f2 = small_model.energy_and_forces(z, x @ mirror.T)
    assert torch.allclose(e1, e2, atol=1e-5, rtol=0)
    assert torch.allclose(f2, f1 @ mirror.T, atol=1e-5, rtol=0)


def test_vector_features_rotate_with_the_molecule(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    rot = _rotation(11)
    s, v = small_model.features(z, x)  # s: (atoms, F); v: (atoms, F, 3)
    s_r, v_r = small_model.features(z, x @ rot.T)
    assert v.shape == (len(z), small_model.config.features, 3)
    assert torch.allclose(s_r, s, atol=1e-6)
    assert torch.allclose(v_r, v @ rot.T, atol=1e-6)


def test_permutation_invariance(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    perm = torch.randperm(len(z), generator=torch.Generator().manual_seed(3))
    e1, f1 = small_model.energy_and_forces(z, x)
    e2, f2 = small_model.energy_and_forces(z[perm], x[perm])
    assert torch.allclose(e1, e2, atol=1e-8)
    assert torch.allclose(f1[perm], f2, atol=1e-8)


def test_forces_match_finite_differences(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    _, forces = small_model.energy_and_forces(z, x)
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        plus, minus = x.clone(), x.clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        numeric = -(small_model(z, plus) - small_model(z, minus)).detach() / (2 * h)
        assert float(numeric) == pytest.approx(float(forces[atom, axis]), abs=1e-6)


def test_energy_is_smooth_when_a_neighbour_crosses_the_cutoff(small_model):
    z = torch.tensor([6, 8])
    cutoff = small_model.config.cutoff
    d = torch.linspace(cutoff - 0.01, cutoff + 0.01, 41, dtype=torch.float64)
    with torch.no_grad():
        energies = torch.stack([small_model(z, torch.tensor([[0.0, 0.0, 0.0], [float(r), 0.0, 0.0]]))[0] for r in d])
        far = float(small_model(z, torch.tensor([[0.0, 0, 0], [50.0, 0, 0]]))[0])
    assert torch.diff(energies).abs().max() < 1e-6
    assert float(energies[-1]) == pytest.approx(far)


def test_batched_energies_equal_single_evaluations(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    x2 = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch = torch.arange(2).repeat_interleave(len(z))
    energy, forces = small_model.energy_and_forces(torch.cat([z, z]), torch.cat([x, x2]), batch)
    e1, f1 = small_model.energy_and_forces(z, x)
    e2, f2 = small_model.energy_and_forces(z, x2)
    assert torch.allclose(energy, torch.cat([e1, e2]), atol=1e-10)
    assert torch.allclose(forces, torch.cat([f1, f2]), atol=1e-10)


def test_attention_logits_are_bounded(small_model, ethanol):
    for message in small_model.messages:
        tau = message.temperature()
        assert (tau > 0).all() and (tau < TAU_MAX).all()
    with torch.no_grad():
        for message in small_model.messages:
            message.temperature_raw.fill_(1e6)
    energy, forces = small_model.energy_and_forces(torch.tensor(ethanol[0]), torch.tensor(ethanol[1]))
    assert torch.isfinite(energy).all() and torch.isfinite(forces).all()


# ---------------------------------------------------------------------------------------------- periodic


def test_molecule_in_a_big_box_matches_open_boundaries(small_model, ethanol):
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    cell = 30.0 * torch.eye(3, dtype=torch.float64)
    e_open, f_open = small_model.energy_and_forces(z, x)
    e_box, f_box = small_model.energy_and_forces(z, x + 100.0, cell=cell)  # far outside the cell: wrapped
    assert torch.allclose(e_open, e_box, atol=1e-9)
    assert torch.allclose(f_open, f_box, atol=1e-9)


def test_supercell_energy_is_extensive(small_model):
    """A small triclinic cell (< 2 x cutoff, many images) and its 2x1x1 supercell: E doubles, forces repeat."""
    rng = np.random.default_rng(5)
    cell = torch.tensor([[3.4, 0.0, 0.0], [0.6, 3.6, 0.0], [0.3, -0.4, 3.9]], dtype=torch.float64)
    frac = torch.tensor(rng.uniform(size=(4, 3)))
    x = frac @ cell
    z = torch.tensor([6, 8, 1, 7])
    e1, f1 = small_model.energy_and_forces(z, x, cell=cell)
    super_cell = cell.clone()
    super_cell[0] *= 2
    x2 = torch.cat([x, x + cell[0]])
    e2, f2 = small_model.energy_and_forces(torch.cat([z, z]), x2, cell=super_cell)
    assert float(e2.detach()) == pytest.approx(2 * float(e1.detach()), abs=1e-8)
    assert torch.allclose(f2, torch.cat([f1, f1]), atol=1e-8)
    # forces of a periodic system are still -dE/dx
    h = 1e-5
    plus, minus = x.clone(), x.clone()
    plus[1, 2] += h
    minus[1, 2] -= h
    numeric = -(small_model(z, plus, cell=cell) - small_model(z, minus, cell=cell)) / (2 * h)
    assert float(numeric.detach()) == pytest.approx(float(f1[1, 2]), abs=1e-6)


def test_neighbour_list_matches_brute_force_images():
    rng = np.random.default_rng(2)
    cell = torch.tensor([[4.0, 0.0, 0.0], [1.0, 4.5, 0.0], [0.5, 0.3, 5.0]], dtype=torch.float64)
    x = torch.tensor(rng.uniform(-3, 8, size=(5, 3)))
    i, j, images = neighbour_list(x, 5.0, cell=cell)
    found = {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, images, strict=True)}
    expected = set()
    r = range(-4, 5)
    for a in range(5):
        for b in range(5):
            for n1 in r:
                for n2 in r:
                    for n3 in r:
                        if a == b and n1 == n2 == n3 == 0:
                            continue
                        shift = torch.tensor([n1, n2, n3], dtype=torch.float64) @ cell
                        if (x[b] + shift - x[a]).norm() < 5.0:
                            expected.add((a, b, n1, n2, n3))
    assert found == expected


# ---------------------------------------------------------------------------------------------- bad input


def test_nan_positions_are_refused(small_model, ethanol):
    x = ethanol[1].copy()
    x[3, 1] = np.nan
    with pytest.raises(InvalidMoleculeError, match="non-finite"):
        small_model.predict(ethanol[0], x)


def test_overlapping_atoms_are_refused(small_model, ethanol):
    x = ethanol[1].copy()
    x[4] = x[0] + 0.2
    with pytest.raises(InvalidMoleculeError, match="overlap"):
        small_model.predict(ethanol[0], x)


def test_overlap_through_a_periodic_image_is_refused(small_model):
    cell = np.eye(3) * 6.0
    with pytest.raises(InvalidMoleculeError, match="overlap"):
        small_model.predict([6, 8], [[0.1, 0.0, 0.0], [5.9, 0.0, 0.0]], cell=cell)


def test_untrained_element_is_refused(small_model):
    with pytest.raises(UnsupportedElementError, match="Cl"):
        small_model.predict([6, 17], [[0.0, 0.0, 0.0], [1.8, 0.0, 0.0]])


def test_predict_returns_energy_and_forces(small_model, ethanol):
    energy, forces = small_model.predict(*ethanol)
    assert np.isfinite(energy) and forces.shape == (9, 3) and np.isfinite(forces).all()
    assert np.abs(forces.sum(axis=0)).max() < 1e-8  # no net force on an isolated molecule


# ---------------------------------------------------------------------------------------------- checkpoints


def test_save_and_load_round_trip(small_model, ethanol, tmp_path):
    small_model.element_shift.copy_(torch.tensor([-10.0, -40.0, -60.0, -80.0]))
    small_model.save_pretrained(tmp_path)
    loaded = EquivariantPotential.from_pretrained(tmp_path, dtype=torch.float64)
    z, x = torch.tensor(ethanol[0]), torch.tensor(ethanol[1])
    assert torch.allclose(loaded(z, x), small_model(z, x), atol=1e-4)  # weights are stored as float32
    assert loaded.config == small_model.config


def test_corrupt_weights_raise_checkpoint_error_naming_the_file(small_model, tmp_path):
    small_model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        EquivariantPotential.from_pretrained(tmp_path)


def test_mismatched_config_raises_checkpoint_error(small_model, tmp_path):
    small_model.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text().replace('"features": 16', '"features": 32')
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="do not match"):
        EquivariantPotential.from_pretrained(tmp_path)


def test_missing_or_unreadable_config_raises_checkpoint_error(small_model, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        EquivariantPotential.from_pretrained(tmp_path)
    small_model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        EquivariantPotential.from_pretrained(tmp_path)


def test_element_shift_fit_recovers_per_element_energies():
    rng = np.random.default_rng(0)
    true = {1: -13.6, 6: -1029.0, 8: -2041.0}
    numbers, n_atoms, energy = [], [], []
    for _ in range(30):
        comp = rng.choice([1, 6, 8], size=rng.integers(3, 12))
        numbers.extend(comp)
        n_atoms.append(len(comp))
        energy.append(sum(true[int(z)] for z in comp))
    shifts = fit_element_shifts(np.array(numbers), np.array(n_atoms), np.array(energy), [1, 6, 8])
    assert np.allclose(shifts, [-13.6, -1029.0, -2041.0], atol=1e-6)


def test_config_rejects_features_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        PotentialConfig(elements=[1], features=10, heads=4)
